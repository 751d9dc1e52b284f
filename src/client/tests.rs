//! The typed client's errors: statuses, transport failures, deadlines and bad URLs, classified.

use super::*;

const URL: &str = "http://127.0.0.1:5555";

#[test]
fn statuses_the_manager_sent_are_rpc_errors() {
    let error = classify(
        URL,
        DEFAULT_TIMEOUT,
        Status::not_found("task \"x\" not found"),
    );
    assert!(matches!(error, ClientError::Rpc(_)));
    assert_eq!(error.code(), Code::NotFound);
    assert_eq!(error.to_string(), "task \"x\" not found");
    let unavailable = classify(URL, DEFAULT_TIMEOUT, Status::unavailable("stopping"));
    assert!(matches!(unavailable, ClientError::Rpc(_)));
    assert!(unavailable.is_retryable());
}

#[test]
fn transport_failures_are_unreachable_with_their_cause() {
    let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    let status = Status::from_error(Box::new(refused));
    let error = classify(URL, DEFAULT_TIMEOUT, status);
    assert!(
        matches!(error, ClientError::Unreachable { .. }),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert_eq!(
        error.to_string(),
        "manager unreachable at http://127.0.0.1:5555: refused"
    );
}

#[test]
fn a_passed_deadline_is_a_timeout() {
    let error = classify(
        URL,
        Duration::from_millis(500),
        Status::cancelled("Timeout expired"),
    );
    assert_eq!(error.code(), Code::DeadlineExceeded);
    assert!(!error.is_retryable());
    assert_eq!(
        error.to_string(),
        "manager at http://127.0.0.1:5555 did not answer within 0.5s"
    );
}

#[test]
fn bad_urls_are_refused_before_any_call() {
    let tls = Client::new("https://127.0.0.1:5555", DEFAULT_TIMEOUT).unwrap_err();
    assert!(tls.to_string().contains("give a token"), "{tls}");
    let token = Credentials {
        token: Some(format!("CUBE-1-{}-secret", "a".repeat(64))),
        ca_pem: None,
    };
    let clear =
        Client::with_credentials("http://127.0.0.1:5555", DEFAULT_TIMEOUT, &token).unwrap_err();
    assert!(clear.to_string().contains("over TLS only"), "{clear}");
    assert!(!clear.to_string().contains("secret"), "{clear}");
    let unix = Client::new("unix:///tmp/cube.sock", DEFAULT_TIMEOUT).unwrap_err();
    assert!(
        unix.to_string().contains("unix:// is not a scheme"),
        "{unix}"
    );
    let error = Client::new("http://[::1", DEFAULT_TIMEOUT).unwrap_err();
    assert!(matches!(error, ClientError::BadUrl { .. }), "{error:?}");
}
