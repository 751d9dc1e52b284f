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
        streams::MAX_WATCHED_IDS,
    },
    proto::pb::{self, manager_service_server::ManagerService},
    task::{check_batch_len, MAX_SUBMIT_BATCH},
    tls::caller_of,
};

mod handles;
mod request;
mod services;
mod top;
mod watch;

pub(crate) use handles::{Polls, StreamCaps};

use request::{
    checked_submission, event_tail, label_filter, log_since, name_filter, next_token, node_filter,
    page_size, page_token, state_filter,
};

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
        let id = self
            .core
            .resolve("task_id", &request.into_inner().task_id)?;
        let task = self.core.stop(id).await?;
        tracing::info!(task_id = %id, "stop requested");
        Ok(Response::new(pb::StopTaskResponse { task: Some(task) }))
    }

    async fn top_nodes(
        &self,
        _request: Request<pb::TopNodesRequest>,
    ) -> Result<Response<pb::TopNodesResponse>, Status> {
        let nodes = self.core.nodes().into_iter().map(top::node_usage).collect();
        Ok(Response::new(pb::TopNodesResponse { nodes }))
    }

    async fn top_tasks(
        &self,
        request: Request<pb::TopTasksRequest>,
    ) -> Result<Response<pb::TopTasksResponse>, Status> {
        let only = request.into_inner().node;
        let nodes = self.core.nodes();
        Ok(Response::new(
            top::tasks(&self.polls.pool, nodes, &only).await,
        ))
    }

    async fn get_version(
        &self,
        _request: Request<pb::GetVersionRequest>,
    ) -> Result<Response<pb::GetVersionResponse>, Status> {
        Ok(Response::new(crate::proto::build_version()))
    }

    #[tracing::instrument(skip_all, fields(task_id = %request.get_ref().task_id))]
    async fn remove_task(
        &self,
        request: Request<pb::RemoveTaskRequest>,
    ) -> Result<Response<pb::RemoveTaskResponse>, Status> {
        let caller = caller_of(&request);
        let id = self
            .core
            .resolve("task_id", &request.into_inner().task_id)?;
        let mut task = self.core.remove(id).await?;
        tracing::info!(task_id = %id, "task removed");
        admission::redact(&caller, &mut task);
        Ok(Response::new(pb::RemoveTaskResponse { task: Some(task) }))
    }

    #[tracing::instrument(skip_all, fields(task_id = %request.get_ref().task_id))]
    async fn get_task(
        &self,
        request: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::GetTaskResponse>, Status> {
        let caller = caller_of(&request);
        let id = self
            .core
            .resolve("task_id", &request.into_inner().task_id)?;
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
            state: state_filter("state", request.state)?,
            node: node_filter(request.node),
            service: match request.service.as_str() {
                "" => None,
                name => {
                    crate::manager::replicas::check_service_name("service", name)?;
                    Some(self.core.service_id(name)?)
                }
            },
            labels: label_filter(request.labels)?,
            unfinished: request.unfinished,
            name: name_filter(request.name)?,
            ..Default::default()
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
        for (i, reference) in request.task_ids.iter().enumerate() {
            let id = self.core.resolve(&format!("task_ids[{i}]"), reference)?;
            // A watch of a task that does not exist would wait for nothing.
            self.core.task(id)?;
            ids.insert(id.to_string());
        }
        let filter = TaskFilter {
            ids,
            state: state_filter("state", request.state)?,
            node: node_filter(request.node),
            labels: label_filter(request.labels)?,
            ..Default::default()
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
        let tail = event_tail("tail", request.tail, &request.page_token)?;
        let id = match request.task_id.is_empty() {
            true => None,
            false => Some(self.core.resolve("task_id", &request.task_id)?),
        };
        if let Some(tail) = tail {
            let events = self.core.last_events(id, tail).await?;
            let cursor = next_token(events.last().map(|e| e.seq));
            return Ok(Response::new(pb::ListEventsResponse {
                events,
                next_page_token: String::new(),
                cursor,
            }));
        }
        // One more than asked tells whether there is a next page.
        let mut events = match id {
            None => self.core.events(after, limit + 1).await?,
            Some(id) => self.core.task_events(id, after, limit + 1).await?,
        };
        let more = events.len() > limit;
        events.truncate(limit);
        let last = more.then(|| events.last().map(|e| e.seq)).flatten();
        let cursor = match events.last() {
            Some(event) => next_token(Some(event.seq)),
            None => request.page_token,
        };
        Ok(Response::new(pb::ListEventsResponse {
            events,
            next_page_token: next_token(last),
            cursor,
        }))
    }

    #[tracing::instrument(skip_all, fields(task_id = %request.get_ref().task_id))]
    async fn explain_task(
        &self,
        request: Request<pb::ExplainTaskRequest>,
    ) -> Result<Response<pb::ExplainTaskResponse>, Status> {
        let caller = caller_of(&request);
        let id = self
            .core
            .resolve("task_id", &request.into_inner().task_id)?;
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
        let id = self.core.resolve("task_id", &request.task_id)?;
        log_since("since", request.since.as_ref())?;
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
                task_id: id.to_string(),
                follow: request.follow,
                tail: request.tail,
                stdout: request.stdout,
                stderr: request.stderr,
                since: request.since,
                timestamps: request.timestamps,
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
