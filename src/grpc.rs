//! What every Cube gRPC server shares: health, reflection, shutdown, and client channels.
// expect: the descriptor sets are compiled in: a bad one fails every test, never a user.
#![allow(clippy::expect_used)]

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::{server::Router, Channel, Endpoint};
use tonic_health::server::HealthReporter;

use crate::{
    limits::{
        conn::ConnActivityLayer,
        server::{builder, COMPRESSION},
        ConnLimits,
    },
    metrics::RpcMetricsLayer,
    proto::FILE_DESCRIPTOR_SET,
};

/// The router every Cube server builds on: the rpc metrics layer and the count of each
/// connection's open rpcs around all services.
pub type CubeRouter = Router<
    tower::layer::util::Stack<
        ConnActivityLayer,
        tower::layer::util::Stack<RpcMetricsLayer, tower::layer::util::Identity>,
    >,
>;

/// How long a client waits for a TCP connection to a Cube server before it gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a client's connection is checked with an HTTP/2 PING, idle or not, and how long
/// the answer may take: a connection cut by a partition is dropped within about 4 s, and
/// the next call connects afresh once the link heals, instead of waiting for TCP's
/// retransmissions to reach the peer (up to 10 s late after a 20 s partition, measured).
pub const KEEPALIVE: Duration = Duration::from_secs(2);

/// Applies [`KEEPALIVE`] to a client endpoint.
pub fn keepalive(endpoint: Endpoint) -> Endpoint {
    endpoint
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_timeout(KEEPALIVE)
        .keep_alive_while_idle(true)
}

/// A server builder with `grpc.health.v1.Health` and server reflection (both `v1` and the
/// `v1alpha` that grpcurl 1.8 speaks) already added, every rpc timed into the metrics, and the
/// reporter to mark services SERVING. Reflection lists only `service` (e.g.
/// `cube.v1.ManagerService`) and health: the descriptor set holds both Cube services, and a
/// server should not advertise one it does not serve. The HTTP/2 limits are
/// `limits::server`'s; every service accepts gzip. With `tls`, the server speaks TLS only.
pub fn standard_router(
    service: &str,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> Result<(CubeRouter, HealthReporter), crate::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(service)
            .with_service_name("grpc.health.v1.Health")
    };
    let reflection_v1 = reflection()
        .build_v1()
        .expect("Cube's descriptor set is valid");
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .expect("Cube's descriptor set is valid");
    let mut server = builder();
    if let Some(tls) = tls {
        server = server
            .tls_config(tls)
            .map_err(|e| crate::Error::Internal(format!("TLS configuration: {e}")))?;
    }
    let router = server
        .layer(RpcMetricsLayer)
        .layer(ConnActivityLayer)
        .add_service(
            health
                .accept_compressed(COMPRESSION)
                .send_compressed(COMPRESSION),
        )
        .add_service(
            reflection_v1
                .accept_compressed(COMPRESSION)
                .send_compressed(COMPRESSION),
        )
        .add_service(
            reflection_v1alpha
                .accept_compressed(COMPRESSION)
                .send_compressed(COMPRESSION),
        );
    Ok((router, reporter))
}

/// Serves `router` on `listener` until `shutdown` is cancelled, under `limits`.
///
/// Every accepted connection gets TCP_NODELAY, as `Server::tcp_nodelay` would give a listener
/// tonic binds itself: with Nagle's algorithm on, the small frames of an answer wait for the
/// peer's delayed ACK, about 40 ms per round trip on Linux.
pub async fn serve(
    router: CubeRouter,
    listener: TcpListener,
    limits: &ConnLimits,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let incoming = crate::limits::conn::incoming(listener, limits);
    router
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
}

/// A lazily connecting channel to `address` (`host:port` or an `http://` URL), with a connect
/// timeout and a default per-call deadline of `timeout`.
///
/// Only plaintext `http://` is spoken here: any other scheme is refused, `https://` above all,
/// which would otherwise silently talk plaintext to a server and let its user believe the link
/// is encrypted. TLS channels come from [`crate::tls::ClientTls::channel`].
pub fn channel(address: &str, timeout: Duration) -> Result<Channel, crate::Error> {
    let url = match address.split_once("://") {
        None => format!("http://{address}"),
        Some(("http", _)) => address.to_string(),
        Some(("https", _)) => {
            return Err(crate::Error::invalid(
                "address",
                format!(
                    "{address:?}: https:// needs the cluster's CA: give a token that carries \
                     its digest, or the CA certificate"
                ),
            ))
        }
        Some((scheme, _)) => {
            return Err(crate::Error::invalid(
                "address",
                format!("{address:?}: {scheme}:// is not a scheme Cube speaks (use http://)"),
            ))
        }
    };
    let endpoint = Endpoint::from_shared(url)
        .map_err(|e| crate::Error::invalid("address", format!("{address:?}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(timeout)
        .tcp_nodelay(true);
    Ok(keepalive(endpoint).connect_lazy())
}

/// A token cancelled on the first SIGINT or SIGTERM: the root of a server's shutdown tree.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    tokio::spawn(async move {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        let term = async {
            match term {
                Ok(mut term) => term.recv().await,
                Err(e) => {
                    tracing::error!(error = %e, "no SIGTERM handler; only SIGINT shuts down");
                    std::future::pending().await
                }
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
            _ = term => tracing::info!("SIGTERM received, shutting down"),
        }
        child.cancel();
    });
    token
}

/// Installs the tracing subscriber of a binary: `RUST_LOG` filters (default `info`), output to
/// stderr, as text or as JSON lines. Colour only when stderr is a terminal and `NO_COLOR` is
/// unset, so a log written to a file or a pipe has no escape sequences.
///
/// A server outlives its log sink: once stderr is gone (a closed pipe, `| head`), log lines
/// are dropped, and nothing reports the failed write with `eprintln!`, which would panic
/// inside whichever task was logging (the signal handler or a request handler among them).
pub fn init_tracing(json: bool) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .log_internal_errors(false)
        .with_writer(|| LossyStderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Standard error that drops what it cannot write: a log line is never worth a failed
/// request or a panic.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Prints the line tests and scripts wait for once a server is bound: `listening on ADDR`,
/// alone on stdout (logs go to stderr).
pub fn announce(address: std::net::SocketAddr) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {address}");
    let _ = out.flush();
}
