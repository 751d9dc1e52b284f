//! Restarts: a run that ended is recorded and judged by the restart policy; a restart whose
//! timer is due starts the task again (FAILED -> SCHEDULED), on the same node when it still
//! takes tasks.

use std::time::Instant;

use super::{placement::Dispatch, state::State, Changes, Core};
use crate::{
    manager::policy::{
        human, next_step, verdict, Verdict, BACKOFF_RESET_AFTER, FIRST_RESTART_DELAY,
    },
    proto::pb::{self, DesiredState, EventType, TaskState},
    scheduler::{Demand, Filter, NodeView},
    store::manager::Durable,
    task::TaskId,
};

/// Whether a node may take a task now (what the restart on the same node needs: the
/// scheduler's node filters, without the capacity ones, since the task's share is its own).
fn eligible(demand: &Demand, view: &NodeView) -> bool {
    [Filter::Alive, Filter::NotDraining, Filter::RuntimeReady]
        .into_iter()
        .all(|f| f.check(demand, view))
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
    pub(super) fn run_ended(&mut self, changes: &mut Changes, id: TaskId, seen: pb::Task) {
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
        let step = if ran_for.is_some_and(|d| d >= BACKOFF_RESET_AFTER) {
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
                human(delay)
            );
            let event = Some((EventType::Restarting, message));
            self.update(changes, id, Some(TaskState::Pending), event, |task| {
                task.node.clear();
                task.restart_count = number;
                task.exit_code = seen.exit_code;
                task.finished_at = seen.finished_at;
                task.message = format!("waiting for restart {number}");
            });
            return;
        }
        let used_up = match decision {
            Verdict::UsedUp { max } => {
                format!(" (restart policy used up: {max} of {max} restarts made)")
            }
            _ => String::new(),
        };
        let moved = self.update(changes, id, Some(outcome), None, |task| {
            task.container_id = seen.container_id;
            task.ports = seen.ports;
            task.exit_code = seen.exit_code;
            task.started_at = seen.started_at;
            task.finished_at = seen.finished_at;
            task.message = format!("{}{used_up}", seen.message);
            task.healthy = seen.healthy;
        });
        if !moved {
            return;
        }
        if health {
            let event = Some((EventType::HealthCheckFailed, reason.clone()));
            self.update(changes, id, None, event, |_| {});
        }
        if let Verdict::Restart { delay } = decision {
            let Some(entry) = self.tasks.get_mut(&id) else {
                return;
            };
            entry.backoff_step = next_step(step, ran_for);
            let at = tokio::time::Instant::now() + delay;
            entry.restart_at = Some(at);
            let number = entry.task.restart_count + 1;
            self.restarts.arm(at, id);
            changes.wake_restarter = true;
            let message = format!("{reason}; restart {number} in {}", human(delay));
            let event = Some((EventType::Restarting, message));
            let due = crate::proto::timestamp(std::time::SystemTime::now() + delay);
            self.update(changes, id, None, event, |task| task.restart_at = Some(due));
        }
    }
}

impl Core {
    /// Starts the restarts whose timers are due at `now`: FAILED -> SCHEDULED on the same node
    /// if it is still eligible, else on the node the scheduler picks. Returns the StartTask
    /// calls (to make once `durable`), and when the next timer is due.
    pub fn restarts_due(
        &self,
        now: tokio::time::Instant,
    ) -> (Vec<Dispatch>, Durable, Option<tokio::time::Instant>) {
        // Restarts wait while the store is read-only; its recovery wakes the restarter.
        if self.writable().is_err() {
            return (Vec::new(), Durable::done(), None);
        }
        let mut tx = self.tx();
        let due = tx.state.restarts.take_due(now);
        let mut jobs = Vec::new();
        let views = if due.is_empty() {
            Vec::new()
        } else {
            tx.state.nodes.views(self.shared.stale_after)
        };
        for (at, id) in due {
            let state = &mut *tx.state;
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
            let demand = Demand::of_task(&entry.task);
            let stale = state.stale_copies(id);
            let Some(entry) = state.tasks.get_mut(&id) else {
                continue;
            };
            let same = views
                .iter()
                .find(|v| v.name == entry.task.node && eligible(&demand, v))
                .filter(|v| !stale.contains(&v.name))
                .map(|v| v.name.clone());
            let node =
                same.or_else(|| self.shared.scheduler.place_fast(&demand, &views, true).node);
            let Some(node) = node else {
                // FAILED -> PENDING is not a move: wait on the timer instead.
                let at = now + FIRST_RESTART_DELAY;
                entry.restart_at = Some(at);
                state.restarts.arm(at, id);
                continue;
            };
            let address = state.nodes.by_name[&node].address.clone();
            let number = entry.task.restart_count + 1;
            let moved = tx.update(id, Some(TaskState::Scheduled), None, |task| {
                task.node = node.clone();
                task.restart_count = number;
                task.exit_code = None;
                task.finished_at = None;
                task.container_id.clear();
                task.restart_at = None;
                task.message = format!("restart {number}");
            });
            let Some(entry) = tx.state.tasks.get_mut(&id).filter(|_| moved) else {
                continue;
            };
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
        let next = tx.state.restarts.next();
        if jobs.is_empty() {
            tx.commit_later();
            (jobs, Durable::done(), next)
        } else {
            (jobs, tx.commit(), next)
        }
    }
}
