//! A service's rollout history: every rollout is a record, the last [`MAX_ROLLOUTS`] kept with
//! the service, oldest first. The live rollout (`Service.rollout`) is mirrored into the last
//! record each time it changes; a rollout replaced before it ended is kept as SUPERSEDED.

use crate::proto::{
    now,
    pb::{self, RolloutState},
};

/// How many rollouts a service keeps; older ones are dropped.
pub const MAX_ROLLOUTS: usize = 10;

/// Whether a rollout in `state` has ended.
fn ended(state: RolloutState) -> bool {
    matches!(
        state,
        RolloutState::Completed
            | RolloutState::RolledBack
            | RolloutState::Paused
            | RolloutState::Superseded
    )
}

/// Whether `a` and `b` are the same rollout (one record through all its states).
fn same(a: &pb::Rollout, b: &pb::Rollout) -> bool {
    a.started_at == b.started_at && a.from_task_version == b.from_task_version
}

/// Mirrors `service.rollout` into its history: stamps `ended_at` when it has just ended,
/// replaces the last record when it is the same rollout, appends otherwise, and drops the
/// oldest records past [`MAX_ROLLOUTS`].
pub fn record(service: &mut pb::Service) {
    let Some(live) = service.rollout.as_mut() else {
        return;
    };
    if ended(live.state()) && live.ended_at.is_none() {
        live.ended_at = live.updated_at.or_else(|| Some(now()));
    }
    let live = live.clone();
    match service.rollouts.last_mut() {
        Some(last) if same(last, &live) => *last = live,
        _ => service.rollouts.push(live),
    }
    let excess = service.rollouts.len().saturating_sub(MAX_ROLLOUTS);
    service.rollouts.drain(..excess);
}

/// Ends the rollout `replaced` in `history` as SUPERSEDED by the change to `task_version`,
/// when it had not ended (a PAUSED one had stopped but not ended: it is superseded too).
pub fn supersede(history: &mut [pb::Rollout], replaced: Option<&pb::Rollout>, task_version: u64) {
    let Some(replaced) = replaced else {
        return;
    };
    let unfinished = matches!(
        replaced.state(),
        RolloutState::Updating | RolloutState::RollingBack | RolloutState::Paused
    );
    if !unfinished {
        return;
    }
    if let Some(last) = history.iter_mut().rev().find(|r| same(r, replaced)) {
        let at = Some(now());
        last.set_state(RolloutState::Superseded);
        last.message = format!("{}; superseded by version {task_version}", last.message);
        last.updated_at = at;
        last.ended_at = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(state: RolloutState, from: u64, to: u64, second: i64) -> pb::Rollout {
        let at = Some(prost_types::Timestamp {
            seconds: second,
            nanos: 0,
        });
        pb::Rollout {
            state: state as i32,
            task_version: to,
            from_task_version: from,
            message: String::new(),
            started_at: at,
            updated_at: at,
            ended_at: None,
        }
    }

    #[test]
    fn one_rollout_is_one_record_through_its_states() {
        let mut service = pb::Service {
            rollout: Some(rollout(RolloutState::Updating, 1, 2, 10)),
            ..Default::default()
        };
        record(&mut service);
        assert_eq!(service.rollouts.len(), 1);
        assert!(service.rollouts[0].ended_at.is_none());
        if let Some(live) = service.rollout.as_mut() {
            live.set_state(RolloutState::Completed);
        }
        record(&mut service);
        assert_eq!(service.rollouts.len(), 1);
        assert_eq!(service.rollouts[0].state(), RolloutState::Completed);
        assert!(service.rollouts[0].ended_at.is_some());
    }

    #[test]
    fn keeps_the_last_ten_oldest_first() {
        let mut service = pb::Service::default();
        for to in 2..=14 {
            service.rollout = Some(rollout(RolloutState::Completed, to - 1, to, to as i64));
            record(&mut service);
        }
        let versions: Vec<u64> = service.rollouts.iter().map(|r| r.task_version).collect();
        assert_eq!(versions, (5..=14).collect::<Vec<_>>());
    }

    #[test]
    fn an_unfinished_rollout_is_superseded_an_ended_one_is_not() {
        let going = rollout(RolloutState::Updating, 1, 2, 10);
        let mut history = vec![going.clone()];
        supersede(&mut history, Some(&going), 3);
        assert_eq!(history[0].state(), RolloutState::Superseded);
        assert!(history[0].message.contains("superseded by version 3"));
        assert!(history[0].ended_at.is_some());

        let done = rollout(RolloutState::Completed, 1, 2, 10);
        let mut history = vec![done.clone()];
        supersede(&mut history, Some(&done), 3);
        assert_eq!(history[0].state(), RolloutState::Completed);
    }
}
