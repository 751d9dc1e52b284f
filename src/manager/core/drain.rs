//! Drains: a DRAINING node takes no new tasks, and its tasks move one at a time. A task being
//! moved is placed anew while its copy on the draining node runs on; once the new copy is
//! RUNNING the old one is stopped.

use super::Core;
use crate::{
    error::{Error, Result},
    proto::pb::{self, DesiredState, EventType, TaskState},
    store::manager::Op,
    task::{is_finished, TaskId},
};

use super::StopJob;

impl Core {
    /// DRAINING (`on`) or not: no new tasks on `name`; the drainer moves its tasks one at a
    /// time.
    pub fn drain(&self, name: &str, on: bool) -> Result<pb::Node> {
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
        let answer = node.to_pb();
        tx.changes.ops.push(Op::node(&node.record()));
        tracing::info!(node = name, draining = on, "drain changed");
        if !on {
            state.drain_moves.retain(|_, from| from != name);
        }
        state.capacity_gen += 1;
        tx.changes.wake_dispatcher = true;
        tx.commit_later();
        Ok(answer)
    }

    /// One step of every drain: a move whose new copy is RUNNING gets its old copy stopped;
    /// a node with no move under way (and no stop owed) starts the next one.
    pub fn drain_step(&self) {
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
        for name in draining {
            let moving = tx
                .state
                .drain_moves
                .iter()
                .find(|(_, from)| **from == name)
                .map(|(id, _)| *id);
            if let Some(id) = moving {
                tx.move_progressed(id, &name);
                continue;
            }
            let state = &*tx.state;
            if state.stops.iter().any(|j| j.stale && j.node == name) {
                continue; // the previous copy is still being stopped
            }
            let next = state.nodes.by_name[&name]
                .tasks
                .iter()
                .filter_map(|id| state.tasks.get(id).map(|e| (e.seq, *id, &e.task)))
                .filter(|(_, _, t)| t.desired_state() == DesiredState::Running)
                .min_by_key(|(seq, _, _)| *seq)
                .map(|(_, id, _)| id);
            let Some(id) = next else {
                continue;
            };
            tx.state.drain_moves.insert(id, name.clone());
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
    /// The move of `id` off draining node `from`: once its new copy runs (or the task ended),
    /// the move is over and the old copy is stopped.
    fn move_progressed(&mut self, id: TaskId, from: &str) {
        let Some(task) = self.state.tasks.get(&id).map(|e| e.task.clone()) else {
            self.state.drain_moves.remove(&id);
            return;
        };
        let arrived = task.state() == TaskState::Running && task.node != from;
        if !arrived && !is_finished(task.state()) {
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
            format!("running on {}; stopping the copy on {from}", task.node)
        } else {
            format!("finished while moving; stopping the copy on {from}")
        };
        self.update(id, None, Some((EventType::Drained, message)), |_| {});
    }
}
