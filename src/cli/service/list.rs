//! `cubectl service ls`: every service with its running and desired replicas.

use clap::Args;

use crate::{
    cli::{output, Format, Outcome, OutputArg},
    client::Client,
    proto::pb,
};

/// Arguments of `cubectl service ls`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    output: OutputArg,
}

/// Runs `cubectl service ls`. REPLICAS is running/desired, counting tasks RUNNING at the
/// service's current version.
pub async fn run(client: &Client, args: ListArgs) -> Outcome {
    let services = client
        .list_all_services()
        .await
        .map_err(super::service_failure)?;
    let mut running = Vec::with_capacity(services.len());
    if args.output.format == Format::Table {
        for service in &services {
            let name = service.spec.as_ref().map_or("", |s| s.name.as_str());
            let tasks = client
                .service_tasks(name)
                .await
                .map_err(super::service_failure)?;
            running.push(
                tasks
                    .iter()
                    .filter(|t| {
                        t.state() == pb::TaskState::Running
                            && t.service_version == service.task_version
                    })
                    .count(),
            );
        }
    }
    let response = pb::ListServicesResponse {
        services,
        next_page_token: String::new(),
    };
    output::print(args.output.format, &response, |response| {
        let mut table = output::Table::new(&["ID", "NAME", "REPLICAS", "VERSION", "IMAGE"]);
        for (service, running) in response.services.iter().zip(&running) {
            let spec = service.spec.clone().unwrap_or_default();
            let image = spec.task.map(|t| t.image).unwrap_or_default();
            table.row(vec![
                output::short_id(&service.id).to_string(),
                spec.name,
                format!("{running}/{}", spec.replicas),
                service.version.to_string(),
                image,
            ]);
        }
        table.render()
    })
}
