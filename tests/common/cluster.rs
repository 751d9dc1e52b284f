//! A real Cube cluster for one test: a cube-manager and cube-worker processes on 127.0.0.1:0,
//! each with its data dir in one temporary folder. Dropped, it kills its processes, then the
//! task processes and containers they started (found by data dir and by label), then removes
//! the folder, so a failing test cleans up too.
//!
//! ```ignore
//! let cluster = Cluster::builder().workers(2).scheduler("spread").wait_ready(secs(15)).start();
//! let id = cluster.ctl().run_sleeper("nap");
//! ```

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use cube::pb::manager_service_client::ManagerServiceClient;
use tonic::transport::Channel;

use super::{
    containers::ContainerGuard, cubectl::Cubectl, grpc::manager_client, process::Proc, temp_dir,
    unique,
};

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
    fn flag(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Exec => "exec",
        }
    }
}

/// What [`Cluster::builder`] starts. By default: one manager with no workers, on an ephemeral
/// port; workers run Docker and are listed to the manager with `--workers`.
#[derive(Debug)]
pub struct ClusterBuilder {
    manager: bool,
    dev: bool,
    listen: String,
    manager_args: Vec<String>,
    manager_env: Vec<(String, String)>,
    workers: Vec<(String, Vec<String>)>,
    worker_env: Vec<(String, String)>,
    runtime: Runtime,
    register: bool,
    ready: Option<Duration>,
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
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
        manager_args.push(dir.path().join("manager").to_str().unwrap().into());
        if self.dev {
            manager_args.push("--dev".into());
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
            dir,
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
    dir: tempfile::TempDir,
}

impl Cluster {
    /// A builder; see [`ClusterBuilder`] for the defaults.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            manager: true,
            dev: false,
            listen: "127.0.0.1:0".into(),
            manager_args: Vec::new(),
            manager_env: Vec::new(),
            workers: Vec::new(),
            worker_env: Vec::new(),
            runtime: Runtime::Docker,
            register: false,
            ready: None,
        }
    }

    /// The running manager.
    pub fn manager(&self) -> &Proc {
        self.manager.as_ref().expect("the manager is not running")
    }

    /// `http://ADDR` of the running manager.
    pub fn url(&self) -> String {
        self.manager().url()
    }

    /// cubectl pointed at the running manager.
    pub fn ctl(&self) -> Cubectl {
        Cubectl::new(&self.url())
    }

    /// A gRPC client of the running manager.
    pub async fn client(&self) -> ManagerServiceClient<Channel> {
        manager_client(&self.url()).await
    }

    /// The temporary folder that holds every data dir (and whatever a test writes there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The manager's data dir.
    pub fn manager_data(&self) -> PathBuf {
        self.dir().join("manager")
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
        self.manager = Some(Proc::start_with_env("cube-manager", &args, &env));
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

    /// Worker `i`'s data dir.
    pub fn worker_data(&self, i: usize) -> &Path {
        &self.workers[i].data
    }

    /// Starts one more worker named `<prefix>-<8 hex>` with `extra` flags; its index.
    pub fn add_worker(&mut self, prefix: &str, extra: &[&str]) -> usize {
        let name = unique(prefix);
        self.guard.add_worker(&name);
        self.workers.push(Worker {
            data: self.dir().join(&name),
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

/// Kills the process group of every Exec task whose shim keeps its run file under `root` (an
/// Exec task outlives its worker by design).
fn kill_exec_tasks(root: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let root = root.to_string_lossy();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // `sh -c SHIM cube-shim <run file> <command>...`, the leader of the task's group.
        let ours = args
            .windows(2)
            .any(|w| w[0] == "cube-shim" && w[1].starts_with(root.as_ref()));
        if ours {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .output();
        }
    }
}
