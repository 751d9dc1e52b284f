//! The worker's shared state: a cloneable handle over its tasks, its store and its runtime.
//!
//! Handlers record what the manager wants here and wake the executor; the monitor records what
//! the runtime shows. Every change bumps the worker-wide revision, is stored on the task
//! (`Task.revision`) and is written to the store; once the write is durable the task joins the
//! [`Committed`] view, from which `ListTasks` answers "what changed since revision N" in time
//! proportional to the changes. While the store refuses writes nothing changes (see
//! [`Core::update`]); a refused write sends memory back to the view.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use tokio::sync::{mpsc::UnboundedSender, watch};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    committed::{Committed, StoreOwner},
    kept_logs::KeptLogs,
    runtime::Runtime,
    store::WorkerStore,
};
use crate::{
    error::{Error, Result},
    pb::{self, DesiredState, TaskState},
    store::StoreError,
    task::is_finished,
    TaskId,
};

/// A store write's outcome.
type StoreResult<T = ()> = std::result::Result<T, StoreError>;

/// A cloneable handle to the worker's state (mini-redis `Db` style: `Arc` inside, a std
/// `Mutex` never held across `.await`).
pub(crate) struct Core<R> {
    inner: Arc<Inner<R>>,
}

impl<R> Clone for Core<R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

pub(crate) struct Inner<R> {
    name: String,
    instance_id: String,
    runtime: R,
    store: WorkerStore,
    state: Mutex<State>,
    /// What the store holds: what `ListTasks` answers. Lock order: `state` before it.
    committed: Mutex<Committed>,
    /// The executor's queue: ids of tasks whose desired and observed state may differ.
    work: UnboundedSender<TaskId>,
    /// The monitor's queue: ids of tasks whose container should be looked at now.
    look: UnboundedSender<TaskId>,
    /// Where finished tasks' last output is kept.
    kept: KeptLogs,
    /// Cancels the per-task loops (health checks) at shutdown.
    loops: CancellationToken,
    /// Tracks them, so shutdown waits for them.
    tracker: TaskTracker,
    /// The latest durable revision, for `ListTasks` calls that wait for a change.
    changed: watch::Sender<u64>,
    /// When the manager was last heard from (disconnect policies count from it).
    contact: super::disconnect::LastContact,
}

#[derive(Default)]
struct State {
    tasks: HashMap<TaskId, pb::Task>,
    revision: u64,
    /// Unfinished tasks, for stats and sweeps.
    unfinished: BTreeSet<TaskId>,
}

/// How a change of a task is written: before the caller goes on, or in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// Await the commit (answers that depend on the write).
    Wait,
    /// Queue the write (fsync'd like every other) without waiting for it: observations
    /// can be made again after a crash or a refused write.
    Later,
}

impl<R: Runtime> Core<R> {
    /// A core over `tasks` loaded from `store`.
    pub fn new(
        name: String,
        runtime: R,
        store: WorkerStore,
        tasks: Vec<pb::Task>,
        queues: (UnboundedSender<TaskId>, UnboundedSender<TaskId>),
        kept: KeptLogs,
        loops: (CancellationToken, TaskTracker),
    ) -> Self {
        let (work, look) = queues;
        let mut state = State::default();
        for task in tasks {
            let Ok(id) = TaskId::parse("task.id", &task.id) else {
                continue;
            };
            state.revision = state.revision.max(task.revision);
            if !is_finished(task.state()) {
                state.unfinished.insert(id);
            }
            state.tasks.insert(id, task);
        }
        let revision = state.revision;
        let view = Committed::of(&state.tasks);
        let owner_store = store.clone();
        let core = Self {
            inner: Arc::new(Inner {
                name,
                instance_id: uuid::Uuid::new_v4().to_string(),
                runtime,
                store,
                state: Mutex::new(state),
                committed: Mutex::new(view),
                work,
                look,
                kept,
                loops: loops.0,
                tracker: loops.1,
                changed: watch::Sender::new(revision),
                contact: Default::default(),
            }),
        };
        owner_store.set_owner(Box::new(StoreOwner {
            core: Arc::downgrade(&core.inner),
        }));
        core
    }

    /// The handle over `inner`.
    pub(crate) fn from_inner(inner: Arc<Inner<R>>) -> Self {
        Self { inner }
    }

    /// The worker's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// This process's instance id.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// The runtime.
    pub fn runtime(&self) -> &R {
        &self.inner.runtime
    }

    /// Where finished tasks' last output is kept.
    pub fn kept_logs(&self) -> &KeptLogs {
        &self.inner.kept
    }

    /// A copy of one task.
    pub fn get(&self, id: TaskId) -> Option<pb::Task> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .tasks
            .get(&id)
            .cloned()
    }

    /// Copies of every task.
    pub fn all(&self) -> Vec<pb::Task> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .tasks
            .values()
            .cloned()
            .collect()
    }

    /// Ids of the tasks that are not finished.
    pub fn unfinished(&self) -> Vec<TaskId> {
        let state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.unfinished.iter().copied().collect()
    }

    /// The unfinished tasks that want the executor's work (SCHEDULED, or told to stop), with
    /// their revision and state: one lock, and no task copied.
    pub fn wanting_work(&self) -> Vec<(TaskId, u64, TaskState)> {
        let state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state
            .unfinished
            .iter()
            .filter_map(|id| state.tasks.get(id).map(|t| (*id, t)))
            .filter(|(_, t)| {
                t.state() == TaskState::Scheduled || t.desired_state() == DesiredState::Stopped
            })
            .map(|(id, t)| (id, t.revision, t.state()))
            .collect()
    }

    /// How many tasks are not finished.
    pub fn unfinished_count(&self) -> usize {
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .unfinished
            .len()
    }

    /// When the manager was last heard from.
    pub fn contact(&self) -> &super::disconnect::LastContact {
        &self.inner.contact
    }

    /// How many tasks are not finished, if the state's lock is free at this moment: for the
    /// heartbeat, which never waits behind the core.
    pub fn unfinished_count_now(&self) -> Option<usize> {
        match self.inner.state.try_lock() {
            Ok(state) => Some(state.unfinished.len()),
            Err(std::sync::TryLockError::Poisoned(state)) => {
                Some(state.into_inner().unfinished.len())
            }
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Asks the executor to compare desired and observed state of a task.
    pub fn wake(&self, id: TaskId) {
        let _ = self.inner.work.send(id);
    }

    /// Asks the monitor to look at a task's container now.
    pub fn look(&self, id: TaskId) {
        let _ = self.inner.look.send(id);
    }

    /// Starts the health check of a task's current run, if its spec has one.
    pub fn watch_health(&self, id: TaskId, task: &pb::Task) {
        let Some(check) = task.spec.as_ref().and_then(|s| s.health_check.clone()) else {
            return;
        };
        self.inner.tracker.spawn(super::health::run(
            self.clone(),
            id,
            task.container_id.clone(),
            check,
            self.inner.loops.clone(),
        ));
    }

    /// Applies `change` to a task under the lock; when it returns true, the task gets the next
    /// revision and is written to the store. Returns the task as it is afterwards.
    pub async fn update(
        &self,
        id: TaskId,
        durability: Durability,
        change: impl FnOnce(&mut pb::Task) -> Result<bool>,
    ) -> Result<pb::Task> {
        self.writable()?;
        let (task, write) = {
            let mut state = self
                .inner
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut task = state
                .tasks
                .get(&id)
                .cloned()
                .ok_or_else(|| Error::task_not_found(id))?;
            if !change(&mut task)? {
                return Ok(task);
            }
            let write = self.commit(&mut state, id, &mut task);
            (task, write)
        };
        if durability == Durability::Wait {
            write.await?;
        }
        Ok(task)
    }

    /// Bumps the revision, records the task and queues its write. Called with the lock held,
    /// so the store sees writes in the order the memory did.
    fn commit(
        &self,
        state: &mut State,
        id: TaskId,
        task: &mut pb::Task,
    ) -> impl std::future::Future<Output = StoreResult> + Send + 'static {
        state.revision += 1;
        task.revision = state.revision;
        if is_finished(task.state()) {
            state.unfinished.remove(&id);
        } else {
            state.unfinished.insert(id);
        }
        state.tasks.insert(id, task.clone());
        // Every write is fsync'd: a change is shown to the manager only once it is durable.
        self.inner.store.queue(vec![task.clone()], true)
    }

    /// Records a StartTask: a new task, or a higher attempt of a known one. Answers once the
    /// record is durable, then wakes the executor.
    pub async fn start(&self, id: TaskId, spec: pb::TaskSpec, attempt: u32) -> Result<pb::Task> {
        let mut results = self.start_many(vec![(id, spec, attempt)]).await;
        results.remove(0)
    }

    /// Records several StartTasks, each `(id, spec, attempt)`, as [`Core::start`] does, in one
    /// group commit; answers once all accepted ones are durable, one result per request.
    ///
    /// Once a task is recorded it is always handed to the executor, even when the caller is
    /// dropped meanwhile (a cancelled rpc: a worker frozen past the manager's deadline reads
    /// the request and its cancellation together): the wait for the write and the wake run in
    /// a task of their own, which the caller only awaits.
    pub async fn start_many(
        &self,
        starts: Vec<(TaskId, pb::TaskSpec, u32)>,
    ) -> Vec<Result<pb::Task>> {
        // A start that cannot be recorded is refused, so the manager places the task elsewhere
        // instead of this worker starting a container it could not remember.
        if let Err(error) = self.inner.store.writable() {
            return starts
                .iter()
                .map(|_| Err(Error::Store(error.clone())))
                .collect();
        }
        let (results, writes) = {
            let mut state = self
                .inner
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut writes = Vec::new();
            let results: Vec<Result<(TaskId, pb::Task)>> = starts
                .into_iter()
                .map(|(id, spec, attempt)| {
                    let mut task = self.accepted(&state, id, spec, attempt)?;
                    writes.push(self.commit(&mut state, id, &mut task));
                    Ok((id, task))
                })
                .collect();
            (results, writes)
        };
        let ids: Vec<TaskId> = results.iter().flatten().map(|(id, _)| *id).collect();
        let written = self.then_wake(writes, ids).await;
        results
            .into_iter()
            .map(|result| {
                let (id, task) = result?;
                if let Err(message) = &written {
                    return Err(Error::Store(message.clone()));
                }
                tracing::info!(task_id = %id, attempt = task.restart_count, "task accepted");
                Ok(task)
            })
            .collect()
    }

    /// Waits for `writes`, then wakes the executor for `ids`, in a task the caller does not
    /// own: dropping the returned future neither cancels the wait nor loses the wake. A failed
    /// write wakes nobody (the caller answers the error), and the record is gone from memory
    /// too: the store's refusal sent memory back to what it holds.
    fn then_wake(
        &self,
        writes: Vec<impl std::future::Future<Output = StoreResult> + Send + 'static>,
        ids: Vec<TaskId>,
    ) -> impl std::future::Future<Output = StoreResult> + Send + 'static {
        let core = self.clone();
        let handed = tokio::spawn(async move {
            let written = futures::future::join_all(writes)
                .await
                .into_iter()
                .collect::<StoreResult<Vec<()>>>()
                .map(drop);
            if written.is_ok() {
                for id in ids {
                    core.wake(id);
                }
            }
            written
        });
        async move {
            // The task is only lost with the runtime itself, as the process ends.
            handed.await.unwrap_or(Err(StoreError::Stopped))
        }
    }

    /// The record a StartTask makes, or why it is refused.
    fn accepted(
        &self,
        state: &State,
        id: TaskId,
        spec: pb::TaskSpec,
        attempt: u32,
    ) -> Result<pb::Task> {
        let previous = state.tasks.get(&id);
        if let Some(previous) = previous {
            // A copy that still runs (or is starting) and is wanted is the same placement
            // sent twice: ALREADY_EXISTS, which the manager takes as success. A copy that
            // finished or was stopped here is history: the manager placing the task here
            // again (after a lost node, a drain, a move back) starts a new run, even at the
            // same attempt, or the task would wait forever on a copy that is gone.
            let live =
                !is_finished(previous.state()) && previous.desired_state() != DesiredState::Stopped;
            if live && attempt <= previous.restart_count {
                return Err(Error::AlreadyExists {
                    what: "task",
                    id: format!("{id} (attempt {attempt})"),
                });
            }
        }
        Ok(pb::Task {
            id: id.to_string(),
            spec: Some(spec),
            state: TaskState::Scheduled as i32,
            desired_state: DesiredState::Running as i32,
            node: self.inner.name.clone(),
            // A restart keeps the old container's id so the executor removes it first.
            container_id: previous.map(|p| p.container_id.clone()).unwrap_or_default(),
            restart_count: attempt,
            created_at: previous
                .and_then(|p| p.created_at)
                .or_else(|| Some(crate::proto::now())),
            ..Default::default()
        })
    }

    /// Records a StopTask and wakes the executor. Stopping a finished task changes nothing but
    /// its desired state (and lets the executor remove a leftover container).
    pub async fn stop(&self, id: TaskId, reason: &str) -> Result<pb::Task> {
        let reason = if reason.is_empty() {
            "stopped by the manager".to_string()
        } else {
            reason.to_string()
        };
        let task = self
            .update(id, Durability::Wait, |task| {
                if task.desired_state() == DesiredState::Stopped {
                    return Ok(false);
                }
                task.desired_state = DesiredState::Stopped as i32;
                if !is_finished(task.state()) {
                    task.message = format!("stopping: {reason}");
                }
                Ok(true)
            })
            .await?;
        tracing::info!(task_id = %id, reason = %reason, "stop requested");
        self.wake(id);
        Ok(task)
    }
}

mod durable;

#[cfg(test)]
impl Core<super::runtime::exec::ExecRuntime> {
    /// A core over `tasks` with the Exec runtime and its store in `dir`, for unit tests. No
    /// executor or monitor runs: what they would be woken for is dropped.
    pub(crate) fn for_test(dir: &std::path::Path, tasks: Vec<pb::Task>) -> Result<Self> {
        let (store, _) = WorkerStore::open(dir)?;
        let (work, _) = tokio::sync::mpsc::unbounded_channel();
        let (look, _) = tokio::sync::mpsc::unbounded_channel();
        Ok(Self::new(
            "w1".into(),
            super::runtime::exec::ExecRuntime::new(dir.join("exec")),
            store,
            tasks,
            (work, look),
            KeptLogs::new(dir),
            (CancellationToken::new(), TaskTracker::new()),
        ))
    }
}
