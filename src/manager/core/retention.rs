//! Retention: finished work is cleaned up. A finished task (COMPLETED, or FAILED and not
//! restarting) is removed with its events once `retain_finished` has passed since it finished,
//! and at most `max_finished` are kept, oldest first; nodes DOWN longer than
//! `forget_nodes_after` are forgotten. A removed task's id answers NOT_FOUND "finished and was
//! cleaned up" for as long as the manager remembers it ([`REMEMBER_GONE`] ids), and its
//! `request_id` keeps answering for [`KEEP_REQUEST_IDS`] after the task was created.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, SystemTime},
};

use super::{state::State, Changes, Core, StopJob};
use crate::{
    error::{Error, Result},
    proto::pb,
    store::manager::Op,
    task::{is_finished, TaskId},
};

/// How many removed task ids the manager remembers, to answer "finished and cleaned up".
pub const REMEMBER_GONE: usize = 100_000;

/// How long a removed task's `request_id` still names it (AIP-155: at least a day).
pub const KEEP_REQUEST_IDS: Duration = Duration::from_secs(24 * 3600);

/// What is kept, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// A finished task is removed this long after it finished.
    pub retain_finished: Duration,
    /// At most this many finished tasks are kept; the oldest go first.
    pub max_finished: usize,
    /// A node DOWN this long (and holding no task) is forgotten.
    pub forget_nodes_after: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            retain_finished: Duration::from_secs(24 * 3600),
            max_finished: 10_000,
            forget_nodes_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// What one collection removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    /// Finished tasks removed (with their events).
    pub tasks: usize,
    /// Nodes forgotten.
    pub nodes: usize,
}

/// Removed tasks the manager still remembers (memory only: a restarted manager answers a plain
/// NOT_FOUND for tasks removed before).
#[derive(Debug, Default)]
pub(super) struct Gone {
    ids: HashSet<TaskId>,
    order: VecDeque<TaskId>,
    /// `request_id` -> the removed task it created, and when that was created.
    requests: HashMap<String, (TaskId, SystemTime)>,
}

impl Gone {
    fn remember(&mut self, id: TaskId, request: Option<(String, SystemTime)>) {
        if self.ids.insert(id) {
            self.order.push_back(id);
        }
        while self.order.len() > REMEMBER_GONE {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        if let Some((request_id, created)) = request {
            if created.elapsed().unwrap_or_default() < KEEP_REQUEST_IDS {
                self.requests.insert(request_id, (id, created));
            }
        }
        self.requests
            .retain(|_, (_, created)| created.elapsed().unwrap_or_default() < KEEP_REQUEST_IDS);
    }

    /// Whether `id` is a task that was removed.
    pub fn contains(&self, id: TaskId) -> bool {
        self.ids.contains(&id)
    }

    /// The removed task a `request_id` created, if it is still remembered.
    pub fn request(&self, request_id: &str) -> Option<TaskId> {
        self.requests.get(request_id).map(|(id, _)| *id)
    }
}

/// A protobuf time as a `SystemTime` (the epoch for none).
fn system_time(time: Option<&prost_types::Timestamp>) -> SystemTime {
    crate::proto::system_time(time).unwrap_or(SystemTime::UNIX_EPOCH)
}

impl State {
    /// The finished tasks to remove now under `policy`, oldest first.
    fn expired(&self, policy: &Retention, now: SystemTime) -> Vec<TaskId> {
        let mut finished: Vec<(SystemTime, u64, TaskId)> = self
            .tasks
            .iter()
            .filter(|(id, e)| {
                is_finished(e.task.state())
                    && e.restart_at.is_none()
                    && !self.drain_moves.contains_key(id)
                    && !self.owes_stop(**id)
            })
            .map(|(id, e)| (system_time(e.task.finished_at.as_ref()), e.seq, *id))
            .collect();
        finished.sort_unstable();
        let over = finished.len().saturating_sub(policy.max_finished);
        finished
            .iter()
            .enumerate()
            .filter(|(i, (at, _, _))| {
                *i < over || now.duration_since(*at).unwrap_or_default() >= policy.retain_finished
            })
            .map(|(_, (_, _, id))| *id)
            .collect()
    }

    /// Whether some node is still owed the stop of a copy of `id`.
    fn owes_stop(&self, id: TaskId) -> bool {
        let first = StopJob {
            id,
            node: String::new(),
            stale: false,
        };
        self.stops.range(first..).next().is_some_and(|j| j.id == id)
    }

    /// Removes a finished task from memory and queues its removal (with its events).
    fn remove_task(&mut self, changes: &mut Changes, id: TaskId) -> Option<pb::Task> {
        let entry = self.tasks.remove(&id)?;
        self.order.remove(&entry.seq);
        self.pending.remove(&entry.seq);
        self.to_try.remove(&entry.seq);
        self.resend.remove(&id);
        self.unmovable.remove(&id);
        if !entry.task.request_id.is_empty() {
            self.requests.remove(&entry.task.request_id);
        }
        if let Some(tasks) = self.by_service.get_mut(&entry.task.service_id) {
            tasks.remove(&id);
            if tasks.is_empty() {
                self.by_service.remove(&entry.task.service_id);
            }
        }
        changes.ops.push(Op::DeleteTask { seq: entry.seq, id });
        Some(pb::Task::clone(&entry.task))
    }

    /// Forgets nodes DOWN longer than `after` that hold no task; their names.
    fn forget_nodes(&mut self, changes: &mut Changes, after: Duration, now: SystemTime) -> usize {
        let forgotten: Vec<String> = self
            .nodes
            .by_name
            .values()
            .filter(|n| !n.alive && n.tasks.is_empty())
            .filter(|n| {
                now.duration_since(system_time(n.last_seen.as_ref()))
                    .unwrap_or_default()
                    >= after
            })
            .map(|n| n.name.clone())
            .collect();
        for name in &forgotten {
            self.nodes.by_name.remove(name);
            changes.ops.push(Op::DeleteNode { name: name.clone() });
        }
        forgotten.len()
    }
}

impl Core {
    /// Removes what `policy` no longer keeps; answers once the removal is durable.
    pub async fn collect(&self, policy: &Retention) -> Result<Collected> {
        self.writable()?;
        let now = SystemTime::now();
        let (collected, durable) = {
            let mut tx = self.tx();
            let state = &mut *tx.state;
            let expired = state.expired(policy, now);
            let mut removed = Vec::with_capacity(expired.len());
            for id in expired {
                if let Some(task) = state.remove_task(&mut tx.changes, id) {
                    removed.push(task);
                }
            }
            let nodes = tx
                .state
                .forget_nodes(&mut tx.changes, policy.forget_nodes_after, now);
            let collected = Collected {
                tasks: removed.len(),
                nodes,
            };
            self.remember_gone(&removed);
            (collected, tx.commit())
        };
        durable.wait().await?;
        Ok(collected)
    }

    /// Removes one finished task now, with its events (`cubectl rm`); answers once the
    /// removal is durable. A task not finished, or finished but still to be restarted,
    /// moved or stopped on its node, is refused: it is not done with yet.
    pub async fn remove(&self, id: TaskId) -> Result<pb::Task> {
        self.writable()?;
        let (task, durable) = {
            let mut tx = self.tx();
            let state = &mut *tx.state;
            let Some(entry) = state.tasks.get(&id) else {
                return Err(self.task_missing(id));
            };
            let task_state = entry.task.state();
            if !is_finished(task_state) || entry.restart_at.is_some() {
                let what = match entry.restart_at {
                    Some(_) => "waiting to restart".to_string(),
                    None => crate::proto::state_name(task_state).to_string(),
                };
                return Err(Error::FailedPrecondition(format!(
                    "task {id} is {what}; only a finished task can be removed (stop it first)"
                )));
            }
            if state.drain_moves.contains_key(&id) || state.owes_stop(id) {
                return Err(Error::FailedPrecondition(format!(
                    "task {id} is still being stopped on its node; try again in a few seconds"
                )));
            }
            let Some(task) = state.remove_task(&mut tx.changes, id) else {
                return Err(self.task_missing(id));
            };
            self.remember_gone(std::slice::from_ref(&task));
            (task, tx.commit())
        };
        durable.wait().await?;
        Ok(task)
    }

    /// Remembers removed tasks at once: a lookup finds a task in the store's view until its
    /// removal is durable, and only then asks here.
    fn remember_gone(&self, removed: &[pb::Task]) {
        let mut gone = self.shared.gone();
        for task in removed {
            let Ok(id) = TaskId::parse("task_id", &task.id) else {
                continue;
            };
            let request = (!task.request_id.is_empty()).then(|| {
                (
                    task.request_id.clone(),
                    system_time(task.created_at.as_ref()),
                )
            });
            gone.remember(id, request);
        }
    }

    /// NOT_FOUND for task `id`: "finished and was cleaned up" when it was removed.
    pub fn task_missing(&self, id: TaskId) -> Error {
        if self.shared.gone().contains(id) {
            Error::Gone { id: id.to_string() }
        } else {
            Error::task_not_found(id)
        }
    }

    /// ALREADY_EXISTS for a retried `request_id` whose task was removed, if it was.
    pub(super) fn request_gone(&self, request_id: &str) -> Option<Error> {
        let id = self.shared.gone().request(request_id)?;
        Some(Error::RequestGone {
            request_id: request_id.to_string(),
            id: id.to_string(),
        })
    }
}
