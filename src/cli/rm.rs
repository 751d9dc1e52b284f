//! `cubectl rm`: remove finished tasks and their events now, as retention would later.

use clap::Args;

use crate::client::Client;

use super::{each::Action, Outcome};

/// Arguments of `cubectl rm`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cubectl rm 0b5c3a52\n  \
    cubectl status -a --state failed -q | xargs cubectl rm")]
pub struct RmArgs {
    /// The finished tasks to remove: ids or unique id prefixes (4 or more characters).
    #[arg(value_name = "TASK", required = true)]
    pub ids: Vec<String>,
}

/// Runs `cubectl rm`: prints each id once its removal is durable.
pub async fn run(client: &Client, args: RmArgs) -> Outcome {
    super::each::run(client, &args.ids, Action::Remove).await
}
