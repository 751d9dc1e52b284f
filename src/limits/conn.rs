//! Accepted connections: at most [`ConnLimits::max_connections`] at once, each closed when it
//! sends nothing within the handshake timeout, or holds no rpc for the idle timeout.
//!
//! About 20,000 idle connections once exhausted a manager's open files and locked every client
//! out, with nothing logged. Here a connection holds a place (a semaphore permit) from accept
//! to close; one past the maximum is closed at once and logged. A connection's open rpcs are
//! counted by [`ConnActivityLayer`] (a response body holds its count until it ends, so a
//! stream counts while it is open); the connection's reads watch that count and fail with
//! `TimedOut` when the timeout passes with none open, which closes the connection.
//!
//! The count reaches the layer through the connection's `ConnectInfo` ([`ConnInfo`]; over TLS
//! inside tonic's `TlsConnectInfo`). A transport that wraps the connection otherwise must hand
//! the same `ConnInfo` on, or its rpcs
//! are not seen: the first rpc that arrives without it turns the idle timeout off for the
//! process, with a warning, so a busy connection is never taken for an idle one.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use futures::{future::BoxFuture, task::AtomicWaker, Stream};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The most connections a server holds by default. Each costs a file descriptor; a Cube
/// process raises its soft limit to the hard one at start, and never uses more than that
/// limit less [`FD_RESERVE`] for connections.
pub const MAX_CONNECTIONS: usize = 10_000;
/// File descriptors kept for everything but connections: the store, logs, child processes,
/// the Docker socket, outgoing channels.
pub const FD_RESERVE: usize = 256;
/// The listen backlog: connections the kernel completes before the server accepts them.
/// tokio's default of 1,024 overflowed when a few thousand clients connected at once on a busy
/// machine, and each overflow cost a client a SYN retry of one second or more. The kernel caps
/// it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a server's listener on `address` (`host:port`) with [`LISTEN_BACKLOG`].
pub async fn bind(address: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(address).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{address:?} names no address"),
        )
    }))
}

/// How long a new connection may take to send its first bytes (the HTTP/2 preface): a
/// client that connects and says nothing holds a descriptor for no one.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection may hold no rpc before it is closed: gRPC clients reconnect on
/// their next call. Long polls and streams count as open rpcs, so the manager's polls of its
/// workers (at most 10 s apart) never go idle.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// The connection limits of one server.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnLimits {
    /// The most client connections held at once; one past it is closed at once [default:
    /// 10000, or the open-files limit less 256 when lower].
    #[arg(long, env = "CUBE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// A connection that sends nothing this long after it is opened is closed.
    #[arg(long, env = "CUBE_HANDSHAKE_TIMEOUT", default_value = "10s",
          value_parser = crate::units::parse_duration)]
    pub handshake_timeout: Duration,

    /// A connection with no rpc open this long is closed (clients reconnect on their next
    /// call).
    #[arg(long, env = "CUBE_IDLE_TIMEOUT", default_value = "5m",
          value_parser = crate::units::parse_duration)]
    pub idle_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: None,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

impl ConnLimits {
    /// The maximum in force: the one asked for, else [`MAX_CONNECTIONS`] or the open-files
    /// limit less [`FD_RESERVE`], whichever is lower.
    pub fn max(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            let files = open_files_limit().unwrap_or(1024);
            MAX_CONNECTIONS.min(files.saturating_sub(FD_RESERVE).max(16))
        })
    }
}

/// The soft limit of open files, after raising it to the hard limit: a server is meant to
/// hold many connections, and the default soft limit (often 1,024) is for interactive
/// programs. None when the limit cannot be read.
pub fn open_files_limit() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Some(usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
}

/// Set when an rpc arrived without a [`ConnInfo`]: rpcs are not counted, so no connection
/// can be known to be idle.
static UNCOUNTED: AtomicBool = AtomicBool::new(false);

/// A connection's rpc count and when it last went to zero.
#[derive(Debug)]
pub struct Activity {
    open: AtomicUsize,
    idle_since: Mutex<Instant>,
    /// The connection's reader, woken when the count goes to zero to arm its idle timer.
    reader: AtomicWaker,
}

impl Activity {
    fn new() -> Self {
        Self {
            open: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            reader: AtomicWaker::new(),
        }
    }

    fn idle_since(&self) -> Instant {
        *self
            .idle_since
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What a Cube connection tells the services about itself (the request extension).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP addresses, also put in the request as tonic's own [`TcpConnectInfo`].
    pub tcp: TcpConnectInfo,
    activity: Arc<Activity>,
}

/// An accepted connection under the limits.
pub struct LimitedConn {
    io: TcpStream,
    info: ConnInfo,
    /// Some until the first bytes arrive: the handshake deadline.
    handshake_by: Option<Instant>,
    idle_timeout: Duration,
    timer: Pin<Box<Sleep>>,
    _place: OwnedSemaphorePermit,
}

impl Connected for LimitedConn {
    type ConnectInfo = ConnInfo;
    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl LimitedConn {
    /// The deadline in force now, and why it closes the connection.
    fn deadline(&self, cx: &Context<'_>) -> Option<(Instant, &'static str)> {
        if let Some(by) = self.handshake_by {
            return Some((by, "sent nothing within the handshake timeout"));
        }
        let activity = &self.info.activity;
        activity.reader.register(cx.waker());
        if activity.open.load(Ordering::Acquire) > 0 || UNCOUNTED.load(Ordering::Relaxed) {
            return None;
        }
        Some((
            activity.idle_since() + self.idle_timeout,
            "held no rpc for the idle timeout",
        ))
    }
}

impl AsyncRead for LimitedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        if let Poll::Ready(result) = Pin::new(&mut this.io).poll_read(cx, buf) {
            if this.handshake_by.is_some() && buf.filled().len() > before {
                this.handshake_by = None;
                *this
                    .info
                    .activity
                    .idle_since
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
            }
            return Poll::Ready(result);
        }
        let Some((deadline, why)) = this.deadline(cx) else {
            return Poll::Pending;
        };
        if this.timer.deadline() != deadline {
            this.timer.as_mut().reset(deadline);
        }
        match this.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                tracing::debug!(peer = ?this.info.tcp.remote_addr, why, "connection closed");
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for LimitedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// How often a refused connection is logged at most: a flood is one line per period.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// The connections `listener` accepts, under `limits`. Accept errors (out of descriptors
/// above all) are logged and waited out, never the end of the server.
pub fn incoming(
    listener: TcpListener,
    limits: &ConnLimits,
) -> impl Stream<Item = io::Result<LimitedConn>> + Send + 'static {
    let max = limits.max();
    tracing::info!(
        max_connections = max,
        handshake_timeout = ?limits.handshake_timeout,
        idle_timeout = ?limits.idle_timeout,
        "connection limits"
    );
    let places = Arc::new(Semaphore::new(max));
    let limits = limits.clone();
    let state = (listener, places, None::<Instant>, 0u64);
    futures::stream::unfold(state, move |(listener, places, mut logged, mut refused)| {
        let limits = limits.clone();
        async move {
            loop {
                let (io, remote) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed; retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(place) = places.clone().try_acquire_owned() else {
                    refused += 1;
                    if logged.is_none_or(|at| at.elapsed() >= REFUSAL_LOG_PERIOD) {
                        tracing::warn!(
                            max_connections = max,
                            refused,
                            "connection refused: the server holds its maximum of connections"
                        );
                        logged = Some(Instant::now());
                    }
                    drop(io);
                    continue;
                };
                let _ = io.set_nodelay(true);
                let conn = LimitedConn {
                    info: ConnInfo {
                        tcp: TcpConnectInfo {
                            local_addr: io.local_addr().ok(),
                            remote_addr: Some(remote),
                        },
                        activity: Arc::new(Activity::new()),
                    },
                    io,
                    handshake_by: Some(Instant::now() + limits.handshake_timeout),
                    idle_timeout: limits.idle_timeout,
                    timer: Box::pin(tokio::time::sleep(limits.handshake_timeout)),
                    _place: place,
                };
                return Some((Ok(conn), (listener, places, logged, refused)));
            }
        }
    })
}

/// Counts the open rpcs of each connection (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnActivityLayer;

impl<S> tower::Layer<S> for ConnActivityLayer {
    type Service = ConnActivity<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ConnActivity { inner }
    }
}

/// The service of [`ConnActivityLayer`].
#[derive(Debug, Clone)]
pub struct ConnActivity<S> {
    inner: S,
}

/// One open rpc of a connection; dropped when its answer ends.
struct OpenRpc(Arc<Activity>);

impl OpenRpc {
    fn new(activity: Arc<Activity>) -> Self {
        activity.open.fetch_add(1, Ordering::AcqRel);
        Self(activity)
    }
}

impl Drop for OpenRpc {
    fn drop(&mut self) {
        let activity = &self.0;
        if activity.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            *activity
                .idle_since
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
            activity.reader.wake();
        }
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for ConnActivity<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<CountedBody<R>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // Over TLS the transport hands the connection's info on inside its own.
        let info = request.extensions().get::<ConnInfo>().cloned().or_else(|| {
            request
                .extensions()
                .get::<tonic::transport::server::TlsConnectInfo<ConnInfo>>()
                .map(|tls| tls.get_ref().clone())
        });
        if info.is_none() && !UNCOUNTED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "an rpc arrived on a connection that does not say whose it is; the idle \
                 timeout is off for this process"
            );
        }
        let open = info.map(|info| {
            request.extensions_mut().insert(info.tcp.clone());
            OpenRpc::new(info.activity)
        });
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(response.map(|inner| CountedBody { inner, _open: open }))
        })
    }
}

/// A response body that keeps its rpc counted until it ends.
pub struct CountedBody<B> {
    inner: B,
    _open: Option<OpenRpc>,
}

impl<B> http_body::Body for CountedBody<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
