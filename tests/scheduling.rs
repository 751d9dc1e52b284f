//! Scheduling on real capacity with real processes: cube-manager and cube-worker processes on
//! ephemeral ports, real containers, driven through cubectl. Workers declare small capacities
//! (`--cpu 1`) so a few tasks fill them; every placement, pending reason and explanation below
//! is what the running manager decided.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{unique, wait_for, Cluster, Cubectl, TEST_IMAGE};
use serde_json::Value;

/// How often the manager polls its workers in these tests: quick, so capacity freed by a stop
/// is seen well within the 5 s the issue allows.
const UPDATE_INTERVAL: &str = "300ms";

/// One Docker worker per entry of `workers` (its name prefix and extra flags) and a manager
/// with `scheduler` polling them; every node READY.
fn cluster(scheduler: &str, workers: &[(&str, &[&str])]) -> Cluster {
    workers
        .iter()
        .fold(Cluster::builder(), |b, (prefix, extra)| {
            b.worker(prefix, extra)
        })
        .scheduler(scheduler)
        .update_interval(UPDATE_INTERVAL)
        .wait_ready(Duration::from_secs(15))
        .start()
}

/// `cubectl run` of a sleeping task that exits at once on SIGTERM; its id.
fn run(ctl: &Cubectl, extra: &[&str]) -> String {
    let name = unique("sched");
    let mut args = vec!["--image", TEST_IMAGE, "--name", &name, "--stop-grace", "1s"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"]);
    ctl.run(&args)
}

/// Waits until the task is RUNNING; its node.
fn wait_running(ctl: &Cubectl, id: &str) -> String {
    let task = ctl.wait_state(id, "TASK_STATE_RUNNING", Duration::from_secs(20));
    task["node"].as_str().unwrap().into()
}

/// Waits until the task's pending reason contains `word` (the first pass may not have run
/// yet); the task.
fn wait_pending_because(ctl: &Cubectl, id: &str, word: &str) -> Value {
    ctl.wait_task(
        id,
        Duration::from_secs(10),
        &format!("task {id} PENDING naming {word}"),
        |task| {
            assert_eq!(task["state"], "TASK_STATE_PENDING", "{task}");
            task["message"].as_str().is_some_and(|m| m.contains(word))
        },
    )
}

/// The verdict of filter `filter` on `node` in an explanation: (passed, reason).
fn verdict(explained: &Value, node: &str, filter: &str) -> (bool, String) {
    let nodes = explained["nodes"].as_array().expect("nodes");
    let entry = nodes
        .iter()
        .find(|n| n["node"] == node)
        .unwrap_or_else(|| panic!("{node} not in {explained}"));
    let f = entry["filters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["filter"] == filter)
        .unwrap_or_else(|| panic!("no {filter} filter for {node}: {entry}"));
    (
        f["passed"].as_bool().unwrap_or(false),
        f["reason"].as_str().unwrap_or_default().to_string(),
    )
}

/// Two workers declaring one cpu each take four 500m tasks, two each (spread); a fifth stays
/// PENDING naming cpu, its explanation shows both nodes failing the cpu filter, the nodes table
/// shows them full; stopping one task lets the fifth run within 5 s with no new submission.
#[test]
fn cpu_capacity_bounds_placement_and_freed_cpu_is_reused() {
    if !common::need_docker("cpu_capacity_bounds_placement_and_freed_cpu_is_reused") {
        return;
    }
    let c = cluster(
        "spread",
        &[("cpu-a", &["--cpu", "1"]), ("cpu-b", &["--cpu", "1"])],
    );
    let ctl = c.ctl();
    let ids: Vec<String> = (0..4).map(|_| run(&ctl, &["--cpu", "500m"])).collect();
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for id in &ids {
        *per_node.entry(wait_running(&ctl, id)).or_default() += 1;
    }
    assert_eq!(
        per_node.into_iter().collect::<Vec<_>>(),
        vec![(c.name(0).to_string(), 2), (c.name(1).to_string(), 2)],
        "spread puts two on each node"
    );

    let fifth = run(&ctl, &["--cpu", "500m"]);
    let task = wait_pending_because(&ctl, &fifth, "cpu");
    let message = task["message"].as_str().unwrap();
    assert!(
        message.starts_with("0/2 nodes fit: 2 insufficient cpu (wanted 500m, largest free 0"),
        "{message}"
    );

    let explained = ctl.explain(&fifth);
    assert_eq!(explained["strategy"], "spread");
    assert!(
        explained["pickedNode"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{explained}"
    );
    for i in 0..2 {
        assert!(verdict(&explained, c.name(i), "alive").0);
        let (passed, reason) = verdict(&explained, c.name(i), "cpu");
        assert!(!passed, "{explained}");
        assert_eq!(reason, "wanted 500m, free 0");
        let node = explained["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == c.name(i))
            .unwrap();
        assert!(node.get("score").is_none(), "no score when unfit: {node}");
    }
    let text = ctl.ok(&["explain", &fifth]);
    assert_eq!(
        text.matches("FAIL  cpu: wanted 500m, free 0").count(),
        2,
        "{text}"
    );
    assert!(text.contains("picked: none (0/2 nodes fit"), "{text}");

    // The nodes table: allocated/capacity, cpu full, memory unrequested.
    let table = ctl.ok(&["nodes"]);
    for i in 0..2 {
        let row = table
            .lines()
            .find(|l| l.starts_with(c.name(i)))
            .unwrap_or_else(|| panic!("{table}"));
        // Cells by their header, as columns come and go.
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        let cells: Vec<&str> = row.split_whitespace().collect();
        let cell = |name: &str| cells[header.iter().position(|h| *h == name).unwrap()];
        assert_eq!(cell("STATE"), "READY", "{table}");
        assert_eq!(cell("CPU"), "1/1", "cpu allocated/capacity: {table}");
        assert!(
            cell("MEMORY").starts_with("0/"),
            "memory allocated/capacity: {table}"
        );
        assert_ne!(cell("MEMORY"), "0/0", "memory capacity is known: {table}");
        assert_eq!(cell("TASKS"), "2", "tasks: {table}");
    }
    for node in ctl.nodes() {
        assert_eq!(node["capacity"]["cpuMillis"], "1000", "{node}");
        assert_eq!(node["allocated"]["cpuMillis"], "1000", "{node}");
    }

    // A running task is explained as if placed now: its own share does not make its (full)
    // node unfit, so the node it runs on fits and is the pick.
    let running = ctl.explain(&ids[0]);
    let home = ctl.task(&ids[0])["node"].as_str().unwrap().to_string();
    let (passed, reason) = verdict(&running, &home, "cpu");
    assert!(passed && reason == "wanted 500m, free 500m", "{running}");
    assert_eq!(running["pickedNode"], home.as_str(), "{running}");

    let stopped_at = Instant::now();
    ctl.ok(&["stop", &ids[0]]);
    let node = wait_running(&ctl, &fifth);
    let took = stopped_at.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the fifth ran {took:?} after the stop"
    );
    assert_eq!(ctl.task(&ids[0])["state"], "TASK_STATE_COMPLETED");
    let first_node = ctl.task(&ids[0])["node"].as_str().unwrap().to_string();
    assert_eq!(node, first_node, "the freed node takes it");
    eprintln!("freed cpu reused after {took:?}");
}

/// Two 250m tasks: binpack puts them on the same node, spread on different nodes.
#[test]
fn binpack_packs_and_spread_spreads() {
    if !common::need_docker("binpack_packs_and_spread_spreads") {
        return;
    }
    for (strategy, same) in [("binpack", true), ("spread", false)] {
        let c = cluster(
            strategy,
            &[("bp-a", &["--cpu", "1"]), ("bp-b", &["--cpu", "1"])],
        );
        let ctl = c.ctl();
        let first = run(&ctl, &["--cpu", "250m"]);
        let first_node = wait_running(&ctl, &first);
        let second = run(&ctl, &["--cpu", "250m"]);
        let second_node = wait_running(&ctl, &second);
        assert_eq!(
            first_node == second_node,
            same,
            "{strategy}: {first_node} then {second_node}"
        );
        let explained = ctl.explain(&second);
        assert_eq!(explained["strategy"], strategy);
        for i in 0..2 {
            let node = explained["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["node"] == c.name(i))
                .unwrap()
                .clone();
            assert_eq!(node["eligible"], true, "{node}");
            assert!(
                node["score"].is_number(),
                "eligible nodes are scored: {node}"
            );
        }
    }
}

/// A worker that is down is never picked, though its score (nothing allocated) is the best.
#[test]
fn a_down_worker_is_never_picked() {
    if !common::need_docker("a_down_worker_is_never_picked") {
        return;
    }
    // "a-" sorts first: with equal scores, spread would pick it.
    let mut c = cluster("spread", &[("a-down", &[]), ("b-up", &[])]);
    let ctl = c.ctl();
    // Killed the way a machine dies; the manager keeps it in its table, DOWN.
    let down = c.name(0).to_string();
    c.kill_worker(0);
    let up = c.name(1).to_string();
    wait_for(Duration::from_secs(10), "the killed worker DOWN", || {
        ctl.nodes()
            .iter()
            .any(|n| n["name"] == down.as_str() && n["state"] == "NODE_STATE_DOWN")
            .then_some(())
    });
    for _ in 0..3 {
        let id = run(&ctl, &["--cpu", "100m"]);
        assert_eq!(wait_running(&ctl, &id), up, "only the live node is picked");
        let explained = ctl.explain(&id);
        let (alive, reason) = verdict(&explained, &down, "alive");
        assert!(!alive && reason == "down", "{explained}");
        let down_node = explained["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == down.as_str())
            .unwrap()
            .clone();
        assert!(down_node.get("score").is_none(), "{down_node}");
    }
}

/// A task constrained to zone=b runs only on the worker labelled zone=b, and stays PENDING
/// naming the constraint when that node is full (though the other node has room).
#[test]
fn constraints_choose_the_labelled_node() {
    if !common::need_docker("constraints_choose_the_labelled_node") {
        return;
    }
    let c = cluster(
        "spread",
        &[
            ("zone-a", &["--cpu", "1", "--label", "zone=a"]),
            ("zone-b", &["--cpu", "1", "--label", "zone=b"]),
        ],
    );
    let ctl = c.ctl();
    let zone_b = c.name(1).to_string();
    for _ in 0..2 {
        let id = run(&ctl, &["--cpu", "500m", "--constraint", "zone=b"]);
        assert_eq!(wait_running(&ctl, &id), zone_b);
    }
    let third = run(&ctl, &["--cpu", "500m", "--constraint", "zone=b"]);
    let task = wait_pending_because(&ctl, &third, "zone=b");
    let message = task["message"].as_str().unwrap();
    assert!(
        message.contains("1 constraint zone=b not met") && message.contains("1 insufficient cpu"),
        "{message}"
    );
    let explained = ctl.explain(&third);
    let (met, reason) = verdict(&explained, c.name(0), "constraints");
    assert!(!met && reason == "constraint zone=b not met", "{explained}");
    assert!(verdict(&explained, c.name(0), "cpu").0, "zone a has room");
    assert!(!verdict(&explained, &zone_b, "cpu").0, "zone b is full");
    assert!(verdict(&explained, &zone_b, "constraints").0);
    let nodes = ctl.nodes();
    let labels = &nodes.iter().find(|n| n["name"] == zone_b.as_str()).unwrap()["labels"];
    assert_eq!(labels["zone"], "b", "{labels}");
}
