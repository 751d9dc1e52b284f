//! One call per task for the verbs that take several (`stop`, `rm`): each id is printed once
//! its call succeeds; a task that cannot be acted on is reported and the others still are.

use tonic::Code;

use crate::client::{Client, ClientError};

use super::{print_err, print_out, Failure, Outcome};

/// What is done to each task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// StopTask.
    Stop,
    /// RemoveTask.
    Remove,
}

impl Action {
    /// The past participle, for the summary: "stopped 3 of 4 tasks".
    fn done(self) -> &'static str {
        match self {
            Action::Stop => "stopped",
            Action::Remove => "removed",
        }
    }

    /// Makes the call; the task's full id.
    async fn call(self, client: &Client, id: &str) -> Result<String, ClientError> {
        let task = match self {
            Action::Stop => client.stop_task(id).await?.task,
            Action::Remove => client.remove_task(id).await?.task,
        };
        Ok(task.map(|t| t.id).unwrap_or_else(|| id.to_string()))
    }
}

/// Acts on each of `ids`. A reference that fails on its own (malformed, unknown, ambiguous,
/// in no state for it) is reported on stderr and the others are still tried; then the verb
/// fails, naming how many succeeded. A failure that is not about one task (the manager
/// unreachable) ends the verb at once.
pub async fn run(client: &Client, ids: &[String], action: Action) -> Outcome {
    let mut failed: Vec<Failure> = Vec::new();
    let mut done = 0;
    let verb = action.done();
    for id in ids {
        match action.call(client, id).await {
            Ok(full) => {
                print_out(&format!("{full}\n"));
                done += 1;
            }
            Err(error) if is_about_the_task(error.code()) => {
                let mut failure = super::task_failure(error);
                if !failure.message.contains(id.as_str()) {
                    failure.message = format!("{id}: {}", failure.message);
                }
                print_err(&format!("error: {}\n", failure.message));
                failed.push(failure);
            }
            Err(error) => {
                let failure = Failure::from(error);
                return Err(match done {
                    0 => failure,
                    _ => Failure {
                        message: format!(
                            "{}; {verb} {done} of {} tasks (printed above) before it",
                            failure.message,
                            ids.len()
                        ),
                        ..failure
                    },
                });
            }
        }
    }
    let Some(first) = failed.first() else {
        return Ok(());
    };
    Err(Failure {
        message: format!(
            "{verb} {done} of {} tasks; {} could not be (above)",
            ids.len(),
            failed.len()
        ),
        ..first.clone()
    })
}

/// Whether a failed call is about its task alone, so that the other ids are still worth
/// trying.
fn is_about_the_task(code: Code) -> bool {
    matches!(
        code,
        Code::NotFound | Code::InvalidArgument | Code::FailedPrecondition
    )
}
