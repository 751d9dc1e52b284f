//! The manager (control plane): accepts tasks, places them on workers, and keeps track of them.
//!
//! A task's way through, file by file: [`service`] (the rpc) -> [`core`]`::api` (recorded
//! PENDING) -> [`dispatcher`] wakes -> `core::placement` (SCHEDULED) -> [`dispatcher`] sends
//! StartTasks over a [`pool`] channel -> [`reconciler`] polls the worker -> `core::observe`
//! (RUNNING).
//!
//! - [`core`]: the state handle (tasks, nodes, pending queue) over the durable store, one file
//!   per job.
//! - [`service`]: the thin ManagerService handlers.
//! - [`dispatcher`]: SendWork (StartTask) and the stopper (StopTask), event-driven.
//! - [`reconciler`]: UpdateTasks, one poll loop per worker (ListTasks + GetStats).
//! - [`supervisor`]: the loops that act on time: restarts due, liveness, drains, services.
//! - [`replicas`]: services, pure: spec checks and the reconciler's plan.
//! - [`pool`]: the channels to workers.
//! - [`policy`]: pure decisions: restart backoff, StartTask backoff, the node grace.
//! - [`nodes`]: the node tracker (liveness, stats, allocation).
//! - [`metrics`]: the gauges read at scrape time.
//! - [`admission`]: joins, a node speaking for itself only, dialled addresses, env redaction.
//!
//! Nodes: a static `--workers` entry is known by its address until the worker answers with its
//! name, then by that name (stored, so it keeps it across restarts).

use std::{path::PathBuf, time::Duration};

use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    error::{Error, Result},
    proto::pb::manager_service_server::ManagerServiceServer,
    store::manager::ManagerStore,
};

mod admission;
mod core;
mod dispatcher;
mod idempotency;
mod metrics;
mod nodes;
mod policy;
mod pool;
mod reconciler;
pub mod replicas;
mod service;
mod supervisor;

/// The default poll period of each worker: quick enough that a started container shows as
/// RUNNING within about a second, slow enough to cost nothing on an idle cluster.
pub const DEFAULT_UPDATE_INTERVAL: Duration = Duration::from_secs(1);

/// The default heartbeat period (DESIGN: 1 s).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = policy::DEFAULT_HEARTBEAT_INTERVAL;

/// The default node grace, in heartbeat periods (3: 3 s at the default period).
pub const DEFAULT_GRACE_HEARTBEATS: u32 = policy::GRACE_HEARTBEATS;

/// The default scheduling strategy (the scheduler module's default: spread).
pub const DEFAULT_SCHEDULER: &str = crate::scheduler::DEFAULT_STRATEGY;

/// How a manager runs.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Where its store lives (one redb file).
    pub data_dir: PathBuf,
    /// The static workers (`host:port`), polled every `update_interval`.
    pub workers: Vec<String>,
    /// The scheduling strategy, by name (see `scheduler::by_name`).
    pub scheduler: String,
    /// How often each worker is polled.
    pub update_interval: Duration,
    /// The heartbeat period asked of registered workers.
    pub heartbeat_interval: Duration,
    /// A node silent (no heartbeat, no poll answer) this long is DOWN and its tasks move;
    /// None means [`DEFAULT_GRACE_HEARTBEATS`] heartbeat periods.
    pub node_grace: Option<Duration>,
    /// What is kept of finished tasks and lost nodes, and for how long.
    pub retention: core::Retention,
    /// The limits of its clients' connections.
    pub connections: crate::limits::ConnLimits,
    /// The cluster CA, tokens and certificates: the manager serves TLS only and checks every
    /// caller. None: plaintext with no credentials (`--dev`, on loopback only).
    pub tls: Option<crate::tls::ManagerTls>,
}

impl ManagerConfig {
    /// A config with the defaults and this data dir.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            workers: Vec::new(),
            scheduler: DEFAULT_SCHEDULER.into(),
            update_interval: DEFAULT_UPDATE_INTERVAL,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            node_grace: None,
            retention: core::Retention::default(),
            connections: Default::default(),
            tls: None,
        }
    }
}

pub use core::{Collected, Retention};

/// The service name health answers for.
const SERVICE_NAME: &str = "cube.v1.ManagerService";

/// A manager whose store is open and whose state is loaded, not yet serving.
pub struct Manager {
    core: core::Core,
    config: ManagerConfig,
}

impl Manager {
    /// Opens the store and reloads everything. Fails at once on a locked, corrupt or newer
    /// store, or an unknown scheduler.
    pub fn open(config: ManagerConfig) -> Result<Manager> {
        let scheduler = crate::scheduler::by_name(&config.scheduler).ok_or_else(|| {
            Error::invalid(
                "scheduler",
                format!(
                    "{:?} is not a strategy (choose from {})",
                    config.scheduler,
                    crate::scheduler::STRATEGIES.join(", ")
                ),
            )
        })?;
        if config.heartbeat_interval.is_zero() {
            return Err(Error::invalid(
                "heartbeat_interval",
                "must be more than zero",
            ));
        }
        if config.node_grace.is_some_and(|g| g.is_zero()) {
            return Err(Error::invalid("node_grace", "must be more than zero"));
        }
        if config.update_interval.is_zero() {
            return Err(Error::invalid("update_interval", "must be more than zero"));
        }
        for (i, address) in config.workers.iter().enumerate() {
            admission::check_address(address).map_err(|e| e.within(&format!("workers[{i}]")))?;
        }
        let started = std::time::Instant::now();
        let (store, loaded) = ManagerStore::open(&config.data_dir)?;
        let tasks = loaded.tasks.len();
        // Stats count as fresh for a few missed polls, and never less than 5 s.
        let stale_after = (config.update_interval * 3).max(Duration::from_secs(5));
        let core = core::Core::new(store, loaded, scheduler, &config.workers, stale_after);
        tracing::info!(
            tasks,
            elapsed_ms = started.elapsed().as_millis() as u64,
            data_dir = %config.data_dir.display(),
            "store loaded"
        );
        Ok(Manager { core, config })
    }

    /// Serves ManagerService on `listener` and runs the loops until `shutdown`; then waits for
    /// them to end.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> Result<()> {
        let Manager { core, config } = self;
        let tracker = TaskTracker::new();
        let loops = shutdown.child_token();
        let pool = pool::WorkerPool::new(config.tls.as_ref().map(|t| t.dial.clone()));
        let calls = || dispatcher::Calls::new(core.clone(), pool.clone(), tracker.clone());
        tracker.spawn(dispatcher::run_dispatcher(calls(), loops.clone()));
        tracker.spawn(dispatcher::run_stopper(calls(), loops.clone()));
        let grace = config
            .node_grace
            .unwrap_or(config.heartbeat_interval * policy::GRACE_HEARTBEATS);
        tracker.spawn(supervisor::run_restarter(
            core.clone(),
            pool.clone(),
            tracker.clone(),
            loops.clone(),
        ));
        tracker.spawn(supervisor::run_liveness(core.clone(), grace, loops.clone()));
        tracker.spawn(supervisor::run_drainer(core.clone(), loops.clone()));
        tracker.spawn(supervisor::run_services(core.clone(), loops.clone()));
        tracker.spawn(supervisor::run_collector(
            core.clone(),
            config.retention,
            loops.clone(),
        ));
        let polls = service::Polls {
            pool,
            tracker: tracker.clone(),
            stop: loops.clone(),
            update_interval: config.update_interval,
            heartbeat_interval: config.heartbeat_interval,
        };
        for address in &config.workers {
            core.node_for_address(address);
            polls.start(&core, address.clone());
        }
        let _metrics = metrics::register(&core);
        let (router, health) = crate::grpc::standard_router(
            SERVICE_NAME,
            config.tls.as_ref().map(|t| t.server.clone()),
        )?;
        health
            .set_serving::<ManagerServiceServer<service::Api>>()
            .await;
        // While the store is read-only, health says so; once it writes again, the core
        // catches up on what it skipped.
        tracker.spawn(crate::store::report::follow(
            core.store_health(),
            health,
            SERVICE_NAME,
            "manager",
            loops.clone(),
            {
                let core = core.clone();
                move || core.store_recovered()
            },
        ));
        let api = service::Api {
            core: core.clone(),
            shutdown: shutdown.clone(),
            polls,
            streams: service::StreamCaps::default(),
            retention: config.retention,
            ca: config.tls.as_ref().map(|t| t.ca.clone()),
        };
        let compression = crate::limits::server::COMPRESSION;
        let api = ManagerServiceServer::new(api)
            .max_decoding_message_size(crate::limits::server::MAX_REQUEST_BYTES)
            .accept_compressed(compression)
            .send_compressed(compression);
        let router = match &config.tls {
            Some(tls) => router.add_service(crate::tls::Guarded::manager(api, tls.tokens.clone())),
            None => router.add_service(api),
        };
        let served =
            crate::grpc::serve(router, listener, &config.connections, shutdown.clone()).await;
        loops.cancel();
        tracker.close();
        tracker.wait().await;
        served.map_err(|e| Error::Internal(format!("serving failed: {e}")))
    }
}

/// Runs a manager on `listener` until `shutdown`: opens the store, reloads, serves.
pub async fn serve(
    listener: TcpListener,
    config: ManagerConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    Manager::open(config)?.serve(listener, shutdown).await
}
