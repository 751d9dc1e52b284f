//! The worker (data plane): runs the tasks the manager sends through a container runtime and
//! reports what it sees.
//!
//! # Layout
//!
//! - `core`: the cloneable handle over the worker's tasks (memory + store + revision).
//! - `transition`: the one function that changes a task's state (through the state machine),
//!   and how a run ends.
//! - `service`: the thin WorkerService handlers.
//! - `executor`: starts and stops tasks as requests arrive (event-driven).
//! - `monitor`: records exits (runtime events + a sweep as backstop).
//! - `adopt`: at start, takes over the containers a previous run of the worker left.
//! - `health`: the health checks run next to each container.
//! - `kept_logs`: a finished task's last output, kept when its container is removed.
//! - `disconnect`: the last contact with the manager; stops `stop DURATION` tasks cut off.
//! - `membership`: registration with a manager and heartbeats (`--manager`).
//! - `stats`: the background sampler behind `GetStats`.
//! - `metrics`: tasks by state at scrape time, failed health checks.
//! - `store`: the worker's redb table.
//! - `runtime`: `trait Runtime` with Docker (bollard) and Exec (child processes).

mod adopt;
mod committed;
mod core;
mod disconnect;
mod executor;
mod health;
mod kept_logs;
mod membership;
mod metrics;
mod monitor;
mod retention;
mod runtime;
mod service;
mod stats;
mod store;
mod top;
mod transition;

use std::{collections::BTreeMap, path::PathBuf};

use tokio::{net::TcpListener, sync::mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use self::{
    core::Core,
    runtime::{docker::DockerRuntime, exec::ExecRuntime, timed::Timed, Runtime},
    service::Service,
    stats::Declared,
    store::WorkerStore,
};
use crate::{error::Error, pb::worker_service_server::WorkerServiceServer};

pub use self::runtime::{
    docker::{LABEL_TASK_ID, LABEL_WORKER},
    RuntimeError,
};

/// Which runtime runs the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuntimeKind {
    /// Containers through the Docker engine (the default).
    #[default]
    Docker,
    /// Child processes on the host (no isolation; for hosts without Docker and benchmarks).
    Exec,
}

impl RuntimeKind {
    /// The runtime's name, as flags and `NodeStats.runtime` spell it.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Docker => "docker",
            RuntimeKind::Exec => "exec",
        }
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "docker" => Ok(Self::Docker),
            "exec" => Ok(Self::Exec),
            other => Err(format!("{other:?} is not a runtime (docker or exec)")),
        }
    }
}

/// Everything a worker needs to run; the binary fills it from flags.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The worker's stable name (the node name; the `cube.worker` label of its containers).
    pub name: String,
    /// Where its store and the Exec runtime's files live.
    pub data_dir: PathBuf,
    /// Which runtime runs tasks.
    pub runtime: RuntimeKind,
    /// Labels matched by task constraints.
    pub labels: BTreeMap<String, String>,
    /// Declared cpu capacity in millicores (default: the machine's).
    pub cpu_millis: Option<i64>,
    /// Declared memory capacity in bytes (default: the machine's).
    pub memory_bytes: Option<i64>,
    /// Declared disk capacity in bytes (default: the data dir's disk).
    pub disk_bytes: Option<i64>,
    /// The manager to register with and heartbeat to.
    pub manager: Option<String>,
    /// The address the manager should use to reach this worker (default: the bound address).
    pub advertise: Option<String>,
    /// A finished task the manager has seen end is forgotten (record, container, kept
    /// output) this long after it finished.
    pub retain_finished: std::time::Duration,
    /// The limits of its clients' connections.
    pub connections: crate::limits::ConnLimits,
    /// The node certificate: WorkerService serves TLS to the manager alone, and the worker
    /// registers over mTLS. None: plaintext (on loopback only).
    pub tls: Option<crate::tls::NodeTls>,
}

impl WorkerConfig {
    /// A config with the Docker runtime, no labels and the machine's capacity.
    pub fn new(name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            data_dir: data_dir.into(),
            runtime: RuntimeKind::Docker,
            labels: BTreeMap::new(),
            cpu_millis: None,
            memory_bytes: None,
            disk_bytes: None,
            manager: None,
            advertise: None,
            retain_finished: std::time::Duration::from_secs(24 * 3600),
            connections: Default::default(),
            tls: None,
        }
    }
}

/// Whether the local Docker engine answers (the manager's `--dev` picks Docker or Exec by it).
pub async fn docker_answers() -> bool {
    runtime::docker::connect().await.is_ok()
}

/// The service name health answers for.
const SERVICE_NAME: &str = "cube.v1.WorkerService";

/// Runs a worker on `listener` until `shutdown` is cancelled: opens the store, re-adopts the
/// containers a previous run left, starts the executor, monitor and stats loops, and serves
/// WorkerService with health and reflection. Containers keep running after it returns.
pub async fn serve(
    listener: TcpListener,
    config: WorkerConfig,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    match config.runtime {
        RuntimeKind::Docker => {
            let docker = runtime::docker::connect().await.map_err(|e| {
                Error::Unavailable(format!(
                    "the Docker engine does not answer at {}: {e}; start it or use --runtime exec",
                    std::env::var("DOCKER_HOST")
                        .unwrap_or_else(|_| runtime::docker::DEFAULT_SOCKET.into())
                ))
            })?;
            let runtime = Timed(DockerRuntime::new(docker, config.name.clone()));
            serve_with(listener, config, runtime, true, shutdown).await
        }
        RuntimeKind::Exec => {
            let runtime = Timed(ExecRuntime::new(config.data_dir.join("exec")));
            serve_with(listener, config, runtime, false, shutdown).await
        }
    }
}

async fn serve_with<R: Runtime + Clone>(
    listener: TcpListener,
    config: WorkerConfig,
    runtime: R,
    require_image: bool,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let (store, tasks) = WorkerStore::open(&config.data_dir)?;
    let loops = shutdown.child_token();
    let tracker = TaskTracker::new();
    tracing::info!(
        worker = %config.name,
        runtime = runtime.name(),
        tasks = tasks.len(),
        data_dir = %config.data_dir.display(),
        "worker starting"
    );
    let (work_tx, work_rx) = mpsc::unbounded_channel();
    let (look_tx, look_rx) = mpsc::unbounded_channel();
    let core = Core::new(
        config.name.clone(),
        runtime.clone(),
        store,
        tasks,
        (work_tx, look_tx.clone()),
        kept_logs::KeptLogs::new(&config.data_dir),
        (loops.clone(), tracker.clone()),
    );

    // Hints first, so no exit between adoption and the monitor's start is missed.
    tracker.spawn({
        let runtime = runtime.clone();
        let cancel = loops.clone();
        async move { runtime.watch(look_tx, cancel).await }
    });
    adopt::containers(&core).await?;
    tracker.spawn(executor::run(
        core.clone(),
        work_rx,
        loops.clone(),
        tracker.clone(),
    ));
    tracker.spawn(monitor::run(core.clone(), look_rx, loops.clone()));
    tracker.spawn(disconnect::run(
        core.clone(),
        core.contact().clone(),
        loops.clone(),
    ));
    tracker.spawn(retention::run(
        core.clone(),
        config.retain_finished,
        loops.clone(),
    ));
    let declared = Declared {
        cpu_millis: config.cpu_millis,
        memory_bytes: config.memory_bytes,
        disk_bytes: config.disk_bytes,
    };
    let (stats, sampler) = stats::start(
        config.data_dir.clone(),
        declared,
        (runtime, config.runtime.name()),
        loops.clone(),
    )
    .await;
    tracker.spawn(sampler);

    if let Some(manager) = config.manager.clone() {
        let advertise = match &config.advertise {
            Some(advertise) => advertise.clone(),
            None => {
                let mut local = listener
                    .local_addr()
                    .map_err(|e| Error::Internal(format!("reading the bound address: {e}")))?;
                if local.ip().is_unspecified() {
                    local.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                local.to_string()
            }
        };
        let membership = membership::Membership {
            manager,
            tls: config.tls.as_ref().map(|t| t.dial.clone()),
            advertise,
            labels: config.labels.clone(),
        };
        tracker.spawn(membership::run(
            core.clone(),
            stats.clone(),
            membership,
            loops.clone(),
        ));
    }

    let _metrics = metrics::register(&core);
    let (router, health) =
        crate::grpc::standard_router(SERVICE_NAME, config.tls.as_ref().map(|t| t.server.clone()))?;
    health
        .set_serving::<WorkerServiceServer<Service<R>>>()
        .await;
    // While the store is read-only, health says so; once it writes again, every unfinished
    // task is looked at anew (what was seen meanwhile was not recorded).
    tracker.spawn(crate::store::report::follow(
        core.store_health(),
        health,
        SERVICE_NAME,
        "worker",
        loops.clone(),
        {
            let core = core.clone();
            move || {
                for id in core.unfinished() {
                    core.wake(id);
                    core.look(id);
                }
            }
        },
    ));
    let service = Service {
        core,
        stats,
        labels: config.labels.clone(),
        require_image,
        shutdown: shutdown.clone(),
        logs: crate::limits::StreamCap::new("StreamLogs", crate::limits::streams::MAX_LOG_STREAMS),
    };
    let compression = crate::limits::server::COMPRESSION;
    let service = WorkerServiceServer::new(service)
        .max_decoding_message_size(crate::limits::server::MAX_REQUEST_BYTES)
        .accept_compressed(compression)
        .send_compressed(compression);
    let router = match &config.tls {
        Some(_) => router.add_service(crate::tls::Guarded::worker(service)),
        None => router.add_service(service),
    };
    let served = crate::grpc::serve(router, listener, &config.connections, shutdown.clone()).await;
    loops.cancel();
    tracker.close();
    tracker.wait().await;
    tracing::info!(worker = %config.name, "worker stopped; its containers keep running");
    served.map_err(|e| Error::Internal(format!("serving: {e}")))
}
