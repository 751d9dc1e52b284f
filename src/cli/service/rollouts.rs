//! `cubectl service rollouts NAME`: the service's rollouts, oldest first (the last 10), each
//! with the versions it moved between, its state, its times and why it ended.

use clap::Args;

use crate::{
    cli::{output, Outcome, OutputArg},
    client::Client,
    proto::pb,
};

/// Arguments of `cubectl service rollouts`.
#[derive(Debug, Args)]
pub struct RolloutsArgs {
    /// The service.
    pub name: String,
    #[command(flatten)]
    output: OutputArg,
}

/// Runs `cubectl service rollouts`: a table, or with `-o json` its id and `rollouts`.
pub async fn run(client: &Client, args: RolloutsArgs) -> Outcome {
    let response = client
        .get_service(&args.name)
        .await
        .map_err(super::service_failure)?;
    let service = response.service.unwrap_or_default();
    let history = pb::Service {
        id: service.id,
        rollouts: service.rollouts,
        ..Default::default()
    };
    output::print(args.output.format, &history, |history| {
        let mut table =
            output::Table::new(&["#", "FROM", "TO", "STATE", "STARTED", "ENDED", "MESSAGE"]);
        for (n, rollout) in history.rollouts.iter().enumerate() {
            table.row(vec![
                (n + 1).to_string(),
                rollout.from_task_version.to_string(),
                rollout.task_version.to_string(),
                output::enum_name(rollout.state().as_str_name(), "ROLLOUT_STATE_"),
                output::format_time(rollout.started_at.as_ref()),
                rollout
                    .ended_at
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |t| output::format_time(Some(t))),
                rollout.message.clone(),
            ]);
        }
        table.render()
    })
}
