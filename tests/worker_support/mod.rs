//! What the worker tests share: a blocking WorkerService client and task specs.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::time::Duration;

use cube::pb::{self, worker_service_client::WorkerServiceClient};
use tonic::transport::Channel;

/// A blocking client of one worker (the tests are plain `#[test]`s that also run commands).
pub struct Worker {
    pub rt: tokio::runtime::Runtime,
    pub client: WorkerServiceClient<Channel>,
}

impl Worker {
    /// Connects to the worker at `addr`.
    pub fn connect(addr: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let channel = {
            let _entered = rt.enter();
            cube::grpc::channel(addr, Duration::from_secs(30)).unwrap()
        };
        Self {
            rt,
            client: WorkerServiceClient::new(channel),
        }
    }

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

    pub fn stop(&mut self, id: &str) -> Result<pb::Task, tonic::Status> {
        let request = pb::WorkerServiceStopTaskRequest {
            task_id: id.to_string(),
            reason: "test".into(),
        };
        self.rt
            .block_on(self.client.stop_task(request))
            .map(|r| r.into_inner().task.unwrap())
    }

    pub fn list_since(&mut self, since: u64, instance: &str) -> pb::WorkerServiceListTasksResponse {
        let request = pb::WorkerServiceListTasksRequest {
            since_revision: since,
            instance_id: instance.to_string(),
            wait: None,
        };
        self.rt
            .block_on(self.client.list_tasks(request))
            .unwrap()
            .into_inner()
    }

    pub fn tasks(&mut self) -> Vec<pb::Task> {
        self.list_since(0, "").tasks
    }

    pub fn task(&mut self, id: &str) -> Option<pb::Task> {
        self.tasks().into_iter().find(|t| t.id == id)
    }

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

/// A spec on the test image running `command`.
pub fn spec(name: &str, command: &[&str]) -> pb::TaskSpec {
    pb::TaskSpec {
        name: name.to_string(),
        image: common_image().to_string(),
        command: command.iter().map(|s| s.to_string()).collect(),
        stop_grace_period: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    }
}

fn common_image() -> &'static str {
    "cube-test/busybox:latest"
}

/// A fresh task id.
pub fn new_id() -> String {
    cube::TaskId::new().to_string()
}

/// `docker inspect -f FORMAT ID`.
pub fn docker_inspect(format: &str, id: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", format, id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
