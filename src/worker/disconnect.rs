//! Disconnect policy, the worker's half: when it last heard from the manager (a heartbeat
//! answered, a poll received), and a loop that stops each `stop DURATION` task once the
//! manager has been out of reach for its DURATION, with no manager needed to decide it.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{core::Core, runtime::Runtime};
use crate::{
    disconnect::{policy, Policy, WORKER_CHECK},
    task::is_finished,
    units::format_duration,
};

/// How often the tasks' policies are read again when none is due: a task submitted since
/// is covered within this.
const RESCAN: Duration = Duration::from_secs(1);

/// When the worker last heard from the manager (None: never, so nothing to count from).
#[derive(Debug, Clone, Default)]
pub(crate) struct LastContact(Arc<Mutex<Option<Instant>>>);

impl LastContact {
    /// The manager was heard from now.
    pub fn touch(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// How long since the manager was last heard from.
    pub fn silent_for(&self) -> Option<Duration> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|at| at.elapsed())
    }
}

/// Stops every `stop DURATION` task once the manager has been silent for its DURATION, until
/// `cancel`.
pub(crate) async fn run<R: Runtime>(
    core: Core<R>,
    contact: LastContact,
    cancel: CancellationToken,
) {
    let mut ticks = tokio::time::interval(WORKER_CHECK);
    // The shortest DURATION among the tasks, as of the last scan, and when that was.
    let mut soonest: Option<Duration> = None;
    let mut scanned: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let Some(silent) = contact.silent_for() else {
            continue;
        };
        let due = soonest.is_some_and(|s| silent >= s);
        let stale = scanned.is_none_or(|at| at.elapsed() >= RESCAN);
        if !due && !stale {
            continue;
        }
        scanned = Some(Instant::now());
        soonest = None;
        for id in core.unfinished() {
            let Some(task) = core.get(id) else {
                continue;
            };
            let Some(spec) = &task.spec else {
                continue;
            };
            let Policy::Stop(after) = policy(spec) else {
                continue;
            };
            let stopping = task.desired_state() == crate::pb::DesiredState::Stopped;
            if stopping || is_finished(task.state()) {
                continue;
            }
            if silent < after {
                soonest = Some(soonest.map_or(after, |s| s.min(after)));
                continue;
            }
            let reason = format!("no contact with the manager for {}", format_duration(after));
            tracing::warn!(task_id = %id, silent_ms = silent.as_millis() as u64, "stopping a task cut off from the manager");
            if let Err(e) = core.stop(id, &reason).await {
                tracing::warn!(task_id = %id, error = %e, "stopping a task cut off from the manager failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn silence_counts_from_the_last_contact() {
        let contact = LastContact::default();
        assert_eq!(
            contact.silent_for(),
            None,
            "never heard from: nothing to count"
        );
        contact.touch();
        tokio::time::advance(Duration::from_millis(2500)).await;
        assert_eq!(contact.silent_for(), Some(Duration::from_millis(2500)));
        contact.touch();
        assert_eq!(contact.silent_for(), Some(Duration::ZERO));
    }
}
