//! The WorkerService rpc handlers: thin. Each validates, converts, calls the core, converts
//! back; errors become statuses through the crate's one mapping.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::{
    core::Core,
    runtime::{LogRequest, Observed, Runtime},
    stats::Stats,
};
use crate::{
    error::Error,
    error::Result,
    pb::{self, worker_service_server::WorkerService},
    task::{check_batch_len, is_finished, validate_spec, MAX_START_BATCH},
    TaskId,
};

/// The longest a `ListTasks` long poll waits (the proto's promise): a shutdown waits at most
/// this for open polls.
const MAX_LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The WorkerService over a worker core.
pub(crate) struct Service<R> {
    pub core: Core<R>,
    pub stats: Stats,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Whether specs must name an image (the Docker runtime).
    pub require_image: bool,
    /// Cancelled at shutdown: open log streams end then, so they do not hold the server up.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The cap on open log streams.
    pub logs: crate::limits::StreamCap,
}

impl<R> Service<R> {
    /// A StartTask's id and spec checked (its defaults filled), with its attempt.
    fn checked_start(&self, request: pb::StartTaskRequest) -> Result<(TaskId, pb::TaskSpec, u32)> {
        let id = TaskId::parse("task_id", &request.task_id)?;
        let spec = request
            .spec
            .ok_or_else(|| Error::invalid("spec", "is required"))?;
        crate::limits::spec::check_spec(&spec)?;
        let spec = validate_spec(spec, self.require_image)?;
        Ok((id, spec, request.attempt))
    }
}

impl<R: Runtime> Service<R> {
    /// Whether a task's output went with its container: the task finished, the runtime does
    /// not keep output of its own, and the container is gone (what the worker kept of it, if
    /// anything, is all there is).
    async fn gone_with_container(&self, id: TaskId, task: &pb::Task) -> bool {
        let runtime = self.core.runtime();
        if !is_finished(task.state()) || runtime.keeps_logs() {
            return false;
        }
        match runtime.inspect(&task.container_id).await {
            Ok(Observed::Missing) => true,
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(task_id = %id, error = %e, "inspecting for logs failed");
                false
            }
        }
    }
}

type LogStream =
    Pin<Box<dyn Stream<Item = Result<pb::WorkerServiceStreamLogsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<R: Runtime> WorkerService for Service<R> {
    #[tracing::instrument(skip_all, fields(task_id = %request.get_ref().task_id, node = %self.core.name()))]
    async fn start_task(
        &self,
        request: Request<pb::StartTaskRequest>,
    ) -> Result<Response<pb::StartTaskResponse>, Status> {
        let (id, spec, attempt) = self.checked_start(request.into_inner())?;
        let task = self.core.start(id, spec, attempt).await?;
        Ok(Response::new(pb::StartTaskResponse { task: Some(task) }))
    }

    #[tracing::instrument(skip_all, fields(tasks = request.get_ref().tasks.len(), node = %self.core.name()))]
    async fn start_tasks(
        &self,
        request: Request<pb::StartTasksRequest>,
    ) -> Result<Response<pb::StartTasksResponse>, Status> {
        let requests = request.into_inner().tasks;
        check_batch_len(requests.len(), MAX_START_BATCH)?;
        // Checked one by one: a bad request is refused alone, in its own result.
        let checked: Vec<Result<(TaskId, pb::TaskSpec, u32)>> = requests
            .into_iter()
            .enumerate()
            .map(|(i, request)| {
                self.checked_start(request)
                    .map_err(|e| e.within(&format!("tasks[{i}]")))
            })
            .collect();
        let valid = checked
            .iter()
            .filter_map(|c| c.as_ref().ok().cloned())
            .collect();
        let mut started = self.core.start_many(valid).await.into_iter();
        let results = checked
            .into_iter()
            .map(|check| {
                match check.and_then(|_| {
                    started.next().unwrap_or_else(|| {
                        Err(Error::Internal(
                            "the start of this task gave no result".into(),
                        ))
                    })
                }) {
                    Ok(task) => pb::StartTaskResult {
                        task: Some(task),
                        code: tonic::Code::Ok as i32,
                        message: String::new(),
                    },
                    Err(error) => {
                        let status = Status::from(error);
                        pb::StartTaskResult {
                            task: None,
                            code: status.code() as i32,
                            message: status.message().to_string(),
                        }
                    }
                }
            })
            .collect();
        Ok(Response::new(pb::StartTasksResponse { results }))
    }

    #[tracing::instrument(skip_all, fields(task_id = %request.get_ref().task_id, node = %self.core.name()))]
    async fn stop_task(
        &self,
        request: Request<pb::WorkerServiceStopTaskRequest>,
    ) -> Result<Response<pb::WorkerServiceStopTaskResponse>, Status> {
        let request = request.into_inner();
        let id = TaskId::parse("task_id", &request.task_id)?;
        let task = self.core.stop(id, &request.reason).await?;
        Ok(Response::new(pb::WorkerServiceStopTaskResponse {
            task: Some(task),
        }))
    }

    #[tracing::instrument(skip_all, fields(since = request.get_ref().since_revision, node = %self.core.name()))]
    async fn list_tasks(
        &self,
        request: Request<pb::WorkerServiceListTasksRequest>,
    ) -> Result<Response<pb::WorkerServiceListTasksResponse>, Status> {
        // The manager polls with this: a call is contact.
        self.core.contact().touch();
        let request = request.into_inner();
        // A wait the field cannot express (negative) means none; a long one is capped so a
        // shutdown never waits long for an open poll.
        let wait = request
            .wait
            .and_then(|w| std::time::Duration::try_from(w).ok())
            .unwrap_or_default()
            .min(MAX_LIST_WAIT);
        let page_after = page_token(&request.page_token)?;
        let listing = self
            .core
            .list_waiting(
                request.since_revision,
                &request.instance_id,
                wait,
                page_after,
            )
            .await;
        Ok(Response::new(pb::WorkerServiceListTasksResponse {
            tasks: listing.tasks,
            revision: listing.revision,
            instance_id: self.core.instance_id().to_string(),
            complete: listing.complete,
            node: self.core.name().to_string(),
            next_page_token: listing
                .next_page_after
                .map(|revision| format!("{revision:016x}"))
                .unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(node = %self.core.name()))]
    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::GetStatsResponse>, Status> {
        Ok(Response::new(pb::GetStatsResponse {
            node: self.core.name().to_string(),
            stats: Some(current_stats(&self.core, &self.stats)),
            labels: self.labels.clone().into_iter().collect(),
            instance_id: self.core.instance_id().to_string(),
        }))
    }

    #[tracing::instrument(skip_all, fields(node = %self.core.name()))]
    async fn top_tasks(
        &self,
        _request: Request<pb::WorkerServiceTopTasksRequest>,
    ) -> Result<Response<pb::WorkerServiceTopTasksResponse>, Status> {
        Ok(Response::new(pb::WorkerServiceTopTasksResponse {
            tasks: super::top::sample(&self.core).await,
        }))
    }

    type StreamLogsStream = LogStream;

    #[tracing::instrument(skip_all, fields(task_id = %request.get_ref().task_id, node = %self.core.name()))]
    async fn stream_logs(
        &self,
        request: Request<pb::WorkerServiceStreamLogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let request = request.into_inner();
        let id = TaskId::parse("task_id", &request.task_id)?;
        let permit = self.logs.open()?;
        let task = self.core.get(id).ok_or_else(|| Error::task_not_found(id))?;
        if task.container_id.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "task {id} has not started yet: no logs"
            ))
            .into());
        }
        let both = !request.stdout && !request.stderr;
        let wanted = LogRequest {
            follow: request.follow,
            tail: request.tail,
            stdout: both || request.stdout,
            stderr: both || request.stderr,
            since: request.since.map(|t| t.seconds),
            timestamps: request.timestamps,
        };
        let timed = wanted.since.is_some() || wanted.timestamps;
        let gone = self.gone_with_container(id, &task).await;
        if timed && (gone || !self.core.runtime().has_line_times()) {
            return Err(Error::FailedPrecondition(format!(
                "since/timestamps: the output of task {id} has no per-line times ({})",
                if gone {
                    "only its text was kept when its container went away"
                } else {
                    "the Exec runtime writes output to files without times"
                }
            ))
            .into());
        }
        let logs = match gone {
            false => self.core.runtime().logs(id, &task.container_id, wanted),
            true => self.core.kept_logs().read(id, wanted).ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "task {id} has finished and the task's logs went with its container"
                ))
            })?,
        };
        // The stream holds its place under the cap until it ends.
        let stream = logs.map(move |item| match (&permit, item) {
            (_, Ok((stream, data))) => Ok(pb::WorkerServiceStreamLogsResponse {
                data: data.to_vec(),
                stream: stream as i32,
            }),
            (_, Err(error)) => Err(Status::from(Error::Runtime(error))),
        });
        let ends = self.shutdown.clone().cancelled_owned();
        Ok(Response::new(Box::pin(stream.take_until(ends))))
    }
}

/// The revision a ListTasks page token continues after (0: the first page).
fn page_token(token: &str) -> Result<u64> {
    if token.is_empty() {
        return Ok(0);
    }
    (token.len() == 16)
        .then(|| u64::from_str_radix(token, 16).ok())
        .flatten()
        .ok_or_else(|| Error::invalid("page_token", "is not a token this worker gave out"))
}

/// The latest stats sample with the current task count.
pub(crate) fn current_stats<R: Runtime>(core: &Core<R>, stats: &Stats) -> pb::NodeStats {
    let mut sample = stats.latest();
    sample.task_count = core.unfinished_count() as u32;
    sample.store_message = core.store_message();
    sample
}
