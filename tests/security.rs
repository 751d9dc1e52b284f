//! Secure by default, with real processes over TLS: joining takes a worker token, a node
//! speaks only for itself, a reader's token cannot change anything, plaintext and foreign-CA
//! clients are refused, a rotated token stops new joins while joined workers go on, a worker
//! answers only its manager, and the data at rest is its owner's alone.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use cube::{
    pb::{self, manager_service_client::ManagerServiceClient},
    tls::{ClientTls, Issued, Trust},
};
use tonic::Code;

const READY: Duration = Duration::from_secs(20);

/// A cluster whose Exec workers join with the worker token.
fn joined(workers: usize) -> Cluster {
    Cluster::builder()
        .runtime(Runtime::Exec)
        .register()
        .workers(workers)
        .wait_ready(READY)
        .start()
}

/// Runs `cube-worker ARGS` that must fail at start; its stderr.
fn worker_fails(args: &[&str]) -> String {
    let out = Command::new(bin("cube-worker"))
        .args(args)
        .stdin(Stdio::null())
        .env_remove("CUBE_MANAGER")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "cube-worker {args:?} started: {stderr}"
    );
    stderr
}

/// The worker flags of a worker that would join `cluster` as `name`.
fn join_args<'a>(cluster_url: &'a str, name: &'a str, data: &'a str) -> Vec<&'a str> {
    vec![
        "--listen",
        "127.0.0.1:0",
        "--runtime",
        "exec",
        "--name",
        name,
        "--data-dir",
        data,
        "--manager",
        cluster_url,
    ]
}

/// A client holding the node certificate in `worker_data` (what an impostor that stole it, or
/// the worker itself, would hold); `check_name`: whether the server must be named as dialled
/// (a worker's certificate names the node, not its address).
fn node_tls(worker_data: &Path, check_name: bool) -> ClientTls {
    let tls = worker_data.join("tls");
    let read = |f: &str| std::fs::read_to_string(tls.join(f)).unwrap();
    let issued = Issued {
        cert_pem: read("node.pem"),
        key_pem: read("node.key"),
    };
    let trust = Trust::from_pem(&read("ca.pem"), "ca.pem").unwrap();
    ClientTls::new(trust, Some(&issued), check_name).unwrap()
}

#[test]
fn a_worker_needs_a_valid_token_to_join_and_then_runs_tasks() {
    let cluster = joined(1);
    let url = cluster.url();
    let dir = temp_dir();
    let data = dir.path().join("w").display().to_string();

    let stderr = worker_fails(&join_args(&url, "no-token", &data));
    assert!(stderr.contains("--join-token"), "{stderr}");

    let forged = format!(
        "CUBE-1-{}-{}",
        &cluster.tokens().worker[7..71],
        "0".repeat(64)
    );
    let mut args = join_args(&url, "forged", &data);
    args.extend(["--join-token", &forged]);
    let stderr = worker_fails(&args);
    assert!(
        stderr.contains("refused the join") && stderr.contains("not valid for this cluster"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&"0".repeat(64)),
        "the secret is echoed: {stderr}"
    );

    // A reader's token is no worker token.
    let mut args = join_args(&url, "reader", &data);
    args.extend(["--join-token", &cluster.tokens().reader]);
    let stderr = worker_fails(&args);
    assert!(stderr.contains("may not call JoinCluster"), "{stderr}");

    // The joined worker runs tasks, and its node certificate names it.
    let ctl = cluster.ctl();
    let id = ctl.run(&["--name", "joined", "--", "sleep", "300"]);
    let task = ctl.wait_state(&id, "TASK_STATE_RUNNING", Duration::from_secs(20));
    assert_eq!(task["node"], cluster.name(0));
    let node = std::fs::read_to_string(cluster.dir().join(cluster.name(0)).join("tls/node.pem"));
    let identity = cube::tls::identity::of_pem(&node.unwrap());
    assert_eq!(
        identity,
        Some(cube::tls::Identity::Node(cluster.name(0).into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_speaks_for_its_node_only() {
    let cluster = joined(2);
    let (w0, w1) = (cluster.name(0).to_string(), cluster.name(1).to_string());
    // An impostor holding w0's certificate.
    let tls = node_tls(&cluster.dir().join(&w0), true);
    let channel = tls
        .channel(&cluster.url(), Duration::from_secs(10))
        .unwrap();
    let mut impostor = ManagerServiceClient::new(channel);

    let status = impostor
        .heartbeat(pb::HeartbeatRequest {
            name: w1.clone(),
            instance_id: "impostor".into(),
            stats: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status.message().contains(&w0) && status.message().contains(&w1),
        "both names: {}",
        status.message()
    );
    let register = |name: &str, address: &str| pb::RegisterWorkerRequest {
        name: name.into(),
        address: address.into(),
        instance_id: "impostor".into(),
        ..Default::default()
    };
    let status = impostor
        .register_worker(register(&w1, "127.0.0.1:1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // As itself, it may not make the manager dial a unix socket or a URL.
    for address in ["unix:/var/run/docker.sock", "http://127.0.0.1:1/x"] {
        let status = impostor
            .register_worker(register(&w0, address))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{address}: {status:?}"
        );
        assert!(
            status.message().contains("host:port"),
            "{}",
            status.message()
        );
    }
    // A node certificate reads nothing and changes nothing.
    let status = impostor
        .list_tasks(pb::ListTasksRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // Nor can it take w1's name by joining again while w1 lives.
    let mut joiner = manager_client_with(&cluster.url(), Some(&cluster.tokens().worker));
    let (csr, _) = cube::tls::ca::node_request(&w1).unwrap();
    let status = joiner
        .join_cluster(pb::JoinClusterRequest {
            name: w1.clone(),
            csr_pem: csr,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    assert!(status.message().contains(&w1), "{}", status.message());

    // The worker's own WorkerService answers the manager only: not a node, not a stranger.
    let addr = cluster
        .ctl()
        .nodes()
        .into_iter()
        .find(|n| n["name"] == w1.as_str())
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();
    let tls = node_tls(&cluster.dir().join(&w0), false);
    let channel = tls.channel(&addr, Duration::from_secs(10)).unwrap();
    let mut worker = pb::worker_service_client::WorkerServiceClient::new(channel);
    let status = worker
        .list_tasks(pb::WorkerServiceListTasksRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let plaintext = cube::grpc::channel(&addr, Duration::from_secs(5)).unwrap();
    let mut stranger = pb::worker_service_client::WorkerServiceClient::new(plaintext);
    assert!(stranger
        .list_tasks(pb::WorkerServiceListTasksRequest::default())
        .await
        .is_err());
    // And every node stays READY.
    cluster.wait_ready();
}

#[test]
fn a_reader_token_reads_but_cannot_stop_and_sees_no_env_values() {
    let cluster = joined(1);
    let admin = cluster.ctl();
    let id = admin.run(&[
        "--name",
        "secret",
        "-e",
        "DB_PASSWORD=hunter2",
        "--",
        "sleep",
        "300",
    ]);
    admin.wait_state(&id, "TASK_STATE_RUNNING", Duration::from_secs(20));
    assert_eq!(admin.task(&id)["spec"]["env"]["DB_PASSWORD"], "hunter2");

    let reader = cluster.ctl().with_token(Some(&cluster.tokens().reader));
    let seen = reader.task(&id);
    assert_eq!(seen["spec"]["env"]["DB_PASSWORD"], "<redacted>", "{seen}");
    let listed = reader.json(&["status"]);
    assert!(!listed.to_string().contains("hunter2"), "{listed}");
    let explained = reader.explain(&id);
    assert!(!explained.to_string().contains("hunter2"), "{explained}");
    let (code, _, stderr) = reader.call(&["stop", &id]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("reader token may not call StopTask"),
        "{stderr}"
    );
    let (code, _, stderr) = reader.call(&["drain", cluster.name(0)]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(admin.task(&id)["desiredState"], "DESIRED_STATE_RUNNING");
}

#[test]
fn plaintext_foreign_and_rotated_credentials_are_refused_and_the_manager_serves_on() {
    let cluster = Cluster::builder().start();
    let addr = cluster.manager().addr.clone();
    let ctl = cluster.ctl();

    // Plaintext against TLS: fails at once.
    let started = std::time::Instant::now();
    let (code, _, stderr) = Cubectl::new(&format!("http://{addr}"))
        .with_token(None)
        .call(&["nodes"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5), "{stderr}");
    // A token over plaintext is never sent.
    let (code, _, stderr) = Cubectl::new(&format!("http://{addr}"))
        .with_token(Some(&cluster.tokens().admin))
        .call(&["nodes"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("TLS only"), "{stderr}");
    // No token: UNAUTHENTICATED.
    let ca = cluster.ca_pem();
    let (code, _, stderr) = Cubectl::new(&cluster.url()).with_token(None).call(&[
        "--ca-cert",
        ca.to_str().unwrap(),
        "nodes",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no credentials"), "{stderr}");

    // Another cluster's CA, by file or by a token's digest: the handshake fails.
    let other = Cluster::builder().start();
    let (code, _, stderr) = Cubectl::new(&cluster.url()).call(&[
        "--ca-cert",
        other.ca_pem().to_str().unwrap(),
        "nodes",
    ]);
    assert_eq!(code, 1, "{stderr}");
    let (code, _, stderr) = Cubectl::new(&cluster.url())
        .with_token(Some(&other.tokens().admin))
        .call(&["nodes"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not the one the token names"), "{stderr}");

    // A rotated admin token: UNAUTHENTICATED, naming nothing secret.
    let old = cluster.tokens().admin.clone();
    let new = rotate(&cluster, "admin");
    let (code, _, stderr) = Cubectl::new(&cluster.url())
        .with_token(Some(&old))
        .call(&["nodes"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("not valid for this cluster"), "{stderr}");
    assert!(
        !stderr.contains(&old[72..]),
        "the secret is echoed: {stderr}"
    );
    let (code, _, stderr) = Cubectl::new(&cluster.url())
        .with_token(Some(&new))
        .call(&["nodes"]);
    assert_eq!(code, 0, "{stderr}");
    // The manager never logged a token.
    let logs = cluster.manager().logs();
    assert!(
        !logs.contains(&old[72..]) && !logs.contains(&new[72..]),
        "{logs}"
    );
    drop(ctl);
}

/// `cube-manager token rotate ROLE`: the new token.
fn rotate(cluster: &Cluster, role: &str) -> String {
    let data = cluster.manager_data();
    run_ok(
        bin("cube-manager").to_str().unwrap(),
        &[
            "token",
            "rotate",
            role,
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
    .trim()
    .to_string()
}

#[test]
fn a_rotated_worker_token_stops_new_joins_while_joined_workers_go_on() {
    let mut cluster = joined(1);
    let old = cluster.tokens().worker.clone();
    let new = rotate(&cluster, "worker");
    assert_ne!(old, new);
    let url = cluster.url();
    let dir = temp_dir();
    let data = dir.path().join("late").display().to_string();
    let mut args = join_args(&url, "late", &data);
    args.extend(["--join-token", &old]);
    let stderr = worker_fails(&args);
    assert!(stderr.contains("not valid for this cluster"), "{stderr}");

    // The joined worker restarts on its kept certificate (the old token it is started with
    // again is not used), and runs tasks.
    cluster.restart_worker(0);
    std::thread::sleep(Duration::from_secs(3));
    cluster.wait_ready();
    let ctl = cluster.ctl();
    let id = ctl.run(&["--name", "after-rotate", "--", "sleep", "300"]);
    ctl.wait_state(&id, "TASK_STATE_RUNNING", Duration::from_secs(20));

    // The new token joins.
    let late = Proc::start(
        "cube-worker",
        &[&join_args(&url, "late", &data)[..], &["--join-token", &new]].concat(),
    );
    ctl.wait_ready(&["late", cluster.name(0)], READY);
    drop(late);
}

#[test]
fn plaintext_is_refused_off_loopback() {
    let dir = temp_dir();
    let data = dir.path().display().to_string();
    let out = Command::new(bin("cube-manager"))
        .args([
            "--dev",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
            &data,
            "--runtime",
            "exec",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("loopback only"), "{stderr}");
    let stderr = worker_fails(&[
        "--listen",
        "0.0.0.0:0",
        "--runtime",
        "exec",
        "--data-dir",
        &format!("{data}/w"),
    ]);
    assert!(
        stderr.contains("loopback only") && stderr.contains("--join-token"),
        "{stderr}"
    );

    // --dev without Docker does not quietly run tasks as host processes: it says how to.
    let out = Command::new(bin("cube-manager"))
        .args([
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &format!("{data}/dev"),
        ])
        .env("DOCKER_HOST", format!("unix://{data}/no-docker.sock"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--runtime exec"), "{stderr}");

    // The manager dials only host:port, static workers included.
    let out = Command::new(bin("cube-manager"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &format!("{data}/m"),
        ])
        .args(["--workers", "unix:/var/run/docker.sock"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("workers[0].address") && stderr.contains("host:port"),
        "{stderr}"
    );
}

#[test]
fn data_at_rest_is_the_owners_alone() {
    let cluster = joined(1);
    let ctl = cluster.ctl();
    let id = ctl.run(&["--name", "out", "--", "sh", "-c", "echo hi; sleep 300"]);
    ctl.wait_state(&id, "TASK_STATE_RUNNING", Duration::from_secs(20));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let manager = cluster.manager_data();
    let worker = cluster.dir().join(cluster.name(0));
    for dir in [&manager, &manager.join("tls"), &worker, &worker.join("tls")] {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
    }
    let mut files = Vec::new();
    for dir in [&manager, &worker] {
        collect_files(dir, &mut files);
    }
    assert!(files.iter().any(|f| f.ends_with("ca.key")), "{files:?}");
    assert!(files.iter().any(|f| f.ends_with("node.key")), "{files:?}");
    assert!(
        files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "redb")),
        "{files:?}"
    );
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
}

fn collect_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", path.display());
            collect_files(&path, out);
        } else if path.is_file() {
            out.push(path);
        }
    }
}

#[test]
fn an_exec_task_gets_its_env_and_a_path_not_the_workers() {
    let cluster = Cluster::builder()
        .runtime(Runtime::Exec)
        .register()
        .worker_env("WORKER_SECRET", "do-not-leak")
        .workers(1)
        .wait_ready(READY)
        .start();
    let ctl = cluster.ctl();
    let id = ctl.run(&[
        "--name",
        "env",
        "-e",
        "MINE=1",
        "--",
        "sh",
        "-c",
        "env; sleep 300",
    ]);
    ctl.wait_state(&id, "TASK_STATE_RUNNING", Duration::from_secs(20));
    let logs = wait_for(
        Duration::from_secs(10),
        "the task's env in its logs",
        || {
            let out = ctl.ok(&["logs", &id]);
            out.contains("MINE=1").then_some(out)
        },
    );
    assert!(logs.contains("PATH=/usr/local/sbin"), "{logs}");
    assert!(!logs.contains("WORKER_SECRET"), "{logs}");
    assert!(!logs.contains("CUBE_"), "{logs}");
}
