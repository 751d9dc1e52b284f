//! The manager's state: a cloneable handle over tasks, nodes, the pending queue and the store.
//!
//! Every change to a task goes through one function ([`State::update`]), which keeps the
//! indexes (pending queue, node allocation, tasks to stop) in step, bumps the revision, queues
//! the store write and tells watchers. The std `Mutex` is never held across an `.await`: a
//! method changes memory and queues its writes under the lock (so the store sees changes in
//! the order memory did), releases it, then awaits durability where an answer depends on it.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tokio::sync::{broadcast, Notify};
use tonic::transport::Channel;

use super::{
    failures::{next_step, verdict, RestartQueue, Verdict},
    nodes::{NodeEntry, Nodes},
};
use crate::{
    error::{Error, Result},
    proto::{now, pb},
    scheduler::{Decision, Demand, Scheduler},
    store::manager::{Loaded, ManagerStore, Op},
    task::{check_transition, is_finished, state_name, TaskId},
};

use pb::{DesiredState, EventType, TaskState};

/// How many task changes a watcher may fall behind before its stream ends.
const WATCH_BUFFER: usize = 16_384;

/// The longest `request_id` accepted (the proto's promise).
pub const MAX_REQUEST_ID: usize = 128;

/// The first retry delay after a failed StartTask; doubles up to [`MAX_DISPATCH_BACKOFF`].
const FIRST_DISPATCH_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between StartTask retries of one task: long enough not to hammer a sick
/// worker, short enough that a recovered one gets its task soon.
const MAX_DISPATCH_BACKOFF: Duration = Duration::from_secs(30);

/// How many times a StartTask that got no answer is sent again to the same node before the
/// task goes back to PENDING to be placed anew. The worker may have accepted the first call
/// (an answer can be late on a loaded machine), and sending it again is harmless: the worker
/// answers ALREADY_EXISTS for a task it holds.
const MAX_RESENDS: u32 = 3;

/// How long a connection to a worker may serve one call at most (streams of logs excepted:
/// the timeout covers their start only). Each call sets its own, shorter deadline.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(120);

/// A task in memory, with what the dispatcher needs besides the task itself.
#[derive(Debug)]
struct Entry {
    /// Submission order: the store key, the listing order and the pending order.
    seq: u64,
    task: pb::Task,
    /// No placement before this (backoff after a failed StartTask).
    not_before: Option<Instant>,
    /// Failed StartTask calls in a row.
    dispatch_failures: u32,
    /// When it was last sent to its node; a full sync older than this may not know it yet.
    dispatched_at: Option<Instant>,
    /// Whether a StartTask call for it is under way.
    in_flight: bool,
    /// The capacity generation at which it last fitted nowhere: no need to try again until
    /// nodes or capacity change.
    unfit_at: Option<u64>,
    /// Its position in the restart backoff (memory only: a manager restart starts it over).
    backoff_step: u32,
    /// When its armed restart timer is due, if one is.
    restart_at: Option<tokio::time::Instant>,
}

/// A StartTask call to make.
#[derive(Debug, Clone)]
pub(crate) struct Dispatch {
    pub id: TaskId,
    pub node: String,
    pub address: String,
    pub spec: pb::TaskSpec,
    pub attempt: u32,
}

/// Why a StartTask for one task did not succeed.
#[derive(Debug, Clone)]
pub(crate) enum SendFailure {
    /// The worker does not hold the task: it answered and refused it, or it was never sent.
    Refused(String),
    /// No answer (a deadline, a broken connection): the worker may hold the task anyway.
    NoAnswer(String),
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendFailure::Refused(message) | SendFailure::NoAnswer(message) => f.write_str(message),
        }
    }
}

/// A StopTask call to make.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct StopJob {
    pub id: TaskId,
    pub node: String,
    /// True for a copy that belongs elsewhere (or to nobody), false for the user's stop.
    pub stale: bool,
}

/// Filters of ListTasks and WatchTasks.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskFilter {
    pub ids: HashSet<String>,
    pub state: Option<TaskState>,
    pub node: Option<String>,
}

impl TaskFilter {
    pub fn matches(&self, task: &pb::Task) -> bool {
        (self.ids.is_empty() || self.ids.contains(&task.id))
            && self.state.is_none_or(|s| task.state == s as i32)
            && self.node.as_ref().is_none_or(|n| &task.node == n)
    }
}

struct State {
    tasks: HashMap<TaskId, Entry>,
    /// seq -> id, oldest first.
    order: BTreeMap<u64, TaskId>,
    next_seq: u64,
    next_event: u64,
    revision: u64,
    requests: HashMap<String, TaskId>,
    /// Pending tasks by seq: the dispatcher's queue.
    pending: BTreeSet<u64>,
    nodes: Nodes,
    /// Bumped whenever a placement could newly succeed (a node answers again, capacity is
    /// freed, labels change), so a pass retries unfit tasks only then: its cost grows with
    /// what changed, not with the length of the queue.
    capacity_gen: u64,
    /// The capacity generation of the last dispatcher pass: while it is current, a pass only
    /// looks at `to_try`.
    passed_gen: Option<u64>,
    /// Pending tasks not tried since they became pending (new, sent back, or backing off).
    to_try: BTreeSet<u64>,
    /// Stop calls owed to workers.
    stops: BTreeSet<StopJob>,
    /// Stop calls under way.
    stops_in_flight: HashSet<StopJob>,
    channels: HashMap<String, Channel>,
    /// Restart timers.
    restarts: RestartQueue,
    /// Tasks being moved off a draining node, with that node: its copy runs on until the new
    /// one is RUNNING.
    drain_moves: HashMap<TaskId, String>,
    /// SCHEDULED tasks whose StartTask got no answer, to be sent to the same node again once
    /// their backoff (`not_before`) ends.
    resend: HashSet<TaskId>,
    /// Worker addresses with a poll loop.
    polled: HashSet<String>,
}

struct Shared {
    state: Mutex<State>,
    store: ManagerStore,
    scheduler: Box<dyn Scheduler>,
    changes: broadcast::Sender<Arc<pb::Task>>,
    /// Wakes the dispatcher: a task is pending, or nodes or capacity changed.
    dispatch: Notify,
    /// Wakes the stopper: a stop is owed.
    stopper: Notify,
    /// Stats older than this do not count for scheduling.
    stale_after: Duration,
    /// Wakes the restarter: a timer was armed.
    restart: Notify,
    /// Wakes the drainer: a node started draining, or a move may have progressed.
    drain: Notify,
    /// When the manager started: a node not heard from since counts as silent since then.
    /// (tokio's clock, so the liveness tests can pause it.)
    started: tokio::time::Instant,
}

/// The manager's state handle; clones share it.
#[derive(Clone)]
pub(crate) struct Core {
    shared: Arc<Shared>,
}

/// Collects the writes and wake-ups of one locked section.
#[derive(Default)]
struct Changes {
    ops: Vec<Op>,
    wake_dispatcher: bool,
    wake_stopper: bool,
    wake_restarter: bool,
}

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
    fn adopt(&mut self, shared: &Shared, changes: &mut Changes, node: &str, id: TaskId) {
        tracing::info!(task_id = %id, node, "keeping the copy a worker reports of a PENDING task");
        let message = format!("{node} holds the task after all; kept there");
        self.update(shared, changes, id, None, |task| {
            task.state = TaskState::Scheduled as i32;
            task.node = node.to_string();
            task.message = message;
        });
        if let Some(entry) = self.tasks.get_mut(&id) {
            entry.not_before = None;
            entry.dispatch_failures = 0;
            entry.unfit_at = None;
        }
    }

    /// The resends whose backoff ended, as calls to make (marked in flight); `next_due` learns
    /// when the next one is due. A task that moved on meanwhile leaves the list; one whose node
    /// does not answer waits (if the node is lost, the task is placed anew from there).
    fn resends_due(
        &mut self,
        now: Instant,
        jobs: &mut Vec<Dispatch>,
        next_due: &mut Option<Instant>,
    ) {
        let ids: Vec<TaskId> = self.resend.iter().copied().collect();
        for id in ids {
            let Some(entry) = self.tasks.get_mut(&id) else {
                self.resend.remove(&id);
                continue;
            };
            if entry.task.state() != TaskState::Scheduled
                || entry.task.desired_state() == DesiredState::Stopped
                || entry.in_flight
            {
                self.resend.remove(&id);
                continue;
            }
            if let Some(due) = entry.not_before.filter(|due| *due > now) {
                *next_due = Some(next_due.map_or(due, |n| n.min(due)));
                continue;
            }
            let Some(address) = self
                .nodes
                .by_name
                .get(&entry.task.node)
                .filter(|n| n.alive && !n.address.is_empty())
                .map(|n| n.address.clone())
            else {
                continue;
            };
            self.resend.remove(&id);
            entry.in_flight = true;
            entry.dispatched_at = Some(now);
            jobs.push(Dispatch {
                id,
                node: entry.task.node.clone(),
                address,
                spec: entry.task.spec.clone().unwrap_or_default(),
                attempt: entry.task.restart_count,
            });
        }
    }

    /// The one way a task changes: applies `f`, keeps every index in step, queues the write
    /// and the events, and tells watchers. `event` is recorded in addition to the automatic
    /// STATE_CHANGED event of a state move.
    fn update(
        &mut self,
        shared: &Shared,
        changes: &mut Changes,
        id: TaskId,
        event: Option<(EventType, String)>,
        f: impl FnOnce(&mut pb::Task),
    ) {
        let Some(entry) = self.tasks.get_mut(&id) else {
            return;
        };
        let before_state = entry.task.state();
        let before_node = entry.task.node.clone();
        let before_holds = holds(&entry.task);
        f(&mut entry.task);
        let after_state = entry.task.state();
        let after_holds = holds(&entry.task);
        if before_holds && (!after_holds || before_node != entry.task.node) {
            if let Some(node) = self.nodes.by_name.get_mut(&before_node) {
                node.release(id, entry.task.spec.as_ref());
            }
            self.capacity_gen += 1;
            changes.wake_dispatcher = true;
        }
        if after_holds && (!before_holds || before_node != entry.task.node) {
            if let Some(node) = self.nodes.by_name.get_mut(&entry.task.node) {
                node.hold(id, entry.task.spec.as_ref());
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
        self.revision += 1;
        entry.task.revision = self.revision;
        let mut events = Vec::new();
        if let Some((kind, message)) = event {
            events.push((kind, message));
        }
        if after_state != before_state {
            let message = if after_state == TaskState::Scheduled || entry.task.message.is_empty() {
                format!(
                    "{} -> {}{}",
                    state_name(before_state),
                    state_name(after_state),
                    if entry.task.node.is_empty() {
                        String::new()
                    } else {
                        format!(" on {}", entry.task.node)
                    }
                )
            } else {
                format!(
                    "{} -> {}: {}",
                    state_name(before_state),
                    state_name(after_state),
                    entry.task.message
                )
            };
            events.push((EventType::StateChanged, message));
        }
        changes.ops.push(Op::task(entry.seq, &entry.task));
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
            changes.ops.push(Op::event(id, &event));
        }
        let _ = shared.changes.send(Arc::new(entry.task.clone()));
    }
}

impl State {
    /// A worker reports that a task's run ended (COMPLETED or FAILED): records it, then applies
    /// the restart policy.
    ///
    /// A FAILED run moves to FAILED and, if the policy restarts it, a timer is armed (a
    /// RESTARTING event gives the delay); when it is due, FAILED -> SCHEDULED. COMPLETED is
    /// terminal in the state machine, so a run that exits 0 under `always` is not recorded as
    /// COMPLETED: the exit becomes a RESTARTING event and the task moves RUNNING -> PENDING
    /// with the backoff as its placement delay (both legal moves), placed again like any
    /// pending task with the next attempt number.
    fn run_ended(&mut self, shared: &Shared, changes: &mut Changes, id: TaskId, seen: pb::Task) {
        let Some(entry) = self.tasks.get_mut(&id) else {
            return;
        };
        let outcome = seen.state();
        let spec = entry.task.spec.clone().unwrap_or_default();
        let wanted = entry.task.desired_state() == DesiredState::Running;
        let ran_for = seen.started_at.zip(seen.finished_at).and_then(|(a, b)| {
            let a = std::time::SystemTime::try_from(a).ok()?;
            let b = std::time::SystemTime::try_from(b).ok()?;
            b.duration_since(a).ok()
        });
        let step = if ran_for.is_some_and(|d| d >= super::failures::BACKOFF_RESET_AFTER) {
            0
        } else {
            entry.backoff_step
        };
        let decision = if wanted {
            verdict(&spec, outcome, entry.task.restart_count, step)
        } else {
            Verdict::Finished
        };
        let health = seen.message.starts_with("health check failed");
        let reason = if seen.message.is_empty() {
            format!("exited with code {}", seen.exit_code.unwrap_or_default())
        } else {
            seen.message.clone()
        };
        if let (Verdict::Restart { delay }, TaskState::Completed) = (&decision, outcome) {
            let delay = *delay;
            entry.backoff_step = next_step(step, ran_for);
            entry.not_before = Some(Instant::now() + delay);
            let number = entry.task.restart_count + 1;
            let message = format!(
                "{reason}; restart {number} in {} (policy always)",
                super::failures::human(delay)
            );
            self.update(
                shared,
                changes,
                id,
                Some((EventType::Restarting, message)),
                |task| {
                    task.state = TaskState::Pending as i32;
                    task.node.clear();
                    task.restart_count = number;
                    task.exit_code = seen.exit_code;
                    task.finished_at = seen.finished_at;
                    task.message = format!("waiting for restart {number}");
                },
            );
            return;
        }
        let used_up = match decision {
            Verdict::UsedUp { max } => {
                format!(" (restart policy used up: {max} of {max} restarts made)")
            }
            _ => String::new(),
        };
        self.update(shared, changes, id, None, |task| {
            task.state = seen.state;
            task.container_id = seen.container_id;
            task.ports = seen.ports;
            task.exit_code = seen.exit_code;
            task.started_at = seen.started_at;
            task.finished_at = seen.finished_at;
            task.message = format!("{}{used_up}", seen.message);
            task.healthy = seen.healthy;
        });
        if health {
            self.update(
                shared,
                changes,
                id,
                Some((EventType::HealthCheckFailed, reason.clone())),
                |_| {},
            );
        }
        if let Verdict::Restart { delay } = decision {
            let entry = self.tasks.get_mut(&id).expect("just updated");
            entry.backoff_step = next_step(step, ran_for);
            let at = tokio::time::Instant::now() + delay;
            entry.restart_at = Some(at);
            self.restarts.arm(at, id);
            changes.wake_restarter = true;
            let number = entry.task.restart_count + 1;
            let message = format!(
                "{reason}; restart {number} in {}",
                super::failures::human(delay)
            );
            self.update(
                shared,
                changes,
                id,
                Some((EventType::Restarting, message)),
                |_| {},
            );
        }
    }
}

/// The wait before the next StartTask of a task that failed `failures` times in a row.
fn dispatch_backoff(failures: u32) -> Duration {
    FIRST_DISPATCH_BACKOFF
        .saturating_mul(1 << (failures.clamp(1, 16) - 1))
        .min(MAX_DISPATCH_BACKOFF)
}

/// A task whose only copy is gone (its worker no longer knows it, or its node was lost): a task
/// the user stopped is done; any other goes back to PENDING to be placed again.
fn copy_gone(task: &mut pb::Task, stopped: bool, stopped_message: &str, pending_message: String) {
    if stopped {
        task.state = TaskState::Completed as i32;
        task.message = stopped_message.into();
        task.finished_at = Some(now());
    } else {
        task.state = TaskState::Pending as i32;
        task.node.clear();
        task.message = pending_message;
    }
}

/// Whether a task counts against its node's capacity.
fn holds(task: &pb::Task) -> bool {
    !task.node.is_empty() && !is_finished(task.state())
}

impl Core {
    /// Builds the state from what the store holds, and makes sure every static worker has a
    /// node.
    pub fn new(
        store: ManagerStore,
        loaded: Loaded,
        scheduler: Box<dyn Scheduler>,
        workers: &[String],
        stale_after: Duration,
    ) -> Core {
        let mut nodes = Nodes::default();
        for record in loaded.nodes {
            nodes
                .by_name
                .insert(record.name.clone(), NodeEntry::from_record(record));
        }
        for address in workers {
            nodes.key_for_address(address);
        }
        let mut state = State {
            tasks: HashMap::with_capacity(loaded.tasks.len()),
            order: BTreeMap::new(),
            next_seq: loaded.tasks.last().map(|(s, _)| s + 1).unwrap_or(1),
            next_event: loaded.next_event,
            revision: 0,
            requests: HashMap::new(),
            pending: BTreeSet::new(),
            nodes,
            capacity_gen: 0,
            passed_gen: None,
            to_try: BTreeSet::new(),
            stops: BTreeSet::new(),
            stops_in_flight: HashSet::new(),
            channels: HashMap::new(),
            restarts: RestartQueue::default(),
            drain_moves: HashMap::new(),
            resend: HashSet::new(),
            polled: HashSet::new(),
        };
        for (seq, task) in loaded.tasks {
            let Ok(id) = TaskId::parse("task_id", &task.id) else {
                tracing::warn!(seq, "a stored task has no valid id; skipped");
                continue;
            };
            state.revision = state.revision.max(task.revision);
            if !task.request_id.is_empty() {
                state.requests.insert(task.request_id.clone(), id);
            }
            if task.state() == TaskState::Pending {
                state.pending.insert(seq);
            }
            if holds(&task) {
                let node = state
                    .nodes
                    .by_name
                    .entry(task.node.clone())
                    .or_insert_with(|| NodeEntry::new(&task.node, ""));
                node.hold(id, task.spec.as_ref());
                if task.desired_state() == DesiredState::Stopped {
                    state.stops.insert(StopJob {
                        id,
                        node: task.node.clone(),
                        stale: false,
                    });
                }
            }
            state.order.insert(seq, id);
            // A restart that was waiting when the manager stopped: due again after the first
            // delay (the backoff position is not stored, so it starts over).
            let restart_at = (task.state() == TaskState::Failed
                && task.desired_state() == DesiredState::Running
                && matches!(
                    verdict(
                        task.spec.as_ref().unwrap_or(&pb::TaskSpec::default()),
                        TaskState::Failed,
                        task.restart_count,
                        0
                    ),
                    Verdict::Restart { .. }
                ))
            .then(|| tokio::time::Instant::now() + super::failures::FIRST_RESTART_DELAY);
            if let Some(at) = restart_at {
                state.restarts.arm(at, id);
            }
            state.tasks.insert(
                id,
                Entry {
                    seq,
                    task,
                    not_before: None,
                    dispatch_failures: 0,
                    dispatched_at: None,
                    in_flight: false,
                    unfit_at: None,
                    backoff_step: 0,
                    restart_at,
                },
            );
        }
        let (changes, _) = broadcast::channel(WATCH_BUFFER);
        Core {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                store,
                scheduler,
                changes,
                dispatch: Notify::new(),
                stopper: Notify::new(),
                stale_after,
                restart: Notify::new(),
                drain: Notify::new(),
                started: tokio::time::Instant::now(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; the state is still the best we have.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues the section's writes (under the caller's lock, so in order) and wakes loops.
    fn finish(&self, changes: Changes) -> crate::store::manager::Durable {
        if changes.wake_restarter {
            self.shared.restart.notify_one();
        }
        self.shared.drain.notify_one();
        if changes.wake_dispatcher {
            self.shared.dispatch.notify_one();
        }
        if changes.wake_stopper {
            self.shared.stopper.notify_one();
        }
        self.shared.store.write(changes.ops)
    }

    fn finish_later(&self, changes: Changes) {
        if changes.wake_restarter {
            self.shared.restart.notify_one();
        }
        self.shared.drain.notify_one();
        if changes.wake_dispatcher {
            self.shared.dispatch.notify_one();
        }
        if changes.wake_stopper {
            self.shared.stopper.notify_one();
        }
        self.shared.store.write_later(changes.ops);
    }

    /// The dispatcher's wake-up.
    pub fn dispatch_notify(&self) -> &Notify {
        &self.shared.dispatch
    }

    /// The stopper's wake-up.
    pub fn stopper_notify(&self) -> &Notify {
        &self.shared.stopper
    }

    /// The scheduling strategy's name.
    pub fn strategy(&self) -> &'static str {
        self.shared.scheduler.name()
    }

    /// A (cached) channel to a worker.
    pub fn channel(&self, address: &str) -> Result<Channel> {
        let mut state = self.lock();
        if let Some(channel) = state.channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = crate::grpc::channel(address, CHANNEL_TIMEOUT)?;
        state.channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }

    // --- the API ------------------------------------------------------------------------

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
        let (answers, durable) = {
            let mut state = self.lock();
            let mut changes = Changes::default();
            let mut answers = Vec::with_capacity(requests.len());
            for (spec, request_id) in requests {
                if let Some(existing) = state
                    .requests
                    .get(&request_id)
                    .filter(|_| !request_id.is_empty())
                {
                    // The commit below also waits for everything queued before it, so a
                    // first submission that is not yet durable is by the time this answers.
                    answers.push((state.tasks[existing].task.clone(), false));
                    continue;
                }
                let id = TaskId::new();
                let seq = state.next_seq;
                state.next_seq += 1;
                let task = pb::Task {
                    id: id.to_string(),
                    spec: Some(spec),
                    state: TaskState::Pending as i32,
                    desired_state: DesiredState::Running as i32,
                    created_at: Some(now()),
                    message: "waiting to be placed".into(),
                    request_id: request_id.clone(),
                    ..Default::default()
                };
                if !request_id.is_empty() {
                    state.requests.insert(request_id, id);
                }
                state.order.insert(seq, id);
                state.to_try.insert(seq);
                state.tasks.insert(
                    id,
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
                    },
                );
                state.update(
                    &self.shared,
                    &mut changes,
                    id,
                    Some((EventType::Submitted, "accepted".into())),
                    |_| {},
                );
                answers.push((state.tasks[&id].task.clone(), true));
            }
            (answers, self.finish(changes))
        };
        durable.wait().await?;
        Ok(answers)
    }

    /// Records the wish that a task stop; the stopper calls its worker. A finished task is
    /// answered as it is. A PENDING task is never placed: it becomes FAILED ("stopped before
    /// it was placed"), the one legal move out of PENDING that is not a placement; its
    /// desired state STOPPED keeps any restart policy from starting it.
    pub async fn stop(&self, id: TaskId) -> Result<pb::Task> {
        let (task, durable) = {
            let mut state = self.lock();
            let entry = state
                .tasks
                .get(&id)
                .ok_or_else(|| Error::task_not_found(id))?;
            if is_finished(entry.task.state())
                || entry.task.desired_state() == DesiredState::Stopped
            {
                (entry.task.clone(), self.shared.store.write(Vec::new()))
            } else {
                let pending = entry.task.state() == TaskState::Pending;
                let mut changes = Changes::default();
                state.update(
                    &self.shared,
                    &mut changes,
                    id,
                    Some((EventType::StopRequested, "stop requested".into())),
                    |task| {
                        task.desired_state = DesiredState::Stopped as i32;
                        if pending {
                            task.state = TaskState::Failed as i32;
                            task.message = "stopped before it was placed".into();
                            task.finished_at = Some(now());
                        }
                    },
                );
                (state.tasks[&id].task.clone(), self.finish(changes))
            }
        };
        durable.wait().await?;
        Ok(task)
    }

    /// One task.
    pub fn task(&self, id: TaskId) -> Result<pb::Task> {
        self.lock()
            .tasks
            .get(&id)
            .map(|e| e.task.clone())
            .ok_or_else(|| Error::task_not_found(id))
    }

    /// A task's events, oldest first.
    pub fn task_events(&self, id: TaskId, after: u64, limit: usize) -> Result<Vec<pb::TaskEvent>> {
        self.shared.store.task_events(id, after, limit)
    }

    /// Events of all tasks, oldest first.
    pub fn events(&self, after: u64, limit: usize) -> Result<Vec<pb::TaskEvent>> {
        self.shared.store.events(after, limit)
    }

    /// Tasks matching `filter` with submission sequence above `after`, oldest first, at most
    /// `limit`; and the sequence to continue from when there may be more.
    pub fn list(
        &self,
        filter: &TaskFilter,
        after: u64,
        limit: usize,
    ) -> (Vec<pb::Task>, Option<u64>) {
        let state = self.lock();
        let mut out = Vec::new();
        let mut last = None;
        for (seq, id) in state.order.range(after.saturating_add(1)..) {
            let task = &state.tasks[id].task;
            if filter.matches(task) {
                if out.len() == limit {
                    return (out, last);
                }
                out.push(task.clone());
                last = Some(*seq);
            }
        }
        (out, None)
    }

    /// Subscribes to changes, then takes the snapshot, so nothing falls between the two.
    pub fn watch(
        &self,
        filter: &TaskFilter,
    ) -> (Vec<pb::Task>, broadcast::Receiver<Arc<pb::Task>>) {
        let state = self.lock();
        let rx = self.shared.changes.subscribe();
        let tasks = state
            .order
            .values()
            .map(|id| &state.tasks[id].task)
            .filter(|t| filter.matches(t))
            .cloned()
            .collect();
        (tasks, rx)
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

    /// Tasks by state, and the length of the pending queue (for the metrics).
    pub fn task_counts(&self) -> (BTreeMap<TaskState, i64>, i64) {
        let state = self.lock();
        let mut counts = BTreeMap::new();
        for entry in state.tasks.values() {
            *counts.entry(entry.task.state()).or_default() += 1;
        }
        (counts, state.pending.len() as i64)
    }

    /// What the scheduler would decide for a task now, without moving any strategy state.
    pub fn explain(&self, id: TaskId) -> Result<(pb::Task, Decision)> {
        let state = self.lock();
        let task = state
            .tasks
            .get(&id)
            .ok_or_else(|| Error::task_not_found(id))?
            .task
            .clone();
        let mut views = state.nodes.views(self.shared.stale_after);
        let demand = Demand::of(task.spec.as_ref().unwrap_or(&pb::TaskSpec::default()));
        // A placed task is explained as if it were being placed now: its own share of its
        // node does not count against it, or a full node would "not fit" the task it runs.
        if holds(&task) {
            if let Some(view) = views.iter_mut().find(|v| v.name == task.node) {
                view.allocated = view.allocated - demand.resources;
                for port in &demand.host_ports {
                    view.used_ports.remove(port);
                }
                view.task_count = view.task_count.saturating_sub(1);
            }
        }
        let decision = self.shared.scheduler.place(&demand, &views, false);
        Ok((task, decision))
    }

    /// The address of the node a task is (or was last) placed on.
    pub fn node_address_of(&self, id: TaskId) -> Result<(pb::Task, Option<String>)> {
        let state = self.lock();
        let task = state
            .tasks
            .get(&id)
            .ok_or_else(|| Error::task_not_found(id))?
            .task
            .clone();
        let address = state
            .nodes
            .by_name
            .get(&task.node)
            .map(|n| n.address.clone())
            .filter(|a| !a.is_empty());
        Ok((task, address))
    }

    // --- the dispatcher -----------------------------------------------------------------

    /// Places every pending task that fits, oldest first, and marks it SCHEDULED. Returns the
    /// calls to make (once the returned writes are durable) and when a backed-off task is due.
    pub fn place_pending(
        &self,
    ) -> (
        Vec<Dispatch>,
        crate::store::manager::Durable,
        Option<Instant>,
    ) {
        let mut state = self.lock();
        let mut placed = Changes::default();
        let mut messages = Changes::default();
        let mut jobs = Vec::new();
        let mut next_due: Option<Instant> = None;
        if state.pending.is_empty() && state.resend.is_empty() {
            return (jobs, crate::store::manager::Durable::done(), None);
        }
        let now_instant = Instant::now();
        state.resends_due(now_instant, &mut jobs, &mut next_due);
        let mut views = state.nodes.views(self.shared.stale_after);
        // Everything pending when capacity changed since the last pass; otherwise only what
        // became pending since (so a burst of submissions costs each task one try).
        let seqs: Vec<u64> = if state.passed_gen != Some(state.capacity_gen) {
            state.pending.iter().copied().collect()
        } else {
            state.to_try.iter().copied().collect()
        };
        state.to_try.clear();
        state.passed_gen = Some(state.capacity_gen);
        let scheduling = crate::metrics::metrics()
            .manager_scheduling_seconds
            .with_label_values(&[self.strategy()]);
        for seq in seqs {
            if !state.pending.contains(&seq) {
                continue;
            }
            let id = state.order[&seq];
            let entry = &state.tasks[&id];
            if let Some(due) = entry.not_before.filter(|d| *d > now_instant) {
                next_due = Some(next_due.map_or(due, |n| n.min(due)));
                state.to_try.insert(seq);
                continue;
            }
            if entry.unfit_at == Some(state.capacity_gen) {
                continue;
            }
            let spec = entry.task.spec.clone().unwrap_or_default();
            let demand = Demand::of(&spec);
            let started = Instant::now();
            let decision = self.shared.scheduler.place_fast(&demand, &views, true);
            scheduling.observe(started.elapsed().as_secs_f64());
            match decision.node {
                Some(node) => {
                    if let Some(view) = views.iter_mut().find(|v| v.name == node) {
                        view.allocated = view.allocated + demand.resources;
                        view.used_ports.extend(demand.host_ports.iter().copied());
                        view.task_count += 1;
                    }
                    let address = state.nodes.by_name[&node].address.clone();
                    let summary = decision.summary;
                    state.update(&self.shared, &mut placed, id, None, |task| {
                        task.state = TaskState::Scheduled as i32;
                        task.node = node.clone();
                        task.message = summary;
                    });
                    let entry = state.tasks.get_mut(&id).expect("just updated");
                    entry.dispatched_at = Some(now_instant);
                    entry.in_flight = true;
                    entry.unfit_at = None;
                    jobs.push(Dispatch {
                        id,
                        node,
                        address,
                        spec,
                        attempt: entry.task.restart_count,
                    });
                }
                None => {
                    let capacity_gen = state.capacity_gen;
                    let entry = state.tasks.get_mut(&id).expect("listed as pending");
                    entry.unfit_at = Some(capacity_gen);
                    if entry.task.message != decision.summary {
                        let summary = decision.summary;
                        state.update(&self.shared, &mut messages, id, None, |task| {
                            task.message = summary;
                        });
                    }
                }
            }
        }
        messages.wake_dispatcher = false;
        placed.wake_dispatcher = false;
        self.finish_later(messages);
        let durable = if jobs.is_empty() {
            crate::store::manager::Durable::done()
        } else {
            self.finish(placed)
        };
        (jobs, durable, next_due)
    }

    /// A StartTask call succeeded (or the worker had the task already).
    pub fn dispatch_ok(&self, id: TaskId) {
        if let Some(entry) = self.lock().tasks.get_mut(&id) {
            entry.in_flight = false;
            entry.dispatch_failures = 0;
            entry.not_before = None;
        }
    }

    /// A StartTask call failed, unless it moved on meanwhile (stopped, or the worker reported
    /// it after all). A call that got no answer is made again to the same node after a backoff,
    /// up to [`MAX_RESENDS`] times: the worker may hold the task already. A refusal, or no
    /// answer after that, puts the task back to PENDING with a backoff, to be placed anew.
    pub fn dispatch_failed(&self, job: &Dispatch, failure: &SendFailure) {
        let mut state = self.lock();
        let Some(entry) = state.tasks.get_mut(&job.id) else {
            return;
        };
        entry.in_flight = false;
        if entry.task.state() != TaskState::Scheduled
            || entry.task.node != job.node
            || entry.task.restart_count != job.attempt
        {
            return;
        }
        entry.dispatch_failures += 1;
        let backoff = dispatch_backoff(entry.dispatch_failures);
        entry.not_before = Some(Instant::now() + backoff);
        let stopped = entry.task.desired_state() == DesiredState::Stopped;
        let resend = matches!(failure, SendFailure::NoAnswer(_))
            && !stopped
            && entry.dispatch_failures <= MAX_RESENDS;
        let message = if resend {
            state.resend.insert(job.id);
            format!(
                "sending to {} got no answer ({failure}); sending again in {backoff:?}",
                job.node
            )
        } else {
            format!("sending to {} failed: {failure}", job.node)
        };
        let mut changes = Changes::default();
        state.update(
            &self.shared,
            &mut changes,
            job.id,
            Some((EventType::DispatchFailed, message.clone())),
            |task| {
                task.message = message;
                if resend {
                    return; // still SCHEDULED on its node
                }
                task.node.clear();
                if stopped {
                    task.state = TaskState::Failed as i32;
                    task.message = "stopped before it was started".into();
                } else {
                    task.state = TaskState::Pending as i32;
                }
            },
        );
        changes.wake_dispatcher |= resend;
        self.finish_later(changes);
    }

    // --- the reconciler -----------------------------------------------------------------

    /// The key of the node at a static address (created, DOWN, if new).
    pub fn node_for_address(&self, address: &str) -> String {
        self.lock().nodes.key_for_address(address)
    }

    /// The worker at `address` answered GetStats: it is alive, known by its reported name.
    /// Returns the node's key.
    pub fn worker_answered(&self, address: &str, stats: pb::GetStatsResponse) -> String {
        let mut state = self.lock();
        let mut changes = Changes::default();
        let mut key = state.nodes.key_for_address(address);
        if !stats.node.is_empty() && stats.node != key {
            if let Some(removed) = state.nodes.rename(&key, &stats.node) {
                changes.ops.push(Op::DeleteNode { name: removed });
            }
            key = stats.node.clone();
        }
        let node = state.nodes.by_name.get_mut(&key).expect("just ensured");
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
            || before.labels != after.labels;
        if !was_alive {
            tracing::info!(node = %key, address, "worker answers");
        }
        if record_changed || !changes.ops.is_empty() {
            changes.ops.push(Op::node(&node.record()));
        }
        if placeable_changed {
            state.capacity_gen += 1;
            changes.wake_dispatcher = true;
        }
        self.finish_later(changes);
        key
    }

    /// The worker at `address` did not answer: its node is DOWN.
    pub fn worker_failed(&self, address: &str, error: &str) {
        let mut state = self.lock();
        let key = state.nodes.key_for_address(address);
        let node = state.nodes.by_name.get_mut(&key).expect("just ensured");
        if node.alive {
            tracing::warn!(node = %key, address, error, "worker stopped answering");
        }
        node.alive = false;
        node.message = format!("not answering: {error}");
    }

    /// Copies what a worker reports into the manager's tasks. With `complete`, tasks placed on
    /// the node that the worker does not know (and that were not sent after `asked_at`) are
    /// placed again. Copies that belong elsewhere are queued to be stopped.
    pub fn observed(&self, node: &str, reported: Vec<pb::Task>, complete: bool, asked_at: Instant) {
        let mut state = self.lock();
        let mut changes = Changes::default();
        let mut known = HashSet::new();
        for seen in reported {
            let Ok(id) = TaskId::parse("task_id", &seen.id) else {
                continue;
            };
            known.insert(id);
            if !state.tasks.contains_key(&id) {
                tracing::debug!(task_id = %id, node, "worker reports a task this manager does not know");
                continue;
            }
            if state.adoptable(node, id, &seen) {
                state.adopt(&self.shared, &mut changes, node, id);
            }
            let entry = &state.tasks[&id];
            let seen_state = seen.state();
            let task = &entry.task;
            let elsewhere = task.node != node;
            let unwanted = is_finished(task.state())
                && task.desired_state() == DesiredState::Stopped
                && !is_finished(seen_state);
            let drain_hold = state.drain_moves.get(&id).is_some_and(|from| from == node);
            if elsewhere || unwanted {
                if !is_finished(seen_state) && !drain_hold {
                    let job = StopJob {
                        id,
                        node: node.to_string(),
                        stale: true,
                    };
                    if state.stops.insert(job) {
                        tracing::info!(task_id = %id, node, "stopping a copy that belongs elsewhere");
                        changes.wake_stopper = true;
                    }
                }
                continue;
            }
            if seen.restart_count < task.restart_count {
                continue; // a report of an earlier run
            }
            if let Err(e) = check_transition(task.state(), seen_state) {
                tracing::debug!(task_id = %id, node, error = %e, "observed move not applied");
                continue;
            }
            if seen_state != task.state() && is_finished(seen_state) {
                state.run_ended(&self.shared, &mut changes, id, seen);
                continue;
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
                continue;
            }
            if seen_state == TaskState::Running
                && task.state() != TaskState::Running
                && task.started_at.is_none()
            {
                super::metrics::first_running(task);
            }
            state.update(&self.shared, &mut changes, id, None, |task| {
                task.state = seen.state;
                task.container_id = seen.container_id;
                task.ports = seen.ports;
                task.exit_code = seen.exit_code;
                task.started_at = seen.started_at;
                task.finished_at = seen.finished_at;
                task.message = seen.message;
                task.healthy = seen.healthy;
            });
        }
        if complete {
            let missing: Vec<TaskId> = state
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
                let entry = &state.tasks[&id];
                let sent_since = entry.dispatched_at.is_some_and(|at| at >= asked_at);
                if entry.in_flight || sent_since {
                    continue;
                }
                let stopped = entry.task.desired_state() == DesiredState::Stopped;
                let message = format!("{node} does not know the task");
                state.update(
                    &self.shared,
                    &mut changes,
                    id,
                    Some((EventType::NodeLost, format!("{message}; placing it again"))),
                    |task| copy_gone(task, stopped, "stopped", message),
                );
            }
        }
        self.finish_later(changes);
    }

    // --- the stopper --------------------------------------------------------------------

    /// Stop calls owed and not under way, with the address of their node.
    pub fn stop_jobs(&self) -> Vec<(StopJob, String, Duration)> {
        let mut state = self.lock();
        let jobs: Vec<StopJob> = state
            .stops
            .iter()
            .filter(|j| !state.stops_in_flight.contains(*j))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for job in jobs {
            let Some(address) = state
                .nodes
                .by_name
                .get(&job.node)
                .filter(|n| n.alive && !n.address.is_empty())
                .map(|n| n.address.clone())
            else {
                continue; // retried once the node answers
            };
            let grace = state
                .tasks
                .get(&job.id)
                .and_then(|e| e.task.spec.as_ref())
                .and_then(|s| s.stop_grace_period)
                .and_then(|d| Duration::try_from(d).ok())
                .unwrap_or(crate::task::DEFAULT_STOP_GRACE);
            state.stops_in_flight.insert(job.clone());
            out.push((job, address, grace));
        }
        out
    }

    /// A stop call ended. On success the worker's answer is applied at once; a worker that does
    /// not know the task has nothing to stop.
    pub fn stop_done(&self, job: &StopJob, outcome: std::result::Result<Option<pb::Task>, String>) {
        let reported = {
            let mut state = self.lock();
            state.stops_in_flight.remove(job);
            match &outcome {
                Err(_) => return,
                Ok(_) => {
                    state.stops.remove(job);
                }
            }
            if job.stale {
                return;
            }
            let Some(entry) = state.tasks.get(&job.id) else {
                return;
            };
            match outcome {
                Ok(Some(task)) if task.id == entry.task.id => task,
                _ => {
                    // Not known there: it never started, so it is stopped.
                    if entry.task.node != job.node || is_finished(entry.task.state()) {
                        return;
                    }
                    pb::Task {
                        id: entry.task.id.clone(),
                        state: TaskState::Completed as i32,
                        restart_count: entry.task.restart_count,
                        finished_at: Some(now()),
                        message: "stopped".into(),
                        ..entry.task.clone()
                    }
                }
            }
        };
        if is_finished(reported.state()) {
            self.observed(&job.node, vec![reported], false, Instant::now());
        }
    }
}

// --- failures (issue 6) ---------------------------------------------------------------------

/// Whether a node may take a task now (what the restart on the same node needs).
fn eligible(view: &crate::scheduler::NodeView) -> bool {
    view.alive && !view.draining && view.runtime_ready
}

impl Core {
    /// The restarter's wake-up.
    pub fn restart_notify(&self) -> &Notify {
        &self.shared.restart
    }

    /// The drainer's wake-up.
    pub fn drain_notify(&self) -> &Notify {
        &self.shared.drain
    }

    /// Claims the poll loop of `address`; false if one runs already.
    pub fn claim_poll(&self, address: &str) -> bool {
        self.lock().polled.insert(address.to_string())
    }

    /// Whether the poll loop of `address` should go on: a registered worker that registered
    /// again elsewhere (a new port) leaves its old address unpolled.
    pub fn still_polled(&self, address: &str) -> bool {
        self.lock().polled.contains(address)
    }

    /// Starts the restarts whose timers are due at `now`: FAILED -> SCHEDULED on the same node
    /// if it is still eligible, else on the node the scheduler picks. Returns the StartTask
    /// calls (to make once `durable`), and when the next timer is due.
    pub fn restarts_due(
        &self,
        now: tokio::time::Instant,
    ) -> (
        Vec<Dispatch>,
        crate::store::manager::Durable,
        Option<tokio::time::Instant>,
    ) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let due = state.restarts.take_due(now);
        let mut changes = Changes::default();
        let mut jobs = Vec::new();
        if !due.is_empty() {
            let views = state.nodes.views(self.shared.stale_after);
            for (at, id) in due {
                let Some(entry) = state.tasks.get_mut(&id) else {
                    continue;
                };
                if entry.restart_at != Some(at) {
                    continue; // superseded
                }
                entry.restart_at = None;
                if entry.task.state() != TaskState::Failed
                    || entry.task.desired_state() != DesiredState::Running
                {
                    continue;
                }
                let spec = entry.task.spec.clone().unwrap_or_default();
                let same = views
                    .iter()
                    .find(|v| v.name == entry.task.node && eligible(v))
                    .map(|v| v.name.clone());
                let node = same.or_else(|| {
                    self.shared
                        .scheduler
                        .place_fast(&Demand::of(&spec), &views, true)
                        .node
                });
                let Some(node) = node else {
                    // FAILED -> PENDING is not a move: wait on the timer instead.
                    let at = now + super::failures::FIRST_RESTART_DELAY;
                    entry.restart_at = Some(at);
                    state.restarts.arm(at, id);
                    continue;
                };
                let address = state.nodes.by_name[&node].address.clone();
                let number = entry.task.restart_count + 1;
                state.update(&self.shared, &mut changes, id, None, |task| {
                    task.state = TaskState::Scheduled as i32;
                    task.node = node.clone();
                    task.restart_count = number;
                    task.exit_code = None;
                    task.finished_at = None;
                    task.container_id.clear();
                    task.message = format!("restart {number}");
                });
                let entry = state.tasks.get_mut(&id).expect("just updated");
                entry.dispatched_at = Some(Instant::now());
                entry.in_flight = true;
                jobs.push(Dispatch {
                    id,
                    node,
                    address,
                    spec,
                    attempt: number,
                });
            }
        }
        let next = state.restarts.next();
        let durable = if jobs.is_empty() {
            self.finish_later(changes);
            crate::store::manager::Durable::done()
        } else {
            self.finish(changes)
        };
        (jobs, durable, next)
    }

    /// Marks nodes not heard from for `grace` DOWN, and sends their unfinished tasks back to
    /// PENDING with a NODE_LOST event, to be placed elsewhere. The cost is the number of
    /// nodes plus the tasks actually moved.
    pub fn check_liveness(&self, grace: Duration) {
        let mut state = self.lock();
        let mut changes = Changes::default();
        let started = self.shared.started;
        let lost: Vec<(String, Duration)> = state
            .nodes
            .by_name
            .values()
            .filter_map(|n| {
                let silent = n.silent_for().unwrap_or_else(|| started.elapsed());
                (silent >= grace && (n.alive || !n.tasks.is_empty()))
                    .then(|| (n.name.clone(), silent))
            })
            .collect();
        for (name, silent) in lost {
            let node = state.nodes.by_name.get_mut(&name).expect("listed");
            let why = format!("no heartbeat for {}", super::failures::human(grace));
            if node.alive {
                tracing::warn!(node = %name, silent_ms = silent.as_millis() as u64, "node lost");
                node.alive = false;
                node.message = why.clone();
            }
            let mut ids: Vec<TaskId> = node.tasks.iter().copied().collect();
            ids.sort_by_key(|id| state.tasks.get(id).map(|e| e.seq));
            for id in ids {
                let stopped = state.tasks[&id].task.desired_state() == DesiredState::Stopped;
                let message = format!("node {name} lost: {why}");
                state.drain_moves.remove(&id);
                state.update(
                    &self.shared,
                    &mut changes,
                    id,
                    Some((EventType::NodeLost, message.clone())),
                    |task| copy_gone(task, stopped, "stopped (its node was lost)", message),
                );
            }
        }
        self.finish_later(changes);
    }

    /// A worker registers (or registers again): its node is created or updated and READY.
    /// Returns whether its address needs a poll loop.
    pub fn register(
        &self,
        name: &str,
        address: &str,
        labels: BTreeMap<String, String>,
        instance_id: String,
        stats: Option<pb::NodeStats>,
    ) -> bool {
        let mut state = self.lock();
        let mut changes = Changes::default();
        if !state.nodes.by_name.contains_key(name) {
            if let Some(key) = state.nodes.by_address(address).map(|n| n.name.clone()) {
                if let Some(removed) = state.nodes.rename(&key, name) {
                    changes.ops.push(Op::DeleteNode { name: removed });
                }
            }
        }
        let node = state
            .nodes
            .by_name
            .entry(name.to_string())
            .or_insert_with(|| NodeEntry::new(name, address));
        let old_address = std::mem::replace(&mut node.address, address.to_string());
        node.answered(stats, labels, instance_id);
        changes.ops.push(Op::node(&node.record()));
        tracing::info!(node = name, address, "worker registered");
        if old_address != address {
            state.polled.remove(&old_address);
            state.channels.remove(&old_address);
        }
        state.capacity_gen += 1;
        changes.wake_dispatcher = true;
        changes.wake_stopper = true;
        self.finish_later(changes);
        !state.polled.contains(address)
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
        let mut state = self.lock();
        let node = state.nodes.by_name.get_mut(name)?;
        if node.instance_id != instance_id || node.address.is_empty() {
            return None;
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

    /// DRAINING: no new tasks on `name`; the drainer moves its tasks one at a time.
    pub fn drain(&self, name: &str, on: bool) -> Result<pb::Node> {
        let mut state = self.lock();
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
        let mut changes = Changes::default();
        changes.ops.push(Op::node(&node.record()));
        tracing::info!(node = name, draining = on, "drain changed");
        if !on {
            state.drain_moves.retain(|_, from| from != name);
        }
        state.capacity_gen += 1;
        changes.wake_dispatcher = true;
        self.finish_later(changes);
        Ok(answer)
    }

    /// One step of every drain: a move whose new copy is RUNNING gets its old copy stopped;
    /// a node with no move under way (and no stop owed) starts the next one.
    pub fn drain_step(&self) {
        let mut state = self.lock();
        let draining: Vec<String> = state
            .nodes
            .by_name
            .values()
            .filter(|n| n.draining && n.alive)
            .map(|n| n.name.clone())
            .collect();
        if draining.is_empty() && state.drain_moves.is_empty() {
            return;
        }
        let mut changes = Changes::default();
        for name in draining {
            let moving = state
                .drain_moves
                .iter()
                .find(|(_, from)| **from == name)
                .map(|(id, _)| *id);
            if let Some(id) = moving {
                let Some(task) = state.tasks.get(&id).map(|e| e.task.clone()) else {
                    state.drain_moves.remove(&id);
                    continue;
                };
                let arrived = task.state() == TaskState::Running && task.node != name;
                if arrived || is_finished(task.state()) {
                    state.drain_moves.remove(&id);
                    if state.stops.insert(StopJob {
                        id,
                        node: name.clone(),
                        stale: true,
                    }) {
                        changes.wake_stopper = true;
                    }
                    let message = if arrived {
                        format!("running on {}; stopping the copy on {name}", task.node)
                    } else {
                        format!("finished while moving; stopping the copy on {name}")
                    };
                    state.update(
                        &self.shared,
                        &mut changes,
                        id,
                        Some((EventType::Drained, message)),
                        |_| {},
                    );
                }
                continue;
            }
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
            state.drain_moves.insert(id, name.clone());
            let message = format!("node {name} is draining; placing the task elsewhere");
            state.update(
                &self.shared,
                &mut changes,
                id,
                Some((EventType::Drained, message.clone())),
                |task| {
                    task.state = TaskState::Pending as i32;
                    task.node.clear();
                    task.message = message;
                },
            );
        }
        let wake_dispatcher = changes.wake_dispatcher;
        let wake_stopper = changes.wake_stopper;
        if wake_dispatcher {
            self.shared.dispatch.notify_one();
        }
        if wake_stopper {
            self.shared.stopper.notify_one();
        }
        self.shared.store.write_later(changes.ops);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(dir: &std::path::Path) -> Core {
        let (store, loaded) = ManagerStore::open(dir).unwrap();
        let scheduler = crate::scheduler::by_name("spread").unwrap();
        Core::new(store, loaded, scheduler, &[], Duration::from_secs(5))
    }

    fn state_of(core: &Core, name: &str) -> pb::NodeState {
        let node = core.nodes().into_iter().find(|n| n.name == name).unwrap();
        node.state()
    }

    /// Registration, heartbeats, and the grace period measured on tokio's paused clock.
    #[tokio::test(start_paused = true)]
    async fn a_node_silent_for_the_grace_period_is_down_until_it_heartbeats() {
        let dir = tempfile::tempdir().unwrap();
        let core = core(dir.path());
        let grace = Duration::from_secs(3);
        assert!(core.register("w1", "127.0.0.1:1", BTreeMap::new(), "i1".into(), None));
        assert_eq!(state_of(&core, "w1"), pb::NodeState::Ready);
        assert_eq!(
            core.heartbeat("w2", "i1", None),
            None,
            "unknown: register again"
        );
        assert_eq!(
            core.heartbeat("w1", "other", None),
            None,
            "a new instance registers"
        );
        tokio::time::advance(Duration::from_millis(2900)).await;
        core.check_liveness(grace);
        assert_eq!(state_of(&core, "w1"), pb::NodeState::Ready);
        assert_eq!(core.heartbeat("w1", "i1", None), Some(vec![]));
        tokio::time::advance(Duration::from_millis(2900)).await;
        core.check_liveness(grace);
        assert_eq!(
            state_of(&core, "w1"),
            pb::NodeState::Ready,
            "the heartbeat counted"
        );
        tokio::time::advance(Duration::from_millis(200)).await;
        core.check_liveness(grace);
        assert_eq!(state_of(&core, "w1"), pb::NodeState::Down);
        assert_eq!(core.heartbeat("w1", "i1", None), Some(vec![]));
        assert_eq!(state_of(&core, "w1"), pb::NodeState::Ready);
        core.drain("w1", true).unwrap();
        assert_eq!(state_of(&core, "w1"), pb::NodeState::Draining);
        assert!(core.drain("nope", true).is_err());
    }

    /// A worker that takes tasks: registered with fresh stats and room.
    fn ready_node(core: &Core, name: &str) {
        let stats = pb::NodeStats {
            cpu_count: 2,
            memory_total_bytes: 1 << 34,
            memory_available_bytes: 1 << 34,
            runtime_ready: true,
            capacity: Some(pb::Resources {
                cpu_millis: 2_000,
                memory_bytes: 1 << 34,
                disk_bytes: 0,
            }),
            ..Default::default()
        };
        let address = format!("127.0.0.1:{}", 1 + name.len());
        assert!(core.register(name, &address, BTreeMap::new(), name.into(), Some(stats)));
    }

    async fn submitted(core: &Core) -> TaskId {
        let spec = pb::TaskSpec {
            name: "t".into(),
            command: vec!["sleep".into(), "600".into()],
            ..Default::default()
        };
        let (task, _) = core.submit(spec, String::new()).await.unwrap();
        TaskId::parse("id", &task.id).unwrap()
    }

    /// The jobs of the next dispatcher pass, with every backoff cut short (their lengths are
    /// `dispatch_backoff`'s test).
    async fn next_jobs(core: &Core) -> Vec<Dispatch> {
        for entry in core.lock().tasks.values_mut() {
            entry.not_before = None;
        }
        let (jobs, durable, _) = core.place_pending();
        durable.wait().await.unwrap();
        jobs
    }

    fn task(core: &Core, id: TaskId) -> pb::Task {
        core.lock().tasks[&id].task.clone()
    }

    /// A StartTask without an answer is made again to the same node, with the same attempt
    /// (the worker may hold the task); after MAX_RESENDS more the task is placed anew. A
    /// refusal places it anew at once.
    #[tokio::test]
    async fn a_start_without_an_answer_is_sent_again_to_the_same_node() {
        let dir = tempfile::tempdir().unwrap();
        let core = core(dir.path());
        ready_node(&core, "w1");
        let id = submitted(&core).await;
        let mut job = next_jobs(&core).await.pop().unwrap();
        assert_eq!((job.node.as_str(), job.attempt), ("w1", 0));
        for resend in 1..=MAX_RESENDS {
            core.dispatch_failed(&job, &SendFailure::NoAnswer("no answer within 10s".into()));
            let now = task(&core, id);
            assert_eq!(
                (now.state(), now.node.as_str()),
                (TaskState::Scheduled, "w1")
            );
            assert!(now.message.contains("sending again"), "{}", now.message);
            let again = next_jobs(&core).await;
            assert_eq!(again.len(), 1, "resend {resend}");
            assert_eq!(
                (again[0].id, again[0].node.as_str(), again[0].attempt),
                (id, "w1", 0)
            );
            job = again[0].clone();
        }
        core.dispatch_failed(&job, &SendFailure::NoAnswer("no answer within 10s".into()));
        let now = task(&core, id);
        assert_eq!((now.state(), now.node.as_str()), (TaskState::Pending, ""));

        // Placed anew (only w1 is there), then refused: back to PENDING at once.
        let job = next_jobs(&core).await.pop().unwrap();
        core.dispatch_failed(&job, &SendFailure::Refused("INVALID_ARGUMENT: bad".into()));
        assert_eq!(task(&core, id).state(), TaskState::Pending);
        assert!(core.lock().resend.is_empty());
    }

    /// A worker reporting its copy of a PENDING task (its StartTask answer came too late) at
    /// the task's attempt keeps it there rather than stopping it; a copy of another attempt
    /// is stopped.
    #[tokio::test]
    async fn a_pending_task_keeps_the_copy_a_worker_reports() {
        let dir = tempfile::tempdir().unwrap();
        let core = core(dir.path());
        ready_node(&core, "w1");
        ready_node(&core, "w22");
        let copy = |id: TaskId, node: &str, attempt| pb::Task {
            id: id.to_string(),
            state: TaskState::Running as i32,
            node: node.into(),
            container_id: "pid:42".into(),
            restart_count: attempt,
            started_at: Some(crate::proto::now()),
            ..Default::default()
        };
        let mut kept = Vec::new();
        for attempt in [0, 1] {
            let id = submitted(&core).await;
            let job = next_jobs(&core).await.pop().unwrap();
            core.dispatch_failed(&job, &SendFailure::Refused("UNAVAILABLE: busy".into()));
            assert_eq!(task(&core, id).state(), TaskState::Pending);
            core.observed(
                &job.node,
                vec![copy(id, &job.node, attempt)],
                false,
                Instant::now(),
            );
            kept.push((id, job.node));
        }
        let (id, node) = &kept[0];
        let now = task(&core, *id);
        assert_eq!((now.state(), &now.node), (TaskState::Running, node));
        assert_eq!(now.container_id, "pid:42");
        let (other, other_node) = &kept[1];
        assert_eq!(task(&core, *other).state(), TaskState::Pending);
        let stops: Vec<StopJob> = core.lock().stops.iter().cloned().collect();
        assert_eq!(
            stops,
            vec![StopJob {
                id: *other,
                node: other_node.clone(),
                stale: true
            }],
            "only the copy of another attempt is stopped"
        );
    }

    #[test]
    fn dispatch_backoff_doubles_up_to_its_cap() {
        assert_eq!(dispatch_backoff(1), Duration::from_millis(500));
        assert_eq!(dispatch_backoff(2), Duration::from_secs(1));
        assert_eq!(dispatch_backoff(4), Duration::from_secs(4));
        assert_eq!(dispatch_backoff(7), MAX_DISPATCH_BACKOFF);
        assert_eq!(dispatch_backoff(1000), MAX_DISPATCH_BACKOFF);
    }

    #[test]
    fn filters_match_ids_state_and_node() {
        let task = pb::Task {
            id: "a".into(),
            state: TaskState::Running as i32,
            node: "w1".into(),
            ..Default::default()
        };
        assert!(TaskFilter::default().matches(&task));
        let by_state = TaskFilter {
            state: Some(TaskState::Pending),
            ..Default::default()
        };
        assert!(!by_state.matches(&task));
        let by_node = TaskFilter {
            node: Some("w2".into()),
            ..Default::default()
        };
        assert!(!by_node.matches(&task));
        let by_id = TaskFilter {
            ids: ["a".to_string()].into(),
            ..Default::default()
        };
        assert!(by_id.matches(&task));
    }
}
