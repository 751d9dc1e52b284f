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
    /// Only tasks with all these labels.
    pub labels: Vec<(String, String)>,
}

/// Runs `cubectl watch`.
pub async fn run(client: &Client, args: WatchArgs) -> Outcome {
    let filter = Filter {
        ids: args.id.into_iter().collect(),
        state: args.filter.state,
        node: args.filter.node,
        labels: args.filter.labels,
    };
    follow(client, filter, args.output.format).await
}

/// Minimum widths of the watch columns: a stream cannot be measured before it is printed, so
/// columns get room for typical values and longer values push the rest right.
const WIDTHS: [usize; 9] = [8, 16, 9, 9, 12, 24, 4, 8, 4];

/// Prints the current tasks, then a line per change, until the stream ends or the user stops.
/// When the manager drops a watch that fell behind (UNAVAILABLE), it watches again, which
/// prints the current state afresh.
pub async fn follow(client: &Client, filter: Filter, format: Format) -> Outcome {
    let request = pb::WatchTasksRequest {
        task_ids: filter.ids,
        state: state_filter(filter.state).into(),
        node: filter.node.unwrap_or_default(),
        labels: filter.labels.into_iter().collect(),
    };
    if format == Format::Table {
        print_out(&line(&super::output::COLUMNS.map(String::from)));
    }
    let mut shown = Shown::default();
    loop {
        let mut stream = client.watch_tasks(request.clone()).await?;
        let ended = loop {
            match stream.message().await {
                Ok(Some(message)) => render(&message, format, &mut shown),
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

/// The last row printed for each task, so that a change to something the table does not show
/// (a revision, a container id) prints no row identical to the one before.
#[derive(Default)]
struct Shown {
    rows: std::collections::HashMap<String, Vec<String>>,
}

impl Shown {
    /// Whether `row` differs from the last row printed for `task` (its age aside, which moves
    /// by itself); remembers it.
    fn changed(&mut self, task: &pb::Task, row: &[String]) -> bool {
        let mut key = row.to_vec();
        if let Some(age) = super::output::COLUMNS.iter().position(|c| *c == "AGE") {
            key.remove(age);
        }
        if self.rows.get(&task.id) == Some(&key) {
            return false;
        }
        self.rows.insert(task.id.clone(), key);
        true
    }
}

fn render(message: &pb::WatchTasksResponse, format: Format, shown: &mut Shown) {
    match format {
        Format::Json => print_out(&to_json_line(message)),
        Format::Table => {
            if let Some(task) = &message.task {
                let row = super::output::row(task, SystemTime::now());
                if shown.changed(task, &row) {
                    print_out(&line(&row));
                }
            } else if message.synced {
                print_err("-- watching for changes (Ctrl-C to stop)\n");
            }
        }
    }
}

/// One row with the fixed minimum widths.
fn line(cells: &[String]) -> String {
    super::output::fixed_line(cells, &WIDTHS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_columns_for_typical_values() {
        let header = line(&crate::cli::output::COLUMNS.map(String::from));
        assert_eq!(
            header,
            "ID         NAME               STATE       HEALTH      NODE           IMAGE                      AGE    RESTARTS   EXIT\n"
        );
        let row = line(&[
            "01234567".into(),
            "web".into(),
            "RUNNING".into(),
            "".into(),
            "w1".into(),
            "busybox".into(),
            "5s".into(),
            "0".into(),
            "".into(),
        ]);
        assert_eq!(row.find("RUNNING"), header.find("STATE"));
        assert_eq!(row.find("5s"), header.rfind("AGE"), "IMAGE holds AGE too");
    }

    #[test]
    fn a_change_the_table_does_not_show_prints_no_row() {
        let mut shown = Shown::default();
        let task = pb::Task {
            id: "0b5c3a52-1f0e-4d51-9a8e-2f1c7f0e9b11".into(),
            state: pb::TaskState::Running as i32,
            ..Default::default()
        };
        let now = SystemTime::now();
        let row = crate::cli::output::row(&task, now);
        assert!(shown.changed(&task, &row), "the first row prints");
        let revised = pb::Task {
            revision: 7,
            container_id: "c1".into(),
            ..task.clone()
        };
        let later = now + std::time::Duration::from_secs(90);
        let same = crate::cli::output::row(&revised, later);
        assert!(!shown.changed(&revised, &same), "only the age moved");
        let failed = pb::Task {
            state: pb::TaskState::Failed as i32,
            ..revised
        };
        let row = crate::cli::output::row(&failed, later);
        assert!(shown.changed(&failed, &row), "a new state prints");
    }
}
