//! What users ask of the core: submit and stop (recorded durably before the answer), and the
//! reads: one task, lists, watches, events, nodes, counts and placement explanations.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

use tokio::sync::broadcast;

use super::{
    state::{holds, Entry},
    Core, Tx,
};
use crate::{
    error::Result,
    limits::MAX_ANSWER_BYTES,
    manager::nodes::NodeEntry,
    proto::{
        now,
        pb::{self, DesiredState, EventType, TaskState},
    },
    scheduler::{Decision, Demand},
    task::{is_finished, TaskId},
};

/// The longest `request_id` accepted (the proto's promise).
pub const MAX_REQUEST_ID: usize = 128;

/// Filters of ListTasks and WatchTasks.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskFilter {
    pub ids: HashSet<String>,
    pub state: Option<TaskState>,
    pub node: Option<String>,
    /// Only tasks of this service id.
    pub service: Option<String>,
    /// Labels the task's spec must all have, with these values.
    pub labels: BTreeMap<String, String>,
    /// Only tasks not yet finished.
    pub unfinished: bool,
    /// Only tasks with this name.
    pub name: Option<String>,
}

impl TaskFilter {
    /// Whether `task` passes every filter that is set.
    pub fn matches(&self, task: &pb::Task) -> bool {
        let spec = task.spec.as_ref();
        (self.ids.is_empty() || self.ids.contains(&task.id))
            && self.state.is_none_or(|s| task.state == s as i32)
            && self.node.as_ref().is_none_or(|n| &task.node == n)
            && self.service.as_ref().is_none_or(|s| &task.service_id == s)
            && !(self.unfinished && is_finished(task.state()))
            && self
                .name
                .as_ref()
                .is_none_or(|n| spec.is_some_and(|s| &s.name == n))
            && self
                .labels
                .iter()
                .all(|(k, v)| spec.and_then(|s| s.labels.get(k)) == Some(v))
    }
}

impl Tx<'_> {
    /// Adds a new task, PENDING (its creation, not a move), wanted RUNNING, with a SUBMITTED
    /// event saying `accepted`. `task` brings its spec, request id and service fields.
    pub(super) fn add_task(&mut self, task: pb::Task, accepted: String) -> TaskId {
        let id = TaskId::new();
        let state = &mut *self.state;
        let seq = state.next_seq;
        state.next_seq += 1;
        let task = pb::Task {
            id: id.to_string(),
            state: TaskState::Pending as i32,
            desired_state: DesiredState::Running as i32,
            created_at: Some(now()),
            message: "waiting to be placed".into(),
            ..task
        };
        if !task.request_id.is_empty() {
            state.requests.insert(task.request_id.clone(), id);
        }
        if !task.service_id.is_empty() {
            state
                .by_service
                .entry(task.service_id.clone())
                .or_default()
                .insert(id);
        }
        state.order.insert(seq, id);
        state.to_try.insert(seq);
        state.tasks.insert(id, Entry::new(seq, Arc::new(task)));
        self.update(id, None, Some((EventType::Submitted, accepted)), |_| {});
        id
    }

    /// Records the wish that a running (or pending) task stop, with `event` saying why: a
    /// PENDING task is never placed and ends COMPLETED at once; its desired state STOPPED
    /// keeps any restart policy from starting it.
    pub(super) fn request_stop(&mut self, id: TaskId, event: (EventType, String)) {
        let Some(entry) = self.state.tasks.get(&id) else {
            return;
        };
        let pending = entry.task.state() == TaskState::Pending;
        let to = pending.then_some(TaskState::Completed);
        self.update(id, to, Some(event), |task| {
            task.desired_state = DesiredState::Stopped as i32;
            if pending {
                task.message = "stopped before it was placed; it never ran".into();
                task.finished_at = Some(now());
            }
        });
    }
}

impl Core {
    /// Accepts a validated spec; answers once it is durable. With a known `request_id`, the
    /// task that id created (and `false`).
    pub async fn submit(&self, spec: pb::TaskSpec, request_id: String) -> Result<(pb::Task, bool)> {
        let mut answers = self.submit_many(vec![(spec, request_id)]).await?;
        Ok(answers.remove(0))
    }

    /// Accepts validated specs, each with its optional `request_id`, in one commit; answers
    /// once all are durable, in order. A known `request_id` (also one repeated within the
    /// call) answers the task it created, and `false`.
    pub async fn submit_many(
        &self,
        requests: Vec<(pb::TaskSpec, String)>,
    ) -> Result<Vec<(pb::Task, bool)>> {
        self.writable()?;
        let (answers, durable) = {
            let mut tx = self.tx();
            // Checked before anything changes: a call is taken whole or not at all.
            for (_, request_id) in &requests {
                if request_id.is_empty() || tx.state.requests.contains_key(request_id) {
                    continue;
                }
                if let Some(gone) = self.request_gone(request_id) {
                    return Err(gone);
                }
            }
            let state = &tx.state;
            crate::manager::idempotency::check_retries(&requests, |request_id| {
                let id = state.requests.get(request_id)?;
                Some(state.tasks[id].task.as_ref())
            })?;
            let mut answers = Vec::with_capacity(requests.len());
            for (spec, request_id) in requests {
                if let Some(existing) = tx
                    .state
                    .requests
                    .get(&request_id)
                    .filter(|_| !request_id.is_empty())
                {
                    // The commit below also waits for everything queued before it, so a
                    // first submission that is not yet durable is by the time this answers.
                    answers.push((pb::Task::clone(&tx.state.tasks[existing].task), false));
                    continue;
                }
                let task = pb::Task {
                    spec: Some(spec),
                    request_id,
                    ..Default::default()
                };
                let id = tx.add_task(task, "accepted".into());
                answers.push((pb::Task::clone(&tx.state.tasks[&id].task), true));
            }
            (answers, tx.commit())
        };
        durable.wait().await?;
        Ok(answers)
    }

    /// Records the wish that a task stop; the stopper calls its worker. A finished task is
    /// answered as it is. A PENDING task is never placed: a stop the user asked for ends it
    /// COMPLETED ("stopped before it was placed; it never ran"); its desired state STOPPED
    /// keeps any restart policy from starting it.
    pub async fn stop(&self, id: TaskId) -> Result<pb::Task> {
        self.writable()?;
        let (task, durable) = {
            let mut tx = self.tx();
            let entry = tx
                .state
                .tasks
                .get(&id)
                .ok_or_else(|| self.task_missing(id))?;
            if is_finished(entry.task.state())
                || entry.task.desired_state() == DesiredState::Stopped
            {
                let task = pb::Task::clone(&entry.task);
                (task, tx.commit())
            } else {
                let event = (EventType::StopRequested, "stop requested".to_string());
                tx.request_stop(id, event);
                let task = pb::Task::clone(&tx.state.tasks[&id].task);
                (task, tx.commit())
            }
        };
        durable.wait().await?;
        Ok(task)
    }

    /// One task, as the store holds it.
    pub fn task(&self, id: TaskId) -> Result<pb::Task> {
        self.shared
            .view()
            .task(id)
            .map(|task| pb::Task::clone(task))
            .ok_or_else(|| self.task_missing(id))
    }

    /// Waits until every write queued so far is in the store. A task's state and its events
    /// are one write, and readers see the state once that write is durable; the barrier makes
    /// sure a read of events comes after it, so events are never behind the state a client
    /// was shown.
    async fn written(&self) -> Result<()> {
        self.shared.store.barrier().wait().await
    }

    /// One task and its events, oldest first: the events include the task's current state.
    pub async fn task_with_events(&self, id: TaskId) -> Result<(pb::Task, Vec<pb::TaskEvent>)> {
        let task = self.task(id)?;
        self.written().await?;
        let events = self.shared.store.task_events(id, 0, usize::MAX)?;
        Ok((task, events))
    }

    /// A task's events, oldest first, as far as every change made so far.
    pub async fn task_events(
        &self,
        id: TaskId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<pb::TaskEvent>> {
        if self.shared.view().task(id).is_none() {
            return Err(self.task_missing(id));
        }
        self.written().await?;
        self.shared.store.task_events(id, after, limit)
    }

    /// A task's (or with `None` every task's) last `limit` events, oldest first, as far as
    /// every change made so far.
    pub async fn last_events(
        &self,
        id: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<pb::TaskEvent>> {
        self.written().await?;
        match id {
            Some(id) if self.shared.view().task(id).is_none() => Err(self.task_missing(id)),
            Some(id) => self.shared.store.last_task_events(id, limit),
            None => self.shared.store.last_events(limit),
        }
    }

    /// Events of all tasks, oldest first, as far as every change made so far.
    pub async fn events(&self, after: u64, limit: usize) -> Result<Vec<pb::TaskEvent>> {
        self.written().await?;
        self.shared.store.events(after, limit)
    }

    /// Tasks matching `filter` with submission sequence above `after`, oldest first, at most
    /// `limit` and about `limits::MAX_ANSWER_BYTES`; and the sequence to continue from when there may be more.
    pub fn list(
        &self,
        filter: &TaskFilter,
        after: u64,
        limit: usize,
    ) -> (Vec<pb::Task>, Option<u64>) {
        let view = self.shared.view();
        let mut out = Vec::new();
        let mut last = None;
        let mut bytes = 0;
        for (seq, task) in view.tasks.range(after.saturating_add(1)..) {
            if filter.matches(task) {
                // A page also ends before it passes the answer size limit.
                let size = prost::Message::encoded_len(task.as_ref());
                if out.len() == limit || (!out.is_empty() && bytes + size > MAX_ANSWER_BYTES) {
                    return (out, last);
                }
                bytes += size;
                out.push(pb::Task::clone(task));
                last = Some(*seq);
            }
        }
        (out, None)
    }

    /// Subscribes to changes, with the revision of the last change published before (under
    /// the durable view's lock, where changes are published): a watch that pages its snapshot
    /// (with [`Core::list`]) knows which pages show later changes.
    pub fn subscribe(&self) -> (broadcast::Receiver<Arc<pb::Task>>, u64) {
        let view = self.shared.view();
        (self.shared.changes.subscribe(), view.revision)
    }

    /// Every node, by name.
    pub fn nodes(&self) -> Vec<pb::Node> {
        self.lock()
            .nodes
            .by_name
            .values()
            .map(NodeEntry::to_pb)
            .collect()
    }

    /// Tasks by state, and the length of the pending queue (for the metrics), as stored.
    pub fn task_counts(&self) -> (BTreeMap<TaskState, i64>, i64) {
        let view = self.shared.view();
        let mut counts = BTreeMap::new();
        for task in view.tasks.values() {
            *counts.entry(task.state()).or_default() += 1;
        }
        let pending = counts.get(&TaskState::Pending).copied().unwrap_or(0);
        (counts, pending)
    }

    /// What the scheduler would decide for a task now, without moving any strategy state.
    pub fn explain(&self, id: TaskId) -> Result<(pb::Task, Decision)> {
        let task = self.task(id)?;
        let state = self.lock();
        let mut views = state.nodes.views(self.shared.stale_after);
        let demand = Demand::of_task(&task);
        // A placed task is explained as if it were being placed now: its own share of its
        // node does not count against it, or a full node would "not fit" the task it runs.
        if holds(&task) {
            if let Some(view) = views.iter_mut().find(|v| v.name == task.node) {
                view.allocated = view.allocated - demand.resources;
                for port in &demand.host_ports {
                    view.used_ports.remove(port);
                }
                view.task_count = view.task_count.saturating_sub(1);
                if let Some(peers) = view.service_tasks.get_mut(&demand.service) {
                    *peers = peers.saturating_sub(1);
                }
            }
        }
        let decision = self.shared.scheduler.place(&demand, &views, false);
        Ok((task, decision))
    }

    /// The address of the node a task is (or was last) placed on.
    pub fn node_address_of(&self, id: TaskId) -> Result<(pb::Task, Option<String>)> {
        let task = self.task(id)?;
        let state = self.lock();
        let address = state
            .nodes
            .by_name
            .get(&task.node)
            .map(|n| n.address.clone())
            .filter(|a| !a.is_empty());
        Ok((task, address))
    }
}
