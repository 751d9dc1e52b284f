//! The seam between the worker and the world: a `Runtime` starts, stops, inspects, lists and
//! reads the logs of the containers (or processes) that run tasks.
//!
//! Two real implementations sit behind it: [`docker::DockerRuntime`] (bollard) and
//! [`exec::ExecRuntime`] (child processes). The worker core is generic over the trait, so the
//! executor, monitor and adoption code is written once.

pub(crate) mod docker;
pub(crate) mod exec;
pub(crate) mod timed;

pub use crate::error::RuntimeError;

use std::{future::Future, net::SocketAddr, time::Duration, time::SystemTime};

use bytes::Bytes;
use futures::stream::BoxStream;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::{pb, TaskId};

/// What the runtime needs to start one run of a task.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    /// The task.
    pub id: TaskId,
    /// What to run (validated).
    pub spec: pb::TaskSpec,
    /// Which run this is (0 first).
    pub attempt: u32,
}

/// A run the runtime started.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    /// The runtime's id of the container (`pid:<pid>` for Exec).
    pub container_id: String,
    /// The published ports with the host ports actually bound.
    pub ports: Vec<pb::PortMapping>,
    /// When it started.
    pub started_at: SystemTime,
}

/// What the runtime sees of one container.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Observed {
    /// It runs.
    Running {
        /// When it started.
        started_at: Option<SystemTime>,
    },
    /// It has exited (or was created and never ran: `code` is then `None`).
    Exited {
        /// The exit code, when one is known.
        code: Option<i64>,
        /// When it exited.
        finished_at: Option<SystemTime>,
    },
    /// The runtime knows no such container.
    Missing,
}

/// A container of this worker found by [`Runtime::list`].
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// The task it belongs to (from its `cube.task-id` label or record).
    pub task_id: TaskId,
    /// The runtime's id for it.
    pub container_id: String,
    /// Whether it runs.
    pub running: bool,
    /// When it was created (seconds since the epoch), to pick the newest of several.
    pub created: i64,
}

/// Which output a chunk of logs came from.
pub(crate) type LogChunk = (pb::LogStream, Bytes);

/// What a logs request asks for.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LogRequest {
    /// Keep streaming new output until the task ends.
    pub follow: bool,
    /// Only the last this many lines (0: all).
    pub tail: u32,
    /// Include standard output.
    pub stdout: bool,
    /// Include standard error.
    pub stderr: bool,
    /// Only output written at or after this Unix time, in seconds (runtimes with line times).
    pub since: Option<i64>,
    /// Prefix each line with its time (runtimes with line times).
    pub timestamps: bool,
}

/// What a running container uses now: its cpu time so far (two readings apart make a rate)
/// and its memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Cpu time used since the container started, in nanoseconds.
    pub cpu_nanos: u64,
    /// Memory in use, in bytes (Docker's cgroup usage; the resident set for Exec).
    pub memory_bytes: u64,
}

/// A runtime's result: its errors say, in words a person can act on, what failed (they become
/// a task's message) and keep the cause.
pub(crate) type RuntimeResult<T> = Result<T, RuntimeError>;

/// A container runtime. Every method is idempotent where it can be: stopping or removing
/// something that is gone is not an error.
pub(crate) trait Runtime: Send + Sync + 'static {
    /// A short name for logs and messages: "docker", "exec".
    fn name(&self) -> &'static str;

    /// Whether the runtime answers (Docker ping); the error says why not.
    fn ping(&self) -> impl Future<Output = RuntimeResult<()>> + Send;

    /// Starts one run of a task and reports what it started.
    fn start(&self, launch: &Launch) -> impl Future<Output = RuntimeResult<Started>> + Send;

    /// Stops a container: SIGTERM, up to `grace`, then SIGKILL. Returns its exit code when
    /// known. The container is not removed.
    fn stop(
        &self,
        container_id: &str,
        grace: Duration,
    ) -> impl Future<Output = RuntimeResult<Option<i64>>> + Send;

    /// Removes a container (killing it if it still runs). Missing is fine.
    fn remove(&self, container_id: &str) -> impl Future<Output = RuntimeResult<()>> + Send;

    /// Looks at one container.
    fn inspect(&self, container_id: &str) -> impl Future<Output = RuntimeResult<Observed>> + Send;

    /// Every container this worker created, running or not.
    fn list(&self) -> impl Future<Output = RuntimeResult<Vec<Found>>> + Send;

    /// Runs until `cancel`, sending the id of every task whose container may have changed
    /// (started, died, removed) to `hints`, so the monitor looks at once instead of waiting
    /// for its next sweep.
    fn watch(
        &self,
        hints: UnboundedSender<TaskId>,
        cancel: CancellationToken,
    ) -> impl Future<Output = ()> + Send;

    /// Whether a task's output outlives its container here (Exec's output files), so the
    /// worker need not keep a copy when it removes one (Docker's logs go with the container).
    fn keeps_logs(&self) -> bool {
        false
    }

    /// Whether the runtime records when each line of output was written, so logs can be
    /// filtered by time and printed with times (Docker does; Exec's output files do not).
    fn has_line_times(&self) -> bool {
        false
    }

    /// A task's output; ends at the end of what exists, or (with `follow`) when the container
    /// stops.
    fn logs(
        &self,
        task_id: TaskId,
        container_id: &str,
        request: LogRequest,
    ) -> BoxStream<'static, RuntimeResult<LogChunk>>;

    /// Runs a command inside a running container and returns its exit code (health checks).
    fn exec(
        &self,
        container_id: &str,
        command: &[String],
    ) -> impl Future<Output = RuntimeResult<i64>> + Send;

    /// What a running container uses now (`top tasks`); `None` when it is not running.
    fn usage(
        &self,
        container_id: &str,
    ) -> impl Future<Output = RuntimeResult<Option<Usage>>> + Send;

    /// Where a container port can be reached from the worker (health checks).
    fn address(
        &self,
        container_id: &str,
        port: u32,
    ) -> impl Future<Output = RuntimeResult<SocketAddr>> + Send;
}
