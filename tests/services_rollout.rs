//! Rolling updates of services on a real manager with Exec workers: a failing update rolled
//! back automatically, and a start-first update that keeps every replica serving.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    services::{rollout_states, slots, three_running, update_failing},
    wait_for,
};

/// An update whose command exits 1 at once is detected, rolled back automatically (the
/// default failure action), and ends with every replica on the old spec at a new version;
/// the rollout record and the failed task's events say why.
#[test]
fn a_failing_update_is_rolled_back_automatically() {
    let (cluster, name, before) = three_running("bad");
    let ctl = cluster.ctl();
    update_failing(&ctl, &name);
    let service = wait_for(Duration::from_secs(20), "the rollout ROLLED_BACK", || {
        let service = common::json(&ctl.ok(&["service", "inspect", &name]))["service"].clone();
        (service["rollout"]["state"] == "ROLLOUT_STATE_ROLLED_BACK").then_some(service)
    });
    let rollout = &service["rollout"];
    assert_eq!(service["taskVersion"], "3", "{service}");
    // Every slot runs the old spec: the slots the update never reached kept their tasks.
    let back = slots(&ctl, &name);
    assert_eq!(back.len(), 3, "{back:?}");
    for (state, id, _) in back.values() {
        assert_eq!(state, "TASK_STATE_RUNNING");
        let task = ctl.status(id);
        assert_eq!(task["task"]["spec"]["args"][1], "300", "{task}");
    }
    assert_eq!(
        back[&2],
        before[&2],
        "slot 2 was never replaced: {}",
        ctl.ok(&["events", &before[&2].1])
    );
    let said = rollout["message"].as_str().unwrap();
    assert!(said.contains("version 2 failed in slot 1"), "{said}");
    assert!(said.contains("exit"), "{said}");
    // The failed task's events say why the service rolled back.
    let tasks = ctl.json(&["service", "ps", &name]);
    let failed = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["serviceVersion"] == "2")
        .unwrap_or_else(|| panic!("{tasks}"));
    let events = ctl.ok(&["events", failed["id"].as_str().unwrap()]);
    assert!(
        events.contains("rolling back: version 2 failed"),
        "{events}"
    );
}

/// A start-first update (parallelism 1): sampled as the manager reports it, never fewer than 3
/// replicas RUNNING and wanted, never more than 3 + 1 RUNNING in all; at the end every slot
/// runs the new version.
#[test]
fn a_start_first_update_stays_within_its_bounds() {
    let (cluster, name, before) = three_running("sf");
    let ctl = cluster.ctl();
    ctl.ok(&[
        "service",
        "update",
        "--detach",
        &name,
        "--update-order",
        "start-first",
        "--update-monitor",
        "500ms",
        "--",
        "sleep",
        "303",
    ]);
    let started = Instant::now();
    let (mut fewest, mut most) = (3, 0);
    loop {
        let tasks = ctl.json(&["service", "ps", &name])["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let running = |t: &&serde_json::Value| t["state"] == "TASK_STATE_RUNNING";
        let all = tasks.iter().filter(running).count();
        let serving = tasks
            .iter()
            .filter(running)
            .filter(|t| t["desiredState"] == "DESIRED_STATE_RUNNING")
            .count();
        fewest = fewest.min(serving);
        most = most.max(all);
        assert!(serving >= 3, "only {serving} serving: {tasks:?}");
        assert!(all <= 4, "{all} running: {tasks:?}");
        let wanted: Vec<_> = tasks
            .iter()
            .filter(|t| t["desiredState"] == "DESIRED_STATE_RUNNING")
            .collect();
        let done = wanted.len() == 3
            && wanted
                .iter()
                .all(|t| running(t) && t["serviceVersion"] == "2");
        if done {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{tasks:?}");
    }
    println!(
        "MEASURE start-first update of 3: {} ms, serving at least {fewest}, at most {most} running",
        started.elapsed().as_millis()
    );
    let after = slots(&ctl, &name);
    assert!(after
        .values()
        .all(|(_, id, _)| before.values().all(|(_, old, _)| old != id)));
}

/// An update while another rolls out supersedes it: every slot ends on the newest version,
/// none on the one in between, the rollout record says COMPLETED and the history keeps the
/// first rollout as SUPERSEDED.
#[test]
fn a_second_update_supersedes_a_rollout_in_flight() {
    let (cluster, name, _) = three_running("sup");
    let ctl = cluster.ctl();
    let slow = ["--update-monitor", "2s", "--", "sleep", "304"];
    ctl.ok(&[&["service", "update", "--detach", &name][..], &slow].concat());
    let fast = ["--update-monitor", "300ms", "--", "sleep", "305"];
    ctl.ok(&[&["service", "update", "--detach", &name][..], &fast].concat());
    let service = wait_for(Duration::from_secs(20), "the rollout COMPLETED", || {
        let service = common::json(&ctl.ok(&["service", "inspect", &name]))["service"].clone();
        (service["rollout"]["state"] == "ROLLOUT_STATE_COMPLETED").then_some(service)
    });
    assert_eq!(service["taskVersion"], "3", "{service}");
    // The history keeps the first rollout as SUPERSEDED, then the second one.
    assert_eq!(
        rollout_states(&service),
        ["ROLLOUT_STATE_SUPERSEDED", "ROLLOUT_STATE_COMPLETED"],
        "{service}"
    );
    let now = slots(&ctl, &name);
    assert_eq!(now.len(), 3, "{now:?}");
    for (state, id, version) in now.values() {
        assert_eq!(
            (state.as_str(), version.as_str()),
            ("TASK_STATE_RUNNING", "3")
        );
        assert_eq!(ctl.status(id)["task"]["spec"]["args"][1], "305");
    }
}
