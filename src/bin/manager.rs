//! `cube-manager`: parse flags, install tracing, bind, and run `cube::manager::serve`.

use std::{io::Write, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, ValueEnum};
use cube::units::parse_duration;

/// Cube's control plane: accepts tasks and places them on workers.
#[derive(Debug, Parser)]
#[command(name = "cube-manager", version, about)]
struct Args {
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
    /// [default: 10 x --heartbeat-interval].
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

    /// Also run a worker in this process (Docker when the engine answers, else Exec).
    #[arg(long, env = "CUBE_DEV")]
    dev: bool,

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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    cube::grpc::init_tracing(matches!(args.log_format, LogFormat::Json));
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "cube-manager: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| cube::paths::manager_data_dir(args.dev));
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
        worker.runtime = if cube::worker::docker_answers().await {
            cube::worker::RuntimeKind::Docker
        } else {
            tracing::warn!(
                "the Docker engine does not answer: the dev worker uses the Exec runtime \
                 (tasks run as plain processes on this host, their images ignored)"
            );
            cube::worker::RuntimeKind::Exec
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
