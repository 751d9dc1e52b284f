//! [`NetCluster`]: a secure Cube cluster on a real network ([`Net`]): the manager in the hub
//! namespace, each worker (Exec runtime, joined with the worker token) in a namespace of its
//! own, and a relay so that the test's clients reach the manager from the machine's own
//! namespace. Every run of a task made with [`NetCluster::counted`] writes its pid to a file,
//! so tests count the runs that really live, not Cube's view of them.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use cube::{
    pb::{manager_service_client::ManagerServiceClient, NodeState, TaskState},
    tls::AuthChannel,
};

use super::{
    bin, cluster, exec_spec, exec_tasks::kill_exec_tasks, grpc::manager_client, list_all,
    list_nodes, netns::Net, temp_dir, unique, Proc,
};

/// The manager's port inside the hub (the hub is this cluster's alone).
const MANAGER_PORT: u16 = 7000;

/// The workers' port, each in its own namespace.
const WORKER_PORT: u16 = 5556;

/// A manager and workers on a [`Net`]; all stopped, and the namespaces deleted, on drop.
pub struct NetCluster {
    manager: Option<Proc>,
    manager_args: Vec<String>,
    workers: Vec<(String, Option<Proc>)>,
    tokens: cluster::Tokens,
    url: String,
    dir: tempfile::TempDir,
    /// Nodes whose link relays run (started with the node's first worker).
    relayed: Vec<usize>,
    /// Last, so that it is dropped after the processes in it.
    pub net: Net,
}

impl NetCluster {
    /// Starts the manager in `net`'s hub (default heartbeat and grace), with `extra` flags.
    pub fn start(net: Net, extra: &[&str]) -> NetCluster {
        let dir = temp_dir();
        let tokens = cluster::tokens(&dir.path().join("manager"));
        std::fs::create_dir_all(dir.path().join("runs")).unwrap();
        let listen = SocketAddr::from((net.hub_ip(), MANAGER_PORT));
        let url = format!("https://{}", net.relay(listen));
        cluster::remember(&url, &tokens.admin);
        let mut cluster = NetCluster {
            manager: None,
            manager_args: extra.iter().map(|a| a.to_string()).collect(),
            workers: Vec::new(),
            tokens,
            url,
            dir,
            relayed: Vec::new(),
            net,
        };
        cluster.start_manager();
        cluster
    }

    /// Starts the manager (again: same data dir, address and flags).
    pub fn start_manager(&mut self) {
        assert!(self.manager.is_none(), "the manager runs already");
        let listen = SocketAddr::from((self.net.hub_ip(), MANAGER_PORT));
        let mut command = Net::command(self.net.hub(), &bin("cube-manager"));
        command
            .args(["--listen", &listen.to_string(), "--data-dir"])
            .arg(self.dir.path().join("manager"))
            .args(&self.manager_args);
        self.manager = Some(Proc::spawn(command, "cube-manager in the hub"));
    }

    /// SIGKILLs the manager, the way a machine dies.
    pub fn kill_manager(&mut self) {
        self.manager.take().expect("no manager").kill9();
    }

    /// A worker named `<prefix>-<8 hex>` in a new namespace, registered with the manager;
    /// returns its index (the same as its namespace's in `net`).
    pub fn add_worker(&mut self, prefix: &str) -> usize {
        let i = self.net.add_node();
        self.workers.push((unique(prefix), None));
        assert_eq!(self.workers.len() - 1, i, "one namespace per worker");
        self.start_worker(i);
        i
    }

    /// Starts worker `i` (again: same name, data dir and namespace).
    pub fn start_worker(&mut self, i: usize) {
        assert!(self.workers[i].1.is_none(), "worker {i} runs already");
        let name = self.workers[i].0.clone();
        let data = self.dir.path().join(&name);
        // The worker and the manager meet through the node's link relays (in its namespace),
        // which delay the link where the kernel has no netem: the worker listens on the
        // node's loopback and dials the manager there.
        let loopback = |port| SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
        let advertised = self.worker_address(i);
        if !self.relayed.contains(&i) {
            let hub = SocketAddr::from((self.net.hub_ip(), MANAGER_PORT));
            self.net.link_relay(i, loopback(MANAGER_PORT), hub);
            self.net.link_relay(i, advertised, loopback(WORKER_PORT));
            self.relayed.push(i);
        }
        let manager = format!("https://{}", loopback(MANAGER_PORT));
        let mut command = Net::command(self.net.node(i), &bin("cube-worker"));
        command
            .args([
                "--listen",
                &loopback(WORKER_PORT).to_string(),
                "--name",
                &name,
            ])
            .args(["--advertise", &advertised.to_string()])
            .args(["--runtime", "exec", "--manager", &manager]);
        // The token joins once; later starts have their node certificate.
        if !data.join("tls").join("node.pem").exists() {
            command.args(["--join-token", &self.tokens.worker]);
        }
        command.arg("--data-dir").arg(&data);
        let worker = Proc::spawn(command, &format!("cube-worker {name} in its namespace"));
        self.workers[i].1 = Some(worker);
    }

    /// Where the manager reaches worker `i` (through its node's link relay).
    pub fn worker_address(&self, i: usize) -> SocketAddr {
        SocketAddr::from((self.net.node_ip(i), WORKER_PORT))
    }

    /// SIGKILLs worker `i` (its Exec tasks live on, as on a machine whose agent died).
    pub fn kill_worker(&mut self, i: usize) {
        self.workers[i]
            .1
            .take()
            .expect("worker not running")
            .kill9();
    }

    /// How many workers were added.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Worker `i`'s node name.
    pub fn name(&self, i: usize) -> &str {
        &self.workers[i].0
    }

    /// The manager's URL as the test reaches it (through the relay).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client of the manager, as admin.
    pub async fn client(&self) -> ManagerServiceClient<AuthChannel> {
        manager_client(&self.url).await
    }

    /// An Exec task named `name` that sleeps, each run of which writes its pid to its runs
    /// file (see [`NetCluster::live_runs`]).
    pub fn counted(&self, name: &str) -> cube::pb::TaskSpec {
        counted_spec(&self.runs_dir(), name)
    }

    /// Where the runs files are.
    pub fn runs_dir(&self) -> PathBuf {
        self.dir.path().join("runs")
    }

    fn runs_file(&self, name: &str) -> PathBuf {
        self.runs_dir().join(name)
    }

    /// The pids of task `name`'s runs that are alive now (whatever Cube thinks).
    pub fn live_runs(&self, name: &str) -> Vec<u32> {
        let text = std::fs::read_to_string(self.runs_file(name)).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|pid| alive(*pid))
            .collect()
    }

    /// Waits (up to 20 s) until the manager shows `want` nodes READY.
    pub async fn wait_ready(&self, want: usize) {
        let mut client = self.client().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let nodes = list_nodes(&mut client).await;
            if nodes
                .iter()
                .filter(|n| n.state() == NodeState::Ready)
                .count()
                == want
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{want} nodes never READY: {nodes:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Worker `i`'s node state as the manager shows it.
    pub async fn node_state(&self, i: usize) -> NodeState {
        let mut client = self.client().await;
        list_nodes(&mut client)
            .await
            .iter()
            .find(|n| n.name == self.name(i))
            .map_or(NodeState::Unspecified, |n| n.state())
    }

    /// Checks that the manager shows every task RUNNING on worker `i`.
    pub async fn assert_all_running_on(&self, i: usize) {
        let tasks = list_all(&mut self.client().await).await;
        assert!(
            tasks
                .iter()
                .all(|t| t.state() == TaskState::Running && t.node == self.name(i)),
            "not all RUNNING on {}: {tasks:?}",
            self.name(i)
        );
    }

    /// The temporary folder of the cluster's data dirs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// An Exec task named `name` that sleeps, each run writing its pid to `runs/<name>`.
pub fn counted_spec(runs: &Path, name: &str) -> cube::pb::TaskSpec {
    let script = format!("echo $$ >> {}; exec sleep 600", runs.join(name).display());
    exec_spec(name, &["sh", "-c", &script])
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the command's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

impl Drop for NetCluster {
    fn drop(&mut self) {
        for (_, worker) in &mut self.workers {
            drop(worker.take());
        }
        drop(self.manager.take());
        // Exec tasks outlive their worker by design: kill what the workers left.
        kill_exec_tasks(self.dir.path());
        std::thread::sleep(Duration::from_millis(100));
    }
}
