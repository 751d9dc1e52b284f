//! cubectl end to end against a real cluster: cube-manager with real cube-worker processes on
//! ephemeral ports, running real containers in Docker, driven only through cubectl.

mod common;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    cubectl, cubectl_run, docker_worker, json, wait_nodes_ready, ContainerGuard, Proc, TEST_IMAGE,
};

/// A Docker worker named `name` with its data under `dir`.
fn worker(name: &str, dir: &Path) -> Proc {
    docker_worker(name, &dir.join(name), &[])
}

/// A manager polling `workers` every 500 ms, placing tasks round-robin.
fn manager(workers: &[&Proc], dir: &Path) -> Proc {
    let data = dir.join("manager");
    let addresses: Vec<&str> = workers.iter().map(|w| w.addr.as_str()).collect();
    Proc::start(
        "cube-manager",
        &[
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--workers",
            &addresses.join(","),
            "--scheduler",
            "roundrobin",
            "--update-interval",
            "500ms",
        ],
    )
}

/// The tasks `cubectl status -o json` lists.
fn tasks(url: &str) -> Vec<serde_json::Value> {
    let (code, stdout, stderr) = cubectl(url, &["status", "-o", "json"]);
    assert_eq!(code, 0, "{stderr}");
    json(&stdout)["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// One task as `cubectl status ID -o json` shows it.
fn task(url: &str, id: &str) -> serde_json::Value {
    let (code, stdout, stderr) = cubectl(url, &["status", id, "-o", "json"]);
    assert_eq!(code, 0, "{stderr}");
    json(&stdout)["task"].clone()
}

/// Waits until `cubectl nodes -o json` shows every one of `names` READY.
fn wait_ready(url: &str, names: &[&str]) {
    wait_nodes_ready(url, names, Duration::from_secs(10));
}

/// `cubectl run ARGS`, asserting success; returns the id it printed.
fn run(url: &str, args: &[&str]) -> String {
    let id = cubectl_run(url, args);
    assert_eq!(id.len(), 36, "run prints the id first: {id}");
    id
}

/// Issue 3's first bullets through cubectl: two workers, round-robin, six tasks RUNNING as
/// real containers within 15 s, three on each, nodes shown by `status -o json`; then `stop`
/// brings one to COMPLETED and removes its container.
#[test]
fn six_tasks_run_three_per_worker_and_stop_completes_one() {
    if !common::need_docker("six_tasks_run_three_per_worker_and_stop_completes_one") {
        return;
    }
    let (a, b) = (common::unique("cli-a"), common::unique("cli-b"));
    let _guard = ContainerGuard(vec![a.clone(), b.clone()]);
    let dir = common::temp_dir();
    let (wa, wb) = (worker(&a, dir.path()), worker(&b, dir.path()));
    let manager = manager(&[&wa, &wb], dir.path());
    let url = manager.url();
    // Round-robin over both nodes needs both known: wait as a user would, with `nodes`.
    wait_ready(&url, &[&a, &b]);

    let started = Instant::now();
    let ids: Vec<String> = (0..6)
        .map(|i| {
            run(
                &url,
                &[
                    "--image",
                    TEST_IMAGE,
                    "--name",
                    &format!("sleeper-{i}"),
                    "--stop-grace",
                    "1s",
                    "--",
                    "sleep",
                    "300",
                ],
            )
        })
        .collect();
    let running = common::wait_for(Duration::from_secs(15), "six RUNNING tasks", || {
        let tasks = tasks(&url);
        let running = tasks
            .iter()
            .filter(|t| t["state"] == "TASK_STATE_RUNNING")
            .count();
        (running == 6).then_some(tasks)
    });
    eprintln!(
        "six tasks RUNNING {:?} after the first run",
        started.elapsed()
    );
    let on = |worker: &str| {
        running
            .iter()
            .filter(|t| t["node"].as_str() == Some(worker))
            .count()
    };
    assert_eq!((on(&a), on(&b)), (3, 3), "round-robin: {running:?}");
    for t in &running {
        assert!(ids.contains(&t["id"].as_str().unwrap().to_string()));
        assert!(t["containerId"].is_string(), "{t}");
    }
    assert_eq!(common::running_containers_of(&a).len(), 3);
    assert_eq!(common::running_containers_of(&b).len(), 3);

    let (code, table, _) = cubectl(&url, &["nodes"]);
    assert_eq!(code, 0);
    for name in [&a, &b] {
        let row = table
            .lines()
            .find(|l| l.starts_with(name.as_str()))
            .unwrap_or_else(|| panic!("{name} in\n{table}"));
        assert!(row.contains(" READY "), "{row}");
    }

    let victim = &ids[0];
    let node = task(&url, victim)["node"].as_str().unwrap().to_string();
    let (code, stdout, stderr) = cubectl(&url, &["stop", victim]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), victim);
    common::wait_for(
        Duration::from_secs(15),
        "the stopped task COMPLETED",
        || (task(&url, victim)["state"] == "TASK_STATE_COMPLETED").then_some(()),
    );
    common::wait_for(Duration::from_secs(10), "its container removed", || {
        (common::containers_of(&node).len() == 2).then_some(())
    });
    let (_, detail, _) = cubectl(&url, &["status", victim]);
    assert!(
        detail.contains("State:         COMPLETED (desired: STOPPED)"),
        "{detail}"
    );
    assert!(
        detail.contains("STOP_REQUESTED"),
        "the stop is an event:\n{detail}"
    );
}

/// A task whose command exits non-zero is FAILED in `cubectl status` with its exit code, and
/// its output stays readable with `cubectl logs`; `logs -f` of a task printing a line a
/// second shows the lines as they come.
#[test]
fn failures_show_exit_codes_and_logs_stream_live() {
    if !common::need_docker("failures_show_exit_codes_and_logs_stream_live") {
        return;
    }
    let name = common::unique("cli-f");
    let _guard = ContainerGuard(vec![name.clone()]);
    let dir = common::temp_dir();
    let w = worker(&name, dir.path());
    let manager = manager(&[&w], dir.path());
    let url = manager.url();

    let failing = run(
        &url,
        &[
            "--image",
            TEST_IMAGE,
            "--name",
            "fails",
            "--restart",
            "never",
            "--",
            "sh",
            "-c",
            "echo to-out; echo to-err >&2; exit 3",
        ],
    );
    let ticking = run(
        &url,
        &[
            "--image",
            TEST_IMAGE,
            "--name",
            "ticks",
            "--stop-grace",
            "1s",
            "--wait",
            "--",
            "sh",
            "-c",
            "while true; do echo tick; sleep 1; done",
        ],
    );

    let failed = common::wait_for(Duration::from_secs(15), "the task FAILED", || {
        let t = task(&url, &failing);
        (t["state"] == "TASK_STATE_FAILED").then_some(t)
    });
    assert_eq!(failed["exitCode"], 3, "{failed}");
    let (_, detail, _) = cubectl(&url, &["status", &failing]);
    assert!(detail.contains("State:         FAILED"), "{detail}");
    assert!(detail.contains("Exit code:     3\n"), "{detail}");
    let (_, table, _) = cubectl(&url, &["status", "--state", "failed"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[0], &failing[..8]);
    assert_eq!(row[2], "FAILED");
    assert_eq!(*row.last().unwrap(), "3", "EXIT column: {table}");

    let (code, stdout, stderr) = cubectl(&url, &["logs", &failing]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "to-out\n");
    assert_eq!(stderr, "to-err\n");
    let (_, stdout, stderr) = cubectl(&url, &["logs", "--stderr", &failing]);
    assert_eq!((stdout.as_str(), stderr.as_str()), ("", "to-err\n"));

    let (code, events, _) = cubectl(&url, &["events", &failing]);
    assert_eq!(code, 0);
    assert!(
        events.contains("SUBMITTED") && events.contains("FAILED"),
        "{events}"
    );
    let (code, explained, stderr) = cubectl(&url, &["explain", &ticking]);
    assert_eq!(code, 0, "{stderr}");
    assert!(explained.contains(&format!("node {name}")), "{explained}");

    let mut follow = Command::new(common::bin("cubectl"))
        .args(["--manager", &url, "logs", "-f", "--tail", "1", &ticking])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut times = Vec::new();
    for _ in 0..3 {
        let line = lines.next().expect("a line").unwrap();
        assert_eq!(line, "tick");
        times.push(Instant::now());
    }
    let _ = follow.kill();
    let _ = follow.wait();
    // The first line may be the tail of what was already written; the next two come live.
    assert!(
        times[2] - times[1] >= Duration::from_millis(500),
        "lines arrive as they are printed, not all at once: {:?}",
        times[2] - times[1]
    );
}

/// `cube-manager --dev` runs a task end to end with only cubectl: run --wait, status, nodes,
/// logs, stop.
#[test]
fn dev_manager_runs_a_task_end_to_end() {
    if !common::need_docker("dev_manager_runs_a_task_end_to_end") {
        return;
    }
    let dir = common::temp_dir();
    let data = dir.path().join("dev");
    let manager = Proc::start(
        "cube-manager",
        &[
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    let url = manager.url();
    let id = run(
        &url,
        &[
            "--image",
            TEST_IMAGE,
            "--name",
            "hello",
            "--stop-grace",
            "1s",
            "--wait",
            "--wait-timeout",
            "20s",
            "--",
            "sh",
            "-c",
            "echo hello from cube; sleep 300",
        ],
    );
    // The dev worker is named after the host, which other tests' dev managers share: clean
    // up by the task's label instead.
    let _guard = TaskContainers(id.clone());
    let t = task(&url, &id);
    assert_eq!(t["state"], "TASK_STATE_RUNNING", "{t}");
    assert_eq!(
        containers_of_task(&id, false).len(),
        1,
        "one running container"
    );
    let (_, nodes, _) = cubectl(&url, &["nodes"]);
    assert!(nodes.contains(" READY "), "{nodes}");
    common::wait_for(Duration::from_secs(10), "the task's output", || {
        let (_, stdout, _) = cubectl(&url, &["logs", &id]);
        (stdout == "hello from cube\n").then_some(())
    });
    let (code, _, stderr) = cubectl(&url, &["stop", &id]);
    assert_eq!(code, 0, "{stderr}");
    common::wait_for(Duration::from_secs(15), "COMPLETED", || {
        (task(&url, &id)["state"] == "TASK_STATE_COMPLETED").then_some(())
    });
    common::wait_for(Duration::from_secs(10), "the container removed", || {
        containers_of_task(&id, true).is_empty().then_some(())
    });
}

/// The containers labelled with a task's id (with `all`, stopped ones too).
fn containers_of_task(id: &str, all: bool) -> Vec<String> {
    let filter = format!("label=cube.task-id={id}");
    let args = if all {
        vec!["ps", "-aq", "--filter", &filter]
    } else {
        vec!["ps", "-q", "--filter", &filter]
    };
    common::run_ok("docker", &args)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Removes a task's containers when dropped, so a failing test cleans up too.
struct TaskContainers(String);

impl Drop for TaskContainers {
    fn drop(&mut self) {
        let ids = containers_of_task(&self.0, true);
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&ids)
                .output();
        }
    }
}

/// `cubectl drain` moves a node's tasks elsewhere and `nodes` shows it DRAINING; `undrain`
/// makes it READY again.
#[test]
fn drain_moves_tasks_and_undrain_restores_the_node() {
    if !common::need_docker("drain_moves_tasks_and_undrain_restores_the_node") {
        return;
    }
    let (a, b) = (common::unique("cli-da"), common::unique("cli-db"));
    let _guard = ContainerGuard(vec![a.clone(), b.clone()]);
    let dir = common::temp_dir();
    let (wa, wb) = (worker(&a, dir.path()), worker(&b, dir.path()));
    let manager = manager(&[&wa, &wb], dir.path());
    let url = manager.url();
    wait_ready(&url, &[&a, &b]);
    let ids: Vec<String> = (0..2)
        .map(|i| {
            run(
                &url,
                &[
                    "--image",
                    TEST_IMAGE,
                    "--name",
                    &format!("d{i}"),
                    "--stop-grace",
                    "1s",
                    "--",
                    "sleep",
                    "300",
                ],
            )
        })
        .collect();
    common::wait_for(Duration::from_secs(15), "both RUNNING", || {
        ids.iter()
            .all(|id| task(&url, id)["state"] == "TASK_STATE_RUNNING")
            .then_some(())
    });

    let (code, stdout, stderr) = cubectl(&url, &["drain", &a]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("node {a} DRAINING\n"));
    common::wait_for(
        Duration::from_secs(20),
        "every task RUNNING on the other node",
        || {
            ids.iter()
                .all(|id| {
                    let t = task(&url, id);
                    t["state"] == "TASK_STATE_RUNNING" && t["node"] == b.as_str()
                })
                .then_some(())
        },
    );
    common::wait_for(
        Duration::from_secs(10),
        "the drained node runs nothing",
        || common::running_containers_of(&a).is_empty().then_some(()),
    );
    let (_, nodes, _) = cubectl(&url, &["nodes"]);
    let row = nodes.lines().find(|l| l.starts_with(a.as_str())).unwrap();
    assert!(row.contains(" DRAINING "), "{nodes}");

    let (code, stdout, stderr) = cubectl(&url, &["undrain", &a]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("node {a} READY\n"));
    wait_ready(&url, &[&a, &b]);

    let (code, _, stderr) = cubectl(&url, &["drain", "no-such-node"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("hint: cubectl nodes lists the nodes"),
        "{stderr}"
    );
}
