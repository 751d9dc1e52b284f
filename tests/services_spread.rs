//! The spread term: replicas of one service go where their service has the fewest tasks,
//! before the strategy's score. Under binpack (which packs everything else onto one node) on
//! two Exec workers, 4 replicas run 2/2, `explain` of a replica shows the term per node and
//! `service explain` the replicas per node; plain tasks still pack.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::services::{exec_cluster_builder, wait_running};

#[test]
fn replicas_spread_across_nodes_before_binpack_packs_them() {
    let cluster = exec_cluster_builder().scheduler("binpack").start();
    let ctl = cluster.ctl();

    // Binpack packs plain tasks onto one node: the spread term is for services only.
    let a = ctl.run(&["--cpu", "100m", "--", "sleep", "300"]);
    let b = ctl.run(&["--cpu", "100m", "--", "sleep", "300"]);
    let a_node =
        ctl.wait_state(a.trim(), "TASK_STATE_RUNNING", Duration::from_secs(10))["node"].clone();
    let b_node =
        ctl.wait_state(b.trim(), "TASK_STATE_RUNNING", Duration::from_secs(10))["node"].clone();
    assert_eq!(a_node, b_node, "binpack packs plain tasks");

    let name = common::unique("spread");
    ctl.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        &name,
        "--replicas",
        "4",
        "--cpu",
        "100m",
        "--",
        "sleep",
        "300",
    ]);
    let slots = wait_running(&ctl, &name, 4, "1", Duration::from_secs(15));
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for (_, id, _) in slots.values() {
        let node = ctl.task(id)["node"].as_str().unwrap().to_string();
        *per_node.entry(node).or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        [2, 2],
        "4 replicas spread 2/2 over 2 nodes: {per_node:?}"
    );

    let (_, id, _) = &slots[&1];
    let explained = ctl.explain(id);
    let nodes = explained["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{explained}");
    for node in nodes {
        // Explained as if being placed now: the other 3 replicas count, 1 or 2 per node.
        let peers = node["serviceReplicas"].as_u64().unwrap();
        assert!((1..=2).contains(&peers), "{explained}");
    }
    let text = ctl.ok(&["explain", id]);
    assert!(text.contains("replicas of its service here"), "{text}");
    assert!(
        text.contains("spread: 1 other replicas of its service there"),
        "{text}"
    );

    let text = ctl.ok(&["service", "explain", &name]);
    let line = text.lines().find(|l| l.starts_with("spread")).unwrap();
    assert!(
        line.ends_with(" 2") && line.matches(" 2").count() == 2,
        "{text}"
    );
}
