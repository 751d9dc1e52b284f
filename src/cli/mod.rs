//! cubectl: the command tree (clap derive), one module per verb, and the one place errors
//! become `error:` and `hint:` lines and exit codes.
//!
//! Each verb module turns its arguments into [`Client`](crate::client::Client) calls and
//! renders the answers with [`output`]. The binary only parses, calls [`run`] and exits.

use std::{io::Write, process::ExitCode, time::Duration};

use crate::{
    client::{Client, DEFAULT_MANAGER},
    proto::pb,
};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

pub mod apply;
pub mod complete;
pub mod completion;
pub mod drain;
pub mod each;
pub mod events;
pub mod explain;
mod failure;
pub mod gc;
pub mod logs;
pub mod nodes;
pub mod output;
pub mod rm;
pub mod run;
pub mod service;
pub mod status;
pub mod stop;
pub mod top;
pub mod version;
pub mod watch;

pub use failure::{task_failure, Failure};

/// cubectl, the command line of Cube: run tasks on a Cube cluster and see what they do.
#[derive(Debug, Parser)]
#[command(name = "cubectl", version, propagate_version = true)]
pub struct Cli {
    /// Options every verb shares.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every verb shares.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The manager's URL.
    #[arg(long, global = true, env = "CUBE_MANAGER", default_value = DEFAULT_MANAGER,
          display_order = 900)]
    pub manager: String,
    /// Deadline of each call to the manager, e.g. 10s, 500ms (more than zero).
    #[arg(long, global = true, env = "CUBE_TIMEOUT", default_value = "10s",
          value_parser = parse_positive_duration, display_order = 901)]
    pub timeout: Duration,
    /// A token (`cube-manager token admin|reader`), sent as `authorization: Bearer`; its CA
    /// digest also verifies the manager.
    #[arg(
        long,
        global = true,
        env = "CUBE_TOKEN",
        hide_env_values = true,
        display_order = 902
    )]
    pub token: Option<String>,
    /// The cluster CA's certificate (the manager's <data-dir>/tls/ca.pem), to verify the
    /// manager by instead of the token's digest.
    #[arg(
        long,
        global = true,
        env = "CUBE_CA_CERT",
        value_name = "FILE",
        display_order = 903
    )]
    pub ca_cert: Option<std::path::PathBuf>,
}

impl Global {
    /// The credentials the flags give: the token and the CA file's text.
    pub fn credentials(&self) -> Result<crate::client::Credentials, Failure> {
        let ca_pem = match &self.ca_cert {
            None => None,
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                Failure::new(
                    format!("cannot read the CA certificate {}: {e}", path.display()),
                    "--ca-cert takes the manager's <data-dir>/tls/ca.pem",
                )
            })?),
        };
        Ok(crate::client::Credentials {
            token: self.token.clone(),
            ca_pem,
        })
    }
}

/// Parses a duration that must be more than zero: a deadline or a wait of no time at all
/// would fail every call before it starts.
pub(crate) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = crate::units::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err(format!(
            "{text:?} is no time at all; it must be more than zero (e.g. 10s)"
        ));
    }
    Ok(duration)
}

/// cubectl's command tree as the binary parses it: [`Cli`], with each verb's usage line
/// fixed to the one its `--help` shows. clap would otherwise write the options a user gave
/// (or set through `CUBE_MANAGER`) into the usage line of an error, so that
/// `cubectl stop --manager <MANAGER> <ID>...` reads as if `--manager` were required.
pub fn command() -> clap::Command {
    let mut command = Cli::command();
    command.build();
    for verb in command.get_subcommands_mut() {
        let usage = verb.render_usage().to_string();
        let usage = usage.strip_prefix("Usage: ").unwrap_or(&usage).to_string();
        *verb = std::mem::take(verb).override_usage(usage);
    }
    command
}

/// Parses a command line (the program's name first); a usage error comes back as clap's
/// error, to print and exit 2 with, with Cube's own tips for docker flags given to `run`.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut command = command();
    let matches = command
        .try_get_matches_from_mut(args)
        .map_err(run::with_docker_tips)?;
    Cli::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
}

/// How read verbs print their answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// The response message in the proto3 JSON mapping (as grpcurl prints it), for scripts.
    Json,
}

/// The `-o/--output` option of read verbs.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArg {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// cubectl's verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit a task (or the tasks of a file) and print its id.
    Run(Box<run::RunArgs>),
    /// Ask tasks to stop: named, or chosen by name, label, state or node.
    Stop(stop::StopArgs),
    /// Remove finished tasks and their events now.
    Rm(rm::RmArgs),
    /// List tasks, or show one task in detail with its events.
    Status(status::StatusArgs),
    /// Follow task changes live (the same as `status --watch`).
    Watch(watch::WatchArgs),
    /// List the nodes with their state and resources.
    Nodes(nodes::NodesArgs),
    /// Show the event log, of all tasks or of one.
    Events(events::EventsArgs),
    /// Print a task's output.
    Logs(logs::LogsArgs),
    /// Show why a task is on its node, or why it is pending.
    Explain(explain::ExplainArgs),
    /// Take no new tasks on a node and move its tasks elsewhere.
    Drain(drain::DrainArgs),
    /// Make a drained node eligible again.
    Undrain(drain::DrainArgs),
    /// Remove finished tasks and lost nodes past retention now.
    Gc(gc::GcArgs),
    /// Make the cluster hold the tasks and services a file declares.
    Apply(apply::ApplyArgs),
    /// Services: replicas of a task kept running, scaled and updated.
    Service(service::ServiceArgs),
    /// Print a shell completion script.
    Completion(completion::CompletionArgs),
    /// Show what nodes (or running tasks) use now: cpu, memory, load.
    Top(top::TopArgs),
    /// Print cubectl's version and the manager's.
    Version(version::VersionArgs),
    /// Completion candidates for shells (task ids and names, node names), asked of the manager.
    #[command(name = "__complete", hide = true)]
    Complete(complete::CompleteArgs),
}

/// What a verb returns.
pub type Outcome = Result<(), Failure>;

/// Runs a parsed command line; returns the process exit code after printing any failure.
pub async fn main(cli: Cli) -> ExitCode {
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.print();
            ExitCode::from(failure.exit_code)
        }
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Outcome {
    let Cli { global, command } = cli;
    if let Command::Completion(args) = &command {
        return completion::run(args);
    }
    // A Tab must not hang: completion waits a short while at most.
    let timeout = match &command {
        Command::Complete(_) => global.timeout.min(complete::TIMEOUT),
        _ => global.timeout,
    };
    let client = Client::with_credentials(&global.manager, timeout, &global.credentials()?)?;
    match command {
        Command::Run(args) => run::run(&client, *args).await,
        Command::Stop(args) => stop::run(&client, args).await,
        Command::Rm(args) => rm::run(&client, args).await,
        Command::Status(args) => status::run(&client, args).await,
        Command::Watch(args) => watch::run(&client, args).await,
        Command::Nodes(args) => nodes::run(&client, args).await,
        Command::Events(args) => events::run(&client, args).await,
        Command::Logs(args) => logs::run(&client, args).await,
        Command::Explain(args) => explain::run(&client, args).await,
        Command::Drain(args) => drain::drain(&client, args).await,
        Command::Undrain(args) => drain::undrain(&client, args).await,
        Command::Gc(args) => gc::run(&client, args).await,
        Command::Apply(args) => apply::run(&client, args).await,
        Command::Service(args) => service::run(&client, args).await,
        Command::Version(args) => version::run(&client, args).await,
        Command::Top(args) => top::run(&client, args).await,
        Command::Complete(args) => complete::run(&client, args).await,
        Command::Completion(_) => unreachable!("handled above, without a client"),
    }
}

/// A task state as users type it in filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "lower")]
pub enum StateArg {
    /// Waiting for a node.
    Pending,
    /// Placed, being started.
    Scheduled,
    /// Running.
    Running,
    /// Finished well, or stopped.
    Completed,
    /// Failed.
    Failed,
}

impl From<StateArg> for pb::TaskState {
    fn from(state: StateArg) -> Self {
        match state {
            StateArg::Pending => pb::TaskState::Pending,
            StateArg::Scheduled => pb::TaskState::Scheduled,
            StateArg::Running => pb::TaskState::Running,
            StateArg::Completed => pb::TaskState::Completed,
            StateArg::Failed => pb::TaskState::Failed,
        }
    }
}

/// `--state`, `--node` and `-l`: which tasks `status`, `watch` and `stop` take.
#[derive(Debug, Clone, Default, Args)]
pub struct TaskFilterArgs {
    /// Only tasks in this state.
    #[arg(long, value_enum, ignore_case = true)]
    pub state: Option<StateArg>,
    /// Only tasks on this node.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Only tasks with this label (repeat for several: all must match).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = crate::task::parse_pair)]
    pub labels: Vec<(String, String)>,
}

impl TaskFilterArgs {
    /// The ListTasks request these filters make (`unfinished`: leave out finished tasks).
    pub fn list_request(&self, unfinished: bool) -> pb::ListTasksRequest {
        pb::ListTasksRequest {
            state: state_filter(self.state).into(),
            node: self.node.clone().unwrap_or_default(),
            labels: self.labels.iter().cloned().collect(),
            unfinished,
            ..Default::default()
        }
    }
}

/// The filter a `--state` option stands for (UNSPECIFIED: any state).
pub fn state_filter(state: Option<StateArg>) -> pb::TaskState {
    state.map_or(pb::TaskState::Unspecified, Into::into)
}

/// Writes to stdout, ignoring a closed pipe (`cubectl status | head`).
pub(crate) fn print_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Writes to stderr, for progress that must not mix with scriptable stdout.
pub(crate) fn print_err(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientError;
    use tonic::Code;

    #[test]
    fn command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        parse_from(std::iter::once("cubectl").chain(args.iter().copied()))
    }

    #[test]
    fn manager_defaults_and_flag() {
        // The env var may be set by whoever runs the tests; the flag always wins.
        let cli = parse(&["--manager", "http://10.0.0.1:7000", "nodes"]).unwrap();
        assert_eq!(cli.global.manager, "http://10.0.0.1:7000");
        assert_eq!(cli.global.timeout, Duration::from_secs(10));
        let cli = parse(&["nodes", "--manager", "h:1"]).unwrap();
        assert_eq!(
            cli.global.manager, "h:1",
            "--manager is accepted after the verb"
        );
    }

    #[test]
    fn usage_errors_exit_with_2() {
        for args in [
            &["frobnicate"][..],
            &["status", "--state", "sleeping"],
            &["run"],
            &["nodes", "-o", "yaml"],
            &["logs"],
            &["run", "--image", "x", "--cpu", "lots"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    #[test]
    fn state_filter_parses_lowercase() {
        let cli = parse(&["status", "--state", "running", "-o", "json"]).unwrap();
        let Command::Status(args) = cli.command else {
            panic!("not status")
        };
        assert_eq!(state_filter(args.filter.state), pb::TaskState::Running);
        assert_eq!(args.format, status::TasksFormat::Json);
    }

    #[test]
    fn failures_carry_hints_by_code() {
        let unreachable = Failure::from(ClientError::Unreachable {
            url: "http://127.0.0.1:5555".into(),
            cause: "tcp connect error".into(),
        });
        assert_eq!(
            unreachable.message,
            "manager unreachable at http://127.0.0.1:5555: tcp connect error"
        );
        assert_eq!(
            unreachable.hint.as_deref(),
            Some("is cube-manager running? (cube-manager --dev starts one)")
        );
        let not_found = Failure::from(ClientError::Rpc(tonic::Status::not_found(
            "task \"x\" not found",
        )));
        assert_eq!(not_found.message, "task \"x\" not found");
        assert_eq!(
            not_found.hint.as_deref(),
            Some("cubectl status lists tasks")
        );
        let invalid = Failure::from(ClientError::Rpc(tonic::Status::invalid_argument(
            "spec.image: is required",
        )));
        assert_eq!(invalid.message, "spec.image: is required");
        let mut details = tonic_types::ErrorDetails::with_bad_request_violation("a", "is bad");
        details.add_bad_request_violation("b.c", "is worse");
        let status = <tonic::Status as tonic_types::StatusExt>::with_error_details(
            Code::InvalidArgument,
            "a: is bad",
            details,
        );
        let both = Failure::from(ClientError::Rpc(status));
        assert_eq!(
            both.message, "a: is bad\nb.c: is worse",
            "one violation a line"
        );
    }
}
