//! gzip: a Python grpcio client whose channel compresses every message calls every
//! ManagerService read rpc; a Rust client that asks for gzip gets gzip answers; cubectl sends
//! and asks for none.
// A test fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};

use common::*;
use cube::pb::{self, manager_service_client::ManagerServiceClient};
use tonic::codec::CompressionEncoding;

/// Whether a missing tool must fail the test (CI) rather than skip it.
fn tools_required() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0") || docker_required()
}

#[test]
fn python_client_with_gzip_calls_every_read_rpc() {
    let has_grpc = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_grpc {
        let why = "python3 with grpcio and grpcio-tools is not installed";
        if tools_required() {
            panic!("python_client_with_gzip_calls_every_read_rpc: {why}");
        }
        eprintln!("\n!!! SKIPPED python_client_with_gzip_calls_every_read_rpc: {why} !!!\n");
        return;
    }
    let stubs = temp_dir();
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new("python3")
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{root}/proto"))
        .arg(format!("--python_out={}", stubs.path().display()))
        .arg(format!("--grpc_python_out={}", stubs.path().display()))
        .arg(format!("{root}/proto/cube.proto"))
        .status()
        .unwrap();
    assert!(status.success(), "grpc_tools.protoc failed");

    let cluster = Cluster::builder()
        .plaintext()
        .workers(1)
        .runtime(Runtime::Exec)
        .start();
    let out = Command::new("python3")
        .arg(format!("{root}/tests/python/gzip_reads.py"))
        .args(["--manager", &cluster.manager().addr])
        .env("PYTHONPATH", stubs.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the gzip client failed:\n{stdout}\n{stderr}"
    );
    for rpc in [
        "WatchTasks",
        "GetTask",
        "ListTasks",
        "ListNodes",
        "ListEvents",
        "ExplainTask",
        "StreamLogs",
    ] {
        assert!(stdout.contains(&format!("{rpc} ok")), "{rpc}:\n{stdout}");
    }
}

/// A client that sends gzip and accepts it gets its answer compressed (the `grpc-encoding`
/// header says so); cubectl's requests name no encoding, so any server understands them.
#[test]
fn answers_are_gzip_when_the_client_accepts_it() {
    let cluster = Cluster::builder().plaintext().start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(cluster.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut gzip = ManagerServiceClient::new(channel.clone())
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip);
        let answer = gzip.list_nodes(pb::ListNodesRequest {}).await.unwrap();
        assert_eq!(
            answer
                .metadata()
                .get("grpc-encoding")
                .map(|v| v.to_str().unwrap()),
            Some("gzip"),
            "{:?}",
            answer.metadata()
        );
        let mut plain = ManagerServiceClient::new(channel);
        let answer = plain.list_nodes(pb::ListNodesRequest {}).await.unwrap();
        assert!(answer.metadata().get("grpc-encoding").is_none());
    });
    // cubectl still works, uncompressed.
    cluster.ctl().ok(&["nodes"]);
}
