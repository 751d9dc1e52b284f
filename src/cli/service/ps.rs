//! `cubectl service ps NAME`: a service's tasks by slot, newest first within a slot.

use std::time::SystemTime;

use clap::Args;

use crate::{
    cli::{output, Outcome, OutputArg},
    client::Client,
    proto::pb,
};

/// Arguments of `cubectl service ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// The service.
    pub name: String,
    /// Show only tasks wanted running (not the ones stopped or replaced).
    #[arg(long)]
    pub running: bool,
    #[command(flatten)]
    output: OutputArg,
}

/// Runs `cubectl service ps`.
pub async fn run(client: &Client, args: PsArgs) -> Outcome {
    let mut tasks = client
        .service_tasks(&args.name)
        .await
        .map_err(super::service_failure)?;
    if args.running {
        tasks.retain(|t| t.desired_state() == pb::DesiredState::Running);
    }
    tasks.sort_by_key(|t| (t.slot, std::cmp::Reverse(t.created_at.map(|c| c.seconds))));
    let response = pb::ListTasksResponse {
        tasks,
        next_page_token: String::new(),
    };
    let now = SystemTime::now();
    output::print(args.output.format, &response, |response| {
        let mut header = vec!["SLOT", "VERSION", "DESIRED"];
        header.extend(output::COLUMNS);
        let mut table = output::Table::new(&header);
        for task in &response.tasks {
            let desired = output::enum_name(task.desired_state().as_str_name(), "DESIRED_STATE_");
            let mut row = vec![
                task.slot.to_string(),
                task.service_version.to_string(),
                desired,
            ];
            row.extend(output::row(task, now));
            table.row(row);
        }
        table.render()
    })
}
