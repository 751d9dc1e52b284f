//! `cubectl gc`: removes now what retention no longer keeps, as the manager does by itself.

use clap::Args;

use crate::client::Client;

use super::{print_out, Outcome};

/// Arguments of `cubectl gc`.
#[derive(Debug, Args)]
#[command(
    after_help = "The manager removes finished tasks after --retain-finished (and beyond \
                  --max-finished) and forgets nodes DOWN past --forget-nodes-after by itself; \
                  this does it now.\n\nExamples:\n  cubectl gc"
)]
pub struct GcArgs {}

/// Runs `cubectl gc`: `removed 12 finished tasks, forgot 1 node`.
pub async fn run(client: &Client, _args: GcArgs) -> Outcome {
    let response = client.collect_garbage().await?;
    let plural = |n: u32, one: &str| {
        if n == 1 {
            format!("{n} {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    print_out(&format!(
        "removed {}, forgot {}\n",
        plural(response.tasks_removed, "finished task"),
        plural(response.nodes_forgotten, "node")
    ));
    Ok(())
}
