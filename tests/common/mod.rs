//! What every integration test shares: real Cube clusters on ephemeral ports, the busybox test
//! image, cubectl and gRPC clients, container cleanup by label and waiting.
//!
//! # Layout
//! - `cluster`: [`Cluster`], a manager and workers as real processes with temp dirs, and
//!   (`cluster/builder.rs`) [`ClusterBuilder`], what it is made of.
//! - `process`: [`Proc`], one Cube binary as a child process, killed when dropped.
//! - `docker`: does Docker answer (skip loudly, or fail under `CUBE_REQUIRE_DOCKER=1`).
//! - `image`: [`TEST_IMAGE`], built once per run from busybox-static.
//! - `containers`: containers found and removed by their `cube.*` labels; a guard that
//!   removes a cluster's containers when it is dropped.
//! - `exec_tasks`: Exec tasks (process groups) found and killed by their worker's data dir.
//! - `cubectl`: cubectl runs, raw ([`cubectl`]) and as a user would ([`Cubectl`]).
//! - `grpc`: task specs, the manager's client, a blocking worker client ([`WorkerClient`]).
//! - `grpcurl`: the real grpcurl, when installed.
//! - `metrics`: a process's metrics endpoint, found in its logs and scraped.
//! - `services`: a service of sleepers on Exec workers, and its slots.
//! - `net_cluster`: [`NetCluster`], a secure cluster with every node in its own namespace.
//! - `netns`: [`netns::Net`], a real network: a namespace per node on a bridge, partitions.
//! - `soak`: the nemesis soak (faults on a [`NetCluster`], a history, a checker).
//! - `tmpfs`: [`Tmpfs`], a small file system for a test to fill up (needs root).
//! - `wait`: [`wait_for`], polling with a deadline.
// Each test binary uses a different part of this module, items and re-exports alike.
#![allow(dead_code, unused_imports)]

mod cluster;
mod containers;
mod cubectl;
mod docker;
mod exec_tasks;
mod grpc;
mod grpcurl;
mod image;
mod metrics;
mod net_cluster;
pub mod netns;
mod process;
pub mod services;
pub mod soak;
mod tmpfs;
mod wait;

pub use cluster::{admin_token, Cluster, ClusterBuilder, Runtime, Tokens};
pub use containers::{
    containers_of, containers_of_task, remove_containers_of, running_containers_of,
    running_containers_of_task,
};
pub use cubectl::{cubectl, Cubectl};
pub use docker::{docker_inspect, docker_required, need_docker};
pub use grpc::{
    exec_batch, exec_spec, get_task, list_all, list_nodes, manager_client_with, new_id, spec,
    stop_task, submit, submit_many, try_submit, WorkerClient,
};
pub use grpcurl::{grpcurl, grpcurl_run};
pub use image::TEST_IMAGE;
pub use metrics::{http_get, metrics_address, scrape};
pub use net_cluster::{counted_spec, NetCluster};
pub use process::{bin, rss_bytes, Proc};
pub use tmpfs::Tmpfs;
pub use wait::wait_for;

use std::process::Command;

/// Runs a command and returns its stdout, panicking with its stderr when it fails.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A name no other test (or run) uses: `prefix-<8 hex>`.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// A fresh temporary directory (removed when dropped).
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cube-test-")
        .tempdir()
        .unwrap()
}

/// Parses JSON a command printed, panicking with the text when it is not JSON.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// A port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
