//! A [`Runtime`] that times every call of the runtime it wraps, for the
//! `cube_worker_runtime_call_seconds` histogram (by call, and outcome ok or error).
//!
//! A decorator rather than timing inside Docker and Exec: both are measured the same way, and
//! neither implementation carries metrics code.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration, time::Instant};

use futures::{stream::BoxStream, StreamExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{Found, Launch, LogChunk, LogRequest, Observed, Runtime, RuntimeResult, Started};
use crate::{metrics::observe_runtime_call, TaskId};

/// Wraps a runtime and records the latency and outcome of each call.
#[derive(Debug, Clone)]
pub(crate) struct Timed<R>(pub R);

/// Awaits `call` and records it as `name`.
async fn timed<T>(
    name: &'static str,
    call: impl Future<Output = RuntimeResult<T>>,
) -> RuntimeResult<T> {
    let started = Instant::now();
    let result = call.await;
    observe_runtime_call(name, result.is_ok(), started);
    result
}

impl<R: Runtime> Runtime for Timed<R> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn ping(&self) -> impl Future<Output = RuntimeResult<()>> + Send {
        timed("ping", self.0.ping())
    }

    fn start(&self, launch: &Launch) -> impl Future<Output = RuntimeResult<Started>> + Send {
        timed("start", self.0.start(launch))
    }

    fn stop(
        &self,
        container_id: &str,
        grace: Duration,
    ) -> impl Future<Output = RuntimeResult<Option<i64>>> + Send {
        timed("stop", self.0.stop(container_id, grace))
    }

    fn remove(&self, container_id: &str) -> impl Future<Output = RuntimeResult<()>> + Send {
        timed("remove", self.0.remove(container_id))
    }

    fn inspect(&self, container_id: &str) -> impl Future<Output = RuntimeResult<Observed>> + Send {
        timed("inspect", self.0.inspect(container_id))
    }

    fn usage(
        &self,
        container_id: &str,
    ) -> impl Future<Output = RuntimeResult<Option<super::Usage>>> + Send {
        timed("usage", self.0.usage(container_id))
    }

    fn list(&self) -> impl Future<Output = RuntimeResult<Vec<Found>>> + Send {
        timed("list", self.0.list())
    }

    fn watch(
        &self,
        hints: UnboundedSender<TaskId>,
        cancel: CancellationToken,
    ) -> impl Future<Output = ()> + Send {
        self.0.watch(hints, cancel)
    }

    fn keeps_logs(&self) -> bool {
        self.0.keeps_logs()
    }

    fn has_line_times(&self) -> bool {
        self.0.has_line_times()
    }

    /// Timed to the first chunk (or the end of an empty stream): how long the runtime took to
    /// answer, not how long a follower kept reading.
    fn logs(
        &self,
        task_id: TaskId,
        container_id: &str,
        request: LogRequest,
    ) -> BoxStream<'static, RuntimeResult<LogChunk>> {
        let first = Arc::new(std::sync::Mutex::new(Some(Instant::now())));
        let at_end = first.clone();
        let take = |slot: &std::sync::Mutex<Option<Instant>>| {
            slot.lock().unwrap_or_else(|p| p.into_inner()).take()
        };
        self.0
            .logs(task_id, container_id, request)
            .map(move |item| {
                if let Some(started) = take(&first) {
                    observe_runtime_call("logs", item.is_ok(), started);
                }
                item
            })
            .chain(
                futures::stream::once(async move {
                    if let Some(started) = take(&at_end) {
                        observe_runtime_call("logs", true, started);
                    }
                })
                .filter_map(|()| async { None }),
            )
            .boxed()
    }

    fn exec(
        &self,
        container_id: &str,
        command: &[String],
    ) -> impl Future<Output = RuntimeResult<i64>> + Send {
        timed("exec", self.0.exec(container_id, command))
    }

    fn address(
        &self,
        container_id: &str,
        port: u32,
    ) -> impl Future<Output = RuntimeResult<SocketAddr>> + Send {
        timed("address", self.0.address(container_id, port))
    }
}
