//! Prometheus metrics: the process-wide registry, the metrics Cube exports, a tower layer that
//! times every rpc, and a small HTTP endpoint (`GET /metrics`) for `--metrics-listen`.
//!
//! The manager's metrics are `cube_manager_*`, the worker's `cube_worker_*`, the rpc metrics
//! `cube_rpc_*`; a `--dev` manager with its embedded worker exports both from one endpoint.

use std::{
    sync::LazyLock,
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
    /// Worker: tasks by state.
    pub worker_tasks: IntGaugeVec,
    /// Worker: runtime calls by call (start, stop, inspect, ...).
    pub worker_runtime_seconds: HistogramVec,
    /// Worker: health checks that failed, by probe kind.
    pub worker_health_check_failures: IntCounterVec,
    /// Every server: rpc latency by method and gRPC status code.
    pub rpc_seconds: HistogramVec,
    /// Every server: rpcs that answered with a non-OK status, by method and code.
    pub rpc_errors: IntCounterVec,
}

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
        };
        let r = &m.registry;
        for c in [
            Box::new(m.manager_tasks.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.manager_pending.clone()),
            Box::new(m.manager_scheduling_seconds.clone()),
            Box::new(m.manager_submit_to_running_seconds.clone()),
            Box::new(m.manager_nodes.clone()),
            Box::new(m.worker_tasks.clone()),
            Box::new(m.worker_runtime_seconds.clone()),
            Box::new(m.worker_health_check_failures.clone()),
            Box::new(m.rpc_seconds.clone()),
            Box::new(m.rpc_errors.clone()),
        ] {
            r.register(c).expect("each metric is registered once");
        }
        m
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
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
        let future = self.inner.call(request);
        Box::pin(async move {
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
        })
    }
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
}
