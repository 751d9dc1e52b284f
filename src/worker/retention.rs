//! Retention on the worker: a finished task is forgotten (its record, its container and its
//! kept output) once `retain_finished` has passed since it finished and the manager has seen
//! its end (its poll went past the task's revision), so the store, the memory and the exited
//! containers of a busy worker stay bounded.

use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::{core::Core, runtime::Runtime};
use crate::{task::is_finished, TaskId};

/// Forgets finished tasks past `retain` until `stop`, every fifth of it (at least every
/// second, at most every minute).
pub(crate) async fn run<R: Runtime>(core: Core<R>, retain: Duration, stop: CancellationToken) {
    let every = (retain / 5).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if core.writable().is_err() {
            continue;
        }
        match collect(&core, retain).await {
            Ok(0) => {}
            Ok(forgotten) => tracing::info!(tasks = forgotten, "finished tasks forgotten"),
            Err(e) => {
                tracing::warn!(error = %e, "forgetting finished tasks failed; trying again later")
            }
        }
    }
}

/// Forgets what `retain` no longer keeps; how many tasks.
pub(crate) async fn collect<R: Runtime>(core: &Core<R>, retain: Duration) -> crate::Result<usize> {
    let now = SystemTime::now();
    let expired = core.finished_before(now.checked_sub(retain).unwrap_or(SystemTime::UNIX_EPOCH));
    if expired.is_empty() {
        return Ok(0);
    }
    // The containers first: a task whose record is gone must leave nothing behind, while a
    // record whose container is gone is still a finished task.
    for (id, container_id) in &expired {
        if !container_id.is_empty() {
            if let Err(e) = core.runtime().remove(container_id).await {
                tracing::debug!(task_id = %id, error = %e, "removing a finished task's container");
            }
        }
        core.kept_logs().forget(*id);
    }
    let ids: Vec<TaskId> = expired.into_iter().map(|(id, _)| id).collect();
    core.forget(ids).await
}

/// Whether a task's run ended before `before`.
pub(crate) fn ended_before(task: &crate::pb::Task, before: SystemTime) -> bool {
    is_finished(task.state())
        && crate::proto::system_time(task.finished_at.as_ref()).is_some_and(|at| at < before)
}
