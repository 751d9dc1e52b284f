//! A real Cube cluster for one test: a cube-manager and cube-worker processes on 127.0.0.1:0,
//! each with its data dir in one temporary folder. Dropped, it kills its processes, then the
//! task processes and containers they started (found by data dir and by label), then removes
//! the folder, so a failing test cleans up too. [`Cluster::builder`] says what to start.
//!
//! ```ignore
//! let cluster = Cluster::builder()
//!     .workers(2)
//!     .scheduler("spread")
//!     .wait_ready(Duration::from_secs(15))
//!     .start();
//! let id = cluster.ctl().run_sleeper("nap");
//! ```

mod builder;
mod secure;

pub use builder::{ClusterBuilder, Runtime};
pub use secure::{admin_token, remember, tokens, Tokens};

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use cube::pb::manager_service_client::ManagerServiceClient;

use super::{
    containers::ContainerGuard,
    cubectl::Cubectl,
    exec_tasks::kill_exec_tasks,
    grpc::{manager_client, WorkerClient},
    process::Proc,
    unique,
};
use cube::tls::AuthChannel;

/// The manager's data dir, inside the cluster's folder.
const MANAGER_DATA: &str = "manager";

/// `args` as owned strings.
fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// How the manager is started, every time: its flags (bar `--workers`) and environment.
#[derive(Debug)]
struct ManagerPlan {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// One worker of a [`Cluster`]: its name and data dir stay when its process is restarted.
#[derive(Debug)]
struct Worker {
    name: String,
    data: PathBuf,
    extra: Vec<String>,
    proc: Option<Proc>,
}

/// A manager and workers as real processes; see the module's doc.
#[derive(Debug)]
pub struct Cluster {
    manager: Option<Proc>,
    /// `None`: a cluster of workers alone.
    manager_plan: Option<ManagerPlan>,
    workers: Vec<Worker>,
    worker_env: Vec<(String, String)>,
    runtime: Runtime,
    register: bool,
    ready: Duration,
    guard: ContainerGuard,
    /// The cluster's tokens: None for a plaintext (`--dev`) cluster or one without manager.
    tokens: Option<Tokens>,
    dir: tempfile::TempDir,
    manager_data: PathBuf,
}

impl Cluster {
    /// A builder; see [`ClusterBuilder`] for the defaults.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// A manager with one Exec worker (no Docker needed), ready. The manager polls its worker
    /// every 200ms, so a change shows well within a second.
    pub fn exec() -> Cluster {
        Cluster::builder()
            .workers(1)
            .update_interval("200ms")
            .runtime(Runtime::Exec)
            .wait_ready(std::time::Duration::from_secs(15))
            .start()
    }

    /// A manager with one Docker worker, ready, polled every 500ms.
    pub fn docker() -> Cluster {
        Cluster::builder()
            .workers(1)
            .update_interval("500ms")
            .wait_ready(std::time::Duration::from_secs(15))
            .start()
    }

    /// The running manager.
    pub fn manager(&self) -> &Proc {
        self.manager.as_ref().expect("the manager is not running")
    }

    /// The running manager's URL: `https://ADDR`, or `http://ADDR` for a `--dev` one.
    pub fn url(&self) -> String {
        match &self.tokens {
            Some(_) => format!("https://{}", self.manager().addr),
            None => self.manager().url(),
        }
    }

    /// cubectl pointed at the running manager, with the admin token on a secure cluster.
    pub fn ctl(&self) -> Cubectl {
        Cubectl::new(&self.url())
    }

    /// A gRPC client of the running manager (as admin on a secure cluster).
    pub async fn client(&self) -> ManagerServiceClient<AuthChannel> {
        manager_client(&self.url()).await
    }

    /// The tokens of a secure cluster.
    pub fn tokens(&self) -> &Tokens {
        self.tokens
            .as_ref()
            .expect("a plaintext cluster has no tokens")
    }

    /// The CA certificate file of a secure cluster.
    pub fn ca_pem(&self) -> PathBuf {
        self.manager_data().join("tls").join("ca.pem")
    }

    /// What grpcurl needs to call the manager with `token`: `-cacert` and the header, or
    /// `-plaintext` on a `--dev` cluster.
    pub fn grpcurl_auth(&self, token: Option<&str>) -> Vec<String> {
        match (&self.tokens, token) {
            (None, _) => vec!["-plaintext".into()],
            (Some(_), None) => vec!["-cacert".into(), self.ca_pem().display().to_string()],
            (Some(_), Some(token)) => vec![
                "-cacert".into(),
                self.ca_pem().display().to_string(),
                "-H".into(),
                format!("authorization: Bearer {token}"),
            ],
        }
    }

    /// What the health service of the manager (`worker: None`) or of worker `i` says of
    /// `service`: over TLS on a secure cluster (a worker answers only the manager's
    /// certificate, so that is shown to it), in plaintext on a `--dev` one.
    pub async fn health(
        &self,
        worker: Option<usize>,
        service: &str,
    ) -> tonic_health::pb::health_check_response::ServingStatus {
        let address = match worker {
            None => self.url(),
            Some(i) => self.worker(i).addr.clone(),
        };
        let channel = if self.tokens.is_some() {
            cube::tls::ClientTls::from_manager_dir(&self.manager_data, worker.is_some())
                .unwrap()
                .channel(&address, Duration::from_secs(10))
                .unwrap()
        } else {
            let url = if address.contains("://") {
                address
            } else {
                format!("http://{address}")
            };
            tonic::transport::Endpoint::from_shared(url)
                .unwrap()
                .connect()
                .await
                .unwrap()
        };
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        client
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status()
    }

    /// A blocking client of worker `i`, showing the manager's certificate when the worker
    /// serves TLS.
    pub fn worker_client(&self, i: usize) -> WorkerClient {
        let addr = &self.worker(i).addr;
        if self.workers[i].data.join("tls").join("node.pem").exists() {
            WorkerClient::connect_as_manager(addr, &self.manager_data())
        } else {
            WorkerClient::connect(addr)
        }
    }

    /// The temporary folder that holds every data dir (and whatever a test writes there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The manager's data dir.
    pub fn manager_data(&self) -> PathBuf {
        self.manager_data.clone()
    }

    /// Starts the manager (again, on the same data dir and flags), with `--workers` listing
    /// the running workers unless they register.
    pub fn start_manager(&mut self) {
        assert!(self.manager.is_none(), "the manager is already running");
        let plan = self
            .manager_plan
            .as_ref()
            .expect("a cluster without manager");
        let mut args: Vec<&str> = plan.args.iter().map(String::as_str).collect();
        let addresses: Vec<&str> = self
            .workers
            .iter()
            .filter_map(|w| w.proc.as_ref().map(|p| p.addr.as_str()))
            .collect();
        let listed = addresses.join(",");
        if !self.register && !addresses.is_empty() {
            args.extend(["--workers", &listed]);
        }
        let env: Vec<(&str, &str)> = plan
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let manager = Proc::start_with_env("cube-manager", &args, &env);
        if let Some(tokens) = &self.tokens {
            secure::remember(&format!("https://{}", manager.addr), &tokens.admin);
        }
        self.manager = Some(manager);
    }

    /// SIGKILLs the manager, the way a machine dies.
    pub fn kill_manager(&mut self) {
        self.manager
            .take()
            .expect("the manager is not running")
            .kill9();
    }

    /// SIGKILLs the manager and starts it again on the same data dir.
    pub fn restart_manager(&mut self) {
        self.kill_manager();
        self.start_manager();
    }

    /// SIGTERMs the manager; whether it exited cleanly (code 0) within 15 s.
    pub fn terminate_manager(&mut self) -> bool {
        self.manager
            .take()
            .expect("the manager is not running")
            .terminate()
    }

    /// The name of worker `i` (kept across restarts).
    pub fn name(&self, i: usize) -> &str {
        &self.workers[i].name
    }

    /// The names of the running workers.
    pub fn names(&self) -> Vec<&str> {
        self.workers
            .iter()
            .filter(|w| w.proc.is_some())
            .map(|w| w.name.as_str())
            .collect()
    }

    /// Worker `i`'s running process.
    pub fn worker(&self, i: usize) -> &Proc {
        self.workers[i]
            .proc
            .as_ref()
            .unwrap_or_else(|| panic!("worker {i} is not running"))
    }

    /// Starts one more worker named `<prefix>-<8 hex>` with `extra` flags; its index.
    pub fn add_worker(&mut self, prefix: &str, extra: &[&str]) -> usize {
        self.add_worker_with_data(prefix, None, extra)
    }

    /// [`Cluster::add_worker`] with its data dir in `data` (e.g. on a
    /// [`super::Tmpfs`]) instead of the cluster's folder.
    pub fn add_worker_with_data(
        &mut self,
        prefix: &str,
        data: Option<PathBuf>,
        extra: &[&str],
    ) -> usize {
        let name = unique(prefix);
        self.guard.add_worker(&name);
        self.workers.push(Worker {
            data: data.unwrap_or_else(|| self.dir().join(&name)),
            name,
            extra: owned(extra),
            proc: None,
        });
        let i = self.workers.len() - 1;
        self.start_worker(i);
        i
    }

    /// Starts worker `i` (again, with the same name, data dir and flags).
    pub fn start_worker(&mut self, i: usize) {
        let manager = self.register.then(|| self.url());
        let worker = &self.workers[i];
        assert!(worker.proc.is_none(), "worker {i} is already running");
        let join = match (&self.tokens, self.register) {
            (None, _) => None,
            (Some(tokens), true) => Some(tokens.worker.clone()),
            (Some(_), false) => {
                secure::node_cert(&self.manager_data, &worker.name, &worker.data);
                None
            }
        };
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--name",
            &worker.name,
            "--data-dir",
            worker.data.to_str().unwrap(),
            "--runtime",
            self.runtime.flag(),
        ];
        if let Some(url) = &manager {
            args.extend(["--manager", url]);
        }
        if let Some(token) = &join {
            args.extend(["--join-token", token]);
        }
        args.extend(worker.extra.iter().map(String::as_str));
        let env: Vec<(&str, &str)> = self
            .worker_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let proc = Proc::start_with_env("cube-worker", &args, &env);
        self.workers[i].proc = Some(proc);
    }

    /// SIGKILLs worker `i`, the way a machine dies (its tasks live on).
    pub fn kill_worker(&mut self, i: usize) {
        self.take_worker(i).kill9();
    }

    /// SIGKILLs worker `i` and starts it again.
    pub fn restart_worker(&mut self, i: usize) {
        self.kill_worker(i);
        self.start_worker(i);
    }

    /// SIGTERMs worker `i`; whether it exited cleanly (code 0) within 15 s.
    pub fn terminate_worker(&mut self, i: usize) -> bool {
        self.take_worker(i).terminate()
    }

    fn take_worker(&mut self, i: usize) -> Proc {
        self.workers[i]
            .proc
            .take()
            .unwrap_or_else(|| panic!("worker {i} is not running"))
    }

    /// Waits until the manager shows every running worker READY.
    pub fn wait_ready(&self) {
        self.ctl().wait_ready(&self.names(), self.ready);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The processes first, so that nothing starts a task while it is cleaned up; the
        // guard then removes the containers, and the folder goes last.
        self.manager = None;
        for worker in &mut self.workers {
            worker.proc = None;
        }
        kill_exec_tasks(self.dir.path());
    }
}
