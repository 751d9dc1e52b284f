//! The manager's part of the metrics: gauges read from the core when the endpoint is scraped
//! (tasks and nodes by state, the pending queue), and the submit-to-running latency.

use std::collections::BTreeMap;

use super::core::Core;
use crate::{
    metrics::{metrics, on_scrape, set_counts, ScrapeHook},
    proto::pb::{self, NodeState, TaskState},
    task::state_name,
};

/// Every task state a gauge reports (0 when no task is in it).
const TASK_STATES: [TaskState; 5] = [
    TaskState::Pending,
    TaskState::Scheduled,
    TaskState::Running,
    TaskState::Completed,
    TaskState::Failed,
];

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
    })
}

/// Records the time from submission to the first RUNNING report of `task` (as the manager
/// held it before that report).
pub(crate) fn first_running(task: &pb::Task) {
    let Some(created) = task
        .created_at
        .and_then(|t| std::time::SystemTime::try_from(t).ok())
    else {
        return;
    };
    if let Ok(elapsed) = created.elapsed() {
        metrics()
            .manager_submit_to_running_seconds
            .with_label_values(&[] as &[&str])
            .observe(elapsed.as_secs_f64());
    }
}
