//! The scale benchmark's small form (`cargo bench --bench scale` runs the whole curve): 10 and
//! then 100 simulated nodes (bench/sim_node.rs: the worker's contract in memory) under a real
//! manager process, 10,000 tasks each time. It asserts only that every task was placed and is
//! running on a node, and that no node was taken for lost on the way.
// A test fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../bench/sim_node.rs"]
mod sim_node;

use std::time::{Duration, Instant};

use common::Cluster;
use cube::proto::pb::{self, NodeState};
use sim_node::{SimCluster, SimOptions};

const TASKS: usize = 10_000;

async fn nodes_in(
    client: &mut pb::manager_service_client::ManagerServiceClient<cube::tls::AuthChannel>,
    state: NodeState,
) -> usize {
    client
        .list_nodes(pb::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes
        .iter()
        .filter(|n| n.state() == state)
        .count()
}

async fn one_size(nodes: usize) {
    let cluster = Cluster::builder().plaintext().start();
    let mut client = cluster.client().await;
    let per_node = (TASKS.div_ceil(nodes) + 10) as i64;
    let sims = SimCluster::start(
        &cluster.url(),
        &format!("sim{nodes}"),
        nodes,
        nodes,
        Duration::from_secs(1),
        SimOptions {
            cpu_millis: per_node,
            memory_bytes: per_node << 22,
            run_for: None,
        },
    )
    .await;
    let start = Instant::now();
    while nodes_in(&mut client, NodeState::Ready).await < nodes {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "nodes never READY"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spec = pb::TaskSpec {
        name: "small".into(),
        command: vec!["sleep".into(), "infinity".into()],
        resources: Some(pb::Resources {
            cpu_millis: 1,
            memory_bytes: 4 << 20,
            disk_bytes: 0,
        }),
        ..Default::default()
    };
    common::submit_many(&mut client, &spec, TASKS).await;
    let start = Instant::now();
    while sims.running() < TASKS {
        if start.elapsed() > Duration::from_secs(120) {
            let mut states = std::collections::BTreeMap::new();
            let mut samples = Vec::new();
            for task in common::list_all(&mut client).await {
                *states.entry(task.state().as_str_name()).or_insert(0) += 1;
                if task.state() != pb::TaskState::Running && samples.len() < 5 {
                    samples.push(format!("{} on {:?}: {}", task.id, task.node, task.message));
                }
            }
            panic!(
                "{nodes} nodes: {} of {TASKS} tasks running after 120 s; the manager says \
                 {states:?}: {samples:#?}",
                sims.running()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "{nodes} nodes: {TASKS} tasks running {:.1} s after the last submission",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(nodes_in(&mut client, NodeState::Ready).await, nodes);
    assert_eq!(
        sims.counters
            .registrations
            .load(std::sync::atomic::Ordering::Relaxed),
        nodes as u64,
        "a node was asked to register again: the manager took it for lost"
    );
    let pending = client
        .list_tasks(pb::ListTasksRequest {
            state: pb::TaskState::Pending as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        pending.tasks.is_empty(),
        "{} tasks PENDING",
        pending.tasks.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_is_placed_on_10_and_on_100_simulated_nodes() {
    one_size(10).await;
    one_size(100).await;
}
