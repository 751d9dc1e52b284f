//! `cubectl service update NAME` and `cubectl service rollback NAME`: change the task (read,
//! change, write back with the version read, so a concurrent change is not overwritten) or
//! go back to the spec before the last update.

use clap::Args;

use crate::{
    cli::{print_out, run::parse_pair, Outcome},
    client::Client,
};

/// Arguments of `cubectl service update`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  cubectl service update web --image cube-test/busybox:latest \
    --env MODE=new -- httpd -f -p 8080"
)]
pub struct UpdateArgs {
    /// The service.
    pub name: String,
    /// A new image.
    #[arg(long)]
    pub image: Option<String>,
    /// Set an environment variable (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub env: Vec<(String, String)>,
    /// Remove an environment variable (repeatable).
    #[arg(long = "env-rm", value_name = "KEY")]
    pub env_rm: Vec<String>,
    /// New replicas.
    #[arg(long)]
    pub replicas: Option<u32>,
    /// How this and later updates roll out.
    #[command(flatten)]
    pub update: super::flags::UpdateFlags,
    /// Return once the update is stored, without following its rollout.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// New command arguments (after `--`; replace the old ones).
    #[arg(value_name = "ARGS", trailing_var_arg = true)]
    pub args: Vec<String>,
}

/// Runs `cubectl service update`: prints the new version, then follows the rollout until it
/// ends (unless `--detach`); a rollout that pauses or rolls back is a failure.
pub async fn run(client: &Client, args: UpdateArgs) -> Outcome {
    let current = client
        .get_service(&args.name)
        .await
        .map_err(super::service_failure)?
        .service
        .unwrap_or_default();
    let mut spec = current.spec.clone().unwrap_or_default();
    let task = spec.task.get_or_insert_with(Default::default);
    if let Some(image) = args.image {
        task.image = image;
    }
    for key in &args.env_rm {
        task.env.remove(key);
    }
    task.env.extend(args.env);
    if !args.args.is_empty() {
        task.args = args.args;
    }
    if let Some(replicas) = args.replicas {
        spec.replicas = replicas;
    }
    spec.update_config = args.update.apply(spec.update_config.take());
    let response = client
        .update_service(spec, current.version)
        .await
        .map_err(super::service_failure)?;
    let service = response.service.unwrap_or_default();
    print_out(&format!(
        "{} updated to version {}\n",
        args.name, service.version
    ));
    if args.detach {
        return Ok(());
    }
    super::progress::follow(client, &args.name, service.task_version).await
}

/// Arguments of `cubectl service rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The service.
    pub name: String,
}

/// Runs `cubectl service rollback`.
pub async fn rollback(client: &Client, args: RollbackArgs) -> Outcome {
    let response = client
        .rollback_service(&args.name)
        .await
        .map_err(super::service_failure)?;
    let version = response.service.unwrap_or_default().version;
    print_out(&format!("{} rolled back (version {version})\n", args.name));
    Ok(())
}
