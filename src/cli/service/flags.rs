//! The `--update-*` flags that `service create` and `service update` share, and the
//! UpdateConfig they describe.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::{cli::output::to_proto_duration, proto::pb, units::parse_duration};

/// The order of a slot's replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OrderArg {
    /// Stop the old task, then start the new one.
    StopFirst,
    /// Start the new task, stop the old one once the new one is up.
    StartFirst,
}

/// What a failed update does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionArg {
    /// Go back to the previous spec.
    Rollback,
    /// Stop replacing slots.
    Pause,
    /// Go on.
    Continue,
}

/// How a new task template is rolled out.
#[derive(Debug, Clone, Default, Args)]
pub struct UpdateFlags {
    /// Slots replaced at once [default: 1].
    #[arg(long, value_name = "N")]
    pub update_parallelism: Option<u32>,
    /// Time between one batch being up and the next [default: 0s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub update_delay: Option<Duration>,
    /// stop-first or start-first [default: stop-first].
    #[arg(long, value_enum, value_name = "ORDER")]
    pub update_order: Option<OrderArg>,
    /// A new task without a health check counts as up after running this long [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub update_monitor: Option<Duration>,
    /// What to do when new tasks fail [default: rollback].
    #[arg(long, value_enum, value_name = "ACTION")]
    pub update_failure_action: Option<ActionArg>,
    /// The share of updated slots that may fail, 0 to 1 [default: 0].
    #[arg(long, value_name = "RATIO")]
    pub update_max_failure_ratio: Option<f64>,
}

impl UpdateFlags {
    /// `config` with what the flags set changed; `None` when no flag is given and there was
    /// no config.
    pub fn apply(&self, config: Option<pb::UpdateConfig>) -> Option<pb::UpdateConfig> {
        let any = self.update_parallelism.is_some()
            || self.update_delay.is_some()
            || self.update_order.is_some()
            || self.update_monitor.is_some()
            || self.update_failure_action.is_some()
            || self.update_max_failure_ratio.is_some();
        if !any {
            return config;
        }
        let mut config = config.unwrap_or_default();
        if let Some(n) = self.update_parallelism {
            config.parallelism = n;
        }
        if let Some(delay) = self.update_delay {
            config.delay = Some(to_proto_duration(delay));
        }
        if let Some(order) = self.update_order {
            config.order = match order {
                OrderArg::StopFirst => pb::UpdateOrder::StopFirst,
                OrderArg::StartFirst => pb::UpdateOrder::StartFirst,
            } as i32;
        }
        if let Some(monitor) = self.update_monitor {
            config.monitor = Some(to_proto_duration(monitor));
        }
        if let Some(action) = self.update_failure_action {
            config.failure_action = match action {
                ActionArg::Rollback => pb::FailureAction::Rollback,
                ActionArg::Pause => pb::FailureAction::Pause,
                ActionArg::Continue => pb::FailureAction::Continue,
            } as i32;
        }
        if let Some(ratio) = self.update_max_failure_ratio {
            config.max_failure_ratio = ratio;
        }
        Some(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_change_only_what_they_set() {
        let none = UpdateFlags::default();
        assert_eq!(none.apply(None), None);
        let flags = UpdateFlags {
            update_parallelism: Some(2),
            update_order: Some(OrderArg::StartFirst),
            ..Default::default()
        };
        let before = pb::UpdateConfig {
            max_failure_ratio: 0.5,
            ..Default::default()
        };
        let after = flags.apply(Some(before)).unwrap();
        assert_eq!(after.parallelism, 2);
        assert_eq!(after.order(), pb::UpdateOrder::StartFirst);
        assert_eq!(after.max_failure_ratio, 0.5);
    }
}
