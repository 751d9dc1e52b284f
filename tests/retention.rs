//! Finished work is cleaned up (issue 17's retention): finished tasks go after
//! `--retain-finished` and beyond `--max-finished`, with their events; a removed id answers
//! NOT_FOUND "finished and was cleaned up"; `cubectl gc` collects at once; nodes DOWN past
//! `--forget-nodes-after` are forgotten; and a stream of short tasks leaves the manager's
//! memory and store file bounded.
// A test fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{wait_for, Cluster, Runtime};
use cube::pb::{self, manager_service_client::ManagerServiceClient};
use cube::tls::AuthChannel;
use tonic::Code;

async fn submit(
    client: &mut ManagerServiceClient<AuthChannel>,
    prefix: &str,
    count: usize,
    command: &[&str],
) -> Vec<pb::Task> {
    client
        .submit_tasks(common::exec_batch(prefix, count, command))
        .await
        .unwrap()
        .into_inner()
        .tasks
        .into_iter()
        .map(|t| t.task.unwrap())
        .collect()
}

async fn all_tasks(client: &mut ManagerServiceClient<AuthChannel>) -> Vec<pb::Task> {
    common::list_all(client).await
}

/// Polls `check` every 200 ms until it gives a value, for at most `timeout`.
async fn until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < timeout, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn finished(task: &pb::Task) -> bool {
    matches!(
        task.state(),
        pb::TaskState::Completed | pb::TaskState::Failed
    )
}

/// Twelve quick tasks beside a long one: at most `--max-finished` of them stay once they end,
/// none after `--retain-finished`, and the long one is never touched. A removed id answers
/// NOT_FOUND saying it was cleaned up, its events are gone, and its request_id retried answers
/// ALREADY_EXISTS naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_tasks_go_after_retention_and_beyond_the_maximum() {
    let cluster = Cluster::builder()
        .workers(1)
        .runtime(Runtime::Exec)
        .register()
        .update_interval("200ms")
        .manager_args(&["--retain-finished", "4s", "--max-finished", "5"])
        .wait_ready(Duration::from_secs(20))
        .start();
    let mut client = cluster.client().await;
    let sleeper = submit(&mut client, "long", 1, &["sleep", "300"])
        .await
        .remove(0);
    let quick = submit(&mut client, "quick", 12, &["true"]).await;

    // Over the maximum only briefly: once all twelve ended, at most five are kept.
    let kept = until(Duration::from_secs(20), "at most 5 finished tasks", || {
        let mut client = client.clone();
        async move {
            let tasks = all_tasks(&mut client).await;
            let done: Vec<pb::Task> = tasks.iter().filter(|t| finished(t)).cloned().collect();
            let quick_left = tasks
                .iter()
                .filter(|t| t.spec.as_ref().unwrap().name.starts_with("quick"))
                .count();
            (quick_left <= 5 && done.len() == quick_left).then_some(done)
        }
    })
    .await;
    assert!(kept.iter().all(|t| t.state() == pb::TaskState::Completed));

    // A removed task: NOT_FOUND saying why, no events, its request_id answered.
    let kept_ids: Vec<&str> = kept.iter().map(|t| t.id.as_str()).collect();
    let removed = quick
        .iter()
        .find(|t| !kept_ids.contains(&t.id.as_str()))
        .unwrap();
    let status = client
        .get_task(pb::GetTaskRequest {
            task_id: removed.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status.message().contains("finished and was cleaned up"),
        "{status:?}"
    );
    let events = client
        .list_events(pb::ListEventsRequest {
            task_id: removed.id.clone(),
            ..Default::default()
        })
        .await;
    match events {
        Ok(events) => assert!(events.into_inner().events.is_empty()),
        Err(status) => assert_eq!(status.code(), Code::NotFound, "{status:?}"),
    }
    let retried = client
        .submit_tasks(pb::SubmitTasksRequest {
            tasks: vec![common::exec_batch("quick", 12, &["true"])
                .tasks
                .into_iter()
                .find(|r| r.request_id == removed.request_id)
                .unwrap()],
        })
        .await
        .unwrap_err();
    assert_eq!(retried.code(), Code::AlreadyExists, "{retried:?}");
    assert!(retried.message().contains(&removed.id), "{retried:?}");
    let (code, _, err) = cluster.ctl().call(&["status", &removed.id]);
    assert_ne!(code, 0);
    assert!(err.contains("finished and was cleaned up"), "{err}");

    // After the retention, none is left; the running task stays.
    until(
        Duration::from_secs(15),
        "every finished task removed",
        || {
            let mut client = client.clone();
            async move {
                let tasks = all_tasks(&mut client).await;
                (!tasks.iter().any(finished)).then_some(())
            }
        },
    )
    .await;
    let tasks = all_tasks(&mut client).await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].id, sleeper.id);
    cluster.ctl().ok(&["stop", &sleeper.id]);
}

/// `cubectl gc` removes at once what the maximum no longer keeps (the retention is an hour, so
/// nothing else would for a minute).
#[test]
fn cubectl_gc_collects_now() {
    let cluster = Cluster::builder()
        .workers(1)
        .runtime(Runtime::Exec)
        .register()
        .update_interval("200ms")
        .manager_args(&["--retain-finished", "1h", "--max-finished", "2"])
        .wait_ready(Duration::from_secs(20))
        .start();
    let ctl = cluster.ctl();
    let ids: Vec<String> = (0..4)
        .map(|i| ctl.run(&["--name", &format!("short-{i}"), "--", "true"]))
        .collect();
    for id in &ids {
        ctl.wait_state(id, "TASK_STATE_COMPLETED", Duration::from_secs(20));
    }
    let out = ctl.ok(&["gc"]);
    assert_eq!(out.trim(), "removed 2 finished tasks, forgot 0 nodes");
    assert_eq!(ctl.tasks().len(), 2);
    let out = ctl.ok(&["gc"]);
    assert_eq!(out.trim(), "removed 0 finished tasks, forgot 0 nodes");
}

/// A worker that dies is DOWN after the grace period and forgotten after
/// `--forget-nodes-after`; the other stays.
#[test]
fn a_node_down_past_the_limit_is_forgotten() {
    let mut cluster = Cluster::builder()
        .workers(2)
        .runtime(Runtime::Exec)
        .register()
        .manager_args(&[
            "--forget-nodes-after",
            "2s",
            "--heartbeat-interval",
            "200ms",
            "--node-grace",
            "1s",
        ])
        .wait_ready(Duration::from_secs(20))
        .start();
    let ctl = cluster.ctl();
    let (dead, alive) = (cluster.name(0).to_string(), cluster.name(1).to_string());
    cluster.kill_worker(0);
    let started = Instant::now();
    wait_for(
        Duration::from_secs(15),
        "the dead node is forgotten",
        || {
            let states = ctl.node_states();
            (!states.contains_key(&dead)).then_some(())
        },
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "forgotten before --forget-nodes-after passed"
    );
    assert_eq!(
        ctl.node_states().get(&alive).map(String::as_str),
        Some("NODE_STATE_READY")
    );
}

/// Short tasks through one Exec worker (`CUBE_RETENTION_TASKS`, default 6,000, in rounds of
/// 1,000) with `--retain-finished 5s --max-finished 1000`: once they ended and the retention
/// passed, at most 1,000 finished tasks are kept, the manager's memory is back near its idle
/// size, and the store file stopped growing (the second half of the rounds adds less than a
/// tenth).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_short_tasks_leaves_memory_and_store_bounded() {
    let total: usize = std::env::var("CUBE_RETENTION_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6000);
    let cluster = Cluster::builder()
        .workers(1)
        .runtime(Runtime::Exec)
        .register()
        .update_interval("200ms")
        .manager_args(&["--retain-finished", "5s", "--max-finished", "1000"])
        .wait_ready(Duration::from_secs(20))
        .start();
    let mut client = cluster.client().await;
    let pid = cluster.manager().pid();
    let store = cluster.manager_data().join("cube.redb");
    let idle_rss = common::rss_bytes(pid) / 1024;
    let mut sizes = Vec::new();
    for round in 0..total.div_ceil(1000) {
        submit(&mut client, &format!("s{round}"), 1000, &["true"]).await;
        until(Duration::from_secs(120), "the round's tasks ended", || {
            let mut client = client.clone();
            async move {
                let tasks = all_tasks(&mut client).await;
                tasks.iter().all(finished).then_some(())
            }
        })
        .await;
        // Each round starts from the same place: at most 1,000 finished tasks kept.
        client
            .collect_garbage(pb::CollectGarbageRequest {})
            .await
            .unwrap();
        sizes.push(std::fs::metadata(&store).unwrap().len());
    }
    // Wait out the retention, so the last ones are gone too.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let left = all_tasks(&mut client).await;
    assert!(left.len() <= 1000, "{} tasks kept", left.len());
    let rss = common::rss_bytes(pid) / 1024;
    eprintln!(
        "{total} tasks: manager RSS idle {idle_rss} KiB, after {rss} KiB; store file after each \
         1,000 {sizes:?} bytes; {} tasks kept",
        left.len()
    );
    assert!(
        rss < idle_rss + 64 * 1024,
        "RSS {rss} KiB against {idle_rss} KiB idle"
    );
    // The file grows while the kept 1,000 tasks and their events fill it, then stops: the
    // second half of the rounds adds less than a tenth.
    let half = sizes[sizes.len() / 2 - 1];
    let last = sizes[sizes.len() - 1];
    assert!(
        last <= half + half / 10,
        "the store file kept growing: {sizes:?}"
    );
}

/// A worker forgets a finished task the manager has seen end once its own
/// `--retain-finished` passed: its record (ListTasks) and its exited container go, while the
/// manager, retaining longer, still shows the task COMPLETED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_forgets_finished_tasks_and_their_containers() {
    if !common::need_docker("a_worker_forgets_finished_tasks_and_their_containers") {
        return;
    }
    let cluster = Cluster::builder()
        .worker("w", &["--retain-finished", "2s"])
        .register()
        .update_interval("200ms")
        .wait_ready(Duration::from_secs(20))
        .start();
    let ctl = cluster.ctl();
    let name = cluster.name(0).to_string();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            ctl.run(&[
                "--image",
                common::TEST_IMAGE,
                "--name",
                &format!("brief-{i}"),
                "--",
                "true",
            ])
        })
        .collect();
    for id in &ids {
        ctl.wait_state(id, "TASK_STATE_COMPLETED", Duration::from_secs(30));
    }
    assert_eq!(common::containers_of(&name).len(), 3);
    let cluster = &cluster;
    until(
        Duration::from_secs(15),
        "the worker forgets its finished tasks",
        || async move {
            // The worker client blocks: asked on a thread of its own.
            let tasks = std::thread::scope(|s| {
                s.spawn(|| cluster.worker_client(0).tasks()).join().unwrap()
            });
            tasks.is_empty().then_some(())
        },
    )
    .await;
    assert!(common::containers_of(&name).is_empty());
    for id in &ids {
        assert_eq!(ctl.task(id)["state"], "TASK_STATE_COMPLETED");
    }
}
