//! `cubectl stop`: ask tasks to stop; the manager stops their containers in the background.

use clap::Args;

use crate::client::Client;

use super::{print_out, Outcome};

/// Arguments of `cubectl stop`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  cubectl stop 0b5c3a52-1f0e-4d51-9a8e-2f1c7f0e9b11")]
pub struct StopArgs {
    /// The tasks to stop (full ids, as `cubectl run` printed them).
    #[arg(value_name = "ID", required = true)]
    pub ids: Vec<String>,
}

/// Runs `cubectl stop`: prints each id once its stop is recorded (like `docker stop`); stops
/// at the first task that cannot be stopped.
pub async fn run(client: &Client, args: StopArgs) -> Outcome {
    for id in &args.ids {
        let response = client.stop_task(id).await.map_err(super::task_failure)?;
        let id = response.task.map(|t| t.id).unwrap_or_else(|| id.clone());
        print_out(&format!("{id}\n"));
    }
    Ok(())
}
