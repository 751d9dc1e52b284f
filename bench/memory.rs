//! Benchmark (3), memory: the release `cube-manager`'s resident memory (VmRSS) with 0,
//! 10,000 and 100,000 tasks in its store, measured right after they were submitted and again
//! after a restart (the store reloaded), and the cost per stored task.
//!
//! `cargo bench --bench memory`. The manager has no workers, so every task stays PENDING in
//! its store; the tasks are `sleep 600` with a name, an image and the default everything else.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common.rs"]
mod common;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::Server;
use cube::pb::{self, manager_service_client::ManagerServiceClient};

/// The store sizes issue 8 asks for.
const SIZES: [usize; 3] = [0, 10_000, 100_000];
/// Concurrent submitting clients.
const CLIENTS: usize = 16;
/// How long the manager settles before a reading (allocator and background loops).
const SETTLE: Duration = Duration::from_secs(2);

fn start(dir: &std::path::Path) -> Server {
    let args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        dir.display().to_string(),
        // Plaintext on loopback: this benchmark measures memory, not TLS.
        "--plaintext".into(),
    ];
    Server::start(common::MANAGER, &args, &[])
}

async fn submit(url: &str, from: usize, to: usize) {
    let next = Arc::new(AtomicUsize::new(from));
    let mut handles = Vec::new();
    for _ in 0..CLIENTS {
        let (url, next) = (url.to_string(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut c = ManagerServiceClient::connect(url).await.unwrap();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= to {
                    return;
                }
                c.submit_task(pb::SubmitTaskRequest {
                    spec: Some(pb::TaskSpec {
                        name: format!("mem-{i}"),
                        image: "cube-test/busybox:latest".into(),
                        command: vec!["sleep".into(), "600".into()],
                        ..Default::default()
                    }),
                    request_id: String::new(),
                })
                .await
                .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

#[tokio::main]
async fn main() {
    let machine = common::machine();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("manager");
    let mut manager = start(&dir);
    let mut rows = Vec::new();
    let mut stored = 0;
    let mut base = None;
    for size in SIZES {
        let started = Instant::now();
        submit(&manager.url, stored, size).await;
        let took = started.elapsed();
        stored = size;
        tokio::time::sleep(SETTLE).await;
        let live = common::rss_bytes(manager.pid());
        let started = Instant::now();
        manager.stop();
        manager = start(&dir);
        let reload = started.elapsed();
        tokio::time::sleep(SETTLE).await;
        let reloaded = common::rss_bytes(manager.pid());
        let base = *base.get_or_insert(reloaded);
        let per_task = if size == 0 {
            "-".to_string()
        } else {
            format!(
                "{:.0} B",
                reloaded.saturating_sub(base) as f64 / size as f64
            )
        };
        let store = std::fs::metadata(dir.join("manager.redb"))
            .or_else(|_| {
                std::fs::read_dir(&dir)?
                    .flatten()
                    .find(|e| e.path().extension().is_some_and(|x| x == "redb"))
                    .map(|e| e.metadata())
                    .unwrap_or_else(|| Err(std::io::Error::other("no store file")))
            })
            .map_or(0, |m| m.len());
        println!(
            "{size} tasks: submitted in {took:.1?}; VmRSS {:.1} MiB live, {:.1} MiB after reload ({reload:.1?}); per task {per_task}",
            mib(live),
            mib(reloaded)
        );
        rows.push(format!(
            "| {size} | {:.1} MiB | {:.1} MiB | {per_task} | {:.1} MiB | {reload:.2?} |",
            mib(live),
            mib(reloaded),
            mib(store)
        ));
    }
    manager.stop();
    let table = format!(
        "## Manager memory\n\n\
The release `cube-manager` with no workers (every task stays PENDING in its store) on {machine}; {date}.\n\
Command: `cargo bench --bench memory`. VmRSS from /proc/<pid>/status, {settle:?} after the last submit and {settle:?} after a restart.\n\
Per task = (VmRSS after reload - VmRSS after reload with 0 tasks) / tasks. Goal: under 2 KiB (2048 B).\n\n\
| tasks in the store | VmRSS after submitting | VmRSS after a restart (reload) | per task | store file | restart to `listening on` |\n|---|---|---|---|---|---|\n{rows}\n",
        date = common::date(),
        settle = SETTLE,
        rows = rows.join("\n"),
    );
    common::record("Manager memory", &table);
}
