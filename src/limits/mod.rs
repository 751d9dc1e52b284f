//! Bounds on everything a client can send or hold open (DESIGN.md §11): the documented limits
//! of a task spec and a worker's registration, and of every server's connections and streams.
//!
//! # Layout
//!
//! - [`spec`]: the bounds of a `TaskSpec` and of `RegisterWorker`, checked at the door.
//! - [`server`]: HTTP/2 settings, message sizes and compression of every Cube server.
//! - [`conn`]: accepted connections: the maximum number, the handshake and idle timeouts.
//! - [`streams`]: caps on open `WatchTasks` and `StreamLogs` streams, and answer pages.
//!
//! The same numbers are written in `proto/cube.proto` and the README; a test reads them from
//! here, so a change shows up where it must be documented again.

pub mod conn;
pub mod server;
pub mod spec;
pub mod streams;

pub use conn::ConnLimits;
pub use streams::{StreamCap, MAX_ANSWER_BYTES};

/// The longest text of a client's making that a log line or a task message repeats (a
/// health probe's path or command): enough to recognise it, never a 1 MB path per probe.
pub const MAX_SUMMARY: usize = 256;

/// `text` cut to at most `max` bytes (at a character boundary), saying how long it was.
pub fn summary(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_summary_is_bounded_and_says_so() {
        assert_eq!(super::summary("short", 10), "short");
        let long = "é".repeat(1000);
        let cut = super::summary(&long, 9);
        assert!(cut.starts_with("éééé…"), "{cut}");
        assert!(cut.ends_with("(2000 bytes in all)"), "{cut}");
    }
}
