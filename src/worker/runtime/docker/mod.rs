//! The Docker runtime: tasks as containers through the Docker Engine API (bollard).
//!
//! Containers are named `cube-<task name>-<short id>` and labelled `cube.task-id` and
//! `cube.worker`, so a restarted worker finds its own containers by label. Images are pulled
//! only when absent; cpu and memory limits and port bindings come from the spec.
//!
//! Here: the runtime and its calls. `container` turns a task's spec into the container Docker
//! creates, `events` turns Docker's event stream into hints for the monitor.

mod container;
mod events;
mod usage;

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    str::FromStr,
    time::{Duration, SystemTime},
};

use bollard::{
    errors::Error as DockerError,
    models::ContainerStateStatusEnum,
    query_parameters::{
        CreateContainerOptions, CreateImageOptions, ListContainersOptions, LogsOptions,
        RemoveContainerOptions, StopContainerOptions,
    },
    Docker,
};
use futures::{stream::BoxStream, StreamExt, TryStreamExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{
    Found, Launch, LogChunk, LogRequest, Observed, Runtime, RuntimeError, RuntimeResult, Started,
};
use crate::{pb, TaskId};

/// The label holding a container's task id.
pub const LABEL_TASK_ID: &str = "cube.task-id";
/// The label holding the name of the worker that created a container.
pub const LABEL_WORKER: &str = "cube.worker";

/// Where bollard's local defaults point, for messages.
pub const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// Connects to the local Docker engine and negotiates the API version (Engine 20.10 speaks
/// API 1.41; without negotiation every call fails with "client version too new").
pub async fn connect() -> Result<Docker, DockerError> {
    let docker = Docker::connect_with_local_defaults()?;
    let docker = docker.negotiate_version().await?;
    docker.ping().await?;
    Ok(docker)
}

/// Tasks as Docker containers.
#[derive(Clone)]
pub(crate) struct DockerRuntime {
    docker: Docker,
    worker: String,
}

impl DockerRuntime {
    /// A runtime over a connected client, for the worker called `worker`.
    pub fn new(docker: Docker, worker: String) -> Self {
        Self { docker, worker }
    }

    fn label_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_WORKER}={}", self.worker)],
        )])
    }

    /// Makes sure the image is present: inspect locally, pull only when absent.
    async fn ensure_image(&self, image: &str) -> RuntimeResult<()> {
        if self.docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let options = CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        self.docker
            .create_image(Some(options), None, None)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|source| RuntimeError::ImageUnavailable {
                image: image.to_string(),
                source,
            })?;
        Ok(())
    }
}

/// What already carries a container name.
enum Existing {
    /// Nothing (the usual case: no call beyond the one inspect).
    Nothing,
    /// A container of this worker, or one whose owner cannot be told (removed before a start).
    Ours,
    /// A container of another worker sharing the engine.
    Theirs,
}

impl DockerRuntime {
    /// What is called `name` now: one inspect.
    async fn existing(&self, name: &str) -> Existing {
        match self.docker.inspect_container(name, None).await {
            Ok(container) => {
                let worker = container
                    .config
                    .and_then(|c| c.labels)
                    .and_then(|labels| labels.get(LABEL_WORKER).cloned());
                match worker {
                    Some(worker) if worker != self.worker => Existing::Theirs,
                    _ => Existing::Ours,
                }
            }
            Err(e) if is_not_found(&e) => Existing::Nothing,
            // The engine may be failing: the removal that follows reports it.
            Err(_) => Existing::Ours,
        }
    }
}

/// The container name of a task: `cube-<task name>-<short id>`.
pub(crate) fn container_name(id: TaskId, spec: &pb::TaskSpec) -> String {
    format!("cube-{}-{}", spec.name, id.short())
}

fn is_not_found(error: &DockerError) -> bool {
    matches!(
        error,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

fn is_not_modified(error: &DockerError) -> bool {
    matches!(
        error,
        DockerError::DockerResponseServerError {
            status_code: 304,
            ..
        }
    )
}

fn parse_time(text: Option<&str>) -> Option<SystemTime> {
    let text = text?;
    let ts = prost_types::Timestamp::from_str(text).ok()?;
    // Docker writes 0001-01-01T00:00:00Z for "never".
    if ts.seconds <= 0 {
        return None;
    }
    SystemTime::try_from(ts).ok()
}

impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn ping(&self) -> RuntimeResult<()> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|source| RuntimeError::Unreachable { source })
    }

    async fn start(&self, launch: &Launch) -> RuntimeResult<Started> {
        let spec = &launch.spec;
        let mut name = container_name(launch.id, spec);
        // Workers sharing one Docker engine (tests, a laptop) share its names: a copy of this
        // task left running by another worker (cut off, its task placed here) is not ours to
        // remove; the manager stops it through that worker. Ours gets the worker's name added.
        // A container of ours with that name is a leftover of an earlier run of this task.
        match self.existing(&name).await {
            Existing::Nothing => {}
            Existing::Ours => self.remove(&name).await?,
            Existing::Theirs => {
                name = format!("{name}-{}", self.worker);
                self.remove(&name).await?;
            }
        }

        let body = container::create_body(launch, &self.worker);
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        // The image is looked for only when the engine lacks it (404), which saves a call on
        // every other start.
        let created = match self
            .docker
            .create_container(Some(options.clone()), body.clone())
            .await
        {
            Err(e) if is_not_found(&e) => {
                self.ensure_image(&spec.image).await?;
                self.docker.create_container(Some(options), body).await
            }
            other => other,
        }
        .map_err(|e| RuntimeError::docker(format!("creating container {name}"), e))?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            let error = RuntimeError::docker(format!("starting container {name}"), e);
            let _ = self.remove(&created.id).await;
            return Err(error);
        }
        if spec.ports.is_empty() {
            // Nothing to read back: the start time is now, to within the call's return.
            return Ok(Started {
                container_id: created.id,
                ports: Vec::new(),
                started_at: SystemTime::now(),
            });
        }
        let inspected = self
            .docker
            .inspect_container(&created.id, None)
            .await
            .map_err(|e| RuntimeError::docker(format!("inspecting container {name}"), e))?;
        let ports = container::bound_ports(spec, &inspected);
        let started_at = inspected
            .state
            .as_ref()
            .and_then(|s| parse_time(s.started_at.as_deref()))
            .unwrap_or_else(SystemTime::now);
        Ok(Started {
            container_id: created.id,
            ports,
            started_at,
        })
    }

    async fn stop(&self, container_id: &str, grace: Duration) -> RuntimeResult<Option<i64>> {
        // Docker takes whole seconds; round up so a grace is never cut short.
        let seconds = grace.as_millis().div_ceil(1000).min(i32::MAX as u128) as i32;
        let options = StopContainerOptions {
            t: Some(seconds),
            ..Default::default()
        };
        match self
            .docker
            .stop_container(container_id, Some(options))
            .await
        {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) if is_not_modified(&e) => {}
            Err(e) => return Err(RuntimeError::docker("stopping container", e)),
        }
        match self.inspect(container_id).await? {
            Observed::Exited { code, .. } => Ok(code),
            Observed::Running { .. } | Observed::Missing => Ok(None),
        }
    }

    async fn remove(&self, container_id: &str) -> RuntimeResult<()> {
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match self
            .docker
            .remove_container(container_id, Some(options))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // "removal already in progress": someone else is removing it.
            Err(DockerError::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(RuntimeError::docker("removing container", e)),
        }
    }

    async fn usage(&self, container_id: &str) -> RuntimeResult<Option<super::Usage>> {
        usage::of(&self.docker, container_id).await
    }

    async fn inspect(&self, container_id: &str) -> RuntimeResult<Observed> {
        let inspected = match self.docker.inspect_container(container_id, None).await {
            Ok(inspected) => inspected,
            Err(e) if is_not_found(&e) => return Ok(Observed::Missing),
            Err(e) => return Err(RuntimeError::docker("inspecting container", e)),
        };
        let state = inspected.state.unwrap_or_default();
        let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
        Ok(match status {
            ContainerStateStatusEnum::RUNNING
            | ContainerStateStatusEnum::PAUSED
            | ContainerStateStatusEnum::RESTARTING
            | ContainerStateStatusEnum::STOPPING => Observed::Running {
                started_at: parse_time(state.started_at.as_deref()),
            },
            ContainerStateStatusEnum::CREATED => Observed::Exited {
                code: None,
                finished_at: None,
            },
            ContainerStateStatusEnum::EXITED
            | ContainerStateStatusEnum::DEAD
            | ContainerStateStatusEnum::REMOVING
            | ContainerStateStatusEnum::EMPTY => Observed::Exited {
                code: state.exit_code,
                finished_at: parse_time(state.finished_at.as_deref()),
            },
        })
    }

    async fn list(&self) -> RuntimeResult<Vec<Found>> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(self.label_filter()),
            ..Default::default()
        };
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| RuntimeError::docker("listing containers", e))?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                let task_id = c.labels.as_ref()?.get(LABEL_TASK_ID)?;
                let task_id = TaskId::parse("label", task_id).ok()?;
                Some(Found {
                    task_id,
                    container_id: c.id?,
                    running: matches!(
                        c.state,
                        Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
                            | Some(bollard::models::ContainerSummaryStateEnum::PAUSED)
                            | Some(bollard::models::ContainerSummaryStateEnum::RESTARTING)
                    ),
                    created: c.created.unwrap_or(0),
                })
            })
            .collect())
    }

    async fn watch(&self, hints: UnboundedSender<TaskId>, cancel: CancellationToken) {
        events::watch(&self.docker, self.label_filter(), hints, cancel).await;
    }

    fn has_line_times(&self) -> bool {
        true
    }

    fn logs(
        &self,
        _task_id: TaskId,
        container_id: &str,
        request: LogRequest,
    ) -> BoxStream<'static, RuntimeResult<LogChunk>> {
        let options = LogsOptions {
            follow: request.follow,
            stdout: request.stdout,
            stderr: request.stderr,
            tail: if request.tail == 0 {
                "all".into()
            } else {
                request.tail.to_string()
            },
            // Docker takes whole seconds; a time past what fits is "everything from then on".
            since: request
                .since
                .map_or(0, |s| i32::try_from(s.max(0)).unwrap_or(i32::MAX)),
            timestamps: request.timestamps,
            ..Default::default()
        };
        self.docker
            .logs(container_id, Some(options))
            .filter_map(|item| async move {
                use bollard::container::LogOutput;
                match item {
                    Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                        Some(Ok((pb::LogStream::Stdout, message)))
                    }
                    Ok(LogOutput::StdErr { message }) => Some(Ok((pb::LogStream::Stderr, message))),
                    Ok(LogOutput::StdIn { .. }) => None,
                    Err(e) => Some(Err(RuntimeError::docker("reading logs", e))),
                }
            })
            .boxed()
    }

    async fn exec(&self, container_id: &str, command: &[String]) -> RuntimeResult<i64> {
        use bollard::{exec::StartExecResults, models::ExecConfig};
        let config = ExecConfig {
            cmd: Some(command.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let created = self
            .docker
            .create_exec(container_id, config)
            .await
            .map_err(|e| RuntimeError::docker("creating the command in the container", e))?;
        if let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&created.id, None)
            .await
            .map_err(|e| RuntimeError::docker("running the command in the container", e))?
        {
            while output.next().await.is_some() {}
        }
        let inspected = self
            .docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| RuntimeError::docker("reading the command's exit code", e))?;
        Ok(inspected.exit_code.unwrap_or(-1))
    }

    async fn address(&self, container_id: &str, port: u32) -> RuntimeResult<SocketAddr> {
        let inspected = self
            .docker
            .inspect_container(container_id, None)
            .await
            .map_err(|e| RuntimeError::docker("inspecting container", e))?;
        let ip = inspected
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|n| {
                n.into_values()
                    .find_map(|e| e.ip_address.filter(|ip| !ip.is_empty()))
            })
            .ok_or(RuntimeError::Unexpected("the container has no IP address"))?;
        let ip: IpAddr = ip
            .parse()
            .map_err(|source| RuntimeError::BadAddress { ip, source })?;
        Ok(SocketAddr::new(ip, port as u16))
    }
}
