//! Who may join and speak for a node, and what a caller may see: node certificates signed
//! for joining workers, the rule that a node speaks only for itself, the addresses the
//! manager agrees to dial, and env values hidden from all but admins.

use crate::{
    error::{Error, Result},
    proto::pb,
    tls::{Caller, ClusterCa},
};

/// The longest node name: it becomes a certificate's CN, which X.509 caps at 64 characters.
const MAX_NODE_NAME: usize = 64;

/// What a reader sees in place of an env value.
pub const REDACTED: &str = "<redacted>";

/// Signs the node certificate of a joining worker: refused while a node of that name is
/// alive (a second worker may not take over a live node's identity).
pub fn join(
    ca: Option<&ClusterCa>,
    nodes: &[pb::Node],
    request: pb::JoinClusterRequest,
) -> Result<pb::JoinClusterResponse> {
    let ca = ca.ok_or_else(|| {
        Error::FailedPrecondition(
            "this manager runs without TLS (--dev): workers register without joining".into(),
        )
    })?;
    check_name(&request.name)?;
    if let Some(node) = nodes.iter().find(|n| n.name == request.name) {
        if node.state() != pb::NodeState::Down {
            return Err(Error::AlreadyExists {
                what: "live node",
                id: request.name,
            });
        }
    }
    let cert_pem = ca
        .sign_node(&request.csr_pem, &request.name)
        .map_err(|e| Error::invalid("csr_pem", e.to_string()))?;
    tracing::info!(node = %request.name, "node certificate signed for a joining worker");
    Ok(pb::JoinClusterResponse {
        cert_pem,
        ca_pem: ca.cert_pem().to_string(),
    })
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("name", "is required"));
    }
    if name.chars().count() > MAX_NODE_NAME {
        return Err(Error::invalid(
            "name",
            format!("is longer than {MAX_NODE_NAME} characters"),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(Error::invalid(
            "name",
            format!("{name:?} may hold only letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

/// A node speaks only for itself: a caller with node `held`'s certificate may not register
/// or heartbeat as `claimed`.
pub fn speaks_for(caller: &Caller, claimed: &str) -> Result<()> {
    match caller {
        Caller::Node(held) if held != claimed => Err(Error::PermissionDenied(format!(
            "this certificate is node {held:?}'s; it cannot speak for node {claimed:?}"
        ))),
        _ => Ok(()),
    }
}

/// The manager dials only `host:port`: no URL, no path, no unix socket.
pub fn check_address(address: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::invalid(
            "address",
            format!("{address:?} is not host:port ({why}); the manager dials nothing else"),
        ))
    };
    let Some((host, port)) = address.rsplit_once(':') else {
        return bad("no port");
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return bad("the port is not a number from 1 to 65535");
    }
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':');
    if host.is_empty() || !host.chars().all(plain) {
        return bad("a host name or address, with no scheme, path or socket");
    }
    Ok(())
}

/// Hides env values from a caller that may not see them.
pub fn redact(caller: &Caller, task: &mut pb::Task) {
    if caller.sees_secrets() {
        return;
    }
    if let Some(spec) = task.spec.as_mut() {
        for value in spec.env.values_mut() {
            *value = REDACTED.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_and_port_are_dialled() {
        for ok in [
            "10.0.0.1:5556",
            "w1.example:5556",
            "[fd00::1]:5556",
            "localhost:1",
        ] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "unix:/var/run/docker.sock",
            "http://10.0.0.1:5556",
            "10.0.0.1:5556/path",
            "10.0.0.1",
            "10.0.0.1:0",
            "user@host:22",
            ":5556",
        ] {
            let e = check_address(bad).unwrap_err();
            assert!(e.to_string().contains("address"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_node_speaks_only_for_itself() {
        let w1 = Caller::Node("w1".into());
        assert!(speaks_for(&w1, "w1").is_ok());
        let e = speaks_for(&w1, "w2").unwrap_err();
        let message = e.to_string();
        assert!(
            message.contains("\"w1\"") && message.contains("\"w2\""),
            "{message}"
        );
        assert_eq!(tonic::Status::from(e).code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn readers_see_env_keys_only() {
        let mut task = pb::Task {
            spec: Some(pb::TaskSpec {
                env: [("DB_PASSWORD".to_string(), "hunter2".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut shown = task.clone();
        redact(&Caller::Token(crate::tls::Role::Admin), &mut shown);
        assert_eq!(shown.spec.as_ref().unwrap().env["DB_PASSWORD"], "hunter2");
        redact(&Caller::Token(crate::tls::Role::Reader), &mut task);
        assert_eq!(task.spec.unwrap().env["DB_PASSWORD"], REDACTED);
    }
}
