//! `cube-worker`: a Cube worker. Parses flags, installs tracing, binds, and runs
//! `cube::worker::serve` until SIGINT or SIGTERM.

use std::{collections::BTreeMap, io::Write, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::Parser;
use cube::{
    units::{parse_bytes, parse_cpu, parse_duration},
    worker::{RuntimeKind, WorkerConfig},
};

/// A Cube worker: runs the tasks its manager sends as Docker containers (or processes) and
/// reports them over gRPC.
#[derive(Debug, Parser)]
#[command(name = "cube-worker", version)]
struct Args {
    /// Address to serve WorkerService on.
    #[arg(long, env = "CUBE_LISTEN", default_value = "127.0.0.1:5556")]
    listen: String,

    /// The worker's stable name [default: the host name].
    #[arg(long, env = "CUBE_NAME")]
    name: Option<String>,

    /// Where the worker keeps its store [default: $XDG_DATA_HOME/cube/worker-<name>].
    #[arg(long, env = "CUBE_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// What runs tasks: docker, or exec (plain child processes).
    #[arg(long, env = "CUBE_RUNTIME", default_value = "docker", value_parser = ["docker", "exec"])]
    runtime: String,

    /// A label for task constraints, KEY=VALUE (repeatable).
    #[arg(long = "label", env = "CUBE_LABEL", value_name = "KEY=VALUE", value_delimiter = ',', value_parser = cube::task::parse_pair)]
    labels: Vec<(String, String)>,

    /// CPU to offer, e.g. 2 or 500m [default: every cpu of the machine].
    #[arg(long, env = "CUBE_CPU", value_parser = parse_cpu)]
    cpu: Option<i64>,

    /// Memory to offer, e.g. 1Gi [default: the machine's].
    #[arg(long, env = "CUBE_MEMORY", value_parser = parse_bytes)]
    memory: Option<i64>,

    /// Disk to offer, e.g. 10Gi [default: the data dir's disk].
    #[arg(long, env = "CUBE_DISK", value_parser = parse_bytes)]
    disk: Option<i64>,

    /// The manager to register with, e.g. https://10.0.0.1:5555 (http:// only for a --dev
    /// manager on this machine).
    #[arg(long, env = "CUBE_MANAGER")]
    manager: Option<String>,

    /// A worker token (`cube-manager token worker`) to join the cluster with: the manager is
    /// verified by the CA digest in it, and signs a node certificate kept in
    /// <data-dir>/tls/, so later starts need no token. Never logged.
    #[arg(long, env = "CUBE_JOIN_TOKEN", hide_env_values = true)]
    join_token: Option<String>,

    /// The address the manager reaches this worker at [default: the bound address].
    #[arg(long, env = "CUBE_ADVERTISE")]
    advertise: Option<String>,

    /// A finished task is forgotten (its record, container and kept output) this long after
    /// it finished, once the manager has seen it end.
    #[arg(long, env = "CUBE_RETAIN_FINISHED", default_value = "24h", value_parser = parse_duration)]
    retain_finished: std::time::Duration,

    /// Serve Prometheus metrics at http://ADDR/metrics [default: off].
    #[arg(long, env = "CUBE_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<String>,

    #[command(flatten)]
    connections: cube::limits::ConnLimits,

    /// Log format on stderr: text or json.
    #[arg(long, env = "CUBE_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Everything this process writes (store, keys, task output) is its owner's alone.
    // SAFETY: umask has no failure mode and is called before any thread is started.
    unsafe { libc::umask(0o077) };
    let args = Args::parse();
    cube::grpc::init_tracing(args.log_format == "json");
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "cube-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let name = match args.name {
        Some(name) => name,
        None => gethostname::gethostname().to_string_lossy().into_owned(),
    };
    // The manager refuses a registration under a name it cannot keep: say so at start.
    cube::limits::node::check_node_name("--name", &name)?;
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| cube::paths::worker_data_dir(&name));
    let runtime = match args.runtime.as_str() {
        "exec" => RuntimeKind::Exec,
        _ => RuntimeKind::Docker,
    };
    cube::tls::files::private_dir(&data_dir)
        .with_context(|| format!("making {} private", data_dir.display()))?;
    let listener = cube::limits::conn::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let tls = node_tls(
        &data_dir,
        &name,
        args.manager.as_deref(),
        args.join_token.as_deref(),
        local,
    )
    .await?;
    let config = WorkerConfig {
        runtime,
        labels: args.labels.into_iter().collect::<BTreeMap<_, _>>(),
        cpu_millis: args.cpu,
        memory_bytes: args.memory,
        disk_bytes: args.disk,
        manager: args.manager,
        advertise: args.advertise,
        retain_finished: args.retain_finished,
        connections: args.connections,
        tls,
        ..WorkerConfig::new(name, data_dir)
    };
    let shutdown = cube::grpc::shutdown_on_signals();
    if let Some(metrics) = &args.metrics_listen {
        cube::metrics::listen(metrics, shutdown.clone())
            .await
            .with_context(|| format!("cannot serve metrics on {metrics}"))?;
    }
    cube::grpc::announce(local);
    cube::worker::serve(listener, config, shutdown).await?;
    Ok(())
}

/// The worker's TLS: its kept node certificate, or one got by joining with the token; without
/// either, plaintext, allowed only on loopback with a plaintext (`--dev`) manager.
async fn node_tls(
    data_dir: &std::path::Path,
    name: &str,
    manager: Option<&str>,
    join_token: Option<&str>,
    local: std::net::SocketAddr,
) -> anyhow::Result<Option<cube::tls::NodeTls>> {
    let plaintext_manager = manager.is_some_and(|m| m.starts_with("http://"));
    if let Some(tls) = cube::tls::NodeTls::load(data_dir, name)? {
        anyhow::ensure!(
            !plaintext_manager,
            "this worker holds a node certificate, so it speaks TLS: give --manager as \
             https://HOST:PORT"
        );
        return Ok(Some(tls));
    }
    match (join_token, manager) {
        (Some(token), Some(manager)) => {
            anyhow::ensure!(
                !plaintext_manager,
                "joining takes TLS: give --manager as https://HOST:PORT"
            );
            Ok(Some(
                cube::tls::NodeTls::join(data_dir, name, manager, token).await?,
            ))
        }
        (Some(_), None) => anyhow::bail!("--join-token needs --manager https://HOST:PORT"),
        (None, Some(manager)) if !plaintext_manager => anyhow::bail!(
            "this worker has no node certificate yet: join with --join-token TOKEN (printed \
             by `cube-manager token worker` on the manager); {manager} is not a --dev manager"
        ),
        (None, _) => {
            anyhow::ensure!(
                cube::tls::is_loopback(&local),
                "without a node certificate this worker would serve plaintext, which is \
                 allowed on loopback only, not on {local}; join with --manager \
                 https://HOST:PORT --join-token TOKEN"
            );
            tracing::warn!(address = %local, "no node certificate: plaintext, on loopback only");
            Ok(None)
        }
    }
}
