//! `cubectl stop`: ask tasks to stop; the manager stops their containers in the background.

use clap::Args;
use tonic::Code;

use crate::client::Client;

use super::{print_err, print_out, Failure, Outcome};

/// Arguments of `cubectl stop`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  cubectl stop 0b5c3a52-1f0e-4d51-9a8e-2f1c7f0e9b11")]
pub struct StopArgs {
    /// The tasks to stop (full ids, as `cubectl run` printed them).
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<String>,
}

/// Runs `cubectl stop`: prints each id once its stop is recorded (like `docker stop`). An id
/// that cannot be stopped (malformed, unknown, or in no state to stop) is reported on stderr
/// and the others are still stopped; then the verb fails, naming how many were stopped. A
/// failure that is not about one task (the manager unreachable) ends the verb at once.
pub async fn run(client: &Client, args: StopArgs) -> Outcome {
    let mut failed: Vec<Failure> = Vec::new();
    let mut stopped = 0;
    for id in &args.ids {
        match client.stop_task(id).await {
            Ok(response) => {
                let id = response.task.map(|t| t.id).unwrap_or_else(|| id.clone());
                print_out(&format!("{id}\n"));
                stopped += 1;
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
                return Err(match stopped {
                    0 => failure,
                    _ => Failure {
                        message: format!(
                            "{}; stopped {stopped} of {} tasks (printed above) before it",
                            failure.message,
                            args.ids.len()
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
            "stopped {stopped} of {} tasks; {} could not be stopped (above)",
            args.ids.len(),
            failed.len()
        ),
        ..first.clone()
    })
}

/// Whether a failed StopTask is about its task alone, so that the other ids are still worth
/// trying.
fn is_about_the_task(code: Code) -> bool {
    matches!(
        code,
        Code::NotFound | Code::InvalidArgument | Code::FailedPrecondition
    )
}
