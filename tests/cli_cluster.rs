//! cubectl end to end against a real cluster: cube-manager with real cube-worker processes on
//! ephemeral ports, running real containers in Docker, driven only through cubectl.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

use common::{cubectl, Cluster, TEST_IMAGE};

/// Docker workers named after `prefixes`, polled every 500 ms, tasks placed round-robin;
/// every node READY (round-robin over both needs both known), as a user would wait, with
/// `cubectl nodes`.
fn cluster(prefixes: &[&str]) -> Cluster {
    Cluster::builder()
        .workers_named(prefixes)
        .scheduler("roundrobin")
        .update_interval("500ms")
        .wait_ready(Duration::from_secs(10))
        .start()
}

/// Issue 3's first bullets through cubectl: two workers, round-robin, six tasks RUNNING as
/// real containers within 15 s, three on each, nodes shown by `status -o json`; then `stop`
/// brings one to COMPLETED and removes its container.
#[test]
fn six_tasks_run_three_per_worker_and_stop_completes_one() {
    if !common::need_docker("six_tasks_run_three_per_worker_and_stop_completes_one") {
        return;
    }
    let cluster = cluster(&["cli-a", "cli-b"]);
    let (a, b) = (cluster.name(0), cluster.name(1));
    let ctl = cluster.ctl();
    let url = cluster.url();

    let started = Instant::now();
    let ids: Vec<String> = (0..6)
        .map(|i| ctl.run_sleeper(&format!("sleeper-{i}")))
        .collect();
    let running = common::wait_for(Duration::from_secs(15), "six RUNNING tasks", || {
        let tasks = ctl.tasks();
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
    assert_eq!((on(a), on(b)), (3, 3), "round-robin: {running:?}");
    for t in &running {
        assert!(ids.contains(&t["id"].as_str().unwrap().to_string()));
        assert!(t["containerId"].is_string(), "{t}");
    }
    assert_eq!(common::running_containers_of(a).len(), 3);
    assert_eq!(common::running_containers_of(b).len(), 3);

    let (code, table, _) = cubectl(&url, &["nodes"]);
    assert_eq!(code, 0);
    for name in [a, b] {
        let row = table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} in\n{table}"));
        assert!(row.contains(" READY "), "{row}");
    }

    let victim = &ids[0];
    let node = ctl.task(victim)["node"].as_str().unwrap().to_string();
    let (code, stdout, stderr) = cubectl(&url, &["stop", victim]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), victim);
    ctl.wait_state(victim, "TASK_STATE_COMPLETED", Duration::from_secs(15));
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
    let cluster = cluster(&["cli-f"]);
    let name = cluster.name(0);
    let ctl = cluster.ctl();
    let url = cluster.url();

    let failing = ctl.run(&[
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
    ]);
    let ticking = ctl.run(&[
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
    ]);

    let failed = ctl.wait_state(&failing, "TASK_STATE_FAILED", Duration::from_secs(15));
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

    let mut follow = ctl
        .command(&["logs", "-f", "--tail", "1", &ticking])
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
    let cluster = Cluster::builder().dev().start();
    let ctl = cluster.ctl();
    let url = cluster.url();
    let id = ctl.run(&[
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
    ]);
    let t = ctl.task(&id);
    assert_eq!(t["state"], "TASK_STATE_RUNNING", "{t}");
    assert_eq!(
        common::running_containers_of_task(&id).len(),
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
    ctl.wait_state(&id, "TASK_STATE_COMPLETED", Duration::from_secs(15));
    common::wait_for(Duration::from_secs(10), "the container removed", || {
        common::containers_of_task(&id).is_empty().then_some(())
    });
}

/// `cubectl drain` moves a node's tasks elsewhere and `nodes` shows it DRAINING; `undrain`
/// makes it READY again.
#[test]
fn drain_moves_tasks_and_undrain_restores_the_node() {
    if !common::need_docker("drain_moves_tasks_and_undrain_restores_the_node") {
        return;
    }
    let cluster = cluster(&["cli-da", "cli-db"]);
    let (a, b) = (cluster.name(0), cluster.name(1));
    let ctl = cluster.ctl();
    let url = cluster.url();
    let ids: Vec<String> = (0..2).map(|i| ctl.run_sleeper(&format!("d{i}"))).collect();
    common::wait_for(Duration::from_secs(15), "both RUNNING", || {
        ids.iter()
            .all(|id| ctl.task(id)["state"] == "TASK_STATE_RUNNING")
            .then_some(())
    });

    let (code, stdout, stderr) = cubectl(&url, &["drain", a]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("node {a} DRAINING\n"));
    common::wait_for(
        Duration::from_secs(20),
        "every task RUNNING on the other node",
        || {
            ids.iter()
                .all(|id| {
                    let t = ctl.task(id);
                    t["state"] == "TASK_STATE_RUNNING" && t["node"] == b
                })
                .then_some(())
        },
    );
    common::wait_for(
        Duration::from_secs(10),
        "the drained node runs nothing",
        || common::running_containers_of(a).is_empty().then_some(()),
    );
    let (_, nodes, _) = cubectl(&url, &["nodes"]);
    let row = nodes.lines().find(|l| l.starts_with(a)).unwrap();
    assert!(row.contains(" DRAINING "), "{nodes}");

    let (code, stdout, stderr) = cubectl(&url, &["undrain", a]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("node {a} READY\n"));
    cluster.wait_ready();

    let (code, _, stderr) = cubectl(&url, &["drain", "no-such-node"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("hint: cubectl nodes lists the nodes"),
        "{stderr}"
    );
}
