//! Worker defects found under faults and in daily use (issue 24): a task placed on a frozen
//! worker runs once the worker thaws.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Runtime};

/// How long the worker stays frozen: past the manager's 10 s StartTasks deadline, so the
/// worker reads the request and its cancellation together when it thaws.
const FROZEN: Duration = Duration::from_secs(12);

/// The manager's update interval in these tests (its default).
const UPDATE_INTERVAL: Duration = Duration::from_secs(1);

/// What a thawed task may take beyond one update interval: a poll under way, cubectl's own
/// start-up.
const MARGIN: Duration = Duration::from_millis(1500);

/// How many freeze/thaw rounds the frozen-worker test runs: `CUBE_FREEZE_ROUNDS`, default 3
/// (each takes about 13 s; the 20 rounds are for a soak run).
fn freeze_rounds() -> usize {
    std::env::var("CUBE_FREEZE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

/// A task placed on a worker frozen with SIGSTOP, thawed after its StartTasks deadline has
/// passed, runs within one update interval of the thaw: the request the worker read together
/// with its cancellation still hands the task to the executor (it used to stay SCHEDULED on
/// the worker, and in the manager, forever).
#[test]
fn a_task_placed_on_a_frozen_worker_runs_when_it_thaws() {
    let cluster = Cluster::builder()
        .workers(1)
        .runtime(Runtime::Exec)
        .wait_ready(Duration::from_secs(20))
        .start();
    let ctl = cluster.ctl();
    let worker = cluster.worker(0);
    for round in 0..freeze_rounds() {
        worker.signal("STOP");
        let id = submit(&cluster, &format!("frozen-{round}"), &["sleep", "300"]);
        std::thread::sleep(FROZEN);
        worker.signal("CONT");
        let thawed = Instant::now();
        let task = ctl.wait_state(
            &id,
            "TASK_STATE_RUNNING",
            UPDATE_INTERVAL + MARGIN + Duration::from_secs(20),
        );
        let took = thawed.elapsed();
        assert!(
            took <= UPDATE_INTERVAL + MARGIN,
            "round {round}: the task ran {took:?} after the thaw, more than one update \
             interval ({UPDATE_INTERVAL:?}) and a margin; the task: {task}"
        );
        ctl.ok(&["stop", &id]);
    }
}

/// Submits an Exec task (a command, no image) through the manager's API; its id.
fn submit(cluster: &Cluster, name: &str, command: &[&str]) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = cluster.client().await;
        common::submit(&mut client, common::exec_spec(name, command))
            .await
            .id
    })
}
