//! The executor: starts and stops tasks as the manager's requests arrive.
//!
//! It is event-driven: handlers record the desired state and send the task id on a channel;
//! the executor reconciles that one task (kube-runtime style: compare desired with observed,
//! act idempotently). Different tasks are worked on concurrently, up to a bound; the same task
//! never twice at once (an id that arrives while its task is busy is worked on again after).
//!
//! A timer is the backstop: every [`SWEEP`] it looks for tasks that wait for work (SCHEDULED,
//! or told to stop and not finished) that nothing is working on, and that have not changed
//! since the previous sweep, and works on them. So a recorded task whose wake was lost is
//! started within two sweeps instead of staying SCHEDULED until the worker restarts.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, SystemTime},
};

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

/// How often the executor looks for tasks that wait for work nobody started. A task is
/// picked up when two sweeps in a row find it waiting and unchanged (after 2 to 4 s): long
/// enough that a wake on its way (a StartTask's write being committed) is never raced, short
/// enough to stay within a few of the manager's update intervals.
pub(crate) const SWEEP: Duration = Duration::from_secs(2);

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
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waiting = HashMap::new();
    loop {
        let ids = tokio::select! {
            _ = cancel.cancelled() => return,
            Some(id) = queue.recv() => vec![id],
            Some(id) = done.recv() => {
                busy.remove(&id);
                if !again.remove(&id) {
                    continue;
                }
                vec![id]
            }
            _ = sweep.tick() => stalled(&core, &busy, &mut waiting),
        };
        for id in ids {
            if !busy.insert(id) {
                again.insert(id);
                continue;
            }
            work_on(&core, id, &permits, &done_tx, &cancel, &tracker);
        }
    }
}

/// Reconciles one task in a task of its own, bounded by `permits`; reports on `done_tx`.
fn work_on<R: Runtime>(
    core: &Core<R>,
    id: TaskId,
    permits: &Arc<Semaphore>,
    done_tx: &mpsc::UnboundedSender<TaskId>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) {
    let core = core.clone();
    let permits = permits.clone();
    let done_tx = done_tx.clone();
    let cancel = cancel.clone();
    let tracker = tracker.clone();
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

/// The tasks that wait for work nobody is doing: not `busy`, and found waiting at the same
/// revision by the previous sweep too (`waiting`, task -> revision, is that memory).
fn stalled<R: Runtime>(
    core: &Core<R>,
    busy: &HashSet<TaskId>,
    waiting: &mut HashMap<TaskId, u64>,
) -> Vec<TaskId> {
    let mut now = HashMap::new();
    let mut stalled = Vec::new();
    for (id, revision, state) in core.wanting_work() {
        if busy.contains(&id) {
            continue;
        }
        if waiting.get(&id) == Some(&revision) {
            tracing::warn!(
                task_id = %id,
                state = crate::task::state_name(state),
                "nothing was working on this task; working on it now"
            );
            stalled.push(id);
        } else {
            now.insert(id, revision);
        }
    }
    *waiting = now;
    stalled
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
    // A run that could not be recorded is not started; the sweep tries again once the store
    // writes again.
    if core.writable().is_err() {
        return;
    }
    let runtime = core.runtime();
    let attempt = task.restart_count;
    if !task.container_id.is_empty() {
        // A restart: the previous run's container goes first (its last output kept).
        core.kept_logs().keep(runtime, id, &task.container_id).await;
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
    // The run is shown RUNNING only once that is recorded; if it cannot be, the container is
    // removed below rather than left running unknown to the store.
    let outcome = core
        .update(id, Durability::Wait, |task| {
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
        core.kept_logs().keep(runtime, id, &container_id).await;
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

#[cfg(test)]
mod sweep_tests {
    use std::time::Duration;

    use futures::FutureExt;
    use tokio::sync::mpsc;
    use tokio_util::{sync::CancellationToken, task::TaskTracker};

    use super::*;
    use crate::worker::{runtime::exec::ExecRuntime, store::WorkerStore};

    /// A core over `tasks` with the Exec runtime in `dir`, and the executor's queue.
    fn core_with_queue(
        dir: &std::path::Path,
        tasks: Vec<pb::Task>,
        loops: (CancellationToken, TaskTracker),
    ) -> (Core<ExecRuntime>, mpsc::UnboundedReceiver<TaskId>) {
        let (store, _) = WorkerStore::open(dir).unwrap();
        let (work, queue) = mpsc::unbounded_channel();
        let (look, _) = mpsc::unbounded_channel();
        let runtime = ExecRuntime::new(dir.join("exec"));
        let kept = crate::worker::kept_logs::KeptLogs::new(dir);
        let core = Core::new(
            "w1".into(),
            runtime,
            store,
            tasks,
            (work, look),
            kept,
            loops,
        );
        (core, queue)
    }

    fn sleeper() -> pb::TaskSpec {
        pb::TaskSpec {
            name: "sleeper".into(),
            command: vec!["sleep".into(), "30".into()],
            ..Default::default()
        }
    }

    /// A task recorded SCHEDULED that nothing is starting (its wake was lost) is started by
    /// the executor's sweep within two sweeps, without anyone waking it.
    #[tokio::test]
    async fn the_sweep_starts_a_scheduled_task_nobody_is_starting() {
        let dir = tempfile::tempdir().unwrap();
        let id = TaskId::new();
        let task = pb::Task {
            id: id.to_string(),
            spec: Some(sleeper()),
            state: TaskState::Scheduled as i32,
            desired_state: DesiredState::Running as i32,
            revision: 1,
            ..Default::default()
        };
        let (cancel, tracker) = (CancellationToken::new(), TaskTracker::new());
        let (core, queue) =
            core_with_queue(dir.path(), vec![task], (cancel.clone(), tracker.clone()));
        tracker.spawn(run(core.clone(), queue, cancel.clone(), tracker.clone()));

        let deadline = tokio::time::Instant::now() + 2 * SWEEP + Duration::from_secs(2);
        let running = loop {
            let task = core.get(id).unwrap();
            if task.state() == TaskState::Running {
                break task;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the sweep did not start the task: {task:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        core.runtime().remove(&running.container_id).await.unwrap();
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }

    /// A StartTask whose caller is dropped after the task is recorded (the rpc was cancelled
    /// while its write was being committed) still hands the task to the executor.
    #[tokio::test]
    async fn a_start_dropped_while_writing_still_wakes_the_executor() {
        let dir = tempfile::tempdir().unwrap();
        let loops = (CancellationToken::new(), TaskTracker::new());
        let (core, mut queue) = core_with_queue(dir.path(), Vec::new(), loops);
        let id = TaskId::new();

        // One poll records the task and queues its write; then the caller goes away.
        let dropped = core.start_many(vec![(id, sleeper(), 0)]).now_or_never();
        assert!(dropped.is_none(), "the start answered before its write");
        assert_eq!(core.get(id).unwrap().state(), TaskState::Scheduled);

        let woken = tokio::time::timeout(Duration::from_secs(5), queue.recv())
            .await
            .expect("the executor was never woken for the recorded task");
        assert_eq!(woken, Some(id));
    }
}
