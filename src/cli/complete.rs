//! `cubectl __complete` (hidden): the task ids, task names and node names a shell completes,
//! asked of the manager with a short timeout. The bash script of `cubectl completion bash`
//! calls it (with stderr silenced, so a manager that does not answer in time completes
//! nothing instead of filling the prompt with errors); it prints one candidate a line.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::{client::Client, proto::pb};

use super::{output::short_id, print_out, Outcome};

/// How long completion waits for the manager: a shell must not hang on a Tab.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// The most tasks completion offers (one ListTasks page).
const MAX_TASKS: i32 = 1000;

/// Arguments of `cubectl __complete`.
#[derive(Debug, Args)]
pub struct CompleteArgs {
    /// What to complete.
    #[arg(value_enum)]
    pub what: What,
    /// Only candidates starting with this.
    #[arg(default_value = "")]
    pub prefix: String,
}

/// What `__complete` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum What {
    /// The short ids and names of unfinished tasks (names stand only for those), then the
    /// short ids of finished ones, up to 1000 tasks in all.
    Tasks,
    /// Node names.
    Nodes,
}

/// Runs `cubectl __complete`: the candidates, one a line, sorted and without repeats.
pub async fn run(client: &Client, args: CompleteArgs) -> Outcome {
    let mut words = match args.what {
        What::Tasks => tasks(client).await,
        What::Nodes => nodes(client).await,
    }?;
    words.retain(|w| !w.is_empty() && w.starts_with(&args.prefix));
    words.sort();
    words.dedup();
    let mut text = words.join("\n");
    text.push('\n');
    print_out(&text);
    Ok(())
}

async fn tasks(client: &Client) -> Result<Vec<String>, crate::client::ClientError> {
    let page = |unfinished| pb::ListTasksRequest {
        unfinished,
        page_size: MAX_TASKS,
        ..Default::default()
    };
    let open = client.list_tasks(page(true)).await?.tasks;
    let mut words: Vec<String> = open
        .iter()
        .flat_map(|t| {
            [
                short_id(&t.id).to_string(),
                t.spec.as_ref().map_or(String::new(), |s| s.name.clone()),
            ]
        })
        .collect();
    if open.len() < MAX_TASKS as usize {
        let all = client.list_tasks(page(false)).await?.tasks;
        let room = MAX_TASKS as usize - open.len();
        words.extend(
            all.iter()
                .rev()
                .take(room)
                .map(|t| short_id(&t.id).to_string()),
        );
    }
    Ok(words)
}

async fn nodes(client: &Client) -> Result<Vec<String>, crate::client::ClientError> {
    let nodes = client.list_nodes().await?.nodes;
    Ok(nodes.into_iter().map(|n| n.name).collect())
}
