//! Worker defects found under faults and in daily use (issue 24): a task placed on a frozen
//! worker runs once the worker thaws, and a stopped task's last output stays readable.
// A test fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
    let cluster = one_worker(Runtime::Exec);
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

/// `cubectl logs` of a stopped Exec task prints what the task wrote.
#[test]
fn logs_of_a_stopped_exec_task_show_its_last_output() {
    let cluster = one_worker(Runtime::Exec);
    logs_after_stop(&cluster, None);
}

/// `cubectl logs` of a stopped Docker task prints what the task wrote, although its container
/// was removed (it used to answer "reading logs: No such container").
#[test]
fn logs_of_a_stopped_docker_task_show_its_last_output() {
    if !common::need_docker("logs_of_a_stopped_docker_task_show_its_last_output") {
        return;
    }
    let cluster = one_worker(Runtime::Docker);
    logs_after_stop(&cluster, Some(common::TEST_IMAGE));
}

/// `cubectl logs` of a task whose container was removed outside Cube (nothing could be kept)
/// says so plainly, not with the runtime's raw error.
#[test]
fn logs_that_went_with_the_container_are_a_plain_error() {
    if !common::need_docker("logs_that_went_with_the_container_are_a_plain_error") {
        return;
    }
    let cluster = one_worker(Runtime::Docker);
    let ctl = cluster.ctl();
    let id = ctl.run(&[
        "--image",
        common::TEST_IMAGE,
        "--name",
        "removed",
        "--restart",
        "never",
        "--",
        "sh",
        "-c",
        "echo hello; sleep 300",
    ]);
    ctl.wait_state(&id, "TASK_STATE_RUNNING", Duration::from_secs(20));
    for container in common::containers_of_task(&id) {
        common::run_ok("docker", &["rm", "-f", &container]);
    }
    ctl.wait_state(&id, "TASK_STATE_FAILED", Duration::from_secs(20));
    let (code, out, err) = ctl.call(&["logs", &id]);
    assert_eq!(code, 1, "stdout: {out}");
    assert!(err.contains("logs went with its container"), "{err}");
    assert!(!err.contains("No such container"), "{err}");
}

/// Runs a task that prints a line then sleeps (on `image`, or as an Exec command), stops it,
/// and reads its logs.
fn logs_after_stop(cluster: &Cluster, image: Option<&str>) {
    let ctl = cluster.ctl();
    let line = common::unique("last-words");
    let script = format!("echo {line}; echo {line}-err >&2; sleep 300");
    let command = ["sh", "-c", &script];
    let id = match image {
        Some(image) => {
            let args = [
                &[
                    "--image",
                    image,
                    "--name",
                    "talker",
                    "--stop-grace",
                    "1s",
                    "--",
                ],
                &command[..],
            ]
            .concat();
            ctl.run(&args)
        }
        None => submit(cluster, "talker", &command),
    };
    ctl.wait_state(&id, "TASK_STATE_RUNNING", Duration::from_secs(20));
    common::wait_for(Duration::from_secs(10), "the task's output", || {
        let (_, out, _) = ctl.call(&["logs", &id]);
        out.contains(&line).then_some(())
    });
    ctl.ok(&["stop", &id]);
    ctl.wait_state(&id, "TASK_STATE_COMPLETED", Duration::from_secs(20));
    // The worker has removed the container once it reports the task COMPLETED.
    let (code, out, err) = ctl.call(&["logs", &id]);
    assert_eq!(code, 0, "logs after stop failed: {err}");
    assert_eq!(out, format!("{line}\n"), "stderr: {err}");
    assert_eq!(err, format!("{line}-err\n"));
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

/// A manager and one READY worker of `runtime`.
fn one_worker(runtime: Runtime) -> Cluster {
    Cluster::builder()
        .workers(1)
        .runtime(runtime)
        .wait_ready(Duration::from_secs(20))
        .start()
}
