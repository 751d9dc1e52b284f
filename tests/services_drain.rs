//! Drain with services on a real manager with two Exec workers: a service's tasks on a
//! draining node are stopped there and their slots filled again by the service reconciler on
//! the other node, with new tasks in the same slots.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{
    services::{slots, three_running},
    wait_for,
};

/// Draining the node that holds replicas: within a few seconds the service is back to 3
/// RUNNING, all on the other node; the slots that were on the drained node run new tasks, the
/// others kept theirs; the old tasks ended COMPLETED (stopped, not moved) and their events say
/// why.
#[test]
fn a_drain_stops_replicas_and_the_service_fills_their_slots_elsewhere() {
    let (cluster, name, before) = three_running("drain");
    let ctl = cluster.ctl();
    let node_of = |id: &str| ctl.status(id)["task"]["node"].as_str().unwrap().to_string();
    let placed: Vec<(u64, String, String)> = before
        .iter()
        .map(|(slot, (_, id, _))| (*slot, id.clone(), node_of(id)))
        .collect();
    let drained = placed[0].2.clone();
    let moved: Vec<_> = placed.iter().filter(|(_, _, n)| *n == drained).collect();
    let stayed: Vec<_> = placed.iter().filter(|(_, _, n)| *n != drained).collect();
    assert!(
        !stayed.is_empty(),
        "replicas spread on both nodes: {placed:?}"
    );

    let started = Instant::now();
    ctl.ok(&["drain", &drained]);
    let after = wait_for(
        Duration::from_secs(10),
        "3 RUNNING off the drained node",
        || {
            let now = slots(&ctl, &name);
            let done = now.keys().copied().eq(1..=3)
                && now
                    .values()
                    .all(|(state, id, _)| state == "TASK_STATE_RUNNING" && node_of(id) != drained);
            done.then_some(now)
        },
    );
    println!(
        "MEASURE drain of {} replicas to 3 RUNNING elsewhere: {} ms",
        moved.len(),
        started.elapsed().as_millis()
    );
    for (slot, old, _) in &moved {
        let new = &after[slot].1;
        assert_ne!(new, old, "slot {slot} runs a new task");
        let old_task = wait_for(Duration::from_secs(10), "the old task ended", || {
            let task = ctl.status(old)["task"].clone();
            (task["state"] != "TASK_STATE_RUNNING").then_some(task)
        });
        assert_eq!(old_task["state"], "TASK_STATE_COMPLETED", "{old_task}");
        assert_eq!(
            old_task["desiredState"], "DESIRED_STATE_STOPPED",
            "{old_task}"
        );
        assert_eq!(old_task["node"], drained.as_str(), "not moved: {old_task}");
        let events = ctl.ok(&["events", old]);
        assert!(
            events.contains(&format!("node {drained} is draining")),
            "{events}"
        );
    }
    for (slot, old, _) in &stayed {
        assert_eq!(&after[slot].1, old, "slot {slot} kept its task");
    }
}
