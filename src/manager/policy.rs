//! Pure policy, knowing nothing of the core: the restart policy and its backoff, the restart
//! timer queue, the StartTask backoff, and how long a node may be silent.
//!
//! Restart timers are event-driven: a queue ordered by due time, and one `sleep_until` for its
//! first entry (see `supervisor`), so a thousand backing-off tasks cost nothing until one is
//! due. Everything here is unit-tested, with paused tokio time where time matters.

use std::{collections::BTreeSet, time::Duration};

use tokio::time::Instant;

use crate::{
    proto::pb::{self, TaskState},
    task::{restart_policy, TaskId},
};

/// The first restart waits this long: long enough that a crash loop does not spin the worker,
/// short enough that a one-off failure is barely noticed.
pub const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);

/// The longest wait between restarts (Kubernetes' CrashLoopBackOff cap): a task broken for
/// good costs one container start per 5 minutes.
pub const MAX_RESTART_DELAY: Duration = Duration::from_secs(300);

/// A run this long counts as healthy: the next failure starts the backoff from the beginning
/// (as Kubernetes does after 10 minutes), so a task that fails once a day is not made to wait
/// 5 minutes.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// The default heartbeat period a manager asks of workers (DESIGN: 1 s).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// A node silent for this many heartbeat periods is lost (3 s at the default period), as in
/// Swarm (3 periods, of 5 s there). It was 10 while a busy worker's heartbeat could starve:
/// one starting 900 tasks on a loaded 2-core machine went 5.4 s without answering. The
/// heartbeat now has a path of its own on both sides (the worker's own thread and runtime,
/// the manager's own lock, see `worker::membership` and `core::contact`), and `cargo bench
/// --bench control` counts the nodes lost under its heaviest load: none.
pub const GRACE_HEARTBEATS: u32 = 3;

/// The wait before restart number `step + 1` of a backoff run: 1 s doubling to the cap.
pub fn restart_delay(step: u32) -> Duration {
    FIRST_RESTART_DELAY
        .saturating_mul(2u32.saturating_pow(step.min(20)))
        .min(MAX_RESTART_DELAY)
}

/// The first retry delay after a failed StartTask; doubles up to [`MAX_DISPATCH_BACKOFF`].
pub const FIRST_DISPATCH_BACKOFF: Duration = Duration::from_millis(500);

/// The longest wait between StartTask retries of one task: long enough not to hammer a sick
/// worker, short enough that a recovered one gets its task soon.
pub const MAX_DISPATCH_BACKOFF: Duration = Duration::from_secs(30);

/// How many times a StartTask that got no answer is sent again to the same node before the
/// task goes back to PENDING to be placed anew. The worker may have accepted the first call
/// (an answer can be late on a loaded machine), and sending it again is harmless: the worker
/// answers ALREADY_EXISTS for a task it holds.
pub const MAX_RESENDS: u32 = 3;

/// The wait before the next StartTask of a task that failed `failures` times in a row.
pub fn dispatch_backoff(failures: u32) -> Duration {
    FIRST_DISPATCH_BACKOFF
        .saturating_mul(1 << (failures.clamp(1, 16) - 1))
        .min(MAX_DISPATCH_BACKOFF)
}

/// A delay as people read it in events: `500ms`, `2s`, `5m`, `1m30s`.
pub fn human(d: Duration) -> String {
    match d.as_secs() {
        0 => format!("{}ms", d.as_millis()),
        s if s < 60 => format!("{s}s"),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{}m{}s", s / 60, s % 60),
    }
}

/// What the restart policy says about a task that just finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Start it again after `delay`.
    Restart { delay: Duration },
    /// The policy would restart it, but `max_restarts` are used up.
    UsedUp { max: u32 },
    /// The policy does not restart this outcome.
    Finished,
}

/// The restart decision for a task whose run ended in `outcome` (COMPLETED or FAILED) after
/// `restart_count` restarts, with `step` the position in the current backoff run.
pub fn verdict(spec: &pb::TaskSpec, outcome: TaskState, restart_count: u32, step: u32) -> Verdict {
    let wanted = match restart_policy(spec) {
        pb::RestartPolicy::Never => false,
        pb::RestartPolicy::Always => {
            matches!(outcome, TaskState::Failed | TaskState::Completed)
        }
        _ => outcome == TaskState::Failed,
    };
    if !wanted {
        return Verdict::Finished;
    }
    match spec.restart.as_ref().and_then(|r| r.max_restarts) {
        Some(max) if restart_count >= max => Verdict::UsedUp { max },
        _ => Verdict::Restart {
            delay: restart_delay(step),
        },
    }
}

/// The backoff position for the next restart: back to 0 after a run of
/// [`BACKOFF_RESET_AFTER`] or more, else one further.
pub fn next_step(step: u32, ran_for: Option<Duration>) -> u32 {
    if ran_for.is_some_and(|d| d >= BACKOFF_RESET_AFTER) {
        0
    } else {
        step.saturating_add(1)
    }
}

/// Restart timers: task ids by due time.
#[derive(Debug, Default)]
pub struct RestartQueue {
    due: BTreeSet<(Instant, TaskId)>,
}

impl RestartQueue {
    /// Arms a timer for `id` at `at`.
    pub fn arm(&mut self, at: Instant, id: TaskId) {
        self.due.insert((at, id));
    }

    /// Removes and returns the timers due at `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<(Instant, TaskId)> {
        let mut out = Vec::new();
        while let Some(first) = self.due.first().copied() {
            if first.0 > now {
                break;
            }
            self.due.pop_first();
            out.push(first);
        }
        out
    }

    /// When the first timer is due.
    pub fn next(&self) -> Option<Instant> {
        self.due.first().map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(policy: pb::RestartPolicy, max: Option<u32>) -> pb::TaskSpec {
        pb::TaskSpec {
            restart: Some(pb::Restart {
                policy: policy as i32,
                max_restarts: max,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        assert_eq!(restart_delay(0), Duration::from_secs(1));
        assert_eq!(restart_delay(1), Duration::from_secs(2));
        assert_eq!(restart_delay(4), Duration::from_secs(16));
        assert_eq!(restart_delay(8), Duration::from_secs(256));
        assert_eq!(restart_delay(9), MAX_RESTART_DELAY);
        assert_eq!(restart_delay(u32::MAX), MAX_RESTART_DELAY);
    }

    #[test]
    fn a_long_run_resets_the_backoff() {
        assert_eq!(next_step(5, Some(Duration::from_secs(30))), 6);
        assert_eq!(next_step(5, None), 6);
        assert_eq!(next_step(5, Some(BACKOFF_RESET_AFTER)), 0);
    }

    #[test]
    fn policies_decide_which_outcomes_restart() {
        use pb::RestartPolicy::*;
        let one = Verdict::Restart {
            delay: Duration::from_secs(1),
        };
        assert_eq!(
            verdict(&spec(Never, None), TaskState::Failed, 0, 0),
            Verdict::Finished
        );
        assert_eq!(
            verdict(&spec(OnFailure, None), TaskState::Failed, 0, 0),
            one
        );
        assert_eq!(
            verdict(&spec(OnFailure, None), TaskState::Completed, 0, 0),
            Verdict::Finished
        );
        assert_eq!(
            verdict(&spec(Always, None), TaskState::Completed, 0, 0),
            one
        );
        assert_eq!(
            verdict(&pb::TaskSpec::default(), TaskState::Failed, 9, 0),
            one
        );
        assert_eq!(
            verdict(&spec(OnFailure, Some(2)), TaskState::Failed, 1, 1),
            Verdict::Restart {
                delay: Duration::from_secs(2)
            }
        );
        assert_eq!(
            verdict(&spec(OnFailure, Some(2)), TaskState::Failed, 2, 2),
            Verdict::UsedUp { max: 2 }
        );
    }

    #[test]
    fn dispatch_backoff_doubles_up_to_its_cap() {
        assert_eq!(dispatch_backoff(1), Duration::from_millis(500));
        assert_eq!(dispatch_backoff(2), Duration::from_secs(1));
        assert_eq!(dispatch_backoff(4), Duration::from_secs(4));
        assert_eq!(dispatch_backoff(7), MAX_DISPATCH_BACKOFF);
        assert_eq!(dispatch_backoff(1000), MAX_DISPATCH_BACKOFF);
    }

    #[tokio::test(start_paused = true)]
    async fn timers_fire_in_due_order_and_only_when_due() {
        let mut queue = RestartQueue::default();
        let start = Instant::now();
        let (a, b) = (TaskId::new(), TaskId::new());
        queue.arm(start + restart_delay(1), b);
        queue.arm(start + restart_delay(0), a);
        assert!(queue.take_due(Instant::now()).is_empty());
        tokio::time::sleep_until(queue.next().unwrap()).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert_eq!(
            queue.take_due(Instant::now()),
            vec![(start + Duration::from_secs(1), a)]
        );
        tokio::time::sleep_until(queue.next().unwrap()).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(queue.take_due(Instant::now()).len(), 1);
        assert_eq!(queue.next(), None);
    }
}
