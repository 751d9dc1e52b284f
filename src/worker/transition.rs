//! How a task's state changes on the worker: [`move_to`] is the one place it does, through the
//! state machine; [`finish`] ends a run with it, and [`exit_outcome`] says how an exit ends one.
//!
//! Every other worker file changes a task's state only through these functions, inside a
//! [`Core::update`](super::core::Core::update), so a refused move leaves the task and the store
//! as they were.

use std::time::SystemTime;

use crate::{
    error::Result,
    pb::{self, DesiredState, TaskState},
    proto::timestamp,
    task::{is_finished, move_state, Component},
};

/// Moves `task` to `to` if the state machine allows it. An illegal move is refused with
/// [`crate::Error::Transition`], leaving the task unchanged, and is logged with both states
/// and counted in `cube_illegal_transitions_total` (component `worker`).
pub(crate) fn move_to(task: &mut pb::Task, to: TaskState) -> Result<()> {
    move_state(Component::Worker, task, to)?;
    Ok(())
}

/// Ends a task's run in `to` (COMPLETED or FAILED) through [`move_to`], setting the finish
/// fields. A task already finished is left alone. Returns whether anything changed.
pub(crate) fn finish(
    task: &mut pb::Task,
    to: TaskState,
    exit_code: Option<i64>,
    finished_at: Option<SystemTime>,
    message: String,
) -> Result<bool> {
    if is_finished(task.state()) {
        return Ok(false);
    }
    move_to(task, to)?;
    task.exit_code = exit_code.map(|c| c as i32);
    task.finished_at = Some(timestamp(finished_at.unwrap_or_else(SystemTime::now)));
    task.message = message;
    task.healthy = None;
    Ok(true)
}

/// The state a run that exited ends in, and the message that goes with it.
pub(crate) fn exit_outcome(task: &pb::Task, code: Option<i64>) -> (TaskState, String) {
    if task.desired_state() == DesiredState::Stopped {
        return (TaskState::Completed, "stopped".into());
    }
    match code {
        Some(0) => (TaskState::Completed, "exited with code 0".into()),
        Some(code) => (TaskState::Failed, format!("exited with code {code}")),
        None => (
            TaskState::Failed,
            "the container ended without an exit code".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        error::Error,
        worker::core::{Core, Durability},
        TaskId,
    };

    fn illegal_count(from: &str, to: &str) -> u64 {
        crate::metrics::metrics()
            .illegal_transitions
            .with_label_values(&["worker", from, to])
            .get()
    }

    /// A COMPLETED task told to run again through the worker core's update path is refused:
    /// the update returns the transition error, the task keeps its state, message and revision
    /// (nothing is committed), and the refusal is counted.
    #[tokio::test]
    async fn an_illegal_move_through_the_core_is_refused_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let id = TaskId::new();
        let completed = pb::Task {
            id: id.to_string(),
            state: TaskState::Completed as i32,
            revision: 1,
            message: "exited with code 0".into(),
            ..Default::default()
        };
        let core = Core::for_test(dir.path(), vec![completed.clone()]).unwrap();

        let before = illegal_count("COMPLETED", "RUNNING");
        let refused = core
            .update(id, Durability::Wait, |task| {
                move_to(task, TaskState::Running)?;
                task.message = "running again".into();
                Ok(true)
            })
            .await;
        assert!(matches!(refused, Err(Error::Transition(_))), "{refused:?}");
        assert_eq!(core.get(id), Some(completed), "the task is unchanged");
        assert_eq!(illegal_count("COMPLETED", "RUNNING"), before + 1);

        // Finishing a finished task is no move at all: nothing changes, nothing is counted.
        let before = illegal_count("COMPLETED", "FAILED");
        let mut task = core.get(id).unwrap();
        assert!(!finish(&mut task, TaskState::Failed, None, None, "late".into()).unwrap());
        assert_eq!(task.state(), TaskState::Completed);
        assert_eq!(illegal_count("COMPLETED", "FAILED"), before);
    }

    /// `move_to` on its own refuses a move the table forbids and leaves the task as it was.
    #[test]
    fn move_to_refuses_pending_to_running() {
        let mut task = pb::Task {
            state: TaskState::Pending as i32,
            ..Default::default()
        };
        let before = illegal_count("PENDING", "RUNNING");
        assert!(move_to(&mut task, TaskState::Running).is_err());
        assert_eq!(task.state(), TaskState::Pending);
        assert_eq!(illegal_count("PENDING", "RUNNING"), before + 1);
        move_to(&mut task, TaskState::Scheduled).unwrap();
        assert_eq!(task.state(), TaskState::Scheduled);
    }
}
