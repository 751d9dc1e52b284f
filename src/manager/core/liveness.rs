//! Liveness: a node not heard from for the grace period is DOWN, and its unfinished tasks go
//! back to PENDING (NODE_LOST) to be placed elsewhere; a `stop DURATION` task only once its
//! worker has stopped it (DURATION and a margin since the last contact).

use std::time::Duration;

use super::Core;
use crate::{disconnect, manager::policy::human, proto::pb::EventType, task::TaskId};

impl Core {
    /// Marks nodes not heard from for `grace` DOWN, and sends their unfinished tasks back to
    /// PENDING with a NODE_LOST event, to be placed elsewhere. The cost is the number of
    /// nodes plus the tasks actually moved.
    pub fn check_liveness(&self, grace: Duration) {
        // Moves could not be stored; nodes are judged again once they can.
        if self.writable().is_err() {
            return;
        }
        let mut tx = self.tx();
        let started = self.shared.started;
        let contacts = &self.shared.contacts;
        let lost: Vec<(String, Duration)> = tx
            .state
            .nodes
            .by_name
            .values()
            .filter_map(|n| {
                let answered = n.silent_for().unwrap_or_else(|| started.elapsed());
                let silent = contacts
                    .silent_for(&n.name)
                    .map_or(answered, |c| c.min(answered));
                (silent >= grace && (n.alive || !n.tasks.is_empty()))
                    .then(|| (n.name.clone(), silent))
            })
            .collect();
        for (name, silent) in lost {
            let state = &mut *tx.state;
            let Some(node) = state.nodes.by_name.get_mut(&name) else {
                continue;
            };
            let why = format!("no heartbeat for {}", human(grace));
            if node.alive {
                tracing::warn!(node = %name, silent_ms = silent.as_millis() as u64, "node lost");
                node.alive = false;
                node.message = why.clone();
            }
            // A `stop DURATION` task waits until its worker has stopped it (see
            // `disconnect::replace_after`); the node stays DOWN, and is looked at again.
            let due = |id: &TaskId| {
                state.tasks.get(id).is_none_or(|e| {
                    let spec = e.task.spec.as_ref();
                    spec.is_none_or(|s| silent >= disconnect::replace_after(s, grace))
                })
            };
            let mut ids: Vec<TaskId> = node.tasks.iter().copied().filter(due).collect();
            ids.sort_by_key(|id| state.tasks.get(id).map(|e| e.seq));
            for id in ids {
                let message = format!("node {name} lost: {why}");
                tx.state.drain_moves.remove(&id);
                let event = message.clone();
                let stopped = "stopped (its node was lost)";
                tx.copy_gone(id, EventType::NodeLost, event, stopped, message);
            }
        }
        tx.commit_later();
    }
}
