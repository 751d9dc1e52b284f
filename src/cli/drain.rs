//! `cubectl drain` and `cubectl undrain`: take a node out of scheduling and back in.

use clap::Args;

use crate::client::Client;

use super::{output::node_state, print_out, Failure, Outcome};

/// Arguments of `cubectl drain` and `cubectl undrain`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  cubectl drain worker-1\n  cubectl undrain worker-1")]
pub struct DrainArgs {
    /// The node's name, as `cubectl nodes` lists it.
    pub node: String,
}

const NODE_HINT: &str = "cubectl nodes lists the nodes";

/// Runs `cubectl drain`: no new tasks go to the node, its tasks are placed elsewhere.
pub async fn drain(client: &Client, args: DrainArgs) -> Outcome {
    let response = client.drain_node(&args.node).await.map_err(node_failure)?;
    print_out(&node_line(&args.node, response.node.as_ref()));
    Ok(())
}

/// Runs `cubectl undrain`: the node takes new tasks again.
pub async fn undrain(client: &Client, args: DrainArgs) -> Outcome {
    let response = client
        .undrain_node(&args.node)
        .await
        .map_err(node_failure)?;
    print_out(&node_line(&args.node, response.node.as_ref()));
    Ok(())
}

fn node_failure(error: crate::client::ClientError) -> Failure {
    let not_found = error.code() == tonic::Code::NotFound;
    let failure = Failure::from(error);
    if not_found {
        failure.with_hint(NODE_HINT)
    } else {
        failure
    }
}

/// `node worker-1 DRAINING`.
fn node_line(name: &str, node: Option<&crate::pb::Node>) -> String {
    match node {
        Some(node) => format!("node {} {}\n", node.name, node_state(node.state)),
        None => format!("node {name}\n"),
    }
}
