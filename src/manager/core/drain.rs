//! Drains: a DRAINING node takes no new tasks, and its tasks move one at a time. A task being
//! moved is placed anew while its copy on the draining node runs on; once the new copy is
//! RUNNING the old one is stopped. A new copy that fails ends the move: the task is the old
//! copy again, which kept running, and the drain leaves it there and says why (in the task's
//! events and the node's message). A service's task is not moved: it is stopped, and the
//! service reconciler fills its slot with a new task on another node.

use super::{
    state::{DrainMove, State},
    Changes, Core,
};
use crate::{
    error::{Error, Result},
    proto::pb::{self, DesiredState, EventType, TaskState},
    store::manager::{Durable, Op},
    task::{is_finished, TaskId},
};

use super::StopJob;

impl Core {
    /// DRAINING (`on`) or not: no new tasks on `name`; the drainer moves its tasks one at a
    /// time.
    pub async fn drain(&self, name: &str, on: bool) -> Result<pb::Node> {
        self.writable()?;
        let (answer, durable) = self.drain_locked(name, on)?;
        durable.wait().await?;
        Ok(answer)
    }

    fn drain_locked(&self, name: &str, on: bool) -> Result<(pb::Node, Durable)> {
        let mut tx = self.tx();
        let state = &mut *tx.state;
        let node = state
            .nodes
            .by_name
            .get_mut(name)
            .ok_or_else(|| Error::NotFound {
                what: "node",
                id: name.to_string(),
            })?;
        node.draining = on;
        if !on {
            node.message.clear();
        }
        let answer = node.to_pb();
        tx.changes.ops.push(Op::node(node.record()));
        tracing::info!(node = name, draining = on, "drain changed");
        if !on {
            // Moves under way go on to their end: the task is already being placed anew, and
            // its old copy must be stopped once the new one runs (or kept, if the task comes
            // back here). Dropping them would leave that copy running unseen.
            state.unmovable.retain(|_, from| from != name);
        }
        state.capacity_gen += 1;
        tx.changes.wake_dispatcher = true;
        Ok((answer, tx.commit()))
    }

    /// One step of every drain: a move whose new copy is RUNNING gets its old copy stopped
    /// (also when its node was undrained meanwhile); a draining node with no move under way
    /// (and no stop owed) starts the next one.
    pub fn drain_step(&self) {
        if self.writable().is_err() {
            return;
        }
        let mut tx = self.tx();
        tx.changes.by_drainer = true;
        let draining: Vec<String> = tx
            .state
            .nodes
            .by_name
            .values()
            .filter(|n| n.draining && n.alive)
            .map(|n| n.name.clone())
            .collect();
        if draining.is_empty() && tx.state.drain_moves.is_empty() {
            return;
        }
        let moves: Vec<(TaskId, String)> = tx
            .state
            .drain_moves
            .iter()
            .map(|(id, m)| (*id, m.from.clone()))
            .collect();
        for (id, from) in moves {
            tx.move_progressed(id, &from);
        }
        for name in draining {
            tx.stop_replicas_on(&name);
            let state = &*tx.state;
            if state.drain_moves.values().any(|m| m.from == name) {
                continue; // one move at a time
            }
            if state.stops.iter().any(|j| j.stale && j.node == name) {
                continue; // the previous copy is still being stopped
            }
            let next = state.nodes.by_name[&name]
                .tasks
                .iter()
                .filter_map(|id| state.tasks.get(id).map(|e| (e.seq, *id, &e.task)))
                .filter(|(_, _, t)| t.desired_state() == DesiredState::Running)
                .filter(|(_, _, t)| t.service_id.is_empty())
                .filter(|(_, id, _)| !state.unmovable.contains_key(id))
                .min_by_key(|(seq, _, _)| *seq)
                .map(|(_, id, _)| id);
            let Some(id) = next else {
                continue;
            };
            let original = tx.state.tasks[&id].task.clone();
            let from = name.clone();
            tx.state
                .drain_moves
                .insert(id, DrainMove { from, original });
            let message = format!("node {name} is draining; placing the task elsewhere");
            let event = Some((EventType::Drained, message.clone()));
            tx.update(id, Some(TaskState::Pending), event, |task| {
                task.node.clear();
                task.message = message;
            });
        }
        tx.commit_later();
    }
}

impl super::Tx<'_> {
    /// Stops every service task wanted running on draining node `name`, all at once (as
    /// Swarm does): a service task is not moved like a plain one, its slot is filled again by
    /// the service reconciler with a new task, placed on another node.
    fn stop_replicas_on(&mut self, name: &str) {
        let state = &*self.state;
        let replicas: Vec<(TaskId, u32)> = state.nodes.by_name[name]
            .tasks
            .iter()
            .filter_map(|id| state.tasks.get(id).map(|e| (*id, &e.task)))
            .filter(|(_, t)| !t.service_id.is_empty())
            .filter(|(_, t)| t.desired_state() == DesiredState::Running)
            .map(|(id, t)| (id, t.slot))
            .collect();
        for (id, slot) in replicas {
            let message = format!(
                "node {name} is draining; stopping this replica, its service fills slot {slot} \
                 with a new task on another node"
            );
            self.request_stop(id, (EventType::Drained, message));
        }
    }

    /// The move of `id` off draining node `from`: once its new copy runs (or the task ended),
    /// the move is over and the old copy is stopped.
    fn move_progressed(&mut self, id: TaskId, from: &str) {
        // Looked at every drain step: only the state and the node, not a copy of the task.
        let Some((state, node)) = self
            .state
            .tasks
            .get(&id)
            .map(|e| (e.task.state(), e.task.node.clone()))
        else {
            self.state.drain_moves.remove(&id);
            return;
        };
        if node == from && state != TaskState::Pending {
            // Placed back where it was (the node was undrained): the copy there is the task.
            self.state.drain_moves.remove(&id);
            return;
        }
        let arrived = state == TaskState::Running && node != from;
        if !arrived && !is_finished(state) {
            return;
        }
        self.state.drain_moves.remove(&id);
        let job = StopJob {
            id,
            node: from.to_string(),
            stale: true,
        };
        if self.state.stops.insert(job) {
            self.changes.wake_stopper = true;
        }
        let message = if arrived {
            format!("running on {node}; stopping the copy on {from}")
        } else {
            format!("finished while moving; stopping the copy on {from}")
        };
        self.update(id, None, Some((EventType::Drained, message)), |_| {});
    }
}

impl State {
    /// A task being moved reports that its new copy on `node` failed: the move ends, and the
    /// task is its old copy again, which kept running on the draining node (the new copy's
    /// restart policy does not apply: it never was the task's run). Returns whether it did.
    pub(super) fn abandon_move(
        &mut self,
        changes: &mut Changes,
        id: TaskId,
        node: &str,
        seen: &pb::Task,
    ) -> bool {
        let Some(mv) = self.drain_moves.get(&id) else {
            return false;
        };
        let wanted = self
            .tasks
            .get(&id)
            .is_some_and(|e| e.task.desired_state() == DesiredState::Running);
        if mv.from == node || !wanted || !self.nodes.by_name.contains_key(&mv.from) {
            return false;
        }
        let Some(mv) = self.drain_moves.remove(&id) else {
            return false;
        };
        let reason = if seen.message.is_empty() {
            "it failed".to_string()
        } else {
            seen.message.clone()
        };
        let message = format!(
            "the new copy on {node} failed ({reason}); the copy on {} keeps running and stays",
            mv.from
        );
        tracing::warn!(task_id = %id, node, from = %mv.from, %reason, "a drain could not move a task");
        let original = mv.original;
        let event = Some((EventType::Drained, message.clone()));
        let restored = self.update(changes, id, Some(original.state()), event, |task| {
            task.node = original.node.clone();
            task.container_id = original.container_id.clone();
            task.ports = original.ports.clone();
            task.started_at = original.started_at;
            task.exit_code = original.exit_code;
            task.finished_at = original.finished_at;
            task.healthy = original.healthy;
            task.message = message.clone();
        });
        if restored {
            if let Some(from) = self.nodes.by_name.get_mut(&mv.from) {
                from.message = format!("draining; task {} cannot move: {message}", id.short());
            }
            self.unmovable.insert(id, mv.from);
        }
        restored
    }
}
