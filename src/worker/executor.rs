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

/// Starts one run of a task and records it RUNNING, or FAILED with the runtime's reason.
#[tracing::instrument(skip_all, fields(task_id = %id, node = %core.name()))]
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

/// Stops and removes a task's container and records how the run ended.
#[tracing::instrument(skip_all, fields(task_id = %id, node = %core.name()))]
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Where a test's subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A task's log lines can be found by its id: a start runs in a span carrying the task id
    /// and the node, so even the runtime's refusal of a missing command is logged inside it.
    #[tokio::test]
    async fn a_start_is_logged_in_a_span_with_the_task_id_and_node() {
        let dir = tempfile::tempdir().unwrap();
        let id = TaskId::new();
        let task = pb::Task {
            id: id.to_string(),
            spec: Some(pb::TaskSpec {
                name: "missing".into(),
                command: vec!["cube-no-such-command".into()],
                ..Default::default()
            }),
            state: TaskState::Scheduled as i32,
            desired_state: DesiredState::Running as i32,
            ..Default::default()
        };
        let core = Core::for_test(dir.path(), vec![task.clone()]).unwrap();
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let captured = captured.clone();
                move || captured.clone()
            })
            .with_ansi(false)
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);

        start(&core, id, task).await;

        let failed = core.get(id).unwrap();
        assert_eq!(failed.state(), TaskState::Failed);
        assert!(failed.message.contains("not found"), "{}", failed.message);
        let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line = logged
            .lines()
            .find(|l| l.contains("task failed to start"))
            .unwrap_or_else(|| panic!("no line for the failed start in {logged:?}"));
        assert!(
            line.contains(&format!("start{{task_id={id} node=w1}}")),
            "{line}"
        );
    }
}
