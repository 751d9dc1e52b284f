//! The ManagerService rpc handlers: validate, convert, call the core, convert back.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::{
    admission,
    core::{Core, TaskFilter, MAX_REQUEST_ID},
};
use crate::{
    error::{Error, Result},
    limits::{
        node::{check_node_name, check_registration},
        streams::{MAX_LOG_STREAMS, MAX_WATCHED_IDS, MAX_WATCHES},
        StreamCap,
    },
    proto::pb::{self, manager_service_server::ManagerService},
    task::{check_batch_len, TaskId, MAX_SUBMIT_BATCH},
    tls::caller_of,
};

mod request;
mod services;
mod watch;

use request::{checked_submission, next_token, node_filter, page_size, page_token, state_filter};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The rpc handlers over the core.
#[derive(Clone)]
pub(crate) struct Api {
    pub core: Core,
    /// Ends open streams (watches, logs) when the server shuts down, so shutdown does not wait
    /// for clients that never hang up.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Starts the poll loops of registered workers.
    pub polls: Polls,
    /// What is kept of finished work (for CollectGarbage).
    pub retention: super::core::Retention,
    /// The caps on open streams.
    pub streams: StreamCaps,
    /// The cluster CA that signs joining workers' certificates; None without TLS.
    pub ca: Option<std::sync::Arc<crate::tls::ClusterCa>>,
}

/// The caps on open `WatchTasks` and `StreamLogs` streams.
#[derive(Clone)]
pub(crate) struct StreamCaps {
    pub watches: StreamCap,
    pub logs: StreamCap,
    /// Turns of the watches that send their snapshot.
    pub snapshots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Default for StreamCaps {
    fn default() -> Self {
        Self {
            watches: StreamCap::new("WatchTasks", MAX_WATCHES),
            logs: StreamCap::new("StreamLogs", MAX_LOG_STREAMS),
            snapshots: std::sync::Arc::new(tokio::sync::Semaphore::new(
                crate::limits::streams::SNAPSHOTS_AT_ONCE,
            )),
        }
    }
}

/// What a registration needs to start polling a worker like a static one.
#[derive(Clone)]
pub(crate) struct Polls {
    pub pool: super::pool::WorkerPool,
    pub tracker: tokio_util::task::TaskTracker,
    pub stop: tokio_util::sync::CancellationToken,
    pub update_interval: std::time::Duration,
    pub heartbeat_interval: std::time::Duration,
}

impl Polls {
    /// Starts the poll loop of `address` unless one runs.
    pub fn start(&self, core: &Core, address: String) {
        if core.claim_poll(&address) {
            self.tracker.spawn(super::reconciler::run_worker_poll(
                core.clone(),
                self.pool.clone(),
                address,
                self.update_interval,
                self.stop.clone(),
            ));
        }
    }
}

#[tonic::async_trait]
impl ManagerService for Api {
    async fn submit_task(
        &self,
        request: Request<pb::SubmitTaskRequest>,
    ) -> Result<Response<pb::SubmitTaskResponse>, Status> {
        let (spec, request_id) = checked_submission(request.into_inner())?;
        let (task, created) = self.core.submit(spec, request_id).await?;
        tracing::info!(task_id = %task.id, created, "task submitted");
        Ok(Response::new(pb::SubmitTaskResponse {
            task: Some(task),
            created,
        }))
    }

    async fn submit_tasks(
        &self,
        request: Request<pb::SubmitTasksRequest>,
    ) -> Result<Response<pb::SubmitTasksResponse>, Status> {
        let requests = request.into_inner().tasks;
        check_batch_len(requests.len(), MAX_SUBMIT_BATCH)?;
        let checked = requests
            .into_iter()
            .enumerate()
            .map(|(i, request)| {
                checked_submission(request).map_err(|e| e.within(&format!("tasks[{i}]")))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let answers = self.core.submit_many(checked).await?;
        let created = answers.iter().filter(|(_, created)| *created).count();
        tracing::info!(tasks = answers.len(), created, "tasks submitted");
        Ok(Response::new(pb::SubmitTasksResponse {
            tasks: answers
                .into_iter()
                .map(|(task, created)| pb::SubmitTaskResponse {
                    task: Some(task),
                    created,
                })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(task_id = %request.get_ref().task_id))]
    async fn stop_task(
        &self,
        request: Request<pb::StopTaskRequest>,
    ) -> Result<Response<pb::StopTaskResponse>, Status> {
        let id = TaskId::parse("task_id", &request.into_inner().task_id)?;
        let task = self.core.stop(id).await?;
        tracing::info!(task_id = %id, "stop requested");
        Ok(Response::new(pb::StopTaskResponse { task: Some(task) }))
    }

    #[tracing::instrument(skip_all, fields(task_id = %request.get_ref().task_id))]
    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::GetTaskResponse>, Status> {
        let caller = caller_of(&request);
        let id = TaskId::parse("task_id", &request.into_inner().task_id)?;
        let (mut task, events) = self.core.task_with_events(id).await?;
        admission::redact(&caller, &mut task);
        Ok(Response::new(pb::GetTaskResponse {
            task: Some(task),
            events,
        }))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let limit = page_size("page_size", request.page_size)?;
        let after = page_token("page_token", &request.page_token)?;
        let filter = TaskFilter {
            ids: Default::default(),
            state: state_filter("state", request.state)?,
            node: node_filter(request.node),
            service: match request.service.as_str() {
                "" => None,
                name => {
                    crate::manager::replicas::check_service_name("service", name)?;
                    Some(self.core.service_id(name)?)
                }
            },
        };
        let (mut tasks, last) = self.core.list(&filter, after, limit);
        tasks.iter_mut().for_each(|t| admission::redact(&caller, t));
        Ok(Response::new(pb::ListTasksResponse {
            tasks,
            next_page_token: next_token(last),
        }))
    }

    type WatchTasksStream = BoxStream<pb::WatchTasksResponse>;

    async fn watch_tasks(
        &self,
        request: Request<pb::WatchTasksRequest>,
    ) -> Result<Response<Self::WatchTasksStream>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        if request.task_ids.len() > MAX_WATCHED_IDS {
            return Err(Error::invalid(
                "task_ids",
                format!(
                    "holds {} ids; the limit is {MAX_WATCHED_IDS} (watch all, or by state or node)",
                    request.task_ids.len()
                ),
            )
            .into());
        }
        let mut ids = std::collections::HashSet::new();
        for (i, id) in request.task_ids.iter().enumerate() {
            TaskId::parse("task_ids", id).map_err(|_| {
                let shown = crate::limits::summary(id, 64);
                Error::invalid(
                    format!("task_ids[{i}]"),
                    format!("{shown:?} is not a task id"),
                )
            })?;
            ids.insert(id.clone());
        }
        let filter = TaskFilter {
            ids,
            state: state_filter("state", request.state)?,
            node: node_filter(request.node),
            service: None,
        };
        let permit = self.streams.watches.open()?;
        let snapshots = self.streams.snapshots.clone();
        let stream = watch::stream(self.core.clone(), filter, permit, snapshots, caller);
        let ends = self.shutdown.clone().cancelled_owned();
        Ok(Response::new(Box::pin(stream.take_until(ends))))
    }

    async fn list_nodes(
        &self,
        _request: Request<pb::ListNodesRequest>,
    ) -> Result<Response<pb::ListNodesResponse>, Status> {
        Ok(Response::new(pb::ListNodesResponse {
            nodes: self.core.nodes(),
            manager_message: self
                .core
                .store_health()
                .borrow()
                .summary()
                .unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(task_id = %request.get_ref().task_id))]
    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let request = request.into_inner();
        let limit = page_size("page_size", request.page_size)?;
        let after = page_token("page_token", &request.page_token)?;
        // One more than asked tells whether there is a next page.
        let mut events = if request.task_id.is_empty() {
            self.core.events(after, limit + 1).await?
        } else {
            let id = TaskId::parse("task_id", &request.task_id)?;
            self.core.task_events(id, after, limit + 1).await?
        };
        let more = events.len() > limit;
        events.truncate(limit);
        let last = more.then(|| events.last().map(|e| e.seq)).flatten();
        Ok(Response::new(pb::ListEventsResponse {
            events,
            next_page_token: next_token(last),
        }))
    }

    #[tracing::instrument(skip_all, fields(task_id = %request.get_ref().task_id))]
    async fn explain_task(
        &self,
        request: Request<pb::ExplainTaskRequest>,
    ) -> Result<Response<pb::ExplainTaskResponse>, Status> {
        let caller = caller_of(&request);
        let id = TaskId::parse("task_id", &request.into_inner().task_id)?;
        let (mut task, decision) = self.core.explain(id)?;
        admission::redact(&caller, &mut task);
        let nodes = decision
            .verdicts
            .iter()
            .map(|v| pb::NodeExplanation {
                node: v.node.clone(),
                eligible: v.eligible(),
                score: v.score,
                service_replicas: v.service_peers,
                filters: v
                    .filters
                    .iter()
                    .map(|f| pb::FilterResult {
                        filter: f.filter.to_string(),
                        passed: f.passed,
                        reason: f.reason.clone(),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::ExplainTaskResponse {
            task: Some(task),
            strategy: self.core.strategy().to_string(),
            nodes,
            picked_node: decision.node.unwrap_or_default(),
            summary: decision.summary,
        }))
    }

    type StreamLogsStream = BoxStream<pb::StreamLogsResponse>;

    #[tracing::instrument(skip_all, fields(task_id = %request.get_ref().task_id))]
    async fn stream_logs(
        &self,
        request: Request<pb::StreamLogsRequest>,
    ) -> Result<Response<Self::StreamLogsStream>, Status> {
        let request = request.into_inner();
        let id = TaskId::parse("task_id", &request.task_id)?;
        let permit = self.streams.logs.open()?;
        let (task, address) = self.core.node_address_of(id)?;
        let Some(address) = address else {
            return Err(Error::FailedPrecondition(format!(
                "task {id} has not been placed on a node yet, so it has no logs"
            ))
            .into());
        };
        let mut client = self.polls.pool.client(&address)?;
        let upstream = client
            .stream_logs(pb::WorkerServiceStreamLogsRequest {
                task_id: request.task_id,
                follow: request.follow,
                tail: request.tail,
                stdout: request.stdout,
                stderr: request.stderr,
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::NotFound
                | tonic::Code::InvalidArgument
                | tonic::Code::FailedPrecondition => status,
                _ => Status::from(Error::Unavailable(format!(
                    "node {} did not serve the logs: {}",
                    task.node,
                    status.message()
                ))),
            })?
            .into_inner();
        // The stream holds its place under the cap until it ends.
        let stream = upstream.map(move |chunk| {
            let _held = &permit;
            chunk.map(|c| pb::StreamLogsResponse {
                data: c.data,
                stream: c.stream,
            })
        });
        let ends = self.shutdown.clone().cancelled_owned();
        Ok(Response::new(Box::pin(stream.take_until(ends))))
    }

    #[tracing::instrument(skip_all, fields(node = %request.get_ref().name))]
    async fn register_worker(
        &self,
        request: Request<pb::RegisterWorkerRequest>,
    ) -> Result<Response<pb::RegisterWorkerResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        admission::speaks_for(&caller, &request.name)?;
        check_registration(&request)?;
        admission::check_address(&request.address)?;
        let registered = self.core.register(
            &request.name,
            &request.address,
            request.labels.into_iter().collect(),
            request.instance_id,
            request.stats,
        );
        if let Some(old) = &registered.moved_from {
            self.polls.pool.forget(old);
        }
        if registered.needs_poll {
            self.polls.start(&self.core, request.address);
        }
        Ok(Response::new(pb::RegisterWorkerResponse {
            heartbeat_interval: self.polls.heartbeat_interval.try_into().ok(),
        }))
    }

    #[tracing::instrument(skip_all, fields(node = %request.get_ref().name))]
    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        check_node_name("name", &request.name)?;
        admission::speaks_for(&caller, &request.name)?;
        let stale = self
            .core
            .heartbeat(&request.name, &request.instance_id, request.stats);
        Ok(Response::new(pb::HeartbeatResponse {
            heartbeat_interval: self.polls.heartbeat_interval.try_into().ok(),
            register_again: stale.is_none(),
            stale_task_ids: stale.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(node = %request.get_ref().node))]
    async fn drain_node(
        &self,
        request: Request<pb::DrainNodeRequest>,
    ) -> Result<Response<pb::DrainNodeResponse>, Status> {
        let node = self.core.drain(&request.into_inner().node, true).await?;
        Ok(Response::new(pb::DrainNodeResponse { node: Some(node) }))
    }

    #[tracing::instrument(skip_all, fields(node = %request.get_ref().node))]
    async fn undrain_node(
        &self,
        request: Request<pb::UndrainNodeRequest>,
    ) -> Result<Response<pb::UndrainNodeResponse>, Status> {
        let node = self.core.drain(&request.into_inner().node, false).await?;
        Ok(Response::new(pb::UndrainNodeResponse { node: Some(node) }))
    }

    #[tracing::instrument(skip_all)]
    async fn collect_garbage(
        &self,
        _request: Request<pb::CollectGarbageRequest>,
    ) -> Result<Response<pb::CollectGarbageResponse>, Status> {
        let collected = self.core.collect(&self.retention).await?;
        tracing::info!(
            tasks = collected.tasks,
            nodes = collected.nodes,
            "garbage collected on request"
        );
        Ok(Response::new(pb::CollectGarbageResponse {
            tasks_removed: collected.tasks as u32,
            nodes_forgotten: collected.nodes as u32,
        }))
    }

    #[tracing::instrument(skip_all, fields(node = %request.get_ref().name))]
    async fn join_cluster(
        &self,
        request: Request<pb::JoinClusterRequest>,
    ) -> Result<Response<pb::JoinClusterResponse>, Status> {
        let nodes = self.core.nodes();
        let answer = admission::join(self.ca.as_deref(), &nodes, request.into_inner())?;
        Ok(Response::new(answer))
    }

    async fn create_service(
        &self,
        request: Request<pb::CreateServiceRequest>,
    ) -> Result<Response<pb::CreateServiceResponse>, Status> {
        self.create_service_rpc(request).await
    }

    async fn get_service(
        &self,
        request: Request<pb::GetServiceRequest>,
    ) -> Result<Response<pb::GetServiceResponse>, Status> {
        self.get_service_rpc(request).await
    }

    async fn list_services(
        &self,
        request: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        self.list_services_rpc(request).await
    }

    async fn update_service(
        &self,
        request: Request<pb::UpdateServiceRequest>,
    ) -> Result<Response<pb::UpdateServiceResponse>, Status> {
        self.update_service_rpc(request).await
    }

    async fn scale_service(
        &self,
        request: Request<pb::ScaleServiceRequest>,
    ) -> Result<Response<pb::ScaleServiceResponse>, Status> {
        self.scale_service_rpc(request).await
    }

    async fn rollback_service(
        &self,
        request: Request<pb::RollbackServiceRequest>,
    ) -> Result<Response<pb::RollbackServiceResponse>, Status> {
        self.rollback_service_rpc(request).await
    }

    async fn delete_service(
        &self,
        request: Request<pb::DeleteServiceRequest>,
    ) -> Result<Response<pb::DeleteServiceResponse>, Status> {
        self.delete_service_rpc(request).await
    }
}
