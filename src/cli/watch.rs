//! `cubectl watch` (and `status --watch`): render the WatchTasks stream live, a line per change.

use std::time::SystemTime;

use clap::Args;

use tonic::Code;

use crate::{
    client::{Client, ClientError},
    proto::pb,
};

use super::{
    output::to_json_line, print_err, print_out, state_filter, Failure, Format, Outcome, OutputArg,
    StateArg, TaskFilterArgs,
};

/// Arguments of `cubectl watch`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  cubectl watch\n  cubectl watch --state failed -o json")]
pub struct WatchArgs {
    /// Only this task.
    #[arg(value_name = "ID")]
    pub id: Option<String>,
    /// Which tasks.
    #[command(flatten)]
    pub filter: TaskFilterArgs,
    /// Output format (json: one WatchTasksResponse per line).
    #[command(flatten)]
    pub output: OutputArg,
}

/// Which tasks to watch.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these tasks (empty: all).
    pub ids: Vec<String>,
    /// Only tasks in this state.
    pub state: Option<StateArg>,
    /// Only tasks on this node.
    pub node: Option<String>,
}

/// Runs `cubectl watch`.
pub async fn run(client: &Client, args: WatchArgs) -> Outcome {
    let filter = Filter {
        ids: args.id.into_iter().collect(),
        state: args.filter.state,
        node: args.filter.node,
    };
    follow(client, filter, args.output.format).await
}

/// Minimum widths of the watch columns: a stream cannot be measured before it is printed, so
/// columns get room for typical values and longer values push the rest right.
const WIDTHS: [usize; 8] = [8, 16, 9, 12, 24, 4, 8, 4];

/// Prints the current tasks, then a line per change, until the stream ends or the user stops.
/// When the manager drops a watch that fell behind (UNAVAILABLE), it watches again, which
/// prints the current state afresh.
pub async fn follow(client: &Client, filter: Filter, format: Format) -> Outcome {
    let request = pb::WatchTasksRequest {
        task_ids: filter.ids,
        state: state_filter(filter.state).into(),
        node: filter.node.unwrap_or_default(),
    };
    if format == Format::Table {
        print_out(&line(&super::output::COLUMNS.map(String::from)));
    }
    loop {
        let mut stream = client.watch_tasks(request.clone()).await?;
        let ended = loop {
            match stream.message().await {
                Ok(Some(message)) => render(&message, format),
                Ok(None) => break None,
                Err(status) => break Some(client.stream_error(status)),
            }
        };
        match ended {
            Some(ClientError::Rpc(status)) if status.code() == Code::Unavailable => {
                print_err(&format!("-- {}; watching again\n", status.message()));
            }
            Some(error) => return Err(error.into()),
            None => {
                return Err(Failure::new(
                    "the manager ended the watch",
                    "it is probably shutting down; cubectl watch again once it is back",
                ))
            }
        }
    }
}

fn render(message: &pb::WatchTasksResponse, format: Format) {
    match format {
        Format::Json => print_out(&to_json_line(message)),
        Format::Table => {
            if let Some(task) = &message.task {
                print_out(&line(&super::output::row(task, SystemTime::now())));
            } else if message.synced {
                print_err("-- watching for changes (Ctrl-C to stop)\n");
            }
        }
    }
}

/// One row with the fixed minimum widths.
fn line(cells: &[String]) -> String {
    let mut out = String::new();
    for (i, cell) in cells.iter().enumerate() {
        out.push_str(cell);
        if i + 1 < cells.len() {
            let width = WIDTHS.get(i).copied().unwrap_or(0);
            let pad = width.saturating_sub(cell.chars().count()) + 3;
            out.extend(std::iter::repeat_n(' ', pad));
        }
    }
    let mut out = out.trim_end().to_string();
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_columns_for_typical_values() {
        let header = line(&crate::cli::output::COLUMNS.map(String::from));
        assert_eq!(
            header,
            "ID         NAME               STATE       NODE           IMAGE                      AGE    RESTARTS   EXIT\n"
        );
        let row = line(&[
            "01234567".into(),
            "web".into(),
            "RUNNING".into(),
            "w1".into(),
            "busybox".into(),
            "5s".into(),
            "0".into(),
            "".into(),
        ]);
        assert_eq!(row.find("RUNNING"), header.find("STATE"));
        assert_eq!(row.find("5s"), header.rfind("AGE"), "IMAGE holds AGE too");
    }
}
