//! The monitor: notices when containers exit or vanish and records it.
//!
//! It looks at a task when the runtime hints that its container changed (Docker's event
//! stream, or an Exec child being reaped) and, as a backstop, sweeps every [`SWEEP`]: one
//! `list` call, then an inspect only of the tasks whose container no longer runs.

use std::{collections::HashSet, time::Duration};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    core::{Core, Durability},
    runtime::{Observed, Runtime},
    transition::{exit_outcome, finish},
};
use crate::{
    error::Result,
    pb::{DesiredState, TaskState},
    task::is_finished,
    TaskId,
};

/// The backstop: how often every container is listed in case an event was missed.
pub(crate) const SWEEP: Duration = Duration::from_secs(2);

/// What a task's message says when its container was removed by someone else.
const REMOVED: &str = "the container was removed outside Cube";

/// Runs until `cancel`: looks at the tasks whose ids arrive on `hints`, and sweeps.
pub(crate) async fn run<R: Runtime>(
    core: Core<R>,
    mut hints: mpsc::UnboundedReceiver<TaskId>,
    cancel: CancellationToken,
) {
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            Some(first) = hints.recv() => {
                let mut ids = HashSet::from([first]);
                while let Ok(id) = hints.try_recv() {
                    ids.insert(id);
                }
                for id in ids {
                    look(&core, id).await;
                }
            }
            _ = sweep.tick() => {
                if let Err(e) = sweep_once(&core).await {
                    tracing::warn!(error = %e, "sweeping the containers failed");
                }
            }
        }
    }
}

/// Lists the containers once and looks at every running task whose container does not run.
async fn sweep_once<R: Runtime>(core: &Core<R>) -> Result<()> {
    let found = core.runtime().list().await?;
    let running: HashSet<String> = found
        .into_iter()
        .filter(|f| f.running)
        .map(|f| f.container_id)
        .collect();
    for id in core.unfinished() {
        let Some(task) = core.get(id) else { continue };
        if task.state() == TaskState::Running && !running.contains(&task.container_id) {
            look(core, id).await;
        }
    }
    Ok(())
}

/// Inspects one running task's container and records an exit or a disappearance.
#[tracing::instrument(skip_all, fields(task_id = %id, node = %core.name()))]
pub(crate) async fn look<R: Runtime>(core: &Core<R>, id: TaskId) {
    let Some(task) = core.get(id) else { return };
    if task.container_id.is_empty() {
        return;
    }
    if is_finished(task.state()) {
        noticed_removal(core, id, task).await;
        return;
    }
    if task.state() != TaskState::Running {
        return;
    }
    let container_id = task.container_id.clone();
    let observed = match core.runtime().inspect(&container_id).await {
        Ok(observed) => observed,
        Err(e) => {
            tracing::warn!(task_id = %id, error = %e, "inspecting failed");
            return;
        }
    };
    let result = core
        .update(id, Durability::Later, |task| {
            if task.container_id != container_id || task.state() != TaskState::Running {
                return Ok(false);
            }
            match &observed {
                Observed::Running { .. } => Ok(false),
                Observed::Exited { code, finished_at } => {
                    let (to, message) = exit_outcome(task, *code);
                    finish(task, to, *code, *finished_at, message)
                }
                Observed::Missing => {
                    let (to, message) = if task.desired_state() == DesiredState::Stopped {
                        (TaskState::Completed, "stopped".to_string())
                    } else {
                        (TaskState::Failed, REMOVED.to_string())
                    };
                    finish(task, to, None, None, message)
                }
            }
        })
        .await;
    if let Ok(task) = result {
        if is_finished(task.state()) && task.container_id == container_id {
            tracing::info!(
                task_id = %id,
                state = crate::task::state_name(task.state()),
                exit_code = ?task.exit_code,
                message = %task.message,
                "task finished"
            );
        }
    }
}

/// `docker rm -f` kills first: the exit is recorded from the `die` event, then the `destroy`
/// event brings the task here. Say in its message that the container was removed.
async fn noticed_removal<R: Runtime>(core: &Core<R>, id: TaskId, task: crate::pb::Task) {
    if task.desired_state() == DesiredState::Stopped || task.message.contains(REMOVED) {
        return;
    }
    if !matches!(
        core.runtime().inspect(&task.container_id).await,
        Ok(Observed::Missing)
    ) {
        return;
    }
    let container_id = task.container_id.clone();
    let _ = core
        .update(id, Durability::Later, |task| {
            if task.container_id != container_id || task.message.contains(REMOVED) {
                return Ok(false);
            }
            task.message = format!("{}; {REMOVED}", task.message);
            Ok(true)
        })
        .await;
}
