//! `cubectl service rm NAME...`: remove services; their tasks are stopped.

use clap::Args;

use crate::{
    cli::{print_out, Outcome},
    client::Client,
};

/// Arguments of `cubectl service rm`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The services.
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
}

/// Runs `cubectl service rm`: prints each name once its removal is stored.
pub async fn run(client: &Client, args: RemoveArgs) -> Outcome {
    for name in &args.names {
        client
            .delete_service(name)
            .await
            .map_err(super::service_failure)?;
        print_out(&format!("{name}\n"));
    }
    Ok(())
}
