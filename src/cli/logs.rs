//! `cubectl logs`: a task's output, streamed from its node through the manager as it comes.

use std::io::Write;

use clap::Args;

use crate::{client::Client, proto::pb};

use super::Outcome;

/// Arguments of `cubectl logs`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  cubectl logs ID\n  cubectl logs -f --tail 10 ID")]
pub struct LogsArgs {
    /// The task.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Keep printing new output until the task ends (Ctrl-C to stop).
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (0: all).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub tail: u32,
    /// Only standard output (with --stderr: both, the default).
    #[arg(long)]
    pub stdout: bool,
    /// Only standard error (with --stdout: both, the default).
    #[arg(long)]
    pub stderr: bool,
}

impl LogsArgs {
    /// The request these arguments stand for.
    pub fn request(&self) -> pb::StreamLogsRequest {
        pb::StreamLogsRequest {
            task_id: self.id.clone(),
            follow: self.follow,
            tail: self.tail,
            stdout: self.stdout,
            stderr: self.stderr,
        }
    }
}

/// Runs `cubectl logs`: standard output chunks go to stdout, standard error chunks to stderr,
/// each written as soon as it arrives.
pub async fn run(client: &Client, args: LogsArgs) -> Outcome {
    let mut stream = client
        .stream_logs(args.request())
        .await
        .map_err(super::task_failure)?;
    while let Some(chunk) = stream.message().await.map_err(|s| client.stream_error(s))? {
        let written = if chunk.stream == i32::from(pb::LogStream::Stderr) {
            let mut err = std::io::stderr().lock();
            err.write_all(&chunk.data).and_then(|()| err.flush())
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(&chunk.data).and_then(|()| out.flush())
        };
        if written.is_err() {
            // The reader went away (`cubectl logs ID | head`): stop quietly.
            return Ok(());
        }
    }
    Ok(())
}
