//! Nothing acknowledged is lost: the manager is SIGKILLed while clients submit, and every
//! acknowledged id is there after a restart, with no request_id making two tasks. Also: a
//! garbage store file and a second manager on the same data dir fail at once with exit code 1.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{temp_dir, Cluster};
use cube::pb;
use rand::Rng;

fn spec(i: usize) -> pb::TaskSpec {
    pb::TaskSpec {
        name: format!("t{i}"),
        command: vec!["true".into()],
        ..Default::default()
    }
}

/// Submits `count` tasks with request ids `{prefix}-{i}` from 16 clients as fast as they go,
/// until the manager dies; returns what was acknowledged (request id -> task id).
async fn submit_until_killed(url: String, prefix: &str, count: usize) -> HashMap<String, String> {
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (url, acked, next, prefix) =
            (url.clone(), acked.clone(), next.clone(), prefix.to_string());
        clients.push(tokio::spawn(async move {
            let mut c = common::manager_client_with(&url, common::admin_token(&url).as_deref());
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return;
                }
                let request_id = format!("{prefix}-{i}");
                match c
                    .submit_task(pb::SubmitTaskRequest {
                        spec: Some(spec(i)),
                        request_id: request_id.clone(),
                    })
                    .await
                {
                    Ok(answer) => {
                        let id = answer.into_inner().task.unwrap().id;
                        acked.lock().unwrap().insert(request_id, id);
                    }
                    Err(_) => return, // the manager died
                }
            }
        }));
    }
    for client in clients {
        let _ = client.await;
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

/// Three rounds: 200 submissions with request ids, SIGKILL at a random moment, restart; every
/// acknowledged id exists; resubmitting every request id returns the acknowledged task and
/// never makes a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_submissions_survive_sigkill() {
    let mut cluster = Cluster::builder().start();
    let mut expected_total = 0;
    for round in 0..3 {
        if round > 0 {
            cluster.start_manager();
        }
        let prefix = format!("round{round}");
        let kill_after = Duration::from_millis(rand::rng().random_range(50..400));
        let url = cluster.url();
        let submitting = tokio::spawn({
            let prefix = prefix.clone();
            async move { submit_until_killed(url, &prefix, 200).await }
        });
        tokio::time::sleep(kill_after).await;
        cluster.kill_manager();
        let acked = submitting.await.unwrap();
        eprintln!(
            "round {round}: killed after {kill_after:?}, {} acknowledged",
            acked.len()
        );

        cluster.start_manager();
        let mut c = cluster.client().await;
        for id in acked.values() {
            common::get_task(&mut c, id)
                .await
                .unwrap_or_else(|e| panic!("acknowledged task {id} lost: {e}"));
        }
        for i in 0..200 {
            let request_id = format!("{prefix}-{i}");
            let answer = c
                .submit_task(pb::SubmitTaskRequest {
                    spec: Some(spec(i)),
                    request_id: request_id.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            if let Some(id) = acked.get(&request_id) {
                assert!(!answer.created, "{request_id} made a second task");
                assert_eq!(&answer.task.unwrap().id, id);
            }
        }
        expected_total += 200;
        let mut total = 0;
        let mut token = String::new();
        loop {
            let page = c
                .list_tasks(pb::ListTasksRequest {
                    page_size: 1000,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            total += page.tasks.len();
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        assert_eq!(total, expected_total, "exactly one task per request id");
        cluster.kill_manager();
    }
}

/// Runs a manager on `data_dir`, which must exit with code 1; its stderr.
fn manager_fails_on(data_dir: &std::path::Path) -> String {
    let out = std::process::Command::new(common::bin("cube-manager"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A garbage file where the store should be: one clear line on stderr, exit code 1, quickly.
#[test]
fn garbage_store_is_a_clear_error() {
    let dir = temp_dir();
    std::fs::write(
        dir.path().join("cube.redb"),
        b"no database here, only words",
    )
    .unwrap();
    let stderr = manager_fails_on(dir.path());
    assert!(
        stderr.contains("is not a readable Cube database"),
        "{stderr}"
    );
}

/// A second manager on a data dir in use fails at once (no hang) with exit code 1.
#[test]
fn second_manager_on_the_same_data_dir_fails_at_once() {
    let first = Cluster::builder().start();
    let started = Instant::now();
    let stderr = manager_fails_on(&first.manager_data());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        stderr.contains("in use by another Cube process"),
        "{stderr}"
    );
}
