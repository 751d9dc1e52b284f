//! The HTTP/2 settings, message sizes and compression every Cube server shares.

use std::time::Duration;

use tonic::{codec::CompressionEncoding, transport::Server};

/// The most concurrent rpcs (HTTP/2 streams) on one connection. The manager's own channel to a
/// worker carries at most a few dozen (dispatch is bounded per worker); a client that wants
/// more opens more connections, which count against [`super::ConnLimits`].
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// How often a server pings a connection to learn that its peer is gone (a peer that vanished
/// without a FIN otherwise holds its connection and streams for hours).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a keepalive ping may go unanswered before the connection is closed (gRPC's own
/// default): long enough for a client on a loaded machine.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// TCP keepalive, for the same reason below HTTP/2.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// The largest request message a server decodes (tonic's default, written down): a spec is at
/// most 64 KiB, so a full `SubmitTasks` batch of large specs is refused whole with
/// OUT_OF_RANGE rather than read.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// The largest header list a client may send (HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`).
pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;
/// Streams a peer may reset before they are answered, before the connection is closed: the
/// "rapid reset" attack opens and cancels streams faster than any limit on open ones sees.
pub const MAX_PENDING_RESETS: usize = 64;

/// A server builder with Cube's HTTP/2 limits.
pub fn builder() -> Server {
    Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .tcp_keepalive(Some(TCP_KEEPALIVE))
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS))
        .tcp_nodelay(true)
}

/// The compression every Cube service accepts and answers with when the client accepts it:
/// clients that compress by default (Go's `UseCompressor(gzip)`, Java's `withCompression`,
/// grpcio's compression option) work; cubectl sends and asks for none.
pub const COMPRESSION: CompressionEncoding = CompressionEncoding::Gzip;
