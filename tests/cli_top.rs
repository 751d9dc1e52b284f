//! `cubectl top` against a real manager and workers: a busy task shows its cpu and memory
//! (from /proc for the Exec runtime, from Docker stats for the Docker runtime), an idle one
//! next to nothing, and nodes show their usage beside what they offer.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{need_docker, Cluster, Cubectl, TEST_IMAGE};

/// A shell loop that keeps one cpu busy.
const BUSY: &str = "while :; do :; done";

/// The `top tasks -o json` entry of task `id`.
fn usage_of(ctl: &Cubectl, id: &str) -> serde_json::Value {
    let top = ctl.json(&["top", "tasks"]);
    let tasks = top["tasks"].as_array().cloned().unwrap_or_default();
    tasks
        .into_iter()
        .find(|t| t["taskId"] == id)
        .unwrap_or_else(|| panic!("{id} is not in top tasks: {top}"))
}

/// Proves, on an Exec worker, that `top tasks` shows a busy task using cpu and some memory,
/// and an idle one next to no cpu; that the table names them; and that `top`
/// shows the node with its load.
#[test]
fn top_shows_what_a_busy_exec_task_uses() {
    let cluster = Cluster::exec();
    let ctl = cluster.ctl();
    let busy = ctl.run(&["--name", "busy", "--memory", "64Mi", "--", "sh", "-c", BUSY]);
    let idle = ctl.run(&["--name", "idle", "--", "sleep", "300"]);
    for id in [&busy, &idle] {
        ctl.wait_state(id, "TASK_STATE_RUNNING", Duration::from_secs(20));
    }
    let hot = usage_of(&ctl, &busy);
    // On a machine shared with other builds a busy loop gets what is left of a core; any
    // share well above the idle task's shows the reading works.
    let cpu = hot["cpuCores"].as_f64().unwrap();
    assert!(cpu > 0.05, "a busy loop uses cpu: {hot}");
    let memory: i64 = hot["memoryBytes"].as_str().unwrap().parse().unwrap();
    assert!(memory > 0, "{hot}");
    assert_eq!(hot["memoryBytesRequested"], "67108864");
    assert_eq!(hot["node"], cluster.name(0));
    let cold = usage_of(&ctl, &idle);
    let idle_cpu = cold["cpuCores"].as_f64().unwrap_or(0.0);
    assert!(idle_cpu < 0.05 && idle_cpu < cpu, "{cold}");

    let table = ctl.ok(&["top", "tasks"]);
    assert!(table.starts_with("ID "), "{table}");
    assert!(
        table.contains(&busy[..8]) && table.contains("busy"),
        "{table}"
    );

    // `nodes` names each node's runtime.
    let listed = ctl.ok(&["nodes"]);
    let header = listed.lines().next().unwrap();
    assert!(
        header.contains("RUNTIME") && header.contains("LABELS"),
        "{listed}"
    );
    assert!(
        listed.lines().nth(1).unwrap().contains(" exec "),
        "{listed}"
    );

    let nodes = ctl.ok(&["top"]);
    assert!(nodes.contains(cluster.name(0)), "{nodes}");
    let top = ctl.json(&["top", "nodes"]);
    assert!(
        top["nodes"][0]["memoryTotalBytes"].as_str().is_some(),
        "{top}"
    );
    ctl.ok(&["stop", "--all"]);
}

/// Proves the same for a Docker task: its cpu from Docker stats is above zero.
#[test]
fn top_shows_what_a_busy_container_uses() {
    if !need_docker("top_shows_what_a_busy_container_uses") {
        return;
    }
    let cluster = Cluster::docker();
    let ctl = cluster.ctl();
    let busy = ctl.run(&[
        "--image",
        TEST_IMAGE,
        "--name",
        "busy",
        "--stop-grace",
        "1s",
        "--",
        "sh",
        "-c",
        BUSY,
    ]);
    ctl.wait_state(&busy, "TASK_STATE_RUNNING", Duration::from_secs(30));
    let hot = usage_of(&ctl, &busy);
    assert!(hot["cpuCores"].as_f64().unwrap() > 0.05, "{hot}");
    let memory: i64 = hot["memoryBytes"].as_str().unwrap().parse().unwrap();
    assert!(memory > 0, "{hot}");
    ctl.ok(&["stop", &busy]);
    ctl.wait_state(&busy, "TASK_STATE_COMPLETED", Duration::from_secs(30));
}
