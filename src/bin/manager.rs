//! `cube-manager`: parse flags, install tracing, bind, and run `cube::manager::serve`.

use std::{io::Write, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use cube::{tls::Role, units::parse_duration};

/// Cube's control plane: accepts tasks and places them on workers.
///
/// It serves TLS only: on its first start it makes a cluster CA under <data-dir>/tls/, and
/// `cube-manager token ROLE` prints the tokens workers join with and clients call with.
/// `--dev` alone serves plaintext, and only on loopback.
#[derive(Debug, Parser)]
#[command(
    name = "cube-manager",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// Address to serve ManagerService on.
    #[arg(long, env = "CUBE_LISTEN", default_value = "127.0.0.1:5555")]
    listen: String,

    /// Static workers to poll, as host:port (comma separated).
    #[arg(long, env = "CUBE_WORKERS", value_delimiter = ',')]
    workers: Vec<String>,

    /// Where the manager keeps its store [default: $XDG_DATA_HOME/cube/manager, or
    /// $XDG_DATA_HOME/cube/dev with --dev].
    #[arg(long, env = "CUBE_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Scheduling strategy.
    #[arg(long, env = "CUBE_SCHEDULER", default_value = cube::manager::DEFAULT_SCHEDULER)]
    scheduler: String,

    /// How often each worker is polled (e.g. 500ms, 1s, 2m).
    #[arg(long, env = "CUBE_UPDATE_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    update_interval: Duration,

    /// How often registered workers heartbeat (the period the manager asks for).
    #[arg(long, env = "CUBE_HEARTBEAT_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    heartbeat_interval: Duration,

    /// How long a node may stay silent before it is DOWN and its tasks move
    /// [default: 3 x --heartbeat-interval].
    #[arg(long, env = "CUBE_NODE_GRACE", value_parser = parse_duration)]
    node_grace: Option<Duration>,

    /// Finished tasks (COMPLETED, or FAILED and not restarting) are removed with their events
    /// this long after they finished.
    #[arg(long, env = "CUBE_RETAIN_FINISHED", default_value = "24h", value_parser = parse_duration)]
    retain_finished: Duration,

    /// At most this many finished tasks are kept; the oldest are removed first.
    #[arg(long, env = "CUBE_MAX_FINISHED", default_value_t = 10_000)]
    max_finished: usize,

    /// Nodes DOWN this long (and holding no task) are forgotten.
    #[arg(long, env = "CUBE_FORGET_NODES_AFTER", default_value = "24h", value_parser = parse_duration)]
    forget_nodes_after: Duration,

    /// More names for the manager's certificate (host names or addresses clients and workers
    /// dial it by), repeatable; localhost, 127.0.0.1, this host's name and the --listen
    /// address are always in it.
    #[arg(
        long = "san",
        env = "CUBE_SAN",
        value_delimiter = ',',
        value_name = "NAME"
    )]
    sans: Vec<String>,

    /// Zero configuration on one machine: plaintext with no tokens (allowed only when every
    /// listener is on loopback) and a worker in this process, on Docker.
    #[arg(long, env = "CUBE_DEV")]
    dev: bool,

    /// Serve plaintext with no tokens, as --dev does but without its worker (benchmarks and
    /// scripts on one machine); refused unless --listen is on loopback.
    #[arg(long, env = "CUBE_PLAINTEXT")]
    plaintext: bool,

    /// The --dev worker's runtime: docker, or exec (tasks as plain processes of this host,
    /// their images ignored; needed when Docker does not answer).
    #[arg(long, env = "CUBE_RUNTIME", requires = "dev", default_value = "docker", value_parser = ["docker", "exec"])]
    runtime: String,

    /// The name of the --dev worker [default: the host name].
    #[arg(long, env = "CUBE_DEV_WORKER_NAME", requires = "dev")]
    dev_worker_name: Option<String>,

    /// Serve Prometheus metrics at http://ADDR/metrics (with --dev, the worker's too) [default:
    /// off].
    #[arg(long, env = "CUBE_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<String>,

    #[command(flatten)]
    connections: cube::limits::ConnLimits,

    /// Log format on stderr.
    #[arg(long, env = "CUBE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a role's token (admin, reader or worker), or `rotate ROLE` to replace it (the old
    /// one stops working at once, joined workers keep theirs). Makes the CA if there is none.
    Token {
        /// admin, reader, worker, or rotate.
        #[arg(value_parser = ["admin", "reader", "worker", "rotate"])]
        action: String,
        /// The role to rotate.
        role: Option<Role>,
        /// The manager's data dir.
        #[arg(long, env = "CUBE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Write a node certificate for a worker the manager polls by --workers (such a worker
    /// does not join): node.pem, node.key and ca.pem into DIR, the worker's <data-dir>/tls.
    NodeCert {
        /// The worker's --name.
        name: String,
        /// Where to write the files.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The manager's data dir.
        #[arg(long, env = "CUBE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Everything this process writes (store, keys, task output) is its owner's alone.
    // SAFETY: umask has no failure mode and is called before any thread is started.
    unsafe { libc::umask(0o077) };
    let args = Args::parse();
    cube::grpc::init_tracing(matches!(args.log_format, LogFormat::Json));
    let result = match args.command {
        Some(command) => admin(command),
        None => run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "cube-manager: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `token` and `node-cert` subcommands: files of the CA, no server.
fn admin(command: Command) -> anyhow::Result<()> {
    let ca = |data_dir: Option<PathBuf>| {
        let data_dir = data_dir.unwrap_or_else(|| cube::paths::manager_data_dir(false));
        cube::tls::ClusterCa::load_or_create(&data_dir)
            .with_context(|| format!("the cluster CA in {}", data_dir.display()))
    };
    let mut out = std::io::stdout().lock();
    match command {
        Command::Token {
            action,
            role,
            data_dir,
        } => {
            let ca = ca(data_dir)?;
            let tokens = cube::tls::Tokens::open(ca.dir(), ca.digest())?;
            let token = match (action.as_str(), role) {
                ("rotate", Some(role)) => tokens.rotate(role)?,
                ("rotate", None) => {
                    anyhow::bail!("token rotate takes a role: admin, reader or worker")
                }
                (_, Some(_)) => anyhow::bail!("token {action} takes no other argument"),
                (role, None) => tokens.token(role.parse().map_err(anyhow::Error::msg)?)?,
            };
            writeln!(out, "{}", token.to_text())?;
        }
        Command::NodeCert {
            name,
            out: dir,
            data_dir,
        } => {
            let ca = ca(data_dir)?;
            let issued = ca.issue_node(&name)?;
            cube::tls::node::write_node(&dir, &issued, ca.cert_pem())
                .with_context(|| format!("writing into {}", dir.display()))?;
            writeln!(
                out,
                "node certificate for {name:?} written to {}",
                dir.display()
            )?;
        }
    }
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| cube::paths::manager_data_dir(args.dev));
    cube::tls::files::private_dir(&data_dir)
        .with_context(|| format!("making {} private", data_dir.display()))?;
    let mut config = cube::manager::ManagerConfig::new(&data_dir);
    config.workers = args
        .workers
        .iter()
        .filter(|w| !w.is_empty())
        .cloned()
        .collect();
    config.scheduler = args.scheduler;
    config.update_interval = args.update_interval;
    config.heartbeat_interval = args.heartbeat_interval;
    config.node_grace = args.node_grace;
    config.retention = cube::manager::Retention {
        retain_finished: args.retain_finished,
        max_finished: args.max_finished,
        forget_nodes_after: args.forget_nodes_after,
    };
    config.connections = args.connections.clone();
    let mut dev_worker = None;
    if args.dev {
        let name = args
            .dev_worker_name
            .clone()
            .unwrap_or_else(|| gethostname::gethostname().to_string_lossy().into_owned());
        let mut worker = cube::worker::WorkerConfig::new(name, data_dir.join("dev-worker"));
        worker.runtime = match args.runtime.as_str() {
            "exec" => {
                tracing::warn!(
                    "the dev worker runs tasks as plain processes of this host (--runtime \
                     exec): their images are ignored and nothing isolates them"
                );
                cube::worker::RuntimeKind::Exec
            }
            _ if cube::worker::docker_answers().await => cube::worker::RuntimeKind::Docker,
            _ => anyhow::bail!(
                "the Docker engine does not answer, so the dev worker has nothing to run tasks \
                 in; start Docker, or pass --runtime exec to run tasks as plain processes of \
                 this host (no isolation)"
            ),
        };
        // The embedded worker listens on its own loopback port, and the manager polls it like
        // a static worker.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind the dev worker: {e}"))?;
        let address = listener.local_addr()?.to_string();
        tracing::info!(%address, name = %worker.name, runtime = ?worker.runtime, "embedded dev worker");
        config.workers.push(address);
        dev_worker = Some((listener, worker));
    }
    let plaintext = args.dev || args.plaintext;
    if !plaintext {
        let mut sans = args.sans.clone();
        sans.push(args.listen.clone());
        let tls = cube::tls::ManagerTls::init(&data_dir, &sans)
            .with_context(|| format!("the cluster CA in {}", data_dir.display()))?;
        tracing::info!(
            ca_digest = %hex::encode(tls.ca.digest()),
            "serving TLS only; cube-manager token ROLE prints the tokens"
        );
        config.tls = Some(tls);
    }
    let shutdown = cube::grpc::shutdown_on_signals();
    // Open the store before binding, so a locked or corrupt data dir fails at once.
    let manager = cube::manager::Manager::open(config)?;
    let dev_worker = dev_worker.map(|(listener, worker)| {
        let stop = shutdown.child_token();
        tokio::spawn(async move {
            if let Err(e) = cube::worker::serve(listener, worker, stop).await {
                tracing::error!(error = %e, "the embedded dev worker failed");
            }
        })
    });
    let listener = cube::limits::conn::bind(&args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let address = listener.local_addr()?;
    if plaintext {
        let flag = if args.dev { "--dev" } else { "--plaintext" };
        if !cube::tls::is_loopback(&address) {
            anyhow::bail!(
                "{flag} serves plaintext with no tokens, which is allowed on loopback only, \
                 not on {address}; drop {flag} to serve TLS (cube-manager token ROLE prints \
                 the tokens), or listen on 127.0.0.1"
            );
        }
        tracing::warn!(%address, "{flag}: plaintext with no tokens, on loopback only");
    }
    if let Some(metrics) = &args.metrics_listen {
        cube::metrics::listen(metrics, shutdown.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve metrics on {metrics}: {e}"))?;
    }
    cube::grpc::announce(address);
    tracing::info!(%address, "manager serving");
    let served = manager.serve(listener, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(worker) = dev_worker {
        let _ = worker.await;
    }
    served?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_reads_an_env_var() {
        use clap::CommandFactory;
        for arg in Args::command().get_arguments() {
            if arg.get_id() == "help" || arg.get_id() == "version" {
                continue;
            }
            assert!(arg.get_env().is_some(), "--{} has no env", arg.get_id());
        }
    }
}
