//! Issue 4's worker bullet: SIGKILL a worker with 10 RUNNING tasks and start it again on the
//! same data dir and name: still exactly 10 containers, RUNNING, none started twice; a container
//! stopped while the worker was dead is reported with its exit code; a task stopped before the
//! crash has its container removed.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::{containers_of, need_docker, new_id, spec, Cluster, WorkerClient};
use cube::pb::TaskState;

#[test]
fn restarted_docker_worker_readopts_its_containers() {
    if !need_docker("restarted_docker_worker_readopts_its_containers") {
        return;
    }
    let mut cluster = Cluster::builder().without_manager().workers(1).start();
    let name = cluster.name(0).to_string();
    let mut w = WorkerClient::connect(&cluster.worker(0).addr);

    let ids: Vec<String> = (0..10).map(|_| new_id()).collect();
    for (i, id) in ids.iter().enumerate() {
        w.start(id, spec(&format!("t{i}"), &["sleep", "300"]), 0)
            .unwrap();
    }
    let mut containers = BTreeMap::new();
    for id in &ids {
        let task = w.wait_state(id, TaskState::Running, Duration::from_secs(20));
        containers.insert(id.clone(), task.container_id);
    }
    assert_eq!(containers_of(&name).len(), 10);

    cluster.kill_worker(0);
    // While the worker is dead, one container is stopped (sleep ignores SIGTERM as pid 1, so
    // docker kills it: 137).
    let stopped_id = ids[0].clone();
    common::run_ok("docker", &["stop", "-t", "0", &containers[&stopped_id]]);

    cluster.start_worker(0);
    let mut w = WorkerClient::connect(&cluster.worker(0).addr);
    let tasks = w.tasks();
    assert_eq!(tasks.len(), 10);
    for task in &tasks {
        assert_eq!(
            task.container_id, containers[&task.id],
            "the same container, not a new one"
        );
        if task.id == stopped_id {
            assert_eq!(task.state(), TaskState::Failed, "{task:?}");
            assert_eq!(task.exit_code, Some(137));
            assert!(task.finished_at.is_some());
        } else {
            assert_eq!(task.state(), TaskState::Running, "{task:?}");
        }
    }
    assert_eq!(containers_of(&name).len(), 10, "none started twice");
    assert_eq!(common::running_containers_of(&name).len(), 9);

    // A stop recorded before a crash is finished by the next run of the worker.
    let victim = ids[1].clone();
    let guard_id = containers[&victim].clone();
    w.stop(&victim).unwrap();
    cluster.restart_worker(0);
    let mut w = WorkerClient::connect(&cluster.worker(0).addr);
    w.wait_state(&victim, TaskState::Completed, Duration::from_secs(15));
    common::wait_for(
        Duration::from_secs(10),
        "the stopped task's container to go",
        || {
            (!containers_of(&name)
                .iter()
                .any(|c| guard_id.starts_with(c.as_str())))
            .then_some(())
        },
    );
    assert!(cluster.terminate_worker(0));
}
