//! Adoption at start: what a previous run of this worker left behind is taken over (running
//! containers stay, exits while the worker was down are recorded, lost ones are FAILED), so
//! a restarted worker never starts a second copy of a task.

use std::collections::HashMap;

use tracing::Instrument;

use super::{
    core::{Core, Durability},
    runtime::{Found, Observed, Runtime},
    transition::{exit_outcome, finish, move_to},
};
use crate::{
    error::Result,
    pb::{self, DesiredState, TaskState},
    proto::timestamp,
    task::is_finished,
    TaskId,
};

/// Re-adopts what a previous run of this worker left: running containers stay (never a
/// second copy), exits that happened while the worker was down are recorded, containers of
/// tasks told to stop are removed, and tasks whose container vanished are FAILED.
pub(crate) async fn containers<R: Runtime>(core: &Core<R>) -> Result<()> {
    let runtime = core.runtime();
    let mut found: HashMap<TaskId, Vec<Found>> = HashMap::new();
    for container in runtime.list().await? {
        found.entry(container.task_id).or_default().push(container);
    }
    let mut adopted = 0usize;
    let mut writes = Vec::new();
    for task in core.all() {
        let Ok(id) = TaskId::parse("task.id", &task.id) else {
            continue;
        };
        let containers = found.remove(&id).unwrap_or_default();
        let finished = is_finished(task.state());
        let span = tracing::info_span!("adopt", task_id = %id, node = %core.name());
        if adopt_one(core, id, task, containers)
            .instrument(span)
            .await?
        {
            adopted += 1;
        }
        if !finished {
            writes.push(id);
        }
    }
    for (task_id, containers) in found {
        for c in containers {
            tracing::warn!(task_id = %task_id, container_id = %c.container_id, "a container of this worker belongs to no task it knows; leaving it alone");
        }
    }
    // Whatever still differs from its desired state is the executor's to settle.
    for id in writes {
        core.wake(id);
    }
    tracing::info!(adopted, "containers re-adopted");
    Ok(())
}

/// Adopts one task from the containers found of it; returns whether its run goes on here.
async fn adopt_one<R: Runtime>(
    core: &Core<R>,
    id: TaskId,
    task: pb::Task,
    mut containers: Vec<Found>,
) -> Result<bool> {
    let runtime = core.runtime();
    containers.sort_by_key(|c| std::cmp::Reverse((c.running, c.created)));
    if is_finished(task.state()) {
        if task.desired_state() == DesiredState::Stopped {
            for c in &containers {
                let _ = runtime.remove(&c.container_id).await;
            }
        }
        return Ok(false);
    }
    // The container of the current run: the recorded one when it runs; for a task not yet
    // recorded as started (a start or restart the worker died in), the newest running one.
    let current = if task.state() == TaskState::Running {
        containers
            .iter()
            .position(|c| c.container_id == task.container_id)
    } else {
        containers.iter().position(|c| c.running)
    }
    .map(|i| containers.remove(i));
    for stale in &containers {
        // Leftovers of earlier runs (or of a start that died half-way).
        let _ = runtime.remove(&stale.container_id).await;
    }
    Ok(match current {
        Some(current) if current.running && task.state() == TaskState::Running => {
            // The common case after a restart: nothing changed, no inspect needed.
            core.watch_health(id, &task);
            true
        }
        Some(current) => {
            let observed = runtime.inspect(&current.container_id).await?;
            let container_id = current.container_id.clone();
            let write = core
                .update(id, Durability::Later, |task| match observed {
                    Observed::Running { started_at } => {
                        if task.state() == TaskState::Running {
                            return Ok(false);
                        }
                        move_to(task, TaskState::Running)?;
                        task.container_id = container_id;
                        task.started_at = Some(timestamp(
                            started_at.unwrap_or_else(std::time::SystemTime::now),
                        ));
                        Ok(true)
                    }
                    Observed::Exited { code, finished_at } => {
                        task.container_id = container_id;
                        let (to, message) = exit_outcome(task, code);
                        let message = format!("{message} (while the worker was down)");
                        finish(task, to, code, finished_at, message)
                    }
                    Observed::Missing => {
                        let (to, message) = lost(task);
                        finish(task, to, None, None, message)
                    }
                })
                .await?;
            let running = write.state() == TaskState::Running;
            if running {
                core.watch_health(id, &write);
            }
            running
        }
        // Accepted but never started (no container of it runs): the executor starts it.
        None if task.state() == TaskState::Scheduled => false,
        None => {
            core.update(id, Durability::Later, |task| {
                let (to, message) = lost(task);
                finish(task, to, None, None, message)
            })
            .await?;
            false
        }
    })
}

/// How a task whose container is gone ends: COMPLETED when it was being stopped, else FAILED.
fn lost(task: &crate::pb::Task) -> (TaskState, String) {
    if task.desired_state() == DesiredState::Stopped {
        (TaskState::Completed, "stopped".into())
    } else {
        (
            TaskState::Failed,
            "container lost while the worker was down".into(),
        )
    }
}
