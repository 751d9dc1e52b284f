//! gRPC for the tests: task specs on the test image, the manager's client, and a blocking
//! client of one worker.

use std::time::Duration;

use cube::pb::{
    self, manager_service_client::ManagerServiceClient, worker_service_client::WorkerServiceClient,
};
use cube::tls::AuthChannel;
use tonic::transport::Channel;

use super::image::TEST_IMAGE;

/// A spec on the test image running `command`, killed 1 s after a stop.
pub fn spec(name: &str, command: &[&str]) -> pb::TaskSpec {
    pb::TaskSpec {
        name: name.to_string(),
        image: TEST_IMAGE.to_string(),
        command: command.iter().map(|s| s.to_string()).collect(),
        stop_grace_period: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// A spec with no image, for the Exec runtime: `command` as a child process.
pub fn exec_spec(name: &str, command: &[&str]) -> pb::TaskSpec {
    pb::TaskSpec {
        image: String::new(),
        ..spec(name, command)
    }
}

/// A fresh task id.
pub fn new_id() -> String {
    cube::TaskId::new().to_string()
}

/// A client of the manager at `url`, as admin when it is a secure test cluster's.
pub async fn manager_client(url: &str) -> ManagerServiceClient<AuthChannel> {
    manager_client_with(url, super::cluster::admin_token(url).as_deref())
}

/// A client of the manager at `url` with `token` (or none).
pub fn manager_client_with(url: &str, token: Option<&str>) -> ManagerServiceClient<AuthChannel> {
    let credentials = cube::client::Credentials {
        token: token.map(str::to_string),
        ca_pem: None,
    };
    ManagerServiceClient::new(credentials.channel(url, Duration::from_secs(30)).unwrap())
}

/// `SubmitTask` of `spec` with no request id, which must succeed; the task.
pub async fn submit(c: &mut ManagerServiceClient<AuthChannel>, spec: pb::TaskSpec) -> pb::Task {
    try_submit(c, spec).await.unwrap()
}

/// `SubmitTask` of `spec`: the task, or the refusal.
pub async fn try_submit(
    c: &mut ManagerServiceClient<AuthChannel>,
    spec: pb::TaskSpec,
) -> Result<pb::Task, tonic::Status> {
    let answer = c
        .submit_task(pb::SubmitTaskRequest {
            spec: Some(spec),
            request_id: String::new(),
        })
        .await?;
    Ok(answer.into_inner().task.unwrap())
}

/// `GetTask` of `id`: the task and its events.
pub async fn get_task(
    c: &mut ManagerServiceClient<AuthChannel>,
    id: &str,
) -> Result<pb::GetTaskResponse, tonic::Status> {
    let request = pb::GetTaskRequest {
        task_id: id.to_string(),
    };
    c.get_task(request).await.map(tonic::Response::into_inner)
}

/// `StopTask` of `id`: the task as the manager answered.
pub async fn stop_task(
    c: &mut ManagerServiceClient<AuthChannel>,
    id: &str,
) -> Result<pb::Task, tonic::Status> {
    let request = pb::StopTaskRequest {
        task_id: id.to_string(),
    };
    c.stop_task(request)
        .await
        .map(|r| r.into_inner().task.unwrap())
}

/// `ListNodes`, which must succeed: every node the manager knows.
pub async fn list_nodes(c: &mut ManagerServiceClient<AuthChannel>) -> Vec<pb::Node> {
    c.list_nodes(pb::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes
}

/// A blocking client of one worker (the tests are plain `#[test]`s that also run commands).
pub struct WorkerClient {
    pub rt: tokio::runtime::Runtime,
    pub client: WorkerServiceClient<Channel>,
}

impl WorkerClient {
    /// Connects to the worker at `addr` in plaintext (a worker with no node certificate).
    pub fn connect(addr: &str) -> Self {
        Self::connect_with(|| cube::grpc::channel(addr, Duration::from_secs(30)).unwrap())
    }

    /// Connects to the TLS worker at `addr` with the certificate of the manager whose data
    /// dir is `manager_data`, as the manager does.
    pub fn connect_as_manager(addr: &str, manager_data: &std::path::Path) -> Self {
        Self::connect_with(|| {
            cube::tls::ClientTls::from_manager_dir(manager_data, true)
                .unwrap()
                .channel(addr, Duration::from_secs(30))
                .unwrap()
        })
    }

    fn connect_with(channel: impl FnOnce() -> Channel) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let channel = {
            let _entered = rt.enter();
            channel()
        };
        Self {
            rt,
            client: WorkerServiceClient::new(channel),
        }
    }

    /// `StartTask`: the task as the worker accepted it.
    pub fn start(
        &mut self,
        id: &str,
        spec: pb::TaskSpec,
        attempt: u32,
    ) -> Result<pb::Task, tonic::Status> {
        let request = pb::StartTaskRequest {
            task_id: id.to_string(),
            spec: Some(spec),
            attempt,
        };
        self.rt
            .block_on(self.client.start_task(request))
            .map(|r| r.into_inner().task.unwrap())
    }

    /// `StopTask`: the task as the worker answered.
    pub fn stop(&mut self, id: &str) -> Result<pb::Task, tonic::Status> {
        let request = pb::WorkerServiceStopTaskRequest {
            task_id: id.to_string(),
            reason: "test".into(),
        };
        self.rt
            .block_on(self.client.stop_task(request))
            .map(|r| r.into_inner().task.unwrap())
    }

    /// `ListTasks` of what changed since `since` on the worker instance `instance`.
    pub fn list_since(&mut self, since: u64, instance: &str) -> pb::WorkerServiceListTasksResponse {
        let request = pb::WorkerServiceListTasksRequest {
            since_revision: since,
            instance_id: instance.to_string(),
            wait: None,
            page_token: String::new(),
        };
        self.rt
            .block_on(self.client.list_tasks(request))
            .unwrap()
            .into_inner()
    }

    /// The next page of a full listing, after `token` (a `next_page_token`).
    pub fn list_page(&mut self, token: &str) -> pb::WorkerServiceListTasksResponse {
        let request = pb::WorkerServiceListTasksRequest {
            page_token: token.to_string(),
            ..Default::default()
        };
        self.rt
            .block_on(self.client.list_tasks(request))
            .unwrap()
            .into_inner()
    }

    /// Every task the worker has (every page of its full listing).
    pub fn tasks(&mut self) -> Vec<pb::Task> {
        let first = self.list_since(0, "");
        let mut tasks = first.tasks;
        let mut token = first.next_page_token;
        while !token.is_empty() {
            let page = self.list_page(&token);
            tasks.extend(page.tasks);
            token = page.next_page_token;
        }
        tasks
    }

    /// One task, if the worker has it.
    pub fn task(&mut self, id: &str) -> Option<pb::Task> {
        self.tasks().into_iter().find(|t| t.id == id)
    }

    /// `GetStats`.
    pub fn stats(&mut self) -> pb::GetStatsResponse {
        self.rt
            .block_on(self.client.get_stats(pb::GetStatsRequest {}))
            .unwrap()
            .into_inner()
    }

    /// Waits until the task is in `state` and returns it.
    pub fn wait_state(&mut self, id: &str, state: pb::TaskState, timeout: Duration) -> pb::Task {
        let mut last = None;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(task) = self.task(id) {
                if task.state() == state {
                    return task;
                }
                last = Some(task);
            }
            if std::time::Instant::now() > deadline {
                panic!("task {id} did not reach {state:?} within {timeout:?}; last seen: {last:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Follows task `id`'s logs until the stream ends with the task (or `limit` passes),
    /// which must succeed.
    pub fn follow_logs(
        &mut self,
        id: &str,
        limit: Duration,
    ) -> Vec<(pb::LogStream, String, std::time::Instant)> {
        let request = pb::WorkerServiceStreamLogsRequest {
            task_id: id.to_string(),
            follow: true,
            ..Default::default()
        };
        self.logs(request, limit).unwrap()
    }

    /// Reads a task's logs until the stream ends (or `limit` passes).
    pub fn logs(
        &mut self,
        request: pb::WorkerServiceStreamLogsRequest,
        limit: Duration,
    ) -> Result<Vec<(pb::LogStream, String, std::time::Instant)>, tonic::Status> {
        let mut client = self.client.clone();
        self.rt.block_on(async move {
            let mut stream = client.stream_logs(request).await?.into_inner();
            let mut out = Vec::new();
            let deadline = tokio::time::Instant::now() + limit;
            loop {
                match tokio::time::timeout_at(deadline, stream.message()).await {
                    Ok(Ok(Some(chunk))) => out.push((
                        chunk.stream(),
                        String::from_utf8_lossy(&chunk.data).into_owned(),
                        std::time::Instant::now(),
                    )),
                    Ok(Ok(None)) | Err(_) => return Ok(out),
                    Ok(Err(status)) => return Err(status),
                }
            }
        })
    }
}

/// A SubmitTasks of `count` tasks without an image running `command`, each named and with the
/// request id `{prefix}-{i}`.
pub fn exec_batch(prefix: &str, count: usize, command: &[&str]) -> pb::SubmitTasksRequest {
    pb::SubmitTasksRequest {
        tasks: (0..count)
            .map(|i| pb::SubmitTaskRequest {
                spec: Some(pb::TaskSpec {
                    name: format!("{prefix}-{i}"),
                    command: command.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                }),
                request_id: format!("{prefix}-{i}"),
            })
            .collect(),
    }
}

/// Every task the manager lists, through all pages.
pub async fn list_all(client: &mut ManagerServiceClient<AuthChannel>) -> Vec<pb::Task> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_tasks(pb::ListTasksRequest {
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(page.tasks);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// Submits `count` copies of `spec` in batches of about 1 MB.
pub async fn submit_many(
    client: &mut ManagerServiceClient<cube::tls::AuthChannel>,
    spec: &pb::TaskSpec,
    count: usize,
) {
    let batch = (1 << 20) / prost::Message::encoded_len(spec).max(1);
    let mut left = count;
    while left > 0 {
        let n = left.min(batch.clamp(1, 1000));
        let tasks = (0..n)
            .map(|_| pb::SubmitTaskRequest {
                spec: Some(spec.clone()),
                request_id: String::new(),
            })
            .collect();
        client
            .submit_tasks(pb::SubmitTasksRequest { tasks })
            .await
            .unwrap();
        left -= n;
    }
}
