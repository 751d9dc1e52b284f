//! The live progress of `service create` and `service update`: one line per slot (its task,
//! version, state and why it is not up yet) and one for the rollout, redrawn in place on a
//! terminal as `docker service create` does, or printed as plain lines, one per change, when
//! stdout is not a terminal. It ends when every slot runs the service's task version and is
//! up with no rollout in flight (success), or when the rollout pauses or rolls back (failure).

use std::{
    io::{IsTerminal, Write},
    time::Duration,
};

use crate::{
    cli::{output, Failure, Outcome},
    client::Client,
    proto::pb::{self, RolloutState},
};

/// How often the service and its tasks are read again.
const POLL: Duration = Duration::from_millis(300);

/// Where a followed change stands.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Slots still move.
    Going,
    /// Every slot is up on the service's task version.
    Converged,
    /// The rollout paused or rolled back, with the rollout's message.
    Failed(String),
}

/// Follows service `name` from `task_version` (the one the create or update stored) until it
/// converges or its rollout fails.
pub async fn follow(client: &Client, name: &str, task_version: u64) -> Outcome {
    let terminal = std::io::stdout().is_terminal();
    let mut shown: Vec<String> = Vec::new();
    loop {
        let service = client
            .get_service(name)
            .await
            .map_err(super::service_failure)?
            .service
            .unwrap_or_default();
        let tasks = client
            .service_tasks(name)
            .await
            .map_err(super::service_failure)?;
        let lines = lines(&service, &tasks);
        draw(terminal, &shown, &lines);
        shown = lines;
        match verdict(&service, &tasks, task_version) {
            Verdict::Going => tokio::time::sleep(POLL).await,
            Verdict::Converged => return Ok(()),
            Verdict::Failed(why) => {
                return Err(Failure::new(
                    format!("the rollout of service {name} failed: {why}"),
                    format!("cubectl service explain {name} says why each slot is not up"),
                ))
            }
        }
    }
}

/// Writes `lines` over the `shown` ones: in place on a terminal, else only the changed ones.
fn draw(terminal: bool, shown: &[String], lines: &[String]) {
    let mut out = std::io::stdout().lock();
    if terminal {
        if !shown.is_empty() {
            let _ = write!(out, "\x1b[{}A", shown.len());
        }
        for line in lines {
            let _ = writeln!(out, "\x1b[2K{line}");
        }
        for _ in lines.len()..shown.len() {
            let _ = writeln!(out, "\x1b[2K");
        }
    } else {
        for (at, line) in lines.iter().enumerate() {
            if shown.get(at) != Some(line) {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    let _ = out.flush();
}

/// The rollout's line, then one line a slot.
fn lines(service: &pb::Service, tasks: &[pb::Task]) -> Vec<String> {
    let spec = service.spec.clone().unwrap_or_default();
    let rollout = match &service.rollout {
        Some(r) => format!(
            "rollout {}: {}",
            output::enum_name(r.state().as_str_name(), "ROLLOUT_STATE_"),
            r.message
        ),
        None => "no rollout: starting the replicas".into(),
    };
    let mut lines = vec![format!(
        "{}: task version {}: {rollout}",
        spec.name, service.task_version
    )];
    for slot in 1..=spec.replicas {
        lines.push(match super::explain::live(tasks, slot) {
            None => format!("{slot}/{}: no task yet", spec.replicas),
            Some(task) => format!(
                "{slot}/{}: version {} {} {}: {}",
                spec.replicas,
                task.service_version,
                output::task_state(task.state),
                task.node,
                super::explain::why(task)
            ),
        });
    }
    lines
}

/// Where the change that stored `task_version` stands now.
fn verdict(service: &pb::Service, tasks: &[pb::Task], task_version: u64) -> Verdict {
    if let Some(rollout) = &service.rollout {
        match rollout.state() {
            RolloutState::Updating | RolloutState::RollingBack => return Verdict::Going,
            RolloutState::Paused => return Verdict::Failed(rollout.message.clone()),
            RolloutState::RolledBack if rollout.task_version > task_version => {
                return Verdict::Failed(rollout.message.clone())
            }
            _ => {}
        }
    }
    let replicas = service.spec.as_ref().map_or(0, |s| s.replicas);
    let up = (1..=replicas).all(|slot| {
        super::explain::live(tasks, slot).is_some_and(|t| {
            t.service_version == service.task_version && super::explain::why(t).starts_with("up")
        })
    });
    if up {
        Verdict::Converged
    } else {
        Verdict::Going
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::pb::{DesiredState, TaskState};

    fn service(task_version: u64, rollout: Option<(RolloutState, u64)>) -> pb::Service {
        pb::Service {
            spec: Some(pb::ServiceSpec {
                name: "web".into(),
                replicas: 2,
                ..Default::default()
            }),
            task_version,
            rollout: rollout.map(|(state, task_version)| pb::Rollout {
                state: state as i32,
                task_version,
                message: "why".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn running(slot: u32, version: u64) -> pb::Task {
        pb::Task {
            slot,
            service_version: version,
            state: TaskState::Running as i32,
            desired_state: DesiredState::Running as i32,
            ..Default::default()
        }
    }

    #[test]
    fn converged_when_every_slot_is_up_on_the_task_version() {
        let tasks = [running(1, 2), running(2, 2)];
        assert_eq!(verdict(&service(2, None), &tasks, 2), Verdict::Converged);
        let old = [running(1, 2), running(2, 1)];
        assert_eq!(verdict(&service(2, None), &old, 2), Verdict::Going);
        let updating = service(2, Some((RolloutState::Updating, 2)));
        assert_eq!(verdict(&updating, &tasks, 2), Verdict::Going);
    }

    #[test]
    fn a_paused_or_rolled_back_rollout_fails_but_an_older_rollback_does_not() {
        let tasks = [running(1, 3), running(2, 3)];
        let rolled_back = service(3, Some((RolloutState::RolledBack, 3)));
        assert_eq!(
            verdict(&rolled_back, &tasks, 2),
            Verdict::Failed("why".into())
        );
        assert_eq!(verdict(&rolled_back, &tasks, 3), Verdict::Converged);
        let paused = service(2, Some((RolloutState::Paused, 2)));
        assert_eq!(verdict(&paused, &tasks, 2), Verdict::Failed("why".into()));
    }

    #[test]
    fn a_line_for_the_rollout_and_one_a_slot() {
        let text = lines(&service(1, None), &[running(1, 1)]).join("\n");
        assert!(text.contains("1/2: version 1 RUNNING"), "{text}");
        assert!(text.contains("2/2: no task yet"), "{text}");
    }
}
