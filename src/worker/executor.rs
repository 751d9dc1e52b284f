//! The executor: starts and stops tasks as the manager's requests arrive.
//!
//! It is event-driven: handlers record the desired state and send the task id on a channel;
//! the executor reconciles that one task (kube-runtime style: compare desired with observed,
//! act idempotently). Different tasks are worked on concurrently, up to a bound; the same task
//! never twice at once (an id that arrives while its task is busy is worked on again after).

use std::{collections::HashSet, sync::Arc, time::SystemTime};

use tokio::sync::{mpsc, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    core::{Core, Durability},
    runtime::{Launch, Runtime},
    transition::{exit_outcome, finish, move_to},
};
use crate::{
    pb::{self, DesiredState, TaskState},
    proto::timestamp,
    task::{duration, is_finished, DEFAULT_STOP_GRACE},
    TaskId,
};

/// How many tasks the executor starts or stops at once. Docker serialises much of its work;
/// more than this only queues inside the engine.
const MAX_CONCURRENT: usize = 16;

/// Runs until `cancel`, working on the ids that arrive on `queue`.
pub(crate) async fn run<R: Runtime>(
    core: Core<R>,
    mut queue: mpsc::UnboundedReceiver<TaskId>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT));
    let (done_tx, mut done) = mpsc::unbounded_channel::<TaskId>();
    let mut busy = HashSet::new();
    let mut again = HashSet::new();
    loop {
        let id = tokio::select! {
            _ = cancel.cancelled() => return,
            Some(id) = queue.recv() => id,
            Some(id) = done.recv() => {
                busy.remove(&id);
                if !again.remove(&id) {
                    continue;
                }
                id
            }
        };
        if !busy.insert(id) {
            again.insert(id);
            continue;
        }
        let core = core.clone();
        let permits = permits.clone();
        let done_tx = done_tx.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = async {
                    let _permit = permits.acquire().await;
                    reconcile(&core, id).await;
                } => {}
            }
            let _ = done_tx.send(id);
        });
    }
}

/// Brings one task's container in line with what is desired of it.
async fn reconcile<R: Runtime>(core: &Core<R>, id: TaskId) {
    let Some(task) = core.get(id) else { return };
    if task.desired_state() == DesiredState::Stopped {
        stop(core, id, task).await;
    } else if task.state() == TaskState::Scheduled {
        start(core, id, task).await;
    }
}

async fn start<R: Runtime>(core: &Core<R>, id: TaskId, task: pb::Task) {
    let runtime = core.runtime();
    let attempt = task.restart_count;
    if !task.container_id.is_empty() {
        // A restart: the previous run's container goes first.
        if let Err(e) = runtime.remove(&task.container_id).await {
            tracing::warn!(task_id = %id, error = %e, "removing the previous container failed");
        }
    }
    let launch = Launch {
        id,
        spec: task.spec.clone().unwrap_or_default(),
        attempt,
    };
    let result = runtime.start(&launch).await;
    let outcome = core
        .update(id, Durability::Later, |task| {
            if task.restart_count != attempt || task.state() != TaskState::Scheduled {
                return Ok(false);
            }
            match &result {
                Ok(started) => {
                    move_to(task, TaskState::Running)?;
                    task.container_id = started.container_id.clone();
                    task.ports = started.ports.clone();
                    task.started_at = Some(timestamp(started.started_at));
                    task.message.clear();
                    Ok(true)
                }
                Err(error) => finish(task, TaskState::Failed, None, None, error.to_string()),
            }
        })
        .await;
    match (&result, outcome) {
        (Ok(started), Ok(now)) if now.container_id == started.container_id => {
            tracing::info!(task_id = %id, container_id = %started.container_id, attempt, "task running");
            core.look(id);
            core.watch_health(id, &now);
            if now.desired_state() == DesiredState::Stopped {
                core.wake(id);
            }
        }
        (Ok(started), _) => {
            // Superseded (a newer attempt arrived while starting): this run is not wanted.
            let _ = runtime.remove(&started.container_id).await;
        }
        (Err(error), _) => {
            tracing::warn!(task_id = %id, error = %error, "task failed to start");
        }
    }
}

async fn stop<R: Runtime>(core: &Core<R>, id: TaskId, task: pb::Task) {
    let runtime = core.runtime();
    let spec = task.spec.clone().unwrap_or_default();
    let grace = spec
        .stop_grace_period
        .as_ref()
        .and_then(|g| duration("spec.stop_grace_period", g).ok())
        .unwrap_or(DEFAULT_STOP_GRACE);
    let container_id = task.container_id.clone();
    let mut code = None;
    if !container_id.is_empty() {
        if !is_finished(task.state()) {
            match runtime.stop(&container_id, grace).await {
                Ok(c) => code = c,
                Err(e) => tracing::warn!(task_id = %id, error = %e, "stopping failed; removing"),
            }
        }
        if let Err(e) = runtime.remove(&container_id).await {
            tracing::warn!(task_id = %id, error = %e, "removing the container failed");
            // The executor tries again when it is woken next (a later stop, or a restart).
            return;
        }
    }
    let result = core
        .update(id, Durability::Later, |task| {
            if task.container_id != container_id {
                return Ok(false);
            }
            let (to, message) = exit_outcome(task, code);
            finish(task, to, code, Some(SystemTime::now()), message)
        })
        .await;
    if let Ok(task) = result {
        if task.container_id == container_id {
            tracing::info!(task_id = %id, "task stopped and removed");
        } else {
            // A new run was started meanwhile.
            core.wake(id);
        }
    }
}
