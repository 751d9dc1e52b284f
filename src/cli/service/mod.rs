//! `cubectl service`: services, one file per sub-verb. A service keeps `--replicas` copies of
//! a task running, one per slot, and replaces them slot by slot when its task changes.

use clap::{Args, Subcommand};
use tonic::Code;

use crate::client::{Client, ClientError};

use super::{Failure, Outcome};

mod create;
mod explain;
mod flags;
mod inspect;
mod list;
mod progress;
mod ps;
mod remove;
mod rollouts;
mod scale;
mod update;

/// Arguments of `cubectl service`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// What to do with services.
    #[command(subcommand)]
    pub command: ServiceCommand,
}

/// The sub-verbs of `cubectl service`.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Declare a service: keep --replicas copies of a task running.
    Create(Box<create::CreateArgs>),
    /// List services with their running and desired replicas.
    Ls(list::ListArgs),
    /// List a service's tasks, by slot.
    Ps(ps::PsArgs),
    /// Show a service's spec and versions.
    Inspect(inspect::InspectArgs),
    /// Set the replicas of services: NAME=N...
    Scale(scale::ScaleArgs),
    /// Change a service's task; its tasks are replaced one slot at a time.
    Update(Box<update::UpdateArgs>),
    /// Go back to a service's spec before its last update.
    Rollback(update::RollbackArgs),
    /// Remove services and stop their tasks.
    Rm(remove::RemoveArgs),
    /// List a service's rollouts (the last 10): versions, state, times and why each ended.
    Rollouts(rollouts::RolloutsArgs),
    /// Say for each slot whether its replica is up, and if not why.
    Explain(explain::ExplainArgs),
}

/// Runs `cubectl service ...`.
pub async fn run(client: &Client, args: ServiceArgs) -> Outcome {
    match args.command {
        ServiceCommand::Create(args) => create::run(client, *args).await,
        ServiceCommand::Ls(args) => list::run(client, args).await,
        ServiceCommand::Ps(args) => ps::run(client, args).await,
        ServiceCommand::Inspect(args) => inspect::run(client, args).await,
        ServiceCommand::Scale(args) => scale::run(client, args).await,
        ServiceCommand::Update(args) => update::run(client, *args).await,
        ServiceCommand::Rollback(args) => update::rollback(client, args).await,
        ServiceCommand::Rm(args) => remove::run(client, args).await,
        ServiceCommand::Explain(args) => explain::run(client, args).await,
        ServiceCommand::Rollouts(args) => rollouts::run(client, args).await,
    }
}

/// A failed call about a service, with a hint that fits services.
pub(crate) fn service_failure(error: ClientError) -> Failure {
    let code = error.code();
    let failure = Failure::from(error);
    match code {
        Code::NotFound => failure.with_hint("cubectl service ls lists services"),
        Code::InvalidArgument => failure.with_hint(
            "fix the field named above; `cubectl service create --help` lists the flags",
        ),
        Code::AlreadyExists => {
            failure.with_hint("pick another name, or change the service with `service update`")
        }
        Code::Aborted => failure.with_hint("the service changed meanwhile; run the command again"),
        Code::FailedPrecondition => failure.with_hint("cubectl service inspect NAME shows it"),
        _ => failure,
    }
}
