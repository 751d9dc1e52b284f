//! Applying what workers report: a poll's ListTasks answer (or a StopTask's) is copied into
//! the manager's tasks. Workers are the source of truth for observed state; a run that ended
//! goes on to the restart policy ([`super::restarts`]), a copy that belongs elsewhere is queued
//! to be stopped, and with a full answer the tasks a worker does not know are placed again.

use std::{collections::HashSet, time::Instant};

use super::{state::State, Changes, Core, StopJob};
use crate::{
    metrics::metrics,
    proto::pb::{self, DesiredState, EventType, TaskState},
    task::{check_transition, is_finished, TaskId},
};

impl State {
    /// Whether a worker's copy of a PENDING task is the task's current run, on a node that
    /// takes tasks: a StartTask whose answer never came (so the task was sent back to be
    /// placed anew) that the worker carried out after all, or a copy on a node that was lost
    /// and is back. Keeping it beats stopping it and starting another.
    fn adoptable(&self, node: &str, id: TaskId, seen: &pb::Task) -> bool {
        let Some(task) = self.tasks.get(&id).map(|e| &e.task) else {
            return false;
        };
        task.state() == TaskState::Pending
            && task.node.is_empty()
            && task.desired_state() == DesiredState::Running
            && seen.restart_count == task.restart_count
            && seen.state() != TaskState::Pending
            && !self.drain_moves.contains_key(&id)
            && self
                .nodes
                .by_name
                .get(node)
                .is_some_and(|n| n.alive && !n.draining)
    }

    /// Places a PENDING task where its copy already is ([`State::adoptable`]): it moves to
    /// SCHEDULED there, and the worker's report is then applied as for any task of the node.
    fn adopt(&mut self, changes: &mut Changes, node: &str, id: TaskId) {
        tracing::info!(task_id = %id, node, "keeping the copy a worker reports of a PENDING task");
        let message = format!("{node} holds the task after all; kept there");
        let to = Some(TaskState::Scheduled);
        self.update(changes, id, to, None, |task| {
            task.node = node.to_string();
            task.message = message;
        });
        if let Some(entry) = self.tasks.get_mut(&id) {
            entry.not_before = None;
            entry.dispatch_failures = 0;
            entry.unfit_at = None;
        }
    }

    /// Applies task `id`, as a worker reports it on `node`.
    fn observe_one(&mut self, changes: &mut Changes, node: &str, id: TaskId, seen: pb::Task) {
        if !self.tasks.contains_key(&id) {
            tracing::debug!(task_id = %id, node, "worker reports a task this manager does not know");
            return;
        }
        if self.adoptable(node, id, &seen) {
            self.adopt(changes, node, id);
        }
        let task = &self.tasks[&id].task;
        let seen_state = seen.state();
        let elsewhere = task.node != node;
        let unwanted = is_finished(task.state())
            && task.desired_state() == DesiredState::Stopped
            && !is_finished(seen_state);
        let drain_hold = self.drain_moves.get(&id).is_some_and(|m| m.from == node);
        if elsewhere || unwanted {
            if !is_finished(seen_state) && !drain_hold {
                let job = StopJob {
                    id,
                    node: node.to_string(),
                    stale: true,
                };
                if self.stops.insert(job) {
                    tracing::info!(task_id = %id, node, "stopping a copy that belongs elsewhere");
                    changes.wake_stopper = true;
                }
            }
            return;
        }
        if seen.restart_count < task.restart_count {
            return; // a report of an earlier run
        }
        if seen_state == TaskState::Failed && self.abandon_move(changes, id, node, &seen) {
            return;
        }
        let task = &self.tasks[&id].task;
        // A report can be older than what the manager decided since (a task placed again, a
        // stop): such a report is not applied. Only a move the report may make goes on to
        // `update`, which refuses (and counts) anything else as a bug.
        if let Err(e) = check_transition(task.state(), seen_state) {
            tracing::debug!(task_id = %id, node, error = %e, "observed move not applied");
            return;
        }
        if seen_state != task.state() && is_finished(seen_state) {
            self.run_ended(changes, id, seen);
            return;
        }
        let differs = task.state != seen.state
            || task.container_id != seen.container_id
            || task.ports != seen.ports
            || task.exit_code != seen.exit_code
            || task.started_at != seen.started_at
            || task.finished_at != seen.finished_at
            || task.message != seen.message
            || task.healthy != seen.healthy;
        if !differs {
            return;
        }
        if seen_state == TaskState::Running
            && task.state() != TaskState::Running
            && task.started_at.is_none()
        {
            first_running(task);
        }
        self.update(changes, id, Some(seen_state), None, |task| {
            task.container_id = seen.container_id;
            task.ports = seen.ports;
            task.exit_code = seen.exit_code;
            task.started_at = seen.started_at;
            task.finished_at = seen.finished_at;
            task.message = seen.message;
            task.healthy = seen.healthy;
        });
    }
}

impl Core {
    /// Copies what a worker reports into the manager's tasks. With `complete`, tasks placed on
    /// the node that the worker does not know (and that were not sent after `asked_at`) are
    /// placed again. Copies that belong elsewhere are queued to be stopped.
    pub fn observed(&self, node: &str, reported: Vec<pb::Task>, complete: bool, asked_at: Instant) {
        // What was seen could not be stored: it is asked for again (a full sync of every
        // worker) once the store recovers.
        if self.writable().is_err() {
            return;
        }
        let mut tx = self.tx();
        let mut known = HashSet::new();
        for seen in reported {
            let Ok(id) = TaskId::parse("task_id", &seen.id) else {
                continue;
            };
            known.insert(id);
            tx.state.observe_one(&mut tx.changes, node, id, seen);
        }
        if complete {
            let missing: Vec<TaskId> = tx
                .state
                .nodes
                .by_name
                .get(node)
                .map(|n| {
                    n.tasks
                        .iter()
                        .filter(|id| !known.contains(id))
                        .copied()
                        .collect()
                })
                .unwrap_or_default();
            for id in missing {
                let entry = &tx.state.tasks[&id];
                let sent_since = entry.dispatched_at.is_some_and(|at| at >= asked_at);
                if entry.in_flight || sent_since {
                    continue;
                }
                let message = format!("{node} does not know the task");
                let event = format!("{message}; placing it again");
                tx.copy_gone(id, EventType::NodeLost, event, "stopped", message);
            }
        }
        tx.commit_later();
    }
}

/// Records the time from submission to the first RUNNING report of `task` (as the manager
/// held it before that report).
fn first_running(task: &pb::Task) {
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
