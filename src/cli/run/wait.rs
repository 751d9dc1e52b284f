//! `cubectl run --wait`: follow a submitted task until it runs, fails or the wait times out,
//! printing each change on stderr.

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

/// Follows one task until it is RUNNING (or finished well), printing each change on stderr.
/// Uses WatchTasks, or polls GetTask when the manager does not stream.
pub async fn wait_until_running(client: &Client, id: &str, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut progress = Progress::default();
    let watch = client
        .watch_tasks(pb::WatchTasksRequest {
            task_ids: vec![id.to_string()],
            ..Default::default()
        })
        .await;
    match watch {
        Ok(mut stream) => loop {
            match tokio::time::timeout_at(deadline, stream.message()).await {
                Err(_) => return Err(not_running_in_time(id, progress.last, timeout)),
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
        if Instant::now() + WAIT_POLL_INTERVAL >= deadline {
            return Err(not_running_in_time(id, progress.last, timeout));
        }
        tokio::time::sleep(WAIT_POLL_INTERVAL).await;
    }
}

/// What `--wait` has seen of a task: prints a line on stderr when its state, node or message
/// changes, and decides when the wait is over.
#[derive(Debug, Default)]
struct Progress {
    last: Option<pb::Task>,
}

impl Progress {
    fn observe(&mut self, task: pb::Task) -> Option<Outcome> {
        let changed = self.last.as_ref().is_none_or(|last| {
            (last.state, &last.node, &last.message) != (task.state, &task.node, &task.message)
        });
        if changed {
            print_err(&progress_line(&task));
        }
        let outcome = wait_verdict(&task);
        self.last = Some(task);
        outcome
    }
}

/// One progress line: `task 1234abcd: SCHEDULED on w1`.
fn progress_line(task: &pb::Task) -> String {
    let mut line = format!("task {}: {}", short_id(&task.id), task_state(task.state));
    if !task.node.is_empty() {
        line.push_str(&format!(" on {}", task.node));
    }
    if !task.message.is_empty() {
        line.push_str(&format!(" ({})", task.message));
    }
    line.push('\n');
    line
}

/// Whether waiting for `task` is over: RUNNING or COMPLETED succeed, FAILED fails.
fn wait_verdict(task: &pb::Task) -> Option<Outcome> {
    match pb::TaskState::try_from(task.state) {
        Ok(pb::TaskState::Running | pb::TaskState::Completed) => Some(Ok(())),
        Ok(pb::TaskState::Failed) => {
            let mut message = format!("task {} FAILED", task.id);
            if let Some(code) = task.exit_code {
                message.push_str(&format!(" with exit code {code}"));
            }
            if !task.message.is_empty() {
                message.push_str(&format!(": {}", task.message));
            }
            Some(Err(Failure::new(
                message,
                format!(
                    "cubectl logs {0} shows its output, cubectl events {0} its history",
                    task.id
                ),
            )))
        }
        _ => None,
    }
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

    #[test]
    fn wait_verdicts() {
        let task = |state: pb::TaskState| pb::Task {
            id: "0123456789".into(),
            state: state.into(),
            node: "w1".into(),
            ..Default::default()
        };
        assert!(wait_verdict(&task(pb::TaskState::Pending)).is_none());
        assert!(wait_verdict(&task(pb::TaskState::Scheduled)).is_none());
        assert_eq!(wait_verdict(&task(pb::TaskState::Running)), Some(Ok(())));
        let failed = pb::Task {
            exit_code: Some(3),
            message: "exited".into(),
            ..task(pb::TaskState::Failed)
        };
        let failure = wait_verdict(&failed).unwrap().unwrap_err();
        assert_eq!(
            failure.message,
            "task 0123456789 FAILED with exit code 3: exited"
        );
        assert_eq!(
            progress_line(&failed),
            "task 01234567: FAILED on w1 (exited)\n"
        );

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
}
