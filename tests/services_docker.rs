//! Services on real containers: cube-manager and two Docker cube-workers, driven through
//! cubectl. A replica whose container is killed, or whose task is stopped by hand, is running
//! again within 5 s; a rolling update gated on an http health check never leaves fewer than
//! 2 of 3 replicas healthy.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{unique, wait_for, Cluster, Cubectl, TEST_IMAGE};
use serde_json::Value;

/// Two Docker workers polled every 300 ms.
fn cluster() -> Cluster {
    Cluster::builder()
        .workers(2)
        .update_interval("300ms")
        .wait_ready(Duration::from_secs(15))
        .start()
}

/// The tasks of service `name` wanted running.
fn live(ctl: &Cubectl, name: &str) -> Vec<Value> {
    let answer = ctl.json(&["service", "ps", name, "--running"]);
    answer["tasks"].as_array().cloned().unwrap_or_default()
}

/// Whether `task` is RUNNING and, with `healthy`, has passed its health check.
fn up(task: &Value, healthy: bool) -> bool {
    task["state"] == "TASK_STATE_RUNNING" && (!healthy || task["healthy"] == true)
}

/// Waits until `name` has one task up at `version` in each of slots 1..=n; the tasks.
fn wait_up(ctl: &Cubectl, name: &str, n: u64, version: &str, healthy: bool) -> Vec<Value> {
    wait_for(
        Duration::from_secs(30),
        &format!("{n} replicas of {name} up at version {version}"),
        || {
            let tasks = live(ctl, name);
            let mut slots: Vec<u64> = tasks.iter().map(|t| t["slot"].as_u64().unwrap()).collect();
            slots.sort_unstable();
            let done = slots.iter().copied().eq(1..=n)
                && tasks
                    .iter()
                    .all(|t| up(t, healthy) && t["serviceVersion"] == version);
            done.then_some(tasks)
        },
    )
}

/// `service create NAME` with 3 replicas of the test image, a 1 s stop grace and `rest`.
fn create(ctl: &Cubectl, name: &str, rest: &[&str]) {
    let mut args = vec!["--image", TEST_IMAGE, "--stop-grace", "1s"];
    args.extend_from_slice(rest);
    common::services::create_with(ctl, name, "3", &args);
}

/// `service rm NAME`, then waits until each of `tasks` is COMPLETED.
fn remove(ctl: &Cubectl, name: &str, tasks: &[Value]) {
    ctl.ok(&["service", "rm", name]);
    for task in tasks {
        let id = task["id"].as_str().unwrap();
        ctl.wait_state(id, "TASK_STATE_COMPLETED", Duration::from_secs(15));
    }
}

/// Three replicas on two workers; one container `docker kill`ed and another task stopped by
/// hand: three RUNNING again within 5 s, one per slot.
#[test]
fn killed_and_stopped_replicas_run_again_within_five_seconds() {
    if !common::need_docker("killed_and_stopped_replicas_run_again_within_five_seconds") {
        return;
    }
    let cluster = cluster();
    let ctl = cluster.ctl();
    let name = unique("svc");
    create(
        &ctl,
        &name,
        &["--", "sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"],
    );
    let tasks = wait_up(&ctl, &name, 3, "1", false);
    let nodes: std::collections::HashSet<&str> =
        tasks.iter().map(|t| t["node"].as_str().unwrap()).collect();
    assert_eq!(nodes.len(), 2, "3 replicas use both workers: {tasks:?}");

    let killed = tasks[0]["id"].as_str().unwrap().to_string();
    let stopped = tasks[1]["id"].as_str().unwrap().to_string();
    let container = common::running_containers_of_task(&killed);
    assert_eq!(container.len(), 1, "{container:?}");
    let started = Instant::now();
    common::run_ok("docker", &["kill", &container[0]]);
    ctl.ok(&["stop", &stopped]);
    let again = wait_up(&ctl, &name, 3, "1", false);
    let took = started.elapsed();
    println!(
        "MEASURE docker kill + stop -> 3 running again in {} ms",
        took.as_millis()
    );
    assert!(took <= Duration::from_secs(5), "took {took:?}");
    assert!(
        again.iter().all(|t| t["id"] != stopped.as_str()),
        "the stopped task is not counted: {again:?}"
    );
    remove(&ctl, &name, &again);
}

/// A worker SIGKILLed under 3 replicas: once its node is lost (3 s without a heartbeat), its
/// replicas run on the other worker within the grace plus 5 s, one per slot.
#[test]
fn replicas_of_a_lost_worker_run_elsewhere() {
    if !common::need_docker("replicas_of_a_lost_worker_run_elsewhere") {
        return;
    }
    let mut cluster = Cluster::builder()
        .workers(2)
        .register()
        .update_interval("500ms")
        .manager_args(&["--heartbeat-interval", "1s", "--node-grace", "3s"])
        .wait_ready(Duration::from_secs(15))
        .start();
    let ctl = cluster.ctl();
    let name = unique("lost");
    create(
        &ctl,
        &name,
        &["--", "sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"],
    );
    let tasks = wait_up(&ctl, &name, 3, "1", false);
    let victim = cluster.name(0).to_string();
    assert!(
        tasks.iter().any(|t| t["node"] == victim.as_str()),
        "a replica on each worker: {tasks:?}"
    );
    cluster.kill_worker(0);
    common::remove_containers_of(&victim);
    let lost_at = Instant::now();
    let moved = wait_for(
        Duration::from_secs(8),
        "3 replicas off the lost node",
        || {
            let now = wait_up(&ctl, &name, 3, "1", false);
            now.iter()
                .all(|t| t["node"] != victim.as_str())
                .then_some(now)
        },
    );
    let took = lost_at.elapsed();
    println!(
        "MEASURE worker lost -> 3 replicas running elsewhere in {} ms",
        took.as_millis()
    );
    assert!(
        took <= Duration::from_secs(8),
        "the grace (3 s) plus 5 s: {took:?}"
    );
    remove(&ctl, &name, &moved);
}

/// A rolling update of 3 httpd replicas with an http health check (parallelism 1,
/// stop-first): sampled every 100 ms, never fewer than 2 replicas healthy; at the end all 3
/// run the new version.
#[test]
fn a_rolling_update_keeps_two_of_three_healthy() {
    if !common::need_docker("a_rolling_update_keeps_two_of_three_healthy") {
        return;
    }
    let cluster = cluster();
    let ctl = cluster.ctl();
    let name = unique("roll");
    create(
        &ctl,
        &name,
        &[
            "--health-http",
            "8080/health",
            "--health-interval",
            "300ms",
            "--",
            "httpd",
            "-f",
            "-p",
            "8080",
            "-h",
            "/www",
        ],
    );
    wait_up(&ctl, &name, 3, "1", true);
    ctl.ok(&["service", "update", "--detach", &name, "--env", "MODE=new"]);
    let started = Instant::now();
    let mut fewest = 3;
    let mut samples = 0;
    let done = loop {
        let tasks = live(&ctl, &name);
        let healthy = tasks.iter().filter(|t| up(t, true)).count();
        fewest = fewest.min(healthy);
        samples += 1;
        assert!(healthy >= 2, "only {healthy} healthy: {tasks:?}");
        let new = tasks
            .iter()
            .filter(|t| up(t, true) && t["serviceVersion"] == "2")
            .count();
        if new == 3 && tasks.len() == 3 {
            break tasks;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{tasks:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "MEASURE rolling update of 3 (parallelism 1): {} ms, {samples} samples, fewest healthy \
         {fewest}",
        started.elapsed().as_millis()
    );
    for task in &done {
        let id = task["id"].as_str().unwrap();
        assert_eq!(ctl.status(id)["task"]["spec"]["env"]["MODE"], "new");
    }
    remove(&ctl, &name, &done);
}
