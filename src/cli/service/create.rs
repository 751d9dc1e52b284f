//! `cubectl service create`: every `run` flag describes the task, `--name` names the service
//! and `--replicas` says how many copies run.

use clap::Args;

use crate::{
    cli::{print_out, run::RunArgs, Failure, Outcome},
    client::Client,
    proto::pb,
};

/// Arguments of `cubectl service create`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  \
    cubectl service create --name web --replicas 3 --image cube-test/busybox:latest \
    -- httpd -f -p 8080")]
pub struct CreateArgs {
    /// The task, as `cubectl run` takes it: --name is the service's name, --replicas how many
    /// copies to keep running (-f, --wait and --count other than through --replicas are
    /// not for services).
    #[command(flatten)]
    pub run: RunArgs,
    /// How later updates roll out.
    #[command(flatten)]
    pub update: super::flags::UpdateFlags,
    /// Return once the service is stored, without following its replicas as they start.
    #[arg(short = 'd', long)]
    pub detach: bool,
}

/// Runs `cubectl service create`: prints the service's id once it is stored, then follows
/// its replicas until every one is up (unless `--detach`).
pub async fn run(client: &Client, args: CreateArgs) -> Outcome {
    let run = &args.run;
    if run.file.is_some() || run.wait {
        return Err(Failure::new(
            "service create takes the task as flags; -f and --wait are `cubectl run`'s",
            "cubectl service ps NAME shows the replicas as they start",
        )
        .with_exit_code(2));
    }
    let name = run.name.clone().ok_or_else(|| {
        Failure::new(
            "service create needs --name",
            "e.g. cubectl service create --name web --replicas 3 --image IMAGE",
        )
        .with_exit_code(2)
    })?;
    let spec = pb::ServiceSpec {
        name,
        task: Some(run.spec()),
        replicas: run.count,
        update_config: args.update.apply(None),
        rollback_config: None,
    };
    let response = client
        .create_service(spec)
        .await
        .map_err(super::service_failure)?;
    let service = response.service.unwrap_or_default();
    print_out(&format!("{}\n", service.id));
    if args.detach {
        return Ok(());
    }
    let name = service.spec.unwrap_or_default().name;
    super::progress::follow(client, &name, service.task_version).await
}
