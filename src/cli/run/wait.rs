//! `cubectl run --wait`: follow a submitted task until it is up (RUNNING, and healthy when it
//! has a health check) and has stayed up for the settle time, printing each change on stderr.
//! A task that exits, fails or restarts during the wait is reported with its exit code, and
//! Ctrl-C ends the wait and says that the task goes on.

use std::time::Duration;

use tokio::time::Instant;
use tonic::Code;

use crate::{
    cli::{
        output::{short_id, task_state},
        print_err, Failure, Outcome,
    },
    client::Client,
    proto::pb,
    units::format_duration,
};

/// How often `--wait` asks for the task when the manager cannot stream its changes.
const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The exit code after Ctrl-C, as shells report a program ended by SIGINT (128 + 2).
const INTERRUPTED_EXIT_CODE: u8 = 130;

/// Follows one task until it is up and has stayed up for `settle`, printing each change on
/// stderr: fails when it is not up within `timeout`, or exits, fails or restarts before the
/// settle time is over. Ctrl-C ends the wait (not the task). Uses WatchTasks, or polls
/// GetTask when the manager does not stream.
pub async fn wait_until_running(
    client: &Client,
    id: &str,
    timeout: Duration,
    settle: Duration,
) -> Outcome {
    tokio::select! {
        outcome = follow(client, id, timeout, settle) => outcome,
        _ = tokio::signal::ctrl_c() => Err(interrupted(id)),
    }
}

/// The failure Ctrl-C ends a wait with: the task is not stopped.
fn interrupted(id: &str) -> Failure {
    Failure::new(
        format!("interrupted: stopped waiting; task {id} goes on (it was not stopped)"),
        format!("cubectl status {id} shows it, cubectl stop {id} stops it"),
    )
    .with_exit_code(INTERRUPTED_EXIT_CODE)
}

async fn follow(client: &Client, id: &str, timeout: Duration, settle: Duration) -> Outcome {
    let mut progress = Progress::new(timeout, settle);
    let watch = client
        .watch_tasks(pb::WatchTasksRequest {
            task_ids: vec![id.to_string()],
            ..Default::default()
        })
        .await;
    match watch {
        Ok(mut stream) => loop {
            match tokio::time::timeout_at(progress.deadline, stream.message()).await {
                Err(_) => return progress.at_deadline(id),
                Ok(Ok(Some(message))) => {
                    if let Some(task) = message.task {
                        if let Some(outcome) = progress.observe(task) {
                            return outcome;
                        }
                    }
                }
                // The stream ended (the manager is stopping): keep asking by polling.
                Ok(Ok(None)) => break,
                Ok(Err(status)) => {
                    let error = client.stream_error(status);
                    if error.code() != Code::Unimplemented && !error.is_retryable() {
                        return Err(error.into());
                    }
                    break;
                }
            }
        },
        Err(error) if error.code() == Code::Unimplemented => {}
        Err(error) => return Err(error.into()),
    }
    loop {
        match client.get_task(id).await {
            Ok(response) => {
                if let Some(outcome) = response.task.and_then(|task| progress.observe(task)) {
                    return outcome;
                }
            }
            Err(error) if error.is_retryable() => {}
            Err(error) => return Err(error.into()),
        }
        if Instant::now() >= progress.deadline {
            return progress.at_deadline(id);
        }
        tokio::time::sleep_until(progress.deadline.min(Instant::now() + WAIT_POLL_INTERVAL)).await;
    }
}

/// A task seen up: after how many restarts, so that a restart during the settle time shows.
#[derive(Debug, Clone, Copy)]
struct Up {
    restarts: u32,
}

/// What `--wait` has seen of a task: prints a line on stderr when its state, node, health or
/// message changes, and decides when the wait is over.
#[derive(Debug)]
struct Progress {
    last: Option<pb::Task>,
    timeout: Duration,
    settle: Duration,
    /// When the wait for the task to be up ends.
    wait_deadline: Instant,
    /// The wait's deadline, or once the task is up, the end of the settle time.
    deadline: Instant,
    up: Option<Up>,
}

impl Progress {
    fn new(timeout: Duration, settle: Duration) -> Self {
        let wait_deadline = Instant::now() + timeout;
        Self {
            last: None,
            timeout,
            settle,
            wait_deadline,
            deadline: wait_deadline,
            up: None,
        }
    }

    fn observe(&mut self, task: pb::Task) -> Option<Outcome> {
        let changed = self.last.as_ref().is_none_or(|last| {
            (last.state, &last.node, &last.message, last.healthy)
                != (task.state, &task.node, &task.message, task.healthy)
        });
        if changed {
            print_err(&progress_line(&task));
        }
        let outcome = self.verdict(&task);
        self.last = Some(task);
        outcome
    }

    /// Whether the wait is over after seeing `task`; moves the deadline when the task comes
    /// up or goes down.
    fn verdict(&mut self, task: &pb::Task) -> Option<Outcome> {
        if let Some(outcome) = ended_verdict(task) {
            return Some(outcome);
        }
        if let Some(up) = self.up {
            if task.restart_count > up.restarts {
                return Some(Err(restarted(task)));
            }
        }
        match (is_up(task), self.up) {
            (true, None) => {
                if self.settle.is_zero() {
                    return Some(Ok(()));
                }
                self.up = Some(Up {
                    restarts: task.restart_count,
                });
                self.deadline = Instant::now() + self.settle;
            }
            // Down again (unhealthy, or placed again after its node was lost): wait for it to
            // come up again within the wait's time.
            (false, Some(_)) => {
                self.up = None;
                self.deadline = self.wait_deadline;
            }
            (true, Some(_)) | (false, None) => {}
        }
        None
    }

    /// The outcome when the deadline passes with no news: up for the settle time, or not up
    /// in time.
    fn at_deadline(&self, id: &str) -> Outcome {
        match self.up {
            Some(_) => Ok(()),
            None => Err(not_running_in_time(id, self.last.clone(), self.timeout)),
        }
    }
}

/// Whether a task is up: RUNNING, and with a health check, healthy.
fn is_up(task: &pb::Task) -> bool {
    let has_check = task
        .spec
        .as_ref()
        .is_some_and(|spec| spec.health_check.is_some());
    task.state == i32::from(pb::TaskState::Running) && (!has_check || task.healthy == Some(true))
}

/// One progress line: `task 1234abcd: SCHEDULED on w1`.
fn progress_line(task: &pb::Task) -> String {
    let mut line = format!("task {}: {}", short_id(&task.id), task_state(task.state));
    if !task.node.is_empty() {
        line.push_str(&format!(" on {}", task.node));
    }
    if task.state == i32::from(pb::TaskState::Running) {
        match task.healthy {
            Some(true) => line.push_str(", healthy"),
            Some(false) => line.push_str(", unhealthy"),
            None => {}
        }
    }
    if !task.message.is_empty() {
        line.push_str(&format!(" ({})", task.message));
    }
    line.push('\n');
    line
}

/// The hint after a task ended or restarted during the wait.
fn history_hint(id: &str) -> String {
    format!("cubectl logs {id} shows its output, cubectl events {id} its history")
}

/// Whether waiting for `task` is over because it ended: FAILED or COMPLETED during the wait
/// fail it, with the task's exit code when it has one.
fn ended_verdict(task: &pb::Task) -> Option<Outcome> {
    match pb::TaskState::try_from(task.state) {
        Ok(state @ (pb::TaskState::Failed | pb::TaskState::Completed)) => {
            let message = format!(
                "task {} ended during the wait: {}{}",
                task.id,
                task_state(state.into()),
                exit_and_message(task)
            );
            Some(Err(Failure::new(message, history_hint(&task.id))))
        }
        _ => None,
    }
}

/// The failure of a wait during which the task was started again.
fn restarted(task: &pb::Task) -> Failure {
    let message = format!(
        "task {} was restarted during the wait: its last run ended{}",
        task.id,
        exit_and_message(task)
    );
    Failure::new(message, history_hint(&task.id))
}

/// ` with exit code 7: message`, each part when the task has it (the message only when it
/// says more than the code).
fn exit_and_message(task: &pb::Task) -> String {
    let mut text = String::new();
    if let Some(code) = task.exit_code {
        text.push_str(&format!(" with exit code {code}"));
    }
    let redundant = task
        .exit_code
        .is_some_and(|code| task.message.ends_with(&format!("code {code}")));
    if !task.message.is_empty() && !redundant {
        text.push_str(&format!(": {}", task.message));
    }
    text
}

fn not_running_in_time(id: &str, last: Option<pb::Task>, timeout: Duration) -> Failure {
    let after = format_duration(timeout);
    let Some(task) = last else {
        return Failure::new(
            format!("task {id} was not seen within {after}"),
            format!("cubectl status {id} shows it"),
        );
    };
    let state = task_state(task.state);
    let mut message = format!("task {id} is still {state}");
    if !task.node.is_empty() {
        message.push_str(&format!(" on {}", task.node));
    }
    message.push_str(&format!(" after {after}"));
    if !task.message.is_empty() {
        message.push_str(&format!(": {}", task.message));
    }
    let hint = if task.state == i32::from(pb::TaskState::Pending) {
        format!("cubectl explain {id} shows why no node takes it")
    } else {
        format!("cubectl events {id} shows its history")
    };
    Failure::new(message, hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(state: pb::TaskState) -> pb::Task {
        pb::Task {
            id: "0123456789".into(),
            state: state.into(),
            node: "w1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn ended_tasks_fail_the_wait_with_their_exit_code() {
        assert!(ended_verdict(&task(pb::TaskState::Pending)).is_none());
        assert!(ended_verdict(&task(pb::TaskState::Running)).is_none());
        let failed = pb::Task {
            exit_code: Some(3),
            message: "exited".into(),
            ..task(pb::TaskState::Failed)
        };
        let failure = ended_verdict(&failed).unwrap().unwrap_err();
        assert_eq!(
            failure.message,
            "task 0123456789 ended during the wait: FAILED with exit code 3: exited"
        );
        assert_eq!(
            progress_line(&failed),
            "task 01234567: FAILED on w1 (exited)\n"
        );
        let completed = pb::Task {
            exit_code: Some(0),
            ..task(pb::TaskState::Completed)
        };
        assert!(ended_verdict(&completed).unwrap().is_err());

        let pending = pb::Task {
            node: String::new(),
            message: "0/2 nodes fit: 2 insufficient cpu".into(),
            ..task(pb::TaskState::Pending)
        };
        let failure = not_running_in_time("x", Some(pending), Duration::from_secs(60));
        assert_eq!(
            failure.message,
            "task x is still PENDING after 1m: 0/2 nodes fit: 2 insufficient cpu"
        );
        assert_eq!(
            failure.hint.as_deref(),
            Some("cubectl explain x shows why no node takes it")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn up_means_running_healthy_and_settled() {
        let mut progress = Progress::new(Duration::from_secs(60), Duration::from_secs(1));
        assert!(progress.verdict(&task(pb::TaskState::Scheduled)).is_none());
        assert!(progress.verdict(&task(pb::TaskState::Running)).is_none());
        assert!(progress.up.is_some(), "up, settling");
        assert!(progress.deadline <= Instant::now() + Duration::from_secs(1));
        assert_eq!(progress.at_deadline("x"), Ok(()));
        let again = pb::Task {
            restart_count: 1,
            exit_code: Some(7),
            ..task(pb::TaskState::Running)
        };
        let failure = progress.verdict(&again).unwrap().unwrap_err();
        assert_eq!(
            failure.message,
            "task 0123456789 was restarted during the wait: its last run ended with exit code 7"
        );

        let checked = |healthy| pb::Task {
            spec: Some(pb::TaskSpec {
                health_check: Some(pb::HealthCheck::default()),
                ..Default::default()
            }),
            healthy,
            ..task(pb::TaskState::Running)
        };
        let mut progress = Progress::new(Duration::from_secs(60), Duration::ZERO);
        assert!(
            progress.verdict(&checked(None)).is_none(),
            "not checked yet"
        );
        assert!(progress.verdict(&checked(Some(false))).is_none());
        assert!(progress.at_deadline("x").is_err());
        assert_eq!(progress.verdict(&checked(Some(true))), Some(Ok(())));
    }
}
