//! Drains cut short, over and over: after 50 rounds of drain and undrain on two Exec workers,
//! the manager's view matches what the workers run (issue 24, 5b: a task once stayed SCHEDULED
//! for good after a drain and undrain, while its copy ran).

// A test fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use common::{Cluster, Runtime, WorkerClient};

/// Tasks running across the two workers.
const TASKS: usize = 4;

/// Drain and undrain rounds; the pause inside a round varies so that moves are cut short at
/// every step (placed, sent, running, old copy being stopped).
const ROUNDS: usize = 50;

/// The manager's tasks by state, and the tasks the workers hold RUNNING, by id.
fn views(
    cluster: &Cluster,
    workers: &mut [WorkerClient],
) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut manager = BTreeMap::new();
    for task in cluster.ctl().tasks() {
        let state = task["state"].as_str().unwrap_or_default().to_string();
        *manager.entry(state).or_default() += 1;
    }
    let mut running: Vec<String> = workers
        .iter_mut()
        .flat_map(|w| w.tasks())
        .filter(|t| t.state() == cube::pb::TaskState::Running)
        .map(|t| t.id)
        .collect();
    running.sort();
    (manager, running)
}

#[test]
fn fifty_drain_rounds_end_with_the_manager_matching_the_workers() {
    let cluster = Cluster::builder()
        .workers(2)
        .runtime(Runtime::Exec)
        .update_interval("500ms")
        .wait_ready(Duration::from_secs(15))
        .start();
    let ctl = cluster.ctl();
    let ids: Vec<String> = (0..TASKS)
        .map(|i| {
            ctl.run(&[
                "--name",
                &format!("d{i}"),
                "--stop-grace",
                "1s",
                "--",
                "sleep",
                "600",
            ])
        })
        .collect();
    for id in &ids {
        ctl.wait_state(id, "TASK_STATE_RUNNING", Duration::from_secs(20));
    }
    let names: Vec<String> = cluster.names().iter().map(|n| n.to_string()).collect();
    for round in 0..ROUNDS {
        let node = &names[round % 2];
        ctl.ok(&["drain", node]);
        std::thread::sleep(Duration::from_millis(50 + (round as u64 * 37) % 400));
        ctl.ok(&["undrain", node]);
    }
    let mut workers: Vec<WorkerClient> = (0..2).map(|i| cluster.worker_client(i)).collect();
    // Moves under way finish (each needs its new copy RUNNING, then the old one stopped); from
    // then on the two views must agree.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = views(&cluster, &mut workers);
    loop {
        let (manager, running) = &last;
        let settled = manager.get("TASK_STATE_RUNNING") == Some(&TASKS) && running.len() == TASKS;
        if settled {
            let mut expected = ids.clone();
            expected.sort();
            assert_eq!(running, &expected, "each task runs exactly once");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after {ROUNDS} drain rounds the manager shows {manager:?} while the workers run \
             {} tasks: {running:?}",
            running.len()
        );
        std::thread::sleep(Duration::from_millis(250));
        last = views(&cluster, &mut workers);
    }
}
