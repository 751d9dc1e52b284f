//! The manager's state: a cloneable handle over tasks, nodes, the pending queue and the store.
//!
//! Every change is made in a [`Tx`]: the state under its lock, and the store writes and loop
//! wake-ups the change collects. A task changes only through [`Tx::update`], which moves its
//! state through the state machine ([`crate::task::move_state`]), keeps every index (pending
//! queue, node allocation, stops owed) in step, queues the task and its events as one write,
//! and tells watchers. The std `Mutex` is never held across an `.await`: a method changes
//! memory and queues its writes under the lock (so the store sees changes in the order memory
//! did), releases it, then awaits durability where an answer depends on it.
//!
//! Memory follows the disk: readers and watchers see the [`committed`] view, which changes
//! only once a write is durable; when the store refuses a write (a full disk), the working
//! state goes back to that view, and while the store is read-only nothing that would write is
//! tried (see [`Core::writable`]).
//!
//! One file per job:
//! - [`state`]: the tasks in memory, loading them, and the one update function;
//! - [`committed`]: what the store holds, as readers see it, and going back to it;
//! - [`api`]: what users ask: submit, stop, get, list, watch, explain;
//! - [`resolve`]: task references (an id, an id prefix, a name) to ids;
//! - [`placement`]: placing pending tasks, the outcomes of StartTask, resends and backoff;
//! - [`observe`]: applying what workers report;
//! - [`restarts`]: a run that ended, by the restart policy, and restart timers that are due;
//! - [`stops`]: StopTask calls owed to workers and their outcomes;
//! - [`liveness`]: nodes that went silent;
//! - [`membership`]: workers that register, heartbeat and answer polls;
//! - [`contact`]: the last heartbeat of each worker, under a lock of its own;
//! - [`drain`]: moving tasks off a draining node;
//! - [`retention`]: removing finished tasks and forgotten nodes;
//! - [`services`]: services declared, changed and removed;
//! - [`replicas`]: the service reconciler's pass: rollouts judged, slots filled.

use std::{
    sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::Duration,
};

use tokio::sync::{broadcast, Notify};

use crate::{
    proto::pb::{self, EventType, TaskState},
    scheduler::Scheduler,
    store::manager::{Durable, Loaded, ManagerStore, Op},
    task::TaskId,
};

mod api;
mod committed;
mod contact;
mod drain;
mod liveness;
mod membership;
mod observe;
mod placement;
mod replicas;
mod resolve;
mod restarts;
mod retention;
mod services;
mod state;
mod stops;
#[cfg(test)]
mod tests;

pub(crate) use api::TaskFilter;
pub use api::MAX_REQUEST_ID;
pub(crate) use placement::{Dispatch, SendFailure};
pub use retention::{Collected, Retention};
pub(crate) use stops::StopJob;

use committed::{Committed, StoreOwner};
use retention::Gone;
use state::State;

/// How many task changes a watcher may fall behind before its stream ends.
const WATCH_BUFFER: usize = 16_384;

/// What every part of the core shares.
struct Shared {
    state: Mutex<State>,
    /// What the store holds: what readers see. Lock order: `state` before `committed`.
    committed: RwLock<Committed>,
    /// Tasks removed by retention, remembered for their NOT_FOUND (a leaf lock).
    gone: Mutex<Gone>,
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
    /// Wakes the service reconciler: a service or one of its tasks changed.
    services: Notify,
    /// When the manager started: a node not heard from since counts as silent since then.
    /// (tokio's clock, so the liveness tests can pause it.)
    started: tokio::time::Instant,
    /// Each worker's last heartbeat (a leaf lock): counted even while `state` is busy.
    contacts: contact::Contacts,
}

/// The manager's state handle; clones share it.
#[derive(Clone)]
pub(crate) struct Core {
    shared: Arc<Shared>,
}

/// The writes and wake-ups one locked section collects.
#[derive(Default)]
struct Changes {
    ops: Vec<Op>,
    wake_dispatcher: bool,
    wake_stopper: bool,
    wake_restarter: bool,
    /// Set by the drainer's own step, which need not wake itself.
    by_drainer: bool,
    wake_services: bool,
}

/// One change of the core: the state under its lock, and what the change must write and wake.
/// It ends with [`Tx::commit`] (the answer waits for the returned [`Durable`]) or
/// [`Tx::commit_later`] (nothing waits); either queues the writes while the lock is still
/// held, so the store sees changes in the order memory did.
struct Tx<'a> {
    shared: &'a Shared,
    state: MutexGuard<'a, State>,
    changes: Changes,
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
        let nodes = loaded.nodes.clone();
        let state = State::load(loaded, workers);
        let committed = Committed::of(&state, &nodes);
        let (changes, _) = broadcast::channel(WATCH_BUFFER);
        let store_for_owner = store.clone();
        let core = Core {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                committed: RwLock::new(committed),
                gone: Mutex::new(Gone::default()),
                store,
                scheduler,
                changes,
                dispatch: Notify::new(),
                stopper: Notify::new(),
                stale_after,
                restart: Notify::new(),
                drain: Notify::new(),
                services: Notify::new(),
                started: tokio::time::Instant::now(),
                contacts: contact::Contacts::default(),
            }),
        };
        store_for_owner.set_owner(Box::new(StoreOwner {
            shared: Arc::downgrade(&core.shared),
        }));
        core
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock_state()
    }

    /// `Ok` when the store takes writes, else the error (RESOURCE_EXHAUSTED for a full disk)
    /// a change would be refused with: callers check before changing anything.
    pub fn writable(&self) -> crate::error::Result<()> {
        self.shared.store.writable()
    }

    /// Whether the store takes writes; changes as it turns read-only and back.
    pub fn store_health(&self) -> tokio::sync::watch::Receiver<crate::store::Health> {
        self.shared.store.health()
    }

    /// The store takes writes again: every worker is asked for a full sync (what was observed
    /// while read-only was not applied), and every loop looks again.
    pub fn store_recovered(&self) {
        {
            let mut state = self.lock();
            let polled = state.polled.clone();
            state.resync.extend(polled);
            state.capacity_gen += 1;
        }
        self.shared.wake_all();
    }

    /// Starts a change: takes the lock.
    fn tx(&self) -> Tx<'_> {
        Tx {
            shared: &self.shared,
            state: self.lock(),
            changes: Changes::default(),
        }
    }

    /// The dispatcher's wake-up.
    pub fn dispatch_notify(&self) -> &Notify {
        &self.shared.dispatch
    }

    /// The stopper's wake-up.
    pub fn stopper_notify(&self) -> &Notify {
        &self.shared.stopper
    }

    /// The restarter's wake-up.
    pub fn restart_notify(&self) -> &Notify {
        &self.shared.restart
    }

    /// The drainer's wake-up.
    pub fn drain_notify(&self) -> &Notify {
        &self.shared.drain
    }

    /// The service reconciler's wake-up.
    pub fn services_notify(&self) -> &Notify {
        &self.shared.services
    }

    /// The scheduling strategy's name.
    pub fn strategy(&self) -> &'static str {
        self.shared.scheduler.name()
    }
}

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug; the state is still the best we have.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tasks removed by retention.
    fn gone(&self) -> MutexGuard<'_, Gone> {
        self.gone.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The durable view, for reading.
    fn view(&self) -> RwLockReadGuard<'_, Committed> {
        self.committed.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The durable view, for the store's writer thread to change.
    fn view_mut(&self) -> RwLockWriteGuard<'_, Committed> {
        self.committed.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes every loop.
    fn wake_all(&self) {
        self.dispatch.notify_one();
        self.stopper.notify_one();
        self.restart.notify_one();
        self.drain.notify_one();
        self.services.notify_one();
    }
}

impl Tx<'_> {
    /// Changes task `id`: moves it to `to` (if given) through the state machine, then applies
    /// `f` to its other fields. See [`State::update`].
    fn update(
        &mut self,
        id: TaskId,
        to: Option<TaskState>,
        event: Option<(EventType, String)>,
        f: impl FnOnce(&mut pb::Task),
    ) -> bool {
        self.state.update(&mut self.changes, id, to, event, f)
    }

    /// A task whose only copy is gone (its worker no longer knows it, or its node was lost):
    /// a task the user stopped is done (COMPLETED, `stopped_message`); any other goes back to
    /// PENDING to be placed again (`pending_message`). `event` says why, as a `kind` event.
    fn copy_gone(
        &mut self,
        id: TaskId,
        kind: EventType,
        event: String,
        stopped_message: &str,
        pending_message: String,
    ) {
        let Some(entry) = self.state.tasks.get(&id) else {
            return;
        };
        let stopped = entry.task.desired_state() == pb::DesiredState::Stopped;
        let to = if stopped {
            TaskState::Completed
        } else {
            TaskState::Pending
        };
        self.update(id, Some(to), Some((kind, event)), |task| {
            if stopped {
                task.message = stopped_message.into();
                task.finished_at = Some(crate::proto::now());
            } else {
                task.node.clear();
                task.message = pending_message;
            }
        });
    }

    /// Wakes the loops the change concerns.
    fn wake(&self) {
        let (shared, changes) = (self.shared, &self.changes);
        if changes.wake_restarter {
            shared.restart.notify_one();
        }
        if !changes.by_drainer {
            shared.drain.notify_one();
        }
        if changes.wake_dispatcher {
            shared.dispatch.notify_one();
        }
        if changes.wake_stopper {
            shared.stopper.notify_one();
        }
        if changes.wake_services {
            shared.services.notify_one();
        }
    }

    /// Queues the change's writes (still under the lock, so in order), wakes loops and
    /// releases the lock. The returned handle tells when the writes are durable.
    fn commit(self) -> Durable {
        self.wake();
        let durable = self.shared.store.write(self.changes.ops);
        drop(self.state);
        durable
    }

    /// As [`Tx::commit`], for a change no answer waits on.
    fn commit_later(self) {
        self.wake();
        self.shared.store.write_later(self.changes.ops);
    }
}
