//! The manager's part of the metrics: gauges read from the core when the endpoint is scraped
//! (tasks and nodes by state, the pending queue, the replicas of each service).

use std::collections::BTreeMap;

use super::core::Core;
use crate::{
    metrics::{metrics, on_scrape, set_counts, ScrapeHook, TASK_STATES},
    proto::pb::NodeState,
    task::state_name,
};

/// Every node state a gauge reports, as the label reads.
const NODE_STATES: [(NodeState, &str); 3] = [
    (NodeState::Ready, "READY"),
    (NodeState::Down, "DOWN"),
    (NodeState::Draining, "DRAINING"),
];

/// Refreshes the manager's gauges from `core` at every scrape, while the hook lives.
pub(crate) fn register(core: &Core) -> ScrapeHook {
    let core = core.clone();
    on_scrape(move || {
        let m = metrics();
        let (by_state, pending) = core.task_counts();
        let tasks: BTreeMap<&str, i64> = by_state
            .into_iter()
            .map(|(state, n)| (state_name(state), n))
            .collect();
        set_counts(
            &m.manager_tasks,
            TASK_STATES.iter().map(|s| state_name(*s)),
            &tasks,
        );
        m.manager_pending.set(pending);
        let mut nodes: BTreeMap<&str, i64> = BTreeMap::new();
        for node in core.nodes() {
            if let Some((_, name)) = NODE_STATES.iter().find(|(s, _)| *s as i32 == node.state) {
                *nodes.entry(name).or_default() += 1;
            }
        }
        set_counts(
            &m.manager_nodes,
            NODE_STATES.iter().map(|(_, name)| *name),
            &nodes,
        );
        // Removed services leave no series behind.
        m.manager_service_replicas.reset();
        for (name, counts) in core.service_counts() {
            for (kind, n) in [
                ("desired", counts.desired),
                ("running", counts.running),
                ("updated", counts.updated),
            ] {
                m.manager_service_replicas
                    .with_label_values(&[name.as_str(), kind])
                    .set(n);
            }
        }
    })
}
