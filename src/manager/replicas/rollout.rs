//! A rolling update's settings with their defaults, and the judgement of how it goes: done
//! once every slot is up at the new version; failed once more than `max_failure_ratio` of
//! the slots it updated had a new task fail. Pure: the core records what it decides.

use std::time::Duration;

use super::plan::SlotTask;
use crate::{
    error::{Error, Result},
    limits::spec::MAX_DURATION,
    proto::pb::{self, FailureAction, UpdateOrder},
};

/// How long a new task without a health check must run to count as up, unless the update
/// config says otherwise: Docker's default monitor period.
pub const DEFAULT_MONITOR: Duration = Duration::from_secs(5);

/// An update config with its defaults filled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Slots replaced at once.
    pub parallelism: u32,
    /// Time between a batch being up and the next.
    pub delay: Duration,
    /// Start the new task before stopping the old.
    pub start_first: bool,
    /// How long a task without a health check runs before it counts as up.
    pub monitor: Duration,
    /// What to do after too many failures.
    pub action: FailureAction,
    /// The share of updated slots that may fail.
    pub max_failure_ratio: f64,
}

impl Config {
    /// The config `config` declares, defaults filled. A rollback never rolls back: its
    /// failure action is PAUSE unless it says CONTINUE.
    pub fn of(config: Option<&pb::UpdateConfig>, rollback: bool) -> Config {
        let config = config.cloned().unwrap_or_default();
        let duration =
            |d: Option<prost_types::Duration>| d.and_then(|d| Duration::try_from(d).ok());
        let action = match (config.failure_action(), rollback) {
            (FailureAction::Continue, _) => FailureAction::Continue,
            (_, true) | (FailureAction::Pause, false) => FailureAction::Pause,
            (FailureAction::Unspecified | FailureAction::Rollback, false) => {
                FailureAction::Rollback
            }
        };
        Config {
            parallelism: config.parallelism.max(1),
            delay: duration(config.delay).unwrap_or_default(),
            start_first: config.order() == UpdateOrder::StartFirst,
            monitor: duration(config.monitor).unwrap_or(DEFAULT_MONITOR),
            action,
            max_failure_ratio: config.max_failure_ratio,
        }
    }
}

/// Checks an update config a client sent (`field`: where it is); errors name the field.
pub fn check_config(field: &str, config: &pb::UpdateConfig) -> Result<()> {
    if config.parallelism > super::MAX_REPLICAS {
        return Err(Error::invalid(
            format!("{field}.parallelism"),
            format!("{} is above {}", config.parallelism, super::MAX_REPLICAS),
        ));
    }
    for (name, value) in [("delay", &config.delay), ("monitor", &config.monitor)] {
        if let Some(d) = value {
            let ok = Duration::try_from(*d).is_ok_and(|d| d <= MAX_DURATION);
            if !ok {
                return Err(Error::invalid(
                    format!("{field}.{name}"),
                    format!("must be 0 to {} s", MAX_DURATION.as_secs()),
                ));
            }
        }
    }
    if !(0.0..=1.0).contains(&config.max_failure_ratio) {
        return Err(Error::invalid(
            format!("{field}.max_failure_ratio"),
            format!("{} is not between 0 and 1", config.max_failure_ratio),
        ));
    }
    if UpdateOrder::try_from(config.order).is_err() {
        return Err(Error::invalid(
            format!("{field}.order"),
            format!("{} is not an update order", config.order),
        ));
    }
    if FailureAction::try_from(config.failure_action).is_err() {
        return Err(Error::invalid(
            format!("{field}.failure_action"),
            format!("{} is not a failure action", config.failure_action),
        ));
    }
    Ok(())
}

/// How a rollout goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Still replacing slots.
    Going,
    /// Every slot up at the new version, nothing else live.
    Done,
    /// Too many new tasks failed: the first failure, with why.
    Failed {
        /// The slot of the failed task.
        slot: u32,
        /// Why it failed.
        why: String,
    },
}

/// Judges a rollout to `version` over slots 1..=`replicas` from the service's tasks.
pub fn judge(replicas: u32, version: u64, max_failure_ratio: f64, tasks: &[SlotTask]) -> Judgement {
    let new: Vec<&SlotTask> = tasks.iter().filter(|t| t.version == version).collect();
    let mut updated: Vec<u32> = new.iter().map(|t| t.slot).collect();
    updated.sort_unstable();
    updated.dedup();
    let mut failed: Vec<(u32, &str)> = new
        .iter()
        .filter_map(|t| t.failure.as_deref().map(|why| (t.slot, why)))
        .collect();
    failed.sort_unstable();
    failed.dedup_by_key(|(slot, _)| *slot);
    let ratio = failed.len() as f64 / updated.len().max(1) as f64;
    if let Some((slot, why)) = failed.first() {
        if ratio > max_failure_ratio {
            return Judgement::Failed {
                slot: *slot,
                why: why.to_string(),
            };
        }
    }
    let live: Vec<&SlotTask> = tasks.iter().filter(|t| t.live).collect();
    let done = live.len() == replicas as usize
        && live
            .iter()
            .all(|t| t.version == version && t.ready && t.slot >= 1 && t.slot <= replicas);
    if done {
        Judgement::Done
    } else {
        Judgement::Going
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TaskId;

    fn task(slot: u32, version: u64, ready: bool, failure: Option<&str>) -> SlotTask {
        SlotTask {
            id: TaskId::from_u128(u128::from(slot) << 8 | u128::from(version)),
            seq: 0,
            slot,
            version,
            live: failure.is_none(),
            ready,
            failure: failure.map(String::from),
            stopping: false,
        }
    }

    #[test]
    fn defaults_are_one_at_a_time_stop_first_rolling_back() {
        let config = Config::of(None, false);
        assert_eq!(config.parallelism, 1);
        assert!(!config.start_first);
        assert_eq!(config.monitor, DEFAULT_MONITOR);
        assert_eq!(config.action, FailureAction::Rollback);
        assert_eq!(Config::of(None, true).action, FailureAction::Pause);
    }

    #[test]
    fn a_rollout_is_done_when_every_slot_is_up_at_the_new_version() {
        let going = [task(1, 2, true, None), task(2, 1, true, None)];
        assert_eq!(judge(2, 2, 0.0, &going), Judgement::Going);
        let done = [task(1, 2, true, None), task(2, 2, true, None)];
        assert_eq!(judge(2, 2, 0.0, &done), Judgement::Done);
    }

    #[test]
    fn failures_past_the_ratio_fail_the_rollout() {
        let tasks = [
            task(1, 2, false, Some("exited with code 1")),
            task(2, 2, true, None),
            task(3, 2, true, None),
        ];
        assert_eq!(
            judge(3, 2, 0.0, &tasks),
            Judgement::Failed {
                slot: 1,
                why: "exited with code 1".into()
            }
        );
        assert_eq!(judge(3, 2, 0.5, &tasks), Judgement::Going);
        // Old versions' failures do not count.
        let old = [task(1, 1, false, Some("exited")), task(1, 2, true, None)];
        assert_eq!(judge(1, 2, 0.0, &old), Judgement::Done);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let bad = pb::UpdateConfig {
            max_failure_ratio: 1.5,
            ..Default::default()
        };
        let error = check_config("spec.update_config", &bad).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("spec.update_config.max_failure_ratio"),
            "{error}"
        );
        let bad = pb::UpdateConfig {
            parallelism: 1001,
            ..Default::default()
        };
        assert!(check_config("c", &bad).is_err());
    }
}
