//! [`ClusterBuilder`]: what a test's cluster is made of, and the order it starts in.

use std::{path::PathBuf, time::Duration};

use super::{owned, Cluster, ManagerPlan, MANAGER_DATA};
use crate::common::{containers::ContainerGuard, temp_dir, unique};

/// How long [`Cluster::wait_ready`] waits unless [`ClusterBuilder::wait_ready`] says otherwise.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How a worker runs its tasks (`--runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Containers on the local Docker engine.
    Docker,
    /// Child processes (no Docker needed).
    Exec,
}

impl Runtime {
    pub(super) fn flag(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Exec => "exec",
        }
    }
}

/// What [`Cluster::builder`] starts. By default: one manager with no workers, on an ephemeral
/// port, serving TLS with tokens (a secure cluster; `dev` makes it plaintext); workers run
/// Docker and are listed to the manager with `--workers`, each with a node certificate from
/// `cube-manager node-cert`, or join with the worker token when they register.
#[derive(Debug)]
pub struct ClusterBuilder {
    manager: bool,
    dev: bool,
    plaintext: bool,
    listen: String,
    manager_args: Vec<String>,
    manager_env: Vec<(String, String)>,
    workers: Vec<(String, Vec<String>)>,
    worker_env: Vec<(String, String)>,
    runtime: Runtime,
    register: bool,
    ready: Option<Duration>,
    manager_data: Option<PathBuf>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        Self {
            manager: true,
            dev: false,
            plaintext: false,
            listen: "127.0.0.1:0".into(),
            manager_args: Vec::new(),
            manager_env: Vec::new(),
            workers: Vec::new(),
            worker_env: Vec::new(),
            runtime: Runtime::Docker,
            register: false,
            ready: None,
            manager_data: None,
        }
    }
}

impl ClusterBuilder {
    /// `n` more workers, named `w<i>-<8 hex>`.
    pub fn workers(mut self, n: usize) -> Self {
        for _ in 0..n {
            let prefix = format!("w{}", self.workers.len());
            self.workers.push((prefix, Vec::new()));
        }
        self
    }

    /// One more worker per prefix, named `<prefix>-<8 hex>`.
    pub fn workers_named(self, prefixes: &[&str]) -> Self {
        prefixes
            .iter()
            .fold(self, |builder, prefix| builder.worker(prefix, &[]))
    }

    /// One more worker, named `<prefix>-<8 hex>`, with `extra` flags.
    pub fn worker(mut self, prefix: &str, extra: &[&str]) -> Self {
        self.workers.push((prefix.to_string(), owned(extra)));
        self
    }

    /// The workers' runtime (Docker unless set).
    pub fn runtime(mut self, runtime: Runtime) -> Self {
        self.runtime = runtime;
        self
    }

    /// The manager's `--scheduler`.
    pub fn scheduler(self, name: &str) -> Self {
        self.manager_args(&["--scheduler", name])
    }

    /// The manager's `--update-interval` (how often it polls its workers).
    pub fn update_interval(self, interval: &str) -> Self {
        self.manager_args(&["--update-interval", interval])
    }

    /// More flags for the manager.
    pub fn manager_args(mut self, args: &[&str]) -> Self {
        self.manager_args.extend(owned(args));
        self
    }

    /// An environment variable for the manager.
    pub fn manager_env(mut self, key: &str, value: &str) -> Self {
        self.manager_env.push((key.into(), value.into()));
        self
    }

    /// An environment variable for every worker.
    pub fn worker_env(mut self, key: &str, value: &str) -> Self {
        self.worker_env.push((key.into(), value.into()));
        self
    }

    /// The manager listens on `addr` instead of an ephemeral port.
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.to_string();
        self
    }

    /// Workers join by registering (`--manager URL`) instead of being listed to the manager;
    /// the manager starts first.
    pub fn register(mut self) -> Self {
        self.register = true;
        self
    }

    /// `cube-manager --dev`: the manager runs an embedded worker, given a unique name
    /// (`CUBE_DEV_WORKER_NAME`) so that its containers are this test's alone.
    pub fn dev(mut self) -> Self {
        self.dev = true;
        self
    }

    /// `cube-manager --plaintext`: no TLS and no tokens, as `--dev` but without its worker
    /// (a test whose client starts before the manager, so it cannot ask for a token first).
    pub fn plaintext(mut self) -> Self {
        self.plaintext = true;
        self
    }

    /// Workers only, no manager (tests of the worker's own API).
    pub fn without_manager(mut self) -> Self {
        self.manager = false;
        self
    }

    /// `start` waits up to `timeout` until the manager shows every worker READY, and so
    /// does [`Cluster::wait_ready`] later.
    pub fn wait_ready(mut self, timeout: Duration) -> Self {
        self.ready = Some(timeout);
        self
    }

    /// The manager's data dir is `dir` (e.g. on a `Tmpfs`) instead of one in
    /// the cluster's folder.
    pub fn manager_data(mut self, dir: PathBuf) -> Self {
        self.manager_data = Some(dir);
        self
    }

    /// Starts the processes: workers then the manager, or the manager first when workers
    /// register.
    pub fn start(self) -> Cluster {
        let dir = temp_dir();
        let mut manager_env = self.manager_env;
        let mut guard = ContainerGuard::default();
        if self.dev {
            let name = unique("dev");
            guard.add_worker(&name);
            manager_env.push(("CUBE_DEV_WORKER_NAME".into(), name));
        }
        let mut manager_args = owned(&["--listen", &self.listen]);
        manager_args.push("--data-dir".into());
        let manager_data = self
            .manager_data
            .unwrap_or_else(|| dir.path().join(MANAGER_DATA));
        manager_args.push(manager_data.to_str().unwrap().into());
        if self.dev {
            manager_args.push("--dev".into());
        }
        if self.plaintext {
            manager_args.push("--plaintext".into());
        }
        manager_args.extend(self.manager_args);
        let mut cluster = Cluster {
            manager: None,
            manager_plan: self.manager.then_some(ManagerPlan {
                args: manager_args,
                env: manager_env,
            }),
            workers: Vec::new(),
            worker_env: self.worker_env,
            runtime: self.runtime,
            register: self.register,
            ready: self.ready.unwrap_or(READY_TIMEOUT),
            guard,
            tokens: (self.manager && !self.dev && !self.plaintext)
                .then(|| super::secure::tokens(&manager_data)),
            dir,
            manager_data,
        };
        if cluster.register {
            cluster.start_manager();
        }
        for (prefix, extra) in &self.workers {
            cluster.add_worker(
                prefix,
                &extra.iter().map(String::as_str).collect::<Vec<_>>(),
            );
        }
        if !cluster.register && self.manager {
            cluster.start_manager();
        }
        if self.ready.is_some() {
            cluster.wait_ready();
        }
        cluster
    }
}
