//! The service reconciler's decision, pure: from what a service declares and the tasks it has,
//! what to create and what to stop. Level-triggered: the same inputs give the same actions,
//! and actions already taken show in the next inputs, so running it again is always safe.

use std::collections::BTreeMap;

use crate::task::TaskId;

/// One task of a service, as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotTask {
    /// The task.
    pub id: TaskId,
    /// Its submission sequence: among equals, the newest is kept.
    pub seq: u64,
    /// The slot it fills.
    pub slot: u32,
    /// The service task version it runs.
    pub version: u64,
    /// Whether it counts for its slot: wanted running and not ended for good (a task waiting
    /// for a restart by its policy counts; one stopped by hand, ended, or failed past its
    /// restarts does not).
    pub live: bool,
    /// Whether it is up: RUNNING, and healthy when it has a health check (else running for
    /// the update's monitor period).
    pub ready: bool,
    /// Why it counts as a failure of its version (it failed, restarted or turned unhealthy).
    pub failure: Option<String>,
    /// Stopped by the reconciler or a user, and not gone yet: it still runs, so it counts
    /// against the batch (a batch is over once its old tasks are gone).
    pub stopping: bool,
}

/// What a service declares, as the plan needs it; `None` for a removed service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desired {
    /// Slots 1 to `replicas` are kept filled.
    pub replicas: u32,
    /// The template version every slot should run.
    pub version: u64,
    /// How many slots may be on their way to the new version at once (0: paused).
    pub parallelism: u32,
    /// Start a slot's new task before stopping its old one (else stop first).
    pub start_first: bool,
    /// The delay between batches is not over: no up slot is replaced now.
    pub hold: bool,
}

/// Why a task is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its slot is above the replicas.
    ScaledDown,
    /// Another task fills its slot.
    Duplicate,
    /// It runs an older template: replaced by the rolling update.
    Outdated,
    /// Its service was removed.
    Removed,
}

impl Reason {
    /// The event text.
    pub fn says(self) -> &'static str {
        match self {
            Reason::ScaledDown => "stopped: its slot is above the service's replicas",
            Reason::Duplicate => "stopped: another task fills its slot",
            Reason::Outdated => "stopped: replaced by the service's new version",
            Reason::Removed => "stopped: its service was removed",
        }
    }
}

/// What the reconciler does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create a task of the current version for this slot.
    Create {
        /// The slot.
        slot: u32,
    },
    /// Stop this task.
    Stop {
        /// The task.
        id: TaskId,
        /// Why.
        reason: Reason,
    },
}

/// Decides what to create and stop for one service: slots above `replicas` are stopped; each
/// slot keeps one live task (current version first, then ready, then newest); an empty slot
/// gets a new task; tasks of an older version are replaced lowest slot first, no more slots
/// at once than `parallelism` counting slots whose new task is not ready yet (an old task
/// that does not serve anyway is replaced at once, and counts), and none while `hold`.
/// Start-first, a slot's old task is stopped only once its new one is up.
pub fn plan(desired: Option<Desired>, tasks: &[SlotTask]) -> Vec<Action> {
    let mut actions = Vec::new();
    let live = tasks.iter().filter(|t| t.live);
    let Some(desired) = desired else {
        return live
            .map(|t| Action::Stop {
                id: t.id,
                reason: Reason::Removed,
            })
            .collect();
    };
    let mut by_slot: BTreeMap<u32, Vec<&SlotTask>> = BTreeMap::new();
    for task in live {
        if task.slot == 0 || task.slot > desired.replicas {
            actions.push(Action::Stop {
                id: task.id,
                reason: Reason::ScaledDown,
            });
        } else {
            by_slot.entry(task.slot).or_default().push(task);
        }
    }
    let mut kept: BTreeMap<u32, &SlotTask> = BTreeMap::new();
    for (slot, mut tasks) in by_slot {
        tasks.sort_by_key(|t| (t.version == desired.version, t.ready, t.seq));
        let best = tasks
            .pop()
            .unwrap_or_else(|| unreachable!("a slot has a task"));
        // Start-first: the old task serves on until its replacement is up.
        if desired.start_first && best.version == desired.version && !best.ready {
            if let Some(i) = tasks
                .iter()
                .rposition(|t| t.ready && t.version != desired.version)
            {
                tasks.remove(i);
            }
        }
        for other in tasks {
            let reason = if other.version == desired.version {
                Reason::Duplicate
            } else {
                Reason::Outdated
            };
            actions.push(Action::Stop {
                id: other.id,
                reason,
            });
        }
        kept.insert(slot, best);
    }
    let mut busy = tasks.iter().filter(|t| t.stopping).count() as u32;
    let mut outdated = Vec::new();
    for slot in 1..=desired.replicas {
        match kept.get(&slot) {
            None => {
                busy += 1;
                actions.push(Action::Create { slot });
            }
            Some(task) if task.version != desired.version => outdated.push(*task),
            Some(task) if !task.ready => busy += 1,
            Some(_) => {}
        }
    }
    // Old tasks that do not serve go first and at once; each new task counts as busy.
    outdated.sort_by_key(|t| (t.ready, t.slot));
    for task in outdated {
        if task.ready && (desired.hold || busy >= desired.parallelism) {
            break;
        }
        busy += 1;
        if !(desired.start_first && task.ready) {
            actions.push(Action::Stop {
                id: task.id,
                reason: Reason::Outdated,
            });
        }
        actions.push(Action::Create { slot: task.slot });
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(seq: u64, slot: u32, version: u64, ready: bool) -> SlotTask {
        SlotTask {
            id: TaskId::from_u128(seq as u128),
            seq,
            slot,
            version,
            live: true,
            ready,
            failure: None,
            stopping: false,
        }
    }

    fn desired(replicas: u32, version: u64) -> Option<Desired> {
        Some(Desired {
            replicas,
            version,
            parallelism: 1,
            start_first: false,
            hold: false,
        })
    }

    fn creates(actions: &[Action]) -> Vec<u32> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Create { slot } => Some(*slot),
                Action::Stop { .. } => None,
            })
            .collect()
    }

    fn stops(actions: &[Action]) -> Vec<(u64, Reason)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Stop { id, reason } => Some((id.as_u128() as u64, *reason)),
                Action::Create { .. } => None,
            })
            .collect()
    }

    #[test]
    fn a_new_service_fills_every_slot() {
        assert_eq!(creates(&plan(desired(3, 1), &[])), vec![1, 2, 3]);
    }

    #[test]
    fn a_full_service_needs_nothing() {
        let tasks = [task(1, 1, 1, true), task(2, 2, 1, true)];
        assert!(plan(desired(2, 1), &tasks).is_empty());
    }

    #[test]
    fn a_slot_whose_task_is_no_longer_live_is_filled_again() {
        let mut ended = task(1, 1, 1, false);
        ended.live = false;
        let tasks = [ended, task(2, 2, 1, true)];
        let actions = plan(desired(2, 1), &tasks);
        assert_eq!(creates(&actions), vec![1]);
        assert!(stops(&actions).is_empty());
    }

    #[test]
    fn scaling_down_stops_the_highest_slots() {
        let tasks: Vec<_> = (1..=6).map(|s| task(s as u64, s, 1, true)).collect();
        let actions = plan(desired(2, 1), &tasks);
        let stopped: Vec<u64> = stops(&actions).iter().map(|(id, _)| *id).collect();
        assert_eq!(stopped, vec![3, 4, 5, 6]);
        assert!(stops(&actions)
            .iter()
            .all(|(_, r)| *r == Reason::ScaledDown));
        assert!(creates(&actions).is_empty());
    }

    #[test]
    fn a_slot_keeps_one_task_preferring_current_then_ready_then_newest() {
        let tasks = [
            task(1, 1, 1, true),
            task(2, 1, 2, false),
            task(3, 1, 2, true),
        ];
        let actions = plan(desired(1, 2), &tasks);
        assert_eq!(
            stops(&actions),
            vec![(1, Reason::Outdated), (2, Reason::Duplicate)]
        );
    }

    #[test]
    fn an_update_replaces_one_ready_slot_at_a_time() {
        let tasks = [
            task(1, 1, 1, true),
            task(2, 2, 1, true),
            task(3, 3, 1, true),
        ];
        let actions = plan(desired(3, 2), &tasks);
        assert_eq!(stops(&actions), vec![(1, Reason::Outdated)]);
        assert_eq!(creates(&actions), vec![1]);
        // The new task of slot 1 is not ready yet: nothing else moves.
        let tasks = [
            task(4, 1, 2, false),
            task(2, 2, 1, true),
            task(3, 3, 1, true),
        ];
        assert!(plan(desired(3, 2), &tasks).is_empty());
        // Once it is, the next slot goes.
        let tasks = [
            task(4, 1, 2, true),
            task(2, 2, 1, true),
            task(3, 3, 1, true),
        ];
        assert_eq!(
            stops(&plan(desired(3, 2), &tasks)),
            vec![(2, Reason::Outdated)]
        );
    }

    #[test]
    fn an_outdated_task_that_does_not_serve_is_replaced_at_once() {
        let tasks = [
            task(1, 1, 1, false),
            task(2, 2, 1, false),
            task(3, 3, 1, true),
        ];
        let actions = plan(desired(3, 2), &tasks);
        assert_eq!(
            stops(&actions),
            vec![(1, Reason::Outdated), (2, Reason::Outdated)]
        );
    }

    #[test]
    fn start_first_stops_the_old_task_once_the_new_one_is_up() {
        let start_first = Some(Desired {
            start_first: true,
            ..desired(2, 2).unwrap()
        });
        let tasks = [task(1, 1, 1, true), task(2, 2, 1, true)];
        let actions = plan(start_first, &tasks);
        assert_eq!(creates(&actions), vec![1]);
        assert!(stops(&actions).is_empty(), "{actions:?}");
        // The new task is starting: both stay.
        let tasks = [
            task(1, 1, 1, true),
            task(3, 1, 2, false),
            task(2, 2, 1, true),
        ];
        assert!(plan(start_first, &tasks).is_empty());
        // Up: the old one goes, and the next slot starts.
        let tasks = [
            task(1, 1, 1, true),
            task(3, 1, 2, true),
            task(2, 2, 1, true),
        ];
        let actions = plan(start_first, &tasks);
        assert_eq!(stops(&actions), vec![(1, Reason::Outdated)]);
        assert_eq!(creates(&actions), vec![2]);
    }

    #[test]
    fn the_next_batch_waits_until_the_old_tasks_are_gone() {
        let mut old = task(1, 1, 1, true);
        old.live = false;
        old.stopping = true;
        let tasks = [old, task(3, 1, 2, true), task(2, 2, 1, true)];
        assert!(plan(desired(2, 2), &tasks).is_empty());
    }

    #[test]
    fn paused_or_held_updates_replace_no_up_slot() {
        let tasks = [task(1, 1, 1, true), task(2, 2, 0, false)];
        for desired in [
            Desired {
                parallelism: 0,
                ..desired(2, 2).unwrap()
            },
            Desired {
                hold: true,
                ..desired(2, 2).unwrap()
            },
        ] {
            let actions = plan(Some(desired), &tasks);
            // Only the old task that does not serve is replaced.
            assert_eq!(stops(&actions), vec![(2, Reason::Outdated)], "{desired:?}");
        }
    }

    #[test]
    fn a_removed_service_stops_every_live_task() {
        let mut ended = task(1, 1, 1, false);
        ended.live = false;
        let tasks = [ended, task(2, 2, 1, true)];
        assert_eq!(stops(&plan(None, &tasks)), vec![(2, Reason::Removed)]);
    }
}
