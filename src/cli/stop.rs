//! `cubectl stop`: ask tasks to stop, named one by one or chosen by selectors; the manager
//! stops their containers in the background.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;

use crate::client::Client;

use super::{each::Action, Failure, Outcome, TaskFilterArgs};

/// More matching tasks than this are stopped only after a confirmation (or `--yes`).
const CONFIRM_ABOVE: usize = 10;

/// Arguments of `cubectl stop`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cubectl stop web              (a name, an id prefix such as 0b5c3a52, or an id)\n  \
    cubectl stop 0b5c3a52 7f1e9d20\n  \
    cubectl stop --label app=shop --state running\n  \
    cubectl stop --all --yes")]
pub struct StopArgs {
    /// The tasks to stop: ids, unique id prefixes (4 or more characters) or names of one
    /// unfinished task each.
    #[arg(value_name = "TASK", required_unless_present_any = ["all", "name", "labels", "state", "node"])]
    pub ids: Vec<String>,
    /// Stop every unfinished task (with the selectors below: every one they match).
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// Stop the unfinished tasks with this name.
    #[arg(long, value_name = "NAME", conflicts_with = "ids")]
    pub name: Option<String>,
    /// Which tasks (combinable: a task must match all).
    #[command(flatten)]
    pub filter: TaskFilterArgs,
    /// Stop more than 10 tasks without asking.
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// Runs `cubectl stop`: prints each id once its stop is recorded (like `docker stop`).
pub async fn run(client: &Client, args: StopArgs) -> Outcome {
    if !args.ids.is_empty() {
        if args.filter.state.is_some()
            || args.filter.node.is_some()
            || !args.filter.labels.is_empty()
        {
            return Err(Failure::new(
                "tasks named one by one cannot be combined with --state, --node or --label",
                "name the tasks, or choose them with selectors",
            )
            .with_exit_code(2));
        }
        return super::each::run(client, &args.ids, Action::Stop).await;
    }
    let mut request = args.filter.list_request(true);
    request.name = args.name.clone().unwrap_or_default();
    let tasks = client.list_all_tasks(request).await?.tasks;
    if tasks.is_empty() {
        super::print_err("no unfinished task matches; nothing to stop\n");
        return Ok(());
    }
    if tasks.len() > CONFIRM_ABOVE && !args.yes {
        confirm(tasks.len())?;
    }
    let ids: Vec<String> = tasks.into_iter().map(|t| t.id).collect();
    super::each::run(client, &ids, Action::Stop).await
}

/// Asks on the terminal whether to stop `count` tasks; refuses when stdin is no terminal.
fn confirm(count: usize) -> Outcome {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::new(
            format!("{count} tasks match; stopping more than {CONFIRM_ABOVE} needs a confirmation, and stdin is no terminal to ask on"),
            "add --yes to stop them all, or narrow the selection (cubectl status lists what matches)",
        ));
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "Stop {count} tasks? [y/N] ");
    let _ = err.flush();
    let mut answer = String::new();
    let _ = stdin.lock().read_line(&mut answer);
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Failure::new(
            "nothing stopped",
            "answer y to stop them, or pass --yes",
        )),
    }
}
