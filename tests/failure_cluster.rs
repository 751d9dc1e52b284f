//! Issue 6 end to end: registered workers, lost and partitioned nodes, restart policies,
//! health checks and drain, with real cube-manager and cube-worker processes and real Docker
//! containers.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use common::{Cluster, Cubectl, TEST_IMAGE};

/// Docker workers named after `prefixes` that register with a manager polling every 500ms,
/// heartbeats every 1s, a node lost after 3 s of silence; every node READY.
fn cluster(prefixes: &[&str]) -> Cluster {
    Cluster::builder()
        .workers_named(prefixes)
        .register()
        .update_interval("500ms")
        // Shorter than the default (10 heartbeats): the tests wait for lost nodes.
        .manager_args(&["--heartbeat-interval", "1s", "--node-grace", "3s"])
        .wait_ready(Duration::from_secs(15))
        .start()
}

/// A one-worker cluster running one task on the test image with `args` (flags, then `--` and
/// the command); the cluster and the task's id.
fn one_task(prefix: &str, args: &[&str]) -> (Cluster, String) {
    let cluster = cluster(&[prefix]);
    let id = cluster
        .ctl()
        .run(&[&["--image", TEST_IMAGE], args].concat());
    (cluster, id)
}

fn restarts(task: &serde_json::Value) -> u64 {
    task["restartCount"].as_u64().unwrap_or(0)
}

fn sleepers(ctl: &Cubectl, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| ctl.run_sleeper(&format!("s{i}")))
        .collect()
}

fn all_running(ctl: &Cubectl, ids: &[String]) -> Option<Vec<serde_json::Value>> {
    let tasks: Vec<_> = ids.iter().map(|id| ctl.task(id)).collect();
    tasks
        .iter()
        .all(|t| t["state"] == "TASK_STATE_RUNNING")
        .then_some(tasks)
}

/// `count` sleepers RUNNING on a worker named after `prefixes[0]`, then a second worker
/// (`prefixes[1]`) that joins empty; both READY. The cluster and the sleepers' ids.
fn sleepers_then_a_second_worker(prefixes: &[&str; 2], count: usize) -> (Cluster, Vec<String>) {
    let mut cluster = cluster(&prefixes[..1]);
    let ids = sleepers(&cluster.ctl(), count);
    common::wait_for(
        Duration::from_secs(20),
        &format!("{count} RUNNING on the first worker"),
        || all_running(&cluster.ctl(), &ids),
    );
    cluster.add_worker(prefixes[1], &[]);
    cluster.wait_ready();
    (cluster, ids)
}

/// Running containers per task id, across every Cube container in Docker.
fn running_copies(ids: &[String]) -> HashMap<String, usize> {
    ids.iter()
        .map(|id| (id.clone(), common::running_containers_of_task(id).len()))
        .collect()
}

fn all_containers(ids: &[String]) -> usize {
    ids.iter()
        .map(|id| common::containers_of_task(id).len())
        .sum()
}

/// A worker killed like a dying machine (SIGKILL, containers gone): its tasks run on the others
/// within 10 s; started again under the same name and data dir, it runs none of them, and Docker
/// holds exactly one container per task.
#[test]
fn a_lost_worker_s_tasks_run_elsewhere_and_it_comes_back_empty() {
    if !common::need_docker("a_lost_worker_s_tasks_run_elsewhere_and_it_comes_back_empty") {
        return;
    }
    let mut cluster = cluster(&["fl0", "fl1", "fl2"]);
    let ctl = cluster.ctl();
    let ids = sleepers(&ctl, 6);
    let tasks = common::wait_for(Duration::from_secs(20), "six RUNNING", || {
        all_running(&ctl, &ids)
    });
    let victim = cluster.name(0).to_string();
    let on_victim = tasks
        .iter()
        .filter(|t| t["node"] == victim.as_str())
        .count();
    assert!(on_victim > 0, "spread puts tasks on every worker");

    cluster.kill_worker(0);
    common::remove_containers_of(&victim);
    let lost_at = Instant::now();
    common::wait_for(Duration::from_secs(5), "the node DOWN", || {
        (ctl.node_states().get(&victim).map(String::as_str) == Some("NODE_STATE_DOWN"))
            .then_some(())
    });
    let detected = lost_at.elapsed();
    common::wait_for(
        Duration::from_secs(10) - detected.min(Duration::from_secs(10)),
        "six RUNNING on the others",
        || {
            all_running(&ctl, &ids)
                .filter(|ts| ts.iter().all(|t| t["node"] != victim.as_str()))
                .map(|_| ())
        },
    );
    let moved = lost_at.elapsed();
    eprintln!(
        "MEASURE lost node: detected in {} ms, all running elsewhere in {} ms",
        detected.as_millis(),
        moved.as_millis()
    );
    assert!(moved <= Duration::from_secs(10), "{moved:?}");
    let events = ctl.status(
        &ids[tasks
            .iter()
            .position(|t| t["node"] == victim.as_str())
            .unwrap()],
    )["events"]
        .to_string();
    assert!(
        events.contains(&format!("node {victim} lost: no heartbeat for 3s")),
        "{events}"
    );

    cluster.start_worker(0);
    cluster.wait_ready();
    common::wait_for(
        Duration::from_secs(15),
        "one container per task, none on the returned worker",
        || {
            (common::running_containers_of(&victim).is_empty()
                && running_copies(&ids).values().all(|n| *n == 1)
                && all_containers(&ids) == 6)
                .then_some(())
        },
    );
    assert!(all_running(&ctl, &ids)
        .unwrap()
        .iter()
        .all(|t| t["node"] != victim.as_str()));
}

/// A worker frozen by SIGSTOP keeps its containers; the manager moves its tasks; after SIGCONT
/// the worker stops its stale copies: one running container per task.
#[test]
fn a_partitioned_worker_stops_its_stale_copies_when_it_returns() {
    if !common::need_docker("a_partitioned_worker_stops_its_stale_copies_when_it_returns") {
        return;
    }
    let (cluster, ids) = sleepers_then_a_second_worker(&["fpa", "fpb"], 4);
    let ctl = cluster.ctl();
    let (a, b) = (cluster.name(0).to_string(), cluster.name(1).to_string());
    cluster.worker(0).signal("STOP");
    let frozen_at = Instant::now();
    common::wait_for(Duration::from_secs(15), "every task RUNNING on b", || {
        all_running(&ctl, &ids)
            .filter(|ts| ts.iter().all(|t| t["node"] == b.as_str()))
            .map(|_| ())
    });
    eprintln!(
        "MEASURE partition: all running elsewhere in {} ms",
        frozen_at.elapsed().as_millis()
    );
    assert!(
        !common::running_containers_of(&a).is_empty(),
        "the cut-off worker keeps its containers: {}",
        common::run_ok(
            "docker",
            &["ps", "-a", "--filter", &format!("label=cube.worker={a}")]
        )
    );
    assert_eq!(ctl.node_states()[&a], "NODE_STATE_DOWN");
    cluster.worker(0).signal("CONT");
    common::wait_for(Duration::from_secs(15), "one running copy per task", || {
        (common::running_containers_of(&a).is_empty()
            && running_copies(&ids).values().all(|n| *n == 1))
        .then_some(())
    });
    cluster.wait_ready();
}

/// `docker kill` of a task with policy always: RUNNING again within 5 s, restart_count 1.
#[test]
fn a_killed_container_restarts_under_always() {
    if !common::need_docker("a_killed_container_restarts_under_always") {
        return;
    }
    let (cluster, id) = one_task(
        "fka",
        &[
            "--restart",
            "always",
            "--stop-grace",
            "1s",
            "--",
            "sleep",
            "300",
        ],
    );
    let ctl = cluster.ctl();
    let first = ctl.wait_state(&id, "TASK_STATE_RUNNING", Duration::from_secs(15));
    let container = first["containerId"].as_str().unwrap().to_string();
    common::run_ok("docker", &["kill", &container]);
    let killed_at = Instant::now();
    ctl.wait_task(
        &id,
        Duration::from_secs(5),
        "RUNNING again, restart 1",
        |t| t["state"] == "TASK_STATE_RUNNING" && restarts(t) == 1,
    );
    eprintln!(
        "MEASURE docker kill -> running again in {} ms",
        killed_at.elapsed().as_millis()
    );
    let (_, events, _) = ctl.call(&["events", &id]);
    assert!(events.contains("restart 1 in 1s"), "{events}");
}

/// A run that exits 0 under always is started again (RUNNING -> PENDING -> placed), and the
/// exit shows in the events.
#[test]
fn a_clean_exit_restarts_under_always() {
    if !common::need_docker("a_clean_exit_restarts_under_always") {
        return;
    }
    let (cluster, id) = one_task(
        "fca",
        &[
            "--restart",
            "always",
            "--max-restarts",
            "1",
            "--",
            "sh",
            "-c",
            "sleep 1",
        ],
    );
    let ctl = cluster.ctl();
    let done = ctl.wait_state(&id, "TASK_STATE_COMPLETED", Duration::from_secs(20));
    assert_eq!(restarts(&done), 1, "{done}");
    let (_, events, _) = ctl.call(&["events", &id]);
    assert!(
        events.contains("restart 1 in 1s (policy always)"),
        "{events}"
    );
}

/// `exit 1` under on-failure with at most 2 restarts: FAILED after exactly 2, the delays
/// growing (1s, 2s) in the events.
#[test]
fn a_failing_task_uses_up_its_restarts_with_growing_delays() {
    if !common::need_docker("a_failing_task_uses_up_its_restarts_with_growing_delays") {
        return;
    }
    let (cluster, id) = one_task(
        "fmx",
        &[
            "--restart",
            "on-failure",
            "--max-restarts",
            "2",
            "--",
            "sh",
            "-c",
            "exit 1",
        ],
    );
    let ctl = cluster.ctl();
    let done = ctl.wait_task(
        &id,
        Duration::from_secs(20),
        "FAILED with 2 restarts",
        |t| {
            t["state"] == "TASK_STATE_FAILED"
                && restarts(t) == 2
                && t["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("used up")
        },
    );
    assert_eq!(done["exitCode"], 1, "{done}");
    let (code, events, stderr) = ctl.call(&["events", &id]);
    assert_eq!(code, 0, "{stderr}");
    let one = events
        .find("restart 1 in 1s")
        .unwrap_or_else(|| panic!("{events}"));
    let two = events
        .find("restart 2 in 2s")
        .unwrap_or_else(|| panic!("{events}"));
    assert!(one < two, "{events}");
    assert!(!events.contains("restart 3"), "{events}");
    assert!(
        events.contains("restart policy used up: 2 of 2"),
        "{events}"
    );
}

/// An httpd task whose health file is deleted: a HEALTH_CHECK_FAILED event naming the check,
/// then the restart (restart_count 1, RUNNING).
#[test]
fn a_failed_health_check_restarts_the_task() {
    health_check_restarts(
        "fhc",
        &["--health-http", "8080/health"],
        &["httpd", "-f", "-p", "8080", "-h", "/www"],
        &["rm", "/www/health"],
        &["8080", "/health"],
    );
}

/// The TCP probe: httpd in the background of a shell that stays; killing httpd closes the
/// port, and the task is restarted for it.
#[test]
fn a_failed_tcp_health_check_restarts_the_task() {
    health_check_restarts(
        "fht",
        &["--health-tcp", "8080"],
        &["sh", "-c", "httpd -p 8080 -h /www; exec sleep 600"],
        &["killall", "httpd"],
        &["tcp connect to port 8080"],
    );
}

/// The command probe, run inside the container: it passes while a file exists.
#[test]
fn a_failed_command_health_check_restarts_the_task() {
    health_check_restarts(
        "fhx",
        &["--health-cmd", "test -e /tmp/ok"],
        &["sh", "-c", "touch /tmp/ok; exec sleep 600"],
        &["rm", "/tmp/ok"],
        &["test -e /tmp/ok", "exited with 1"],
    );
}

/// Runs a task with the health check `check` and `command`, waits until it is RUNNING and
/// healthy, breaks it with `docker exec <container> <breaker>`, and expects the restart and a
/// HEALTH_CHECK_FAILED event whose message names each of `named`.
fn health_check_restarts(
    prefix: &str,
    check: &[&str],
    command: &[&str],
    breaker: &[&str],
    named: &[&str],
) {
    if !common::need_docker(&format!("health_check_restarts ({prefix})")) {
        return;
    }
    let mut args = check.to_vec();
    args.extend_from_slice(&[
        "--health-interval",
        "500ms",
        "--health-retries",
        "2",
        "--health-timeout",
        "500ms",
        "--stop-grace",
        "1s",
        "--",
    ]);
    args.extend_from_slice(command);
    let (cluster, id) = one_task(prefix, &args);
    let ctl = cluster.ctl();
    let first = ctl.wait_task(&id, Duration::from_secs(15), "RUNNING and healthy", |t| {
        t["state"] == "TASK_STATE_RUNNING" && t["healthy"] == true
    });
    let container = first["containerId"].as_str().unwrap().to_string();
    let mut exec = vec!["exec", container.as_str()];
    exec.extend_from_slice(breaker);
    common::run_ok("docker", &exec);
    let broken_at = Instant::now();
    // interval x retries + 2 s, plus the first restart delay of the backoff (1 s).
    let budget = Duration::from_millis(500 * 2) + Duration::from_secs(2) + Duration::from_secs(1);
    ctl.wait_task(&id, budget, "restarted", |t| {
        restarts(t) == 1 && t["state"] != "TASK_STATE_FAILED"
    });
    eprintln!(
        "MEASURE {prefix}: broken -> restarted in {} ms",
        broken_at.elapsed().as_millis()
    );
    let events = ctl.status(&id)["events"].clone();
    let health = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "EVENT_TYPE_HEALTH_CHECK_FAILED")
        .unwrap_or_else(|| panic!("{events}"))
        .clone();
    let message = health["message"].as_str().unwrap();
    assert!(message.starts_with("health check failed"), "{message}");
    for name in named {
        assert!(message.contains(name), "{message} should name {name}");
    }
}

/// Drain a node with three tasks: they run elsewhere, it runs none; undrain makes it READY and
/// eligible again.
#[test]
fn drain_moves_three_tasks_and_undrain_makes_the_node_eligible() {
    if !common::need_docker("drain_moves_three_tasks_and_undrain_makes_the_node_eligible") {
        return;
    }
    let (cluster, ids) = sleepers_then_a_second_worker(&["fda", "fdb"], 3);
    let ctl = cluster.ctl();
    let (a, b) = (cluster.name(0).to_string(), cluster.name(1).to_string());
    let (code, _, stderr) = ctl.call(&["drain", &a]);
    assert_eq!(code, 0, "{stderr}");
    common::wait_for(Duration::from_secs(30), "all three on b, none on a", || {
        (all_running(&ctl, &ids).is_some_and(|ts| ts.iter().all(|t| t["node"] == b.as_str()))
            && common::running_containers_of(&a).is_empty())
        .then_some(())
    });
    assert_eq!(ctl.node_states()[&a], "NODE_STATE_DRAINING");
    let (_, events, _) = ctl.call(&["events", &ids[0]]);
    assert!(events.contains("DRAINED"), "{events}");
    let (code, _, stderr) = ctl.call(&["undrain", &a]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ctl.node_states()[&a], "NODE_STATE_READY");
    // Eligible again: spread puts the next task on the empty node.
    let next = sleepers(&ctl, 1);
    let t = common::wait_for(Duration::from_secs(15), "the next task RUNNING", || {
        all_running(&ctl, &next).map(|ts| ts[0].clone())
    });
    assert_eq!(t["node"], a.as_str());
}
