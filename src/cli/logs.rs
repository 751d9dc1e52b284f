//! `cubectl logs`: a task's output, streamed from its node through the manager as it comes.

use std::io::Write;

use clap::Args;

use crate::{client::Client, proto::pb};

use super::Outcome;

/// Arguments of `cubectl logs`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  cubectl logs ID\n  cubectl logs -f --tail 10 ID\n  \
    cubectl logs --since 10m -t ID\n  cubectl logs --since 2026-12-03T18:00:00Z ID\n\n\
    --since and -t need the time of each line, which the Docker runtime records. The Exec \
    runtime writes output to files without times (and a finished Docker task whose container \
    is gone kept only its text): there both are refused rather than guessed."
)]
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
    /// Only output written since then: a duration back from now (10m, 1h30m) or an RFC 3339
    /// time (2026-12-03T18:00:00Z). Docker runtime only (see below); to the second.
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<prost_types::Timestamp>,
    /// Prefix each line with the time it was written (RFC 3339). Docker runtime only.
    #[arg(short = 't', long)]
    pub timestamps: bool,
}

/// `--since`: a duration back from now, or an RFC 3339 time.
fn parse_since(text: &str) -> Result<prost_types::Timestamp, String> {
    if let Ok(back) = crate::units::parse_duration(text) {
        let then = std::time::SystemTime::now()
            .checked_sub(back)
            .ok_or_else(|| format!("{text} reaches back before 1970"))?;
        return Ok(crate::proto::timestamp(then));
    }
    text.parse::<prost_types::Timestamp>().map_err(|_| {
        format!(
            "expected a duration back from now (10m, 1h30m) or an RFC 3339 time \
             (2026-12-03T18:00:00Z), not {text:?}"
        )
    })
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
            since: self.since,
            timestamps: self.timestamps,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_duration_or_a_time() {
        let now = crate::proto::now().seconds;
        let back = parse_since("10m").unwrap().seconds;
        assert!((now - 601..=now - 599).contains(&back), "{back} vs {now}");
        let at = parse_since("2026-12-03T18:00:00Z").unwrap();
        assert_eq!(at.seconds, 1_796_320_800);
        let error = parse_since("yesterday").unwrap_err();
        assert!(error.contains("RFC 3339"), "{error}");
    }
}
