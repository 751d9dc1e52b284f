//! `cubectl version` against a real cube-manager: both sides' versions, proto package and
//! build commit (GetVersion), for any token's role, and what it says without a manager.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{cubectl, free_port, json, Cluster};

/// Proves that `version` prints the client's and the manager's versions, proto package and
/// commit (the same build here, so the same values), as lines and as JSON, also for a reader.
#[test]
fn version_prints_both_sides() {
    let cluster = Cluster::builder().start();
    let ctl = cluster.ctl();
    let stdout = ctl.ok(&["version"]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        lines[0].starts_with(&format!(
            "Client: cubectl {version} (proto cube.v1, commit "
        )),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "Server: cube-manager {version} (proto cube.v1, commit "
        )),
        "{stdout}"
    );
    let commit = |line: &str| {
        line.rsplit("commit ")
            .next()
            .unwrap()
            .trim_end_matches(')')
            .to_string()
    };
    assert_eq!(commit(lines[0]), commit(lines[1]), "one build, one commit");
    assert!(!commit(lines[0]).is_empty());

    let both = ctl.json(&["version"]);
    assert_eq!(both["client"]["version"], version);
    assert_eq!(both["server"]["version"], version);
    assert_eq!(both["server"]["protoPackage"], "cube.v1");
    assert_eq!(both["server"]["commit"], both["client"]["commit"]);

    let reader = ctl.with_token(Some(&cluster.tokens().reader));
    assert!(reader.ok(&["version"]).contains("Server: cube-manager"));
}

/// Proves that without a manager `version --client` still answers and `version` prints the
/// client's line, then fails with exit code 1 and the usual hint.
#[test]
fn version_without_a_manager() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let (code, stdout, stderr) = cubectl(&url, &["version", "--client", "-o", "json"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(json(&stdout)["client"]["protoPackage"], "cube.v1");
    let (code, stdout, stderr) = cubectl(&url, &["version"]);
    assert_eq!(code, 1);
    assert!(stdout.starts_with("Client: cubectl "), "{stdout}");
    assert!(stderr.contains("manager unreachable"), "{stderr}");
}
