//! `cubectl version`: cubectl's own version and the manager's (GetVersion), so that a
//! mismatch shows before it fails.

use clap::Args;

use crate::{
    client::{Client, ClientError},
    proto::{build_version, pb},
};

use super::{output::to_json_value, print_err, print_out, Failure, Format, Outcome, OutputArg};

/// Arguments of `cubectl version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Print only cubectl's version, without asking the manager.
    #[arg(long)]
    pub client: bool,
    /// Output format (json: `{"client": ..., "server": ...}`, each a GetVersionResponse).
    #[command(flatten)]
    pub output: OutputArg,
}

/// Runs `cubectl version`: the client's line first, then the server's; a manager that cannot
/// be asked fails the verb after the client's line.
pub async fn run(client: &Client, args: VersionArgs) -> Outcome {
    let mine = build_version();
    let server = if args.client {
        None
    } else {
        Some(client.get_version().await.map_err(version_failure))
    };
    if args.output.format == Format::Json {
        let mut both = serde_json::Map::new();
        both.insert("client".into(), to_json_value(&mine));
        if let Some(Ok(theirs)) = &server {
            both.insert("server".into(), to_json_value(theirs));
        }
        print_out(&format!("{:#}\n", serde_json::Value::Object(both)));
    } else {
        print_out(&line("Client", "cubectl", &mine));
        if let Some(Ok(theirs)) = &server {
            print_out(&line("Server", "cube-manager", theirs));
            if theirs.version != mine.version || theirs.proto_package != mine.proto_package {
                print_err(&format!(
                    "warning: cubectl {} and cube-manager {} differ; some verbs may fail\n",
                    mine.version, theirs.version
                ));
            }
        }
    }
    match server {
        Some(Err(failure)) => Err(failure),
        _ => Ok(()),
    }
}

/// `Client: cubectl 0.1.0 (proto cube.v1, commit 0123abcd)`.
fn line(side: &str, program: &str, version: &pb::GetVersionResponse) -> String {
    format!(
        "{side}: {program} {} (proto {}, commit {})\n",
        version.version, version.proto_package, version.commit
    )
}

/// A manager without GetVersion is older than cubectl.
fn version_failure(error: ClientError) -> Failure {
    let unimplemented = error.code() == tonic::Code::Unimplemented;
    let failure = Failure::from(error);
    if unimplemented {
        return failure.with_hint("the manager predates GetVersion: it is older than cubectl");
    }
    failure
}
