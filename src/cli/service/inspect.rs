//! `cubectl service inspect NAME`: the service as stored, in proto3 JSON.

use clap::Args;

use crate::{
    cli::{output, print_out, Outcome},
    client::Client,
};

/// Arguments of `cubectl service inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The service.
    pub name: String,
}

/// Runs `cubectl service inspect`: prints the GetService response as JSON (as `docker service
/// inspect` prints JSON), the shape grpcurl prints.
pub async fn run(client: &Client, args: InspectArgs) -> Outcome {
    let response = client
        .get_service(&args.name)
        .await
        .map_err(super::service_failure)?;
    print_out(&output::to_json(&response));
    Ok(())
}
