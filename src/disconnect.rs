//! A task's disconnect policy (`--on-disconnect keep|stop DURATION`, issue 18): what its
//! worker does while it cannot reach the manager, and how long the manager waits before it
//! places a replacement. No I/O, no tonic.

use std::time::Duration;

use crate::{
    limits::spec::MAX_DURATION,
    task::{duration, DEFAULT_STOP_GRACE},
    Error, Result,
};

use crate::proto::pb::{self, DisconnectAction};

/// What the manager waits beyond a STOP task's `after` before replacing it: the worker's own
/// check runs every [`WORKER_CHECK`], and its last contact (an answer received) comes a
/// moment after the manager's (the heartbeat received). The task's stop grace period is
/// added to this, the time its stop may take.
pub const REPLACE_MARGIN: Duration = Duration::from_secs(1);

/// How often a worker looks for STOP tasks whose manager has been out of reach too long.
pub const WORKER_CHECK: Duration = Duration::from_millis(100);

/// A task's policy, as Cube acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Keep running; replaced after the node grace, the stale copy stopped on reconnect.
    Keep,
    /// The worker stops the task after this long without the manager.
    Stop(Duration),
}

/// The policy of a spec that passed [`validate`] (anything else reads as Keep).
pub fn policy(spec: &pb::TaskSpec) -> Policy {
    let Some(on) = &spec.on_disconnect else {
        return Policy::Keep;
    };
    match (
        on.action(),
        on.after.and_then(|a| Duration::try_from(a).ok()),
    ) {
        (DisconnectAction::Stop, Some(after)) if !after.is_zero() => Policy::Stop(after),
        _ => Policy::Keep,
    }
}

/// How long after the node's last contact the manager may place a replacement: the grace
/// for KEEP; for STOP, no sooner than `after` plus [`REPLACE_MARGIN`] plus the stop grace
/// period, so that the worker has stopped its copy first.
pub fn replace_after(spec: &pb::TaskSpec, grace: Duration) -> Duration {
    match policy(spec) {
        Policy::Keep => grace,
        Policy::Stop(after) => {
            let stop = spec
                .stop_grace_period
                .and_then(|g| Duration::try_from(g).ok())
                .unwrap_or(DEFAULT_STOP_GRACE);
            grace.max(after + REPLACE_MARGIN + stop)
        }
    }
}

/// Refuses a policy that is not one: an unknown action, STOP without a positive `after` (or
/// one over 1 h), KEEP with an `after`.
pub fn validate(spec: &pb::TaskSpec) -> Result<()> {
    let Some(on) = &spec.on_disconnect else {
        return Ok(());
    };
    let action = DisconnectAction::try_from(on.action).map_err(|_| {
        Error::invalid(
            "spec.on_disconnect.action",
            format!("{} is not a disconnect action (KEEP or STOP)", on.action),
        )
    })?;
    let field = "spec.on_disconnect.after";
    match (action, &on.after) {
        (DisconnectAction::Stop, None) => Err(Error::invalid(
            field,
            "is required with STOP: how long without the manager before the worker stops the task",
        )),
        (DisconnectAction::Stop, Some(after)) => {
            let after = duration(field, after)?;
            if after.is_zero() {
                return Err(Error::invalid(field, "must be more than zero"));
            }
            if after > MAX_DURATION {
                return Err(Error::invalid(
                    field,
                    format!(
                        "{} s is longer than the limit of {} s (1 h)",
                        after.as_secs(),
                        MAX_DURATION.as_secs()
                    ),
                ));
            }
            Ok(())
        }
        (_, Some(_)) => Err(Error::invalid(
            field,
            "is only for STOP (KEEP keeps the task running however long)",
        )),
        (_, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(action: DisconnectAction, after: Option<i64>) -> pb::TaskSpec {
        pb::TaskSpec {
            on_disconnect: Some(pb::OnDisconnect {
                action: action.into(),
                after: after.map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
            }),
            ..Default::default()
        }
    }

    fn refusal(spec: &pb::TaskSpec) -> String {
        validate(spec).unwrap_err().to_string()
    }

    #[test]
    fn stop_needs_a_positive_bounded_after_and_keep_none() {
        assert!(validate(&pb::TaskSpec::default()).is_ok());
        assert!(validate(&spec(DisconnectAction::Keep, None)).is_ok());
        assert!(validate(&spec(DisconnectAction::Stop, Some(2))).is_ok());
        let missing = refusal(&spec(DisconnectAction::Stop, None));
        assert!(missing.contains("spec.on_disconnect.after") && missing.contains("required"));
        assert!(refusal(&spec(DisconnectAction::Stop, Some(0))).contains("more than zero"));
        assert!(refusal(&spec(DisconnectAction::Stop, Some(-1))).contains("negative"));
        assert!(refusal(&spec(DisconnectAction::Stop, Some(3601))).contains("1 h"));
        assert!(refusal(&spec(DisconnectAction::Keep, Some(2))).contains("only for STOP"));
        let mut unknown = spec(DisconnectAction::Keep, None);
        unknown.on_disconnect.as_mut().unwrap().action = 7;
        assert!(refusal(&unknown).contains("spec.on_disconnect.action"));
    }

    #[test]
    fn the_manager_waits_for_the_workers_stop() {
        let grace = Duration::from_secs(3);
        assert_eq!(policy(&pb::TaskSpec::default()), Policy::Keep);
        assert_eq!(replace_after(&pb::TaskSpec::default(), grace), grace);
        let mut stop = spec(DisconnectAction::Stop, Some(2));
        assert_eq!(policy(&stop), Policy::Stop(Duration::from_secs(2)));
        assert_eq!(replace_after(&stop, grace), Duration::from_secs(13));
        stop.stop_grace_period = Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        });
        assert_eq!(replace_after(&stop, grace), Duration::from_secs(4));
        let long = spec(DisconnectAction::Stop, Some(60));
        assert_eq!(replace_after(&long, grace), Duration::from_secs(71));
    }
}
