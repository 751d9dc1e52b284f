//! Membership: workers known by a static address and polled, workers that register and
//! heartbeat, and what their answers say about their node (alive, stats, labels, name).

use std::collections::BTreeMap;

use super::Core;
use crate::{manager::nodes::NodeEntry, proto::pb, store::manager::Op};

/// What a registration asks of the caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Registered {
    /// The worker's address has no poll loop yet: start one.
    pub needs_poll: bool,
    /// The worker registered before from this other address: its connection there is stale.
    pub moved_from: Option<String>,
}

impl Core {
    /// The key of the node at a static address (created, DOWN, if new).
    pub fn node_for_address(&self, address: &str) -> String {
        self.lock().nodes.key_for_address(address)
    }

    /// Claims the poll loop of `address`; false if one runs already.
    pub fn claim_poll(&self, address: &str) -> bool {
        self.lock().polled.insert(address.to_string())
    }

    /// Asks the next poll of `address` for every task the worker holds. A worker that answers
    /// a StartTask with ALREADY_EXISTS holds a copy whose state may not have changed since
    /// the manager last heard of it, so no delta would ever report it (a task moved back to a
    /// node that still ran it, after a drain and undrain, stayed SCHEDULED forever).
    pub fn resync(&self, address: &str) {
        self.lock().resync.insert(address.to_string());
    }

    /// What the next poll of `address` is: `None` when the loop ends (a registered worker
    /// that registered again elsewhere, a new port, leaves its old address unpolled), else
    /// whether it must ask for everything (once per [`Core::resync`]).
    pub fn next_poll(&self, address: &str) -> Option<bool> {
        let mut state = self.lock();
        if !state.polled.contains(address) {
            return None;
        }
        Some(state.resync.remove(address))
    }

    /// The worker at `address` answered GetStats: it is alive, known by its reported name.
    /// Returns the node's key.
    pub fn worker_answered(&self, address: &str, stats: pb::GetStatsResponse) -> String {
        let mut tx = self.tx();
        let state = &mut *tx.state;
        let mut key = state.nodes.key_for_address(address);
        if !stats.node.is_empty() && stats.node != key {
            if let Some(removed) = state.nodes.rename(&key, &stats.node) {
                tx.changes.ops.push(Op::DeleteNode { name: removed });
            }
            key = stats.node.clone();
        }
        let node = state
            .nodes
            .by_name
            .entry(key.clone())
            .or_insert_with(|| NodeEntry::new(&key, address));
        let labels: BTreeMap<String, String> = stats.labels.into_iter().collect();
        let was_alive = node.alive;
        let before = node.view(self.shared.stale_after);
        let record_changed = !was_alive || node.labels != labels;
        node.answered(stats.stats, labels, stats.instance_id);
        let after = node.view(self.shared.stale_after);
        let placeable_changed = !was_alive
            || !before.stats_fresh
            || before.capacity != after.capacity
            || before.runtime_ready != after.runtime_ready
            || before.runs_images != after.runs_images
            || before.labels != after.labels;
        if !was_alive {
            tracing::info!(node = %key, address, "worker answers");
        }
        if record_changed || !tx.changes.ops.is_empty() {
            tx.changes.ops.push(Op::node(node.record()));
        }
        if placeable_changed {
            state.capacity_gen += 1;
            tx.changes.wake_dispatcher = true;
        }
        tx.commit_later();
        key
    }

    /// The worker at `address` did not answer: its node is DOWN.
    pub fn worker_failed(&self, address: &str, error: &str) {
        let mut state = self.lock();
        let key = state.nodes.key_for_address(address);
        if let Some(node) = state.nodes.by_name.get_mut(&key) {
            if node.alive {
                tracing::warn!(node = %key, address, error, "worker stopped answering");
            }
            node.alive = false;
            node.message = format!("not answering: {error}");
        }
    }

    /// A worker registers (or registers again): its node is created or updated and READY.
    pub fn register(
        &self,
        name: &str,
        address: &str,
        labels: BTreeMap<String, String>,
        instance_id: String,
        stats: Option<pb::NodeStats>,
    ) -> Registered {
        let mut tx = self.tx();
        let state = &mut *tx.state;
        if !state.nodes.by_name.contains_key(name) {
            if let Some(key) = state.nodes.by_address(address).map(|n| n.name.clone()) {
                if let Some(removed) = state.nodes.rename(&key, name) {
                    tx.changes.ops.push(Op::DeleteNode { name: removed });
                }
            }
        }
        let node = state
            .nodes
            .by_name
            .entry(name.to_string())
            .or_insert_with(|| NodeEntry::new(name, address));
        let old_address = std::mem::replace(&mut node.address, address.to_string());
        self.shared.contacts.set(name, &instance_id);
        node.answered(stats, labels, instance_id);
        tx.changes.ops.push(Op::node(node.record()));
        tracing::info!(node = name, address, "worker registered");
        let moved_from = (old_address != address).then(|| {
            state.polled.remove(&old_address);
            old_address
        });
        state.capacity_gen += 1;
        let needs_poll = !state.polled.contains(address);
        tx.changes.wake_dispatcher = true;
        tx.changes.wake_stopper = true;
        tx.commit_later();
        Registered {
            needs_poll,
            moved_from,
        }
    }

    /// A heartbeat: the node is alive with these stats. Returns the stale copies the worker
    /// should stop, or None when the manager does not know this worker instance (it must
    /// register again).
    pub fn heartbeat(
        &self,
        name: &str,
        instance_id: &str,
        stats: Option<pb::NodeStats>,
    ) -> Option<Vec<String>> {
        // Counted at once when it is the instance known; then, if the state is busy, the
        // answer carries no news (the next heartbeat will): a heartbeat never waits.
        let counted = self.shared.contacts.touch(name, instance_id);
        let mut state = if counted {
            match self.shared.state.try_lock() {
                Ok(state) => state,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return Some(Vec::new()),
            }
        } else {
            self.lock()
        };
        let node = state.nodes.by_name.get_mut(name)?;
        if node.instance_id != instance_id || node.address.is_empty() {
            return None;
        }
        if !counted {
            self.shared.contacts.set(name, instance_id);
        }
        let was_alive = node.alive;
        let labels = node.labels.clone();
        node.answered(stats, labels, instance_id.to_string());
        if !was_alive {
            tracing::info!(node = name, "node heartbeats again");
            state.capacity_gen += 1;
            self.shared.dispatch.notify_one();
            self.shared.stopper.notify_one();
        }
        Some(
            state
                .stops
                .iter()
                .filter(|j| j.stale && j.node == name)
                .map(|j| j.id.to_string())
                .collect(),
        )
    }
}
