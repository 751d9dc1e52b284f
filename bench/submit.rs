//! Control-plane numbers of the manager's durable store: SubmitTask per second with 1 and 16
//! concurrent clients, and the restart (reload) time with 100,000 tasks in the store.
//!
//! `cargo bench --bench submit` (release build; prints a markdown table). The manager runs in
//! this process on 127.0.0.1:0 with no workers, so only submission and the store are measured.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use cube::{
    manager::{Manager, ManagerConfig},
    pb::{self, manager_service_client::ManagerServiceClient},
    store::manager::{ManagerStore, Op},
    TaskId,
};
use tokio_util::sync::CancellationToken;

/// Submissions per run: enough for a few seconds of steady state at the target rate.
const SUBMISSIONS: usize = 8_000;
/// Tasks in the store for the restart measurement (issue 4's figure).
const RESTART_TASKS: usize = 100_000;

fn spec(i: usize) -> pb::TaskSpec {
    pb::TaskSpec {
        name: format!("bench-{i}"),
        image: "cube-test/busybox:latest".into(),
        command: vec!["sleep".into(), "300".into()],
        ..Default::default()
    }
}

async fn submissions_per_second(clients: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(cube::manager::serve(
        listener,
        ManagerConfig::new(dir.path()),
        shutdown.clone(),
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (url, next) = (url.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut c = ManagerServiceClient::connect(url).await.unwrap();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= SUBMISSIONS {
                    return;
                }
                c.submit_task(pb::SubmitTaskRequest {
                    spec: Some(spec(i)),
                    request_id: format!("bench-{i}"),
                })
                .await
                .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let rate = SUBMISSIONS as f64 / started.elapsed().as_secs_f64();
    shutdown.cancel();
    server.await.unwrap().unwrap();
    rate
}

/// This process's resident memory in bytes (Linux).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// (restart time, resident memory the loaded manager holds per task).
async fn restart_time() -> (Duration, f64) {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = ManagerStore::open(dir.path()).unwrap();
        let mut event_seq = 1;
        for chunk in 0..RESTART_TASKS / 5_000 {
            let mut ops = Vec::new();
            for j in 0..5_000 {
                let i = chunk * 5_000 + j;
                let id = TaskId::new();
                let task = pb::Task {
                    id: id.to_string(),
                    spec: Some(spec(i)),
                    state: pb::TaskState::Completed as i32,
                    desired_state: pb::DesiredState::Running as i32,
                    node: "w1".into(),
                    container_id:
                        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
                    created_at: Some(cube::proto::now()),
                    started_at: Some(cube::proto::now()),
                    finished_at: Some(cube::proto::now()),
                    exit_code: Some(0),
                    request_id: format!("bench-{i}"),
                    revision: i as u64 + 1,
                    ..Default::default()
                };
                let task = std::sync::Arc::new(task);
                ops.push(Op::task(i as u64 + 1, id, task.clone()));
                for kind in [pb::EventType::Submitted, pb::EventType::StateChanged] {
                    let event = pb::TaskEvent {
                        seq: event_seq,
                        task_id: task.id.clone(),
                        time: Some(cube::proto::now()),
                        r#type: kind as i32,
                        state: task.state,
                        node: "w1".into(),
                        message: "bench".into(),
                    };
                    event_seq += 1;
                    ops.push(Op::event(id, event));
                }
            }
            store.write(ops).wait().await.unwrap();
        }
    }
    // The writer thread lets go of the file shortly after the store is dropped.
    let mut config = ManagerConfig::new(dir.path());
    config.workers = vec![];
    let started = Instant::now();
    let manager = loop {
        match Manager::open(config.clone()) {
            Ok(m) => break m,
            Err(_) if started.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    drop(manager);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = rss_bytes();
    let started = Instant::now();
    let manager = Manager::open(config).unwrap();
    let open = started.elapsed();
    let per_task = rss_bytes().saturating_sub(rss_before) as f64 / RESTART_TASKS as f64;
    drop(manager);
    (open, per_task)
}

#[tokio::main]
async fn main() {
    let one = submissions_per_second(1).await;
    let sixteen = submissions_per_second(16).await;
    let (restart, per_task) = restart_time().await;
    println!("| measurement | result |");
    println!("|---|---|");
    println!("| SubmitTask/s, 1 client ({SUBMISSIONS} tasks) | {one:.0} |");
    println!("| SubmitTask/s, 16 clients ({SUBMISSIONS} tasks) | {sixteen:.0} |");
    println!(
        "| restart (open + reload) with {RESTART_TASKS} tasks | {:.0} ms |",
        restart.as_secs_f64() * 1000.0
    );
    println!("| manager resident memory per loaded task | {per_task:.0} bytes |");
}
