//! Simulated workers for the scale benchmark: many in one process, each speaking the worker's
//! side of the contract (WorkerService on its own port, RegisterWorker and Heartbeat to the
//! manager) with its tasks in memory and no runtime.
//!
//! Why a light fake rather than the real worker with a runtime that starts nothing: a real
//! worker is a process with its own store (an fsync per change), tokio runtime and stats
//! sampler; ten thousand of them cannot share two cores with the manager they are meant to
//! measure. What the manager sees is the same: a node registers, heartbeats every interval,
//! answers GetStats and the long-polled ListTasks with revisions, pages and instance ids as a
//! worker does, takes StartTasks and StopTask, and runs each task for a chosen time (or until
//! stopped). What is not simulated: logs and usage (StreamLogs and TopTasks answer
//! UNIMPLEMENTED), health checks, resource sampling (stats are the capacity given, always idle).

#![allow(dead_code)] // the benchmark and its small test form use different parts

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use cube::proto::pb::{
    self, manager_service_client::ManagerServiceClient, worker_service_server,
    worker_service_server::WorkerServiceServer, DesiredState, TaskState,
};
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;
use tonic::{transport::Channel, Request, Response, Status};

/// The most tasks in one ListTasks answer (a real worker cuts at 2 MiB; these tasks are small).
const PAGE: usize = 2000;
/// The longest a ListTasks long poll waits, as a worker caps it.
const MAX_WAIT: Duration = Duration::from_secs(10);

/// What every simulated node has and does.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// CPU capacity in millicores.
    pub cpu_millis: i64,
    /// Memory capacity in bytes.
    pub memory_bytes: i64,
    /// How long a task runs before it completes by itself; None: until stopped.
    pub run_for: Option<Duration>,
}

/// Counters over every node of a [`SimCluster`].
#[derive(Default)]
pub struct SimCounters {
    /// Heartbeats answered.
    pub heartbeats: AtomicU64,
    /// Heartbeats or registrations that failed.
    pub failed_calls: AtomicU64,
    /// Registrations made (more than the nodes when the manager asked some to register again).
    pub registrations: AtomicU64,
    /// Tasks started (StartTasks entries accepted).
    pub started: AtomicU64,
}

/// One simulated node.
pub struct SimNode {
    name: String,
    instance_id: String,
    address: String,
    options: SimOptions,
    tasks: Mutex<Tasks>,
    /// The current revision, for long polls.
    revision: watch::Sender<u64>,
    counters: Arc<SimCounters>,
    /// Cancelled when the node is lost: its server and heartbeats stop.
    alive: CancellationToken,
}

#[derive(Default)]
struct Tasks {
    revision: u64,
    by_id: HashMap<String, pb::Task>,
}

impl SimNode {
    fn stats(&self) -> pb::NodeStats {
        let running = self.tasks.lock().unwrap().by_id.len() as u32;
        pb::NodeStats {
            cpu_count: (self.options.cpu_millis / 1000).max(1) as u32,
            memory_total_bytes: self.options.memory_bytes,
            memory_available_bytes: self.options.memory_bytes,
            task_count: running,
            sampled_at: Some(cube::proto::now()),
            capacity: Some(pb::Resources {
                cpu_millis: self.options.cpu_millis,
                memory_bytes: self.options.memory_bytes,
                disk_bytes: 0,
            }),
            runtime_ready: true,
            runtime: "sim".into(),
            ..Default::default()
        }
    }

    /// Changes task `id` with `change` under a new revision; false when it is unknown.
    fn update(&self, id: &str, change: impl FnOnce(&mut pb::Task)) -> bool {
        let mut tasks = self.tasks.lock().unwrap();
        let revision = tasks.revision + 1;
        let Some(task) = tasks.by_id.get_mut(id) else {
            return false;
        };
        change(task);
        task.revision = revision;
        tasks.revision = revision;
        drop(tasks);
        self.revision.send_replace(revision);
        true
    }

    /// Ends task `id` (COMPLETED, exit 0) unless it already ended.
    fn finish(&self, id: &str, message: &str) {
        self.update(id, |task| {
            if task.state() == TaskState::Running || task.state() == TaskState::Scheduled {
                task.state = TaskState::Completed as i32;
                task.exit_code = Some(0);
                task.finished_at = Some(cube::proto::now());
                task.message = message.to_string();
            }
        });
    }

    /// Accepts one StartTask entry: SCHEDULED in the answer, RUNNING at once after it.
    fn start(self: &Arc<Self>, request: pb::StartTaskRequest) -> pb::StartTaskResult {
        let mut tasks = self.tasks.lock().unwrap();
        if let Some(previous) = tasks.by_id.get(&request.task_id) {
            let live = !matches!(previous.state(), TaskState::Completed | TaskState::Failed)
                && previous.desired_state() != DesiredState::Stopped;
            if live && request.attempt <= previous.restart_count {
                return pb::StartTaskResult {
                    task: None,
                    code: tonic::Code::AlreadyExists as i32,
                    message: format!(
                        "task {} (attempt {}) already exists",
                        request.task_id, request.attempt
                    ),
                };
            }
        }
        tasks.revision += 2;
        let revision = tasks.revision;
        let now = cube::proto::now();
        let scheduled = pb::Task {
            id: request.task_id.clone(),
            spec: request.spec,
            state: TaskState::Scheduled as i32,
            desired_state: DesiredState::Running as i32,
            node: self.name.clone(),
            restart_count: request.attempt,
            created_at: Some(now),
            revision: revision - 1,
            ..Default::default()
        };
        let running = pb::Task {
            state: TaskState::Running as i32,
            container_id: format!("sim:{}", request.task_id),
            started_at: Some(now),
            revision,
            ..scheduled.clone()
        };
        tasks.by_id.insert(request.task_id.clone(), running);
        drop(tasks);
        self.revision.send_replace(revision);
        self.counters.started.fetch_add(1, Ordering::Relaxed);
        if let Some(run_for) = self.options.run_for {
            let node = self.clone();
            let id = request.task_id;
            tokio::spawn(async move {
                tokio::time::sleep(run_for).await;
                node.finish(&id, "");
            });
        }
        pb::StartTaskResult {
            task: Some(scheduled),
            code: 0,
            message: String::new(),
        }
    }

    /// The tasks changed after `since` (all when `since` is 0), oldest change first, from
    /// `offset` on.
    fn listing(&self, since: u64, offset: usize) -> (Vec<pb::Task>, u64, bool) {
        let tasks = self.tasks.lock().unwrap();
        let mut changed: Vec<&pb::Task> = tasks
            .by_id
            .values()
            .filter(|t| t.revision > since)
            .collect();
        changed.sort_by_key(|t| t.revision);
        let page: Vec<pb::Task> = changed
            .iter()
            .skip(offset)
            .take(PAGE)
            .map(|t| (*t).clone())
            .collect();
        let more = changed.len() > offset + page.len();
        (page, tasks.revision, more)
    }
}

/// A node as its gRPC service.
struct SimService(Arc<SimNode>);

impl std::ops::Deref for SimService {
    type Target = Arc<SimNode>;
    fn deref(&self) -> &Arc<SimNode> {
        &self.0
    }
}

#[tonic::async_trait]
impl worker_service_server::WorkerService for SimService {
    async fn start_task(
        &self,
        request: Request<pb::StartTaskRequest>,
    ) -> Result<Response<pb::StartTaskResponse>, Status> {
        let result = self.start(request.into_inner());
        match result.task {
            Some(task) => Ok(Response::new(pb::StartTaskResponse { task: Some(task) })),
            None => Err(Status::already_exists(result.message)),
        }
    }

    async fn start_tasks(
        &self,
        request: Request<pb::StartTasksRequest>,
    ) -> Result<Response<pb::StartTasksResponse>, Status> {
        let results = request
            .into_inner()
            .tasks
            .into_iter()
            .map(|t| self.start(t))
            .collect();
        Ok(Response::new(pb::StartTasksResponse { results }))
    }

    async fn stop_task(
        &self,
        request: Request<pb::WorkerServiceStopTaskRequest>,
    ) -> Result<Response<pb::WorkerServiceStopTaskResponse>, Status> {
        let request = request.into_inner();
        let reason = format!("stopped: {}", request.reason);
        let known = self.update(&request.task_id, |task| {
            task.desired_state = DesiredState::Stopped as i32;
            if matches!(task.state(), TaskState::Running | TaskState::Scheduled) {
                task.state = TaskState::Completed as i32;
                task.finished_at = Some(cube::proto::now());
                task.message = reason;
            }
        });
        if !known {
            return Err(Status::not_found(format!(
                "task {} is not on this node",
                request.task_id
            )));
        }
        let task = self
            .tasks
            .lock()
            .unwrap()
            .by_id
            .get(&request.task_id)
            .cloned();
        Ok(Response::new(pb::WorkerServiceStopTaskResponse { task }))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::WorkerServiceListTasksRequest>,
    ) -> Result<Response<pb::WorkerServiceListTasksResponse>, Status> {
        let request = request.into_inner();
        let since = if request.instance_id == self.instance_id {
            request.since_revision
        } else {
            0
        };
        let offset: usize = if request.page_token.is_empty() {
            0
        } else {
            request
                .page_token
                .parse()
                .map_err(|_| Status::invalid_argument("page_token: not one of this node's"))?
        };
        let wait = request
            .wait
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default()
            .min(MAX_WAIT);
        if since > 0 && offset == 0 && !wait.is_zero() {
            let mut changes = self.revision.subscribe();
            let _ = tokio::time::timeout(wait, changes.wait_for(|&r| r > since)).await;
        }
        let (tasks, revision, more) = self.listing(since, offset);
        Ok(Response::new(pb::WorkerServiceListTasksResponse {
            tasks,
            revision,
            instance_id: self.instance_id.clone(),
            complete: since == 0,
            node: self.name.clone(),
            next_page_token: if more {
                (offset + PAGE).to_string()
            } else {
                String::new()
            },
        }))
    }

    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        Ok(Response::new(pb::GetStatsResponse {
            node: self.name.clone(),
            stats: Some(self.stats()),
            labels: HashMap::new(),
            instance_id: self.instance_id.clone(),
        }))
    }

    async fn top_tasks(
        &self,
        _request: Request<pb::WorkerServiceTopTasksRequest>,
    ) -> Result<Response<pb::WorkerServiceTopTasksResponse>, Status> {
        Err(Status::unimplemented(
            "a simulated node runs nothing to sample",
        ))
    }

    type StreamLogsStream =
        futures::stream::BoxStream<'static, Result<pb::WorkerServiceStreamLogsResponse, Status>>;

    async fn stream_logs(
        &self,
        _request: Request<pb::WorkerServiceStreamLogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        Err(Status::unimplemented("a simulated node keeps no logs"))
    }
}

/// Registers `node` and heartbeats every `interval` until it is lost.
async fn heartbeat(node: Arc<SimNode>, manager: Channel, interval: Duration) {
    let mut client = ManagerServiceClient::new(manager);
    let register = pb::RegisterWorkerRequest {
        name: node.name.clone(),
        address: node.address.clone(),
        labels: HashMap::new(),
        instance_id: node.instance_id.clone(),
        stats: None,
    };
    let mut registered = false;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = node.alive.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if !registered {
            let request = pb::RegisterWorkerRequest {
                stats: Some(node.stats()),
                ..register.clone()
            };
            match client.register_worker(request).await {
                Ok(_) => {
                    registered = true;
                    node.counters.registrations.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    node.counters.failed_calls.fetch_add(1, Ordering::Relaxed);
                }
            }
            continue;
        }
        let request = pb::HeartbeatRequest {
            name: node.name.clone(),
            instance_id: node.instance_id.clone(),
            stats: Some(node.stats()),
        };
        match client.heartbeat(request).await {
            Ok(answer) => {
                let answer = answer.into_inner();
                node.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                registered = !answer.register_again;
                for id in answer.stale_task_ids {
                    node.finish(&id, "placed elsewhere");
                }
            }
            Err(_) => {
                node.counters.failed_calls.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Many simulated nodes of one manager, in this process's tokio runtime.
pub struct SimCluster {
    nodes: Vec<Arc<SimNode>>,
    /// Counters over every node.
    pub counters: Arc<SimCounters>,
}

impl SimCluster {
    /// Starts `count` nodes named `{prefix}-{i}`, each serving on 127.0.0.1:0 and registering
    /// with the plaintext manager at `manager` (`http://ADDR`), `channels` connections shared
    /// among them (a real worker has its own; thousands of nodes in one process share a few so
    /// the process does not run out of ports), heartbeating every `interval`.
    pub async fn start(
        manager: &str,
        prefix: &str,
        count: usize,
        channels: usize,
        interval: Duration,
        options: SimOptions,
    ) -> SimCluster {
        let counters = Arc::new(SimCounters::default());
        let mut pool = Vec::new();
        for _ in 0..channels.max(1) {
            let channel = tonic::transport::Endpoint::from_shared(manager.to_string())
                .unwrap()
                .timeout(Duration::from_secs(30))
                .connect()
                .await
                .unwrap_or_else(|e| panic!("connecting to the manager at {manager}: {e}"));
            pool.push(channel);
        }
        let mut nodes = Vec::with_capacity(count);
        for i in 0..count {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap().to_string();
            let node = Arc::new(SimNode {
                name: format!("{prefix}-{i}"),
                instance_id: uuid::Uuid::new_v4().to_string(),
                address,
                options: options.clone(),
                tasks: Mutex::default(),
                revision: watch::channel(0).0,
                counters: counters.clone(),
                alive: CancellationToken::new(),
            });
            let server = node.clone();
            tokio::spawn(async move {
                let stop = server.alive.clone();
                let _ = tonic::transport::Server::builder()
                    .add_service(WorkerServiceServer::new(SimService(server)))
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(listener),
                        stop.cancelled_owned(),
                    )
                    .await;
            });
            tokio::spawn(heartbeat(
                node.clone(),
                pool[i % pool.len()].clone(),
                interval,
            ));
            nodes.push(node);
        }
        SimCluster { nodes, counters }
    }

    /// The nodes' names.
    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// Loses the first `count` nodes at once: their servers and heartbeats stop, as when
    /// their machines die. Returns their names.
    pub fn lose(&self, count: usize) -> Vec<String> {
        self.nodes
            .iter()
            .take(count)
            .map(|node| {
                node.alive.cancel();
                node.name.clone()
            })
            .collect()
    }

    /// Tasks running on live nodes, counted by the nodes themselves.
    pub fn running(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| !n.alive.is_cancelled())
            .map(|n| {
                n.tasks
                    .lock()
                    .unwrap()
                    .by_id
                    .values()
                    .filter(|t| t.state() == TaskState::Running)
                    .count()
            })
            .sum()
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.alive.cancel();
        }
    }
}
