//! A real cluster: cube-manager and two cube-worker processes on ephemeral ports, real Docker
//! containers. Round-robin placement, stop, a failing command, and a manager SIGKILLed and
//! restarted with 20 running tasks.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use common::{containers_of, spec, Cluster};
use cube::pb::{self, manager_service_client::ManagerServiceClient};
use cube::tls::AuthChannel;

/// Docker workers polled every 500 ms, tasks placed round-robin; every worker READY (it
/// rotates only over nodes that answer, and the tests count tasks per node).
fn round_robin(workers: usize) -> Cluster {
    Cluster::builder()
        .workers(workers)
        .scheduler("roundrobin")
        .update_interval("500ms")
        .wait_ready(Duration::from_secs(10))
        .start()
}

/// `SubmitTask`, which must succeed; the task's id.
async fn submit(c: &mut ManagerServiceClient<AuthChannel>, spec: pb::TaskSpec) -> String {
    common::submit(c, spec).await.id
}

async fn all_tasks(c: &mut ManagerServiceClient<AuthChannel>) -> HashMap<String, pb::Task> {
    c.list_tasks(pb::ListTasksRequest {
        page_size: 1000,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .tasks
    .into_iter()
    .map(|t| (t.id.clone(), t))
    .collect()
}

/// Waits until `check` holds for the tasks, or panics after `timeout` showing them.
async fn until(
    c: &mut ManagerServiceClient<AuthChannel>,
    timeout: Duration,
    what: &str,
    check: impl Fn(&HashMap<String, pb::Task>) -> bool,
) -> HashMap<String, pb::Task> {
    let deadline = Instant::now() + timeout;
    loop {
        let tasks = all_tasks(c).await;
        if check(&tasks) {
            return tasks;
        }
        if Instant::now() > deadline {
            let states: Vec<String> = tasks
                .values()
                .map(|t| format!("{} {:?} {} {}", t.id, t.state(), t.node, t.message))
                .collect();
            panic!("timed out after {timeout:?} waiting for {what}: {states:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Submits `count` tasks named `<prefix><i>` that sleep 300 s and waits up to `timeout` until
/// all are RUNNING; their ids, and every task.
async fn sleepers_running(
    c: &mut ManagerServiceClient<AuthChannel>,
    prefix: &str,
    count: usize,
    timeout: Duration,
) -> (Vec<String>, HashMap<String, pb::Task>) {
    let mut ids = Vec::new();
    for i in 0..count {
        ids.push(submit(c, spec(&format!("{prefix}{i}"), &["sleep", "300"])).await);
    }
    let what = format!("{count} RUNNING");
    let tasks = until(c, timeout, &what, |tasks| {
        ids.iter()
            .all(|id| tasks[id].state() == pb::TaskState::Running)
    })
    .await;
    (ids, tasks)
}

/// Issue 3: six tasks go round-robin onto two workers and run as real containers within 15 s,
/// three each; a stop brings one to COMPLETED and removes its container; a command that exits
/// non-zero is FAILED with its exit code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_run_stop_and_fail() {
    if !common::need_docker("round_robin_run_stop_and_fail") {
        return;
    }
    let cluster = round_robin(2);
    let mut c = cluster.client().await;
    let started = Instant::now();
    let (ids, tasks) = sleepers_running(&mut c, "rr", 6, Duration::from_secs(15)).await;
    eprintln!("six tasks RUNNING {:?} after submission", started.elapsed());
    for name in cluster.names() {
        let on_node = tasks.values().filter(|t| t.node == name).count();
        assert_eq!(on_node, 3, "three tasks on {name}");
        assert_eq!(containers_of(name).len(), 3, "three containers of {name}");
    }
    assert!(tasks.values().all(|t| !t.container_id.is_empty()));

    let victim = tasks[&ids[0]].clone();
    common::stop_task(&mut c, &victim.id).await.unwrap();
    until(
        &mut c,
        Duration::from_secs(15),
        "the stopped task COMPLETED",
        |tasks| tasks[&victim.id].state() == pb::TaskState::Completed,
    )
    .await;
    common::wait_for(Duration::from_secs(10), "its container removed", || {
        (containers_of(&victim.node).len() == 2).then_some(())
    });
    let nodes = common::list_nodes(&mut c).await;
    let node = nodes.iter().find(|n| n.name == victim.node).unwrap();
    assert_eq!(node.task_count, 2, "allocation goes down when a task stops");

    let failing = submit(&mut c, spec("fails", &["sh", "-c", "exit 3"])).await;
    let tasks = until(
        &mut c,
        Duration::from_secs(15),
        "the failing task FAILED",
        |tasks| tasks[&failing].state() == pb::TaskState::Failed,
    )
    .await;
    assert_eq!(tasks[&failing].exit_code, Some(3));
    let events = common::get_task(&mut c, &failing).await.unwrap().events;
    assert!(
        events.len() >= 3,
        "submitted, scheduled, ..., failed: {events:?}"
    );
}

/// Issue 4: 20 tasks RUNNING on two workers; SIGKILL the manager and start it on the same data
/// dir: the same 20 ids are RUNNING on the same nodes and Docker holds exactly 20 containers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_sigkill_keeps_twenty_running_tasks() {
    if !common::need_docker("manager_sigkill_keeps_twenty_running_tasks") {
        return;
    }
    let mut cluster = round_robin(2);
    let mut c = cluster.client().await;
    let started = Instant::now();
    let (ids, before) = sleepers_running(&mut c, "keep", 20, Duration::from_secs(30)).await;
    eprintln!(
        "20 tasks on two workers RUNNING {:?} after the first submission",
        started.elapsed()
    );

    cluster.restart_manager();
    cluster.wait_ready();
    let mut c = cluster.client().await;
    let after = all_tasks(&mut c).await;
    for id in &ids {
        assert_eq!(after[id].state(), pb::TaskState::Running, "{id} reloaded");
        assert_eq!(after[id].node, before[id].node, "{id} on the same node");
    }
    // Let the reconciler make a few full passes, then count containers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = all_tasks(&mut c).await;
    let total: usize = cluster
        .names()
        .iter()
        .map(|name| containers_of(name).len())
        .sum();
    assert_eq!(total, 20, "exactly 20 containers");
    for id in &ids {
        assert_eq!(
            after[id].state(),
            pb::TaskState::Running,
            "{id} still RUNNING"
        );
        assert_eq!(after[id].node, before[id].node);
        assert_eq!(
            after[id].container_id, before[id].container_id,
            "not started twice"
        );
    }
}

/// `cube-manager --dev` runs a task end to end on its embedded worker, with nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_runs_a_task_end_to_end() {
    if !common::need_docker("dev_mode_runs_a_task_end_to_end") {
        return;
    }
    let mut cluster = Cluster::builder().dev().start();
    let mut c = cluster.client().await;
    let id = submit(
        &mut c,
        spec("dev", &["sh", "-c", "echo hello from dev; exit 0"]),
    )
    .await;
    let tasks = until(
        &mut c,
        Duration::from_secs(20),
        "the dev task COMPLETED",
        |tasks| tasks[&id].state() == pb::TaskState::Completed,
    )
    .await;
    assert_eq!(tasks[&id].exit_code, Some(0));
    assert!(!tasks[&id].node.is_empty());
    // Its output comes through the manager from the embedded worker.
    let mut logs = c
        .stream_logs(pb::StreamLogsRequest {
            task_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut text = Vec::new();
    while let Some(chunk) = logs.message().await.unwrap() {
        text.extend(chunk.data);
    }
    assert!(
        String::from_utf8_lossy(&text).contains("hello from dev"),
        "{}",
        String::from_utf8_lossy(&text)
    );
    assert!(cluster.terminate_manager(), "clean shutdown");
}
