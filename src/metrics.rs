//! Prometheus metrics: the process-wide registry, the metrics Cube exports, a tower layer that
//! times every rpc (and gives it a tracing span), and a small HTTP endpoint (`GET /metrics`) for `--metrics-listen`.
//!
//! The manager's metrics are `cube_manager_*`, the worker's `cube_worker_*`, the rpc metrics
//! `cube_rpc_*`; a `--dev` manager with its embedded worker exports both from one endpoint.
//!
//! Gauges that mirror state (tasks by state, nodes by state, the pending queue) are not kept
//! up to date on every change: the manager and the worker register a [`on_scrape`] hook that
//! reads their counts when the endpoint is scraped, so the hot paths pay nothing for them.
//! See `docs/metrics.md` for every metric.
// expect: metric definitions are constants and encoding goes to memory: a failure is a bug every test finds, never a user's input.
#![allow(clippy::expect_used)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, LazyLock, Mutex,
    },
    task::{Context, Poll},
    time::Instant,
};

use futures::future::BoxFuture;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_util::sync::CancellationToken;

/// Every task state a `*_tasks` gauge reports (0 when no task is in it).
pub const TASK_STATES: [crate::proto::pb::TaskState; 5] = [
    crate::proto::pb::TaskState::Pending,
    crate::proto::pb::TaskState::Scheduled,
    crate::proto::pb::TaskState::Running,
    crate::proto::pb::TaskState::Completed,
    crate::proto::pb::TaskState::Failed,
];

/// Latency buckets in seconds, from 0.5 ms (an in-memory rpc) to 60 s (a slow image start).
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Every metric Cube exports, registered in one registry.
pub struct Metrics {
    /// The registry the endpoint renders.
    pub registry: Registry,
    /// Manager: tasks by state.
    pub manager_tasks: IntGaugeVec,
    /// Manager: tasks waiting for a node.
    pub manager_pending: IntGauge,
    /// Manager: time to take one placement decision.
    pub manager_scheduling_seconds: HistogramVec,
    /// Manager: time from SubmitTask to the task first observed RUNNING.
    pub manager_submit_to_running_seconds: HistogramVec,
    /// Manager: nodes by state.
    pub manager_nodes: IntGaugeVec,
    /// Manager: replicas of each service, desired, running and running the current version.
    pub manager_service_replicas: IntGaugeVec,
    /// Worker: tasks by state.
    pub worker_tasks: IntGaugeVec,
    /// Worker: runtime calls by call (start, stop, inspect, ...).
    pub worker_runtime_seconds: HistogramVec,
    /// Worker: health checks that failed, by probe kind.
    pub worker_health_check_failures: IntCounterVec,
    /// Manager and worker: moves of a task's state that the state machine refused, by
    /// component and the two states.
    pub illegal_transitions: IntCounterVec,
    /// Manager and worker: 1 while the store refuses writes (a full disk), by store.
    pub store_read_only: IntGaugeVec,
    /// Every server: rpc latency by method and gRPC status code.
    pub rpc_seconds: HistogramVec,
    /// Every server: rpcs that answered with a non-OK status, by method and code.
    pub rpc_errors: IntCounterVec,
    /// Functions run before each render, by hook id (see [`on_scrape`]).
    refresh: Mutex<BTreeMap<u64, Refresh>>,
}

/// A function that refreshes gauges from live state before a scrape.
type Refresh = Arc<dyn Fn() + Send + Sync>;

fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("metric definitions are valid")
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("metric definitions are valid")
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("metric definitions are valid")
}

impl Metrics {
    fn new() -> Self {
        let m = Metrics {
            registry: Registry::new(),
            manager_tasks: gauge_vec(
                "cube_manager_tasks",
                "Tasks the manager holds, by state.",
                &["state"],
            ),
            manager_pending: IntGauge::new(
                "cube_manager_pending_tasks",
                "Tasks waiting for a node.",
            )
            .expect("metric definitions are valid"),
            manager_scheduling_seconds: histogram(
                "cube_manager_scheduling_seconds",
                "Time to take one placement decision.",
                &["strategy"],
            ),
            manager_submit_to_running_seconds: histogram(
                "cube_manager_submit_to_running_seconds",
                "Time from SubmitTask to the task first observed RUNNING.",
                &[],
            ),
            manager_nodes: gauge_vec("cube_manager_nodes", "Nodes by state.", &["state"]),
            manager_service_replicas: gauge_vec(
                "cube_manager_service_replicas",
                "Replicas of each service: desired, running, and updated (running the \
                 service's current task version).",
                &["service", "kind"],
            ),
            worker_tasks: gauge_vec(
                "cube_worker_tasks",
                "Tasks the worker holds, by state.",
                &["state"],
            ),
            worker_runtime_seconds: histogram(
                "cube_worker_runtime_call_seconds",
                "Latency of container runtime calls.",
                &["call", "outcome"],
            ),
            worker_health_check_failures: counter_vec(
                "cube_worker_health_check_failures_total",
                "Health checks that failed.",
                &["probe"],
            ),
            store_read_only: gauge_vec(
                "cube_store_read_only",
                "1 while the store refuses writes (a full disk, a failing one), by store.",
                &["store"],
            ),
            illegal_transitions: counter_vec(
                "cube_illegal_transitions_total",
                "Task state changes the state machine refused (a bug if ever non-zero).",
                &["component", "from", "to"],
            ),
            rpc_seconds: histogram(
                "cube_rpc_duration_seconds",
                "gRPC server latency (to the response headers), by method and status code.",
                &["method", "code"],
            ),
            rpc_errors: counter_vec(
                "cube_rpc_errors_total",
                "gRPC calls answered with a non-OK status, by method and code.",
                &["method", "code"],
            ),
            refresh: Mutex::new(BTreeMap::new()),
        };
        let r = &m.registry;
        for c in [
            Box::new(m.manager_tasks.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.manager_pending.clone()),
            Box::new(m.manager_scheduling_seconds.clone()),
            Box::new(m.manager_submit_to_running_seconds.clone()),
            Box::new(m.manager_nodes.clone()),
            Box::new(m.manager_service_replicas.clone()),
            Box::new(m.worker_tasks.clone()),
            Box::new(m.worker_runtime_seconds.clone()),
            Box::new(m.worker_health_check_failures.clone()),
            Box::new(m.illegal_transitions.clone()),
            Box::new(m.store_read_only.clone()),
            Box::new(m.rpc_seconds.clone()),
            Box::new(m.rpc_errors.clone()),
        ] {
            r.register(c).expect("each metric is registered once");
        }
        m
    }

    /// Runs the scrape hooks, then renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        // Copied out first, so a hook may take its own locks (or register another) freely.
        let hooks: Vec<Refresh> = self
            .refresh
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for hook in hooks {
            hook();
        }
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("encoding to memory cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// Registers `refresh` to run before every render of the metrics (each scrape), for gauges
/// read from live state. It runs until the returned [`ScrapeHook`] is dropped, so a manager or
/// worker that stops no longer reports (and its state is no longer kept alive by the hook).
#[must_use = "the hook is removed when this is dropped"]
pub fn on_scrape(refresh: impl Fn() + Send + Sync + 'static) -> ScrapeHook {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    metrics()
        .refresh
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, Arc::new(refresh));
    ScrapeHook { id }
}

/// Keeps a scrape hook registered; dropping it removes the hook.
#[derive(Debug)]
pub struct ScrapeHook {
    id: u64,
}

impl Drop for ScrapeHook {
    fn drop(&mut self) {
        metrics()
            .refresh
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

/// Sets a gauge vector with one label to exactly these counts: every label value in `all` is
/// set (0 when absent from `counts`), so a state that empties reads 0 rather than its last value.
pub fn set_counts<'a>(
    gauge: &IntGaugeVec,
    all: impl IntoIterator<Item = &'a str>,
    counts: &BTreeMap<&str, i64>,
) {
    for label in all {
        gauge
            .with_label_values(&[label])
            .set(counts.get(label).copied().unwrap_or(0));
    }
}

/// Times a runtime call and records it under `call` with outcome `ok` or `error`.
pub fn observe_runtime_call(call: &str, ok: bool, started: Instant) {
    metrics()
        .worker_runtime_seconds
        .with_label_values(&[call, if ok { "ok" } else { "error" }])
        .observe(started.elapsed().as_secs_f64());
}

/// A tower layer that times every gRPC call and counts the failed ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcMetricsLayer;

impl<S> tower::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

/// The service [`RpcMetricsLayer`] wraps around the server's routes.
#[derive(Debug, Clone)]
pub struct RpcMetrics<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_string();
        let started = Instant::now();
        // One span per rpc: every line a handler logs carries the method.
        let span = tracing::info_span!("rpc", method = %method);
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(tracing::Instrument::instrument(
            async move {
                let result = future.await;
                // A status in the headers is a trailers-only answer: an error (or an OK with no
                // body). An OK answer carries its status in the trailers, after the body.
                let code = match &result {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map(tonic::Code::from_i32)
                        .unwrap_or(tonic::Code::Ok),
                    Err(_) => tonic::Code::Unavailable,
                };
                let code_name = format!("{code:?}");
                let m = metrics();
                m.rpc_seconds
                    .with_label_values(&[&method, &code_name])
                    .observe(started.elapsed().as_secs_f64());
                if code != tonic::Code::Ok {
                    m.rpc_errors.with_label_values(&[&method, &code_name]).inc();
                }
                result
            },
            span,
        ))
    }
}

/// Binds `address` for `--metrics-listen`, serves `GET /metrics` there in the background until
/// `shutdown`, and returns the bound address (logged as `metrics endpoint`, so a port chosen
/// by the system can be found).
pub async fn listen(address: &str, shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tracing::info!(address = %bound, "metrics endpoint");
    tokio::spawn(serve_http(listener, shutdown));
    Ok(bound)
}

/// The largest request head the endpoint reads; a scrape sends a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Serves `GET /metrics` on `listener` until `shutdown` is cancelled.
pub async fn serve_http(listener: TcpListener, shutdown: CancellationToken) {
    loop {
        let (mut stream, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "metrics endpoint: accept failed");
                    continue;
                }
            },
        };
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(512);
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
                match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
                    .await
                {
                    Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            let line = String::from_utf8_lossy(&head);
            let first = line.lines().next().unwrap_or_default();
            let (status, content_type, body) =
                if first.starts_with("GET /metrics ") || first.starts_with("GET / ") {
                    ("200 OK", "text/plain; version=0.0.4", metrics().render())
                } else {
                    (
                        "404 Not Found",
                        "text/plain",
                        "only GET /metrics is served here\n".to_string(),
                    )
                };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endpoint_serves_the_text_format() {
        metrics().manager_pending.set(3);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_http(listener, shutdown.clone()));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(
            response.contains("cube_manager_pending_tasks 3"),
            "{response}"
        );
        shutdown.cancel();
        server.await.unwrap();
    }

    #[test]
    fn scrape_hooks_run_before_each_render_until_dropped() {
        use std::sync::atomic::AtomicUsize;
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let hook = on_scrape(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let counts = BTreeMap::from([("hooked", 7)]);
            set_counts(&metrics().worker_tasks, ["hooked", "hook-empty"], &counts);
        });
        // Other tests in this process may render at the same time, running the hook too.
        let text = metrics().render();
        assert!(calls.load(Ordering::SeqCst) >= 1);
        assert!(
            text.contains("cube_worker_tasks{state=\"hooked\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("cube_worker_tasks{state=\"hook-empty\"} 0"),
            "{text}"
        );
        drop(hook);
        let before = calls.load(Ordering::SeqCst);
        metrics().render();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            before,
            "a dropped hook no longer runs"
        );
    }
}
