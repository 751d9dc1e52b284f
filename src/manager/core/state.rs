//! The tasks in memory: each task with what the dispatcher needs besides it, the indexes kept
//! beside them, loading them from the store, and [`State::update`], the one way a task changes.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::Instant,
};

use super::{committed::Committed, Changes, StopJob};
use crate::{
    manager::{
        nodes::{NodeEntry, Nodes},
        policy::{verdict, RestartQueue, Verdict, FIRST_RESTART_DELAY},
    },
    proto::{
        now,
        pb::{self, DesiredState, EventType, TaskState},
    },
    store::manager::{Loaded, Op, MAX_EVENTS_PER_TASK},
    task::{is_finished, move_state, state_name, Component, TaskId},
};

/// A task in memory, with what the dispatcher needs besides the task itself.
#[derive(Debug)]
pub(super) struct Entry {
    /// Submission order: the store key, the listing order and the pending order.
    pub seq: u64,
    /// The task, shared with the durable view (and the write queued for it) until it changes.
    pub task: Arc<pb::Task>,
    /// No placement before this (backoff after a failed StartTask).
    pub not_before: Option<Instant>,
    /// Failed StartTask calls in a row.
    pub dispatch_failures: u32,
    /// When it was last sent to its node; a full sync older than this may not know it yet.
    pub dispatched_at: Option<Instant>,
    /// Whether a StartTask call for it is under way.
    pub in_flight: bool,
    /// The capacity generation at which it last fitted nowhere: no need to try again until
    /// nodes or capacity change.
    pub unfit_at: Option<u64>,
    /// Its position in the restart backoff (memory only: a manager restart starts it over).
    pub backoff_step: u32,
    /// When its armed restart timer is due, if one is.
    pub restart_at: Option<tokio::time::Instant>,
    /// How many events it has in the store (at most [`MAX_EVENTS_PER_TASK`]).
    pub events: u32,
}

impl Entry {
    /// A task as loaded or just submitted: nothing under way.
    pub fn new(seq: u64, task: Arc<pb::Task>) -> Entry {
        Entry {
            seq,
            task,
            not_before: None,
            dispatch_failures: 0,
            dispatched_at: None,
            in_flight: false,
            unfit_at: None,
            backoff_step: 0,
            restart_at: None,
            events: 0,
        }
    }
}

/// A task on its way off a draining node.
#[derive(Debug)]
pub(super) struct DrainMove {
    /// The draining node, where the old copy runs on.
    pub from: String,
    /// The task as it was there, restored if the new copy fails.
    pub original: Arc<pb::Task>,
}

/// Everything the core keeps under its lock.
pub(super) struct State {
    pub tasks: HashMap<TaskId, Entry>,
    /// seq -> id, oldest first.
    pub order: BTreeMap<u64, TaskId>,
    pub next_seq: u64,
    pub next_event: u64,
    pub revision: u64,
    pub requests: HashMap<String, TaskId>,
    /// Pending tasks by seq: the dispatcher's queue.
    pub pending: BTreeSet<u64>,
    pub nodes: Nodes,
    /// Bumped whenever a placement could newly succeed (a node answers again, capacity is
    /// freed, labels change), so a pass retries unfit tasks only then: its cost grows with
    /// what changed, not with the length of the queue.
    pub capacity_gen: u64,
    /// The capacity generation of the last dispatcher pass: while it is current, a pass only
    /// looks at `to_try`.
    pub passed_gen: Option<u64>,
    /// Pending tasks not tried since they became pending (new, sent back, or backing off).
    pub to_try: BTreeSet<u64>,
    /// Stop calls owed to workers.
    pub stops: BTreeSet<StopJob>,
    /// Stop calls under way.
    pub stops_in_flight: HashSet<StopJob>,
    /// Restart timers.
    pub restarts: RestartQueue,
    /// Tasks being moved off a draining node: the old copy runs on until the new one is
    /// RUNNING.
    pub drain_moves: HashMap<TaskId, DrainMove>,
    /// Tasks whose replacement failed, with the draining node their copy stays on: the drain
    /// leaves them where they are until the node is undrained.
    pub unmovable: HashMap<TaskId, String>,
    /// SCHEDULED tasks whose StartTask got no answer, to be sent to the same node again once
    /// their backoff (`not_before`) ends.
    pub resend: HashSet<TaskId>,
    /// Worker addresses with a poll loop.
    pub polled: HashSet<String>,
    /// Worker addresses whose next poll asks for every task, not only what changed.
    pub resync: HashSet<String>,
    /// The services, by name.
    pub services: BTreeMap<String, Arc<pb::Service>>,
    /// The tasks of each service, by service id (finished ones too, until retention removes
    /// them): the reconciler's cost grows with a service's tasks, not with all tasks.
    pub by_service: HashMap<String, BTreeSet<TaskId>>,
}

/// Whether a task counts against its node's capacity.
pub(super) fn holds(task: &pb::Task) -> bool {
    !task.node.is_empty() && !is_finished(task.state())
}

impl State {
    /// The nodes still owed the stop of a stale copy of task `id`.
    pub fn stale_copies(&self, id: TaskId) -> Vec<String> {
        let first = StopJob {
            id,
            node: String::new(),
            stale: false,
        };
        self.stops
            .range(first..)
            .take_while(|j| j.id == id)
            .filter(|j| j.stale)
            .map(|j| j.node.clone())
            .collect()
    }

    /// The state as the store holds it, with a node for every static worker.
    pub fn load(loaded: Loaded, workers: &[String]) -> State {
        let mut nodes = Nodes::default();
        for record in loaded.nodes {
            nodes
                .by_name
                .insert(record.name.clone(), NodeEntry::from_record(record));
        }
        for address in workers {
            nodes.key_for_address(address);
        }
        let mut state = State::empty(nodes, loaded.next_seq, loaded.next_event);
        for service in loaded.services {
            let name = service
                .spec
                .as_ref()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            state.services.insert(name, Arc::new(service));
        }
        for (seq, task) in loaded.tasks {
            state.load_task(seq, Arc::new(task));
        }
        for (id, count) in loaded.event_counts {
            if let Some(entry) = state.tasks.get_mut(&id) {
                entry.events = count;
            }
        }
        state
    }

    fn empty(nodes: Nodes, next_seq: u64, next_event: u64) -> State {
        State {
            tasks: HashMap::new(),
            order: BTreeMap::new(),
            next_seq,
            next_event,
            revision: 0,
            requests: HashMap::new(),
            pending: BTreeSet::new(),
            nodes,
            capacity_gen: 0,
            passed_gen: None,
            to_try: BTreeSet::new(),
            stops: BTreeSet::new(),
            stops_in_flight: HashSet::new(),
            restarts: RestartQueue::default(),
            drain_moves: HashMap::new(),
            unmovable: HashMap::new(),
            resend: HashSet::new(),
            polled: HashSet::new(),
            resync: HashSet::new(),
            services: BTreeMap::new(),
            by_service: HashMap::new(),
        }
    }

    /// Goes back to what the store holds (`view`), as a restart would, but keeping what only
    /// memory knows of the nodes (liveness, stats, labels), the poll loops (each asked for a
    /// full sync) and the counters (never reused). Drain moves, stale stops and backoffs start
    /// over from the stored tasks, as they do after a restart.
    pub fn roll_back(&mut self, view: &Committed) {
        let old = std::mem::replace(self, State::empty(Nodes::default(), 0, 0));
        let mut nodes = old.nodes;
        for (name, node) in nodes.by_name.iter_mut() {
            node.clear_holds();
            if let Some(record) = view.nodes.get(name) {
                node.draining = record.state == pb::NodeState::Draining as i32;
            }
        }
        for (name, record) in &view.nodes {
            if !nodes.by_name.contains_key(name) {
                nodes
                    .by_name
                    .insert(name.clone(), NodeEntry::from_record(record.clone()));
            }
        }
        *self = State::empty(nodes, old.next_seq, old.next_event);
        for (seq, task) in &view.tasks {
            self.load_task(*seq, task.clone());
        }
        self.services = view.services.clone();
        // Event counts stay as counted: an event refused with its task is over-counted,
        // which only trims a little early.
        for (id, entry) in self.tasks.iter_mut() {
            entry.events = old.tasks.get(id).map_or(0, |e| e.events);
        }
        self.revision = self.revision.max(old.revision);
        self.capacity_gen = old.capacity_gen + 1;
        self.resync = old.polled.clone();
        self.polled = old.polled;
    }

    fn load_task(&mut self, seq: u64, task: Arc<pb::Task>) {
        let Ok(id) = TaskId::parse("task_id", &task.id) else {
            tracing::warn!(seq, "a stored task has no valid id; skipped");
            return;
        };
        self.revision = self.revision.max(task.revision);
        if !task.request_id.is_empty() {
            self.requests.insert(task.request_id.clone(), id);
        }
        if !task.service_id.is_empty() {
            self.by_service
                .entry(task.service_id.clone())
                .or_default()
                .insert(id);
        }
        if task.state() == TaskState::Pending {
            self.pending.insert(seq);
        }
        if holds(&task) {
            let node = self
                .nodes
                .by_name
                .entry(task.node.clone())
                .or_insert_with(|| NodeEntry::new(&task.node, ""));
            node.hold(id, task.spec.as_ref(), &task.service_id);
            if task.desired_state() == DesiredState::Stopped {
                self.stops.insert(StopJob {
                    id,
                    node: task.node.clone(),
                    stale: false,
                });
            }
        }
        self.order.insert(seq, id);
        // A restart that was waiting when the manager stopped: due again after the first
        // delay (the backoff position is not stored, so it starts over).
        let waiting = task.state() == TaskState::Failed
            && task.desired_state() == DesiredState::Running
            && matches!(
                verdict(
                    task.spec.as_ref().unwrap_or(&pb::TaskSpec::default()),
                    TaskState::Failed,
                    task.restart_count,
                    0
                ),
                Verdict::Restart { .. }
            );
        let mut entry = Entry::new(seq, task);
        if waiting {
            let at = tokio::time::Instant::now() + FIRST_RESTART_DELAY;
            entry.restart_at = Some(at);
            self.restarts.arm(at, id);
        }
        self.tasks.insert(id, entry);
    }

    /// The one way a task changes. Moves it to `to` (when given) through the state machine;
    /// an illegal move is refused ([`move_state`] logs and counts it) and nothing changes.
    /// Then applies `f` to the other fields (it never sets the state), keeps every index in
    /// step, queues the task and its events as one write, and tells watchers. `event` is
    /// recorded in addition to the automatic STATE_CHANGED event of a state move. Returns
    /// whether the change was made.
    pub fn update(
        &mut self,
        changes: &mut Changes,
        id: TaskId,
        to: Option<TaskState>,
        event: Option<(EventType, String)>,
        f: impl FnOnce(&mut pb::Task),
    ) -> bool {
        let Some(entry) = self.tasks.get_mut(&id) else {
            return false;
        };
        let before_state = entry.task.state();
        let before_node = entry.task.node.clone();
        let before_holds = holds(&entry.task);
        if let Some(to) = to {
            if move_state(Component::Manager, Arc::make_mut(&mut entry.task), to).is_err() {
                return false;
            }
        }
        f(Arc::make_mut(&mut entry.task));
        let after_state = entry.task.state();
        let after_holds = holds(&entry.task);
        if before_holds && (!after_holds || before_node != entry.task.node) {
            if let Some(node) = self.nodes.by_name.get_mut(&before_node) {
                node.release(id, entry.task.spec.as_ref(), &entry.task.service_id);
            }
            self.capacity_gen += 1;
            changes.wake_dispatcher = true;
        }
        if after_holds && (!before_holds || before_node != entry.task.node) {
            if let Some(node) = self.nodes.by_name.get_mut(&entry.task.node) {
                node.hold(id, entry.task.spec.as_ref(), &entry.task.service_id);
            }
        }
        if after_state == TaskState::Pending {
            self.pending.insert(entry.seq);
            if before_state != TaskState::Pending {
                self.to_try.insert(entry.seq);
            }
            changes.wake_dispatcher = true;
        } else {
            self.pending.remove(&entry.seq);
        }
        let job = StopJob {
            id,
            node: entry.task.node.clone(),
            stale: false,
        };
        if entry.task.desired_state() == DesiredState::Stopped
            && !is_finished(after_state)
            && !entry.task.node.is_empty()
        {
            if self.stops.insert(job) {
                changes.wake_stopper = true;
            }
        } else {
            self.stops.remove(&job);
        }
        if !entry.task.service_id.is_empty() {
            changes.wake_services = true;
        }
        self.revision += 1;
        Arc::make_mut(&mut entry.task).revision = self.revision;
        let mut events = Vec::new();
        if let Some((kind, message)) = event {
            events.push((kind, message));
        }
        if after_state != before_state {
            events.push((
                EventType::StateChanged,
                move_message(before_state, &entry.task),
            ));
        }
        changes
            .ops
            .push(Op::task(entry.seq, id, entry.task.clone()));
        for (kind, message) in events {
            let event = pb::TaskEvent {
                seq: self.next_event,
                task_id: entry.task.id.clone(),
                time: Some(now()),
                r#type: kind as i32,
                state: after_state as i32,
                node: entry.task.node.clone(),
                message,
            };
            self.next_event += 1;
            entry.events += 1;
            changes.ops.push(Op::event(id, event));
        }
        if entry.events > MAX_EVENTS_PER_TASK {
            entry.events = MAX_EVENTS_PER_TASK;
            changes.ops.push(Op::TrimEvents {
                id,
                keep: MAX_EVENTS_PER_TASK,
            });
        }
        true
    }
}

/// The STATE_CHANGED event's text: `PENDING -> SCHEDULED on w1`, `RUNNING -> FAILED: why`.
fn move_message(before: TaskState, task: &pb::Task) -> String {
    let after = task.state();
    if after == TaskState::Scheduled || task.message.is_empty() {
        let on = if task.node.is_empty() {
            String::new()
        } else {
            format!(" on {}", task.node)
        };
        format!("{} -> {}{on}", state_name(before), state_name(after))
    } else {
        format!(
            "{} -> {}: {}",
            state_name(before),
            state_name(after),
            task.message
        )
    }
}
