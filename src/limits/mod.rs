//! Bounds on everything a client can send or hold open (DESIGN.md §11): the documented limits
//! of a task spec and a worker's registration, and of every server's connections and streams.
//!
//! # Layout
//!
//! - [`spec`]: the bounds of a `TaskSpec`, checked at the door.
//! - [`node`]: the bounds of a worker's `RegisterWorker`.
//! - [`server`]: HTTP/2 settings, message sizes and compression of every Cube server.
//! - [`conn`]: accepted connections: the maximum number, the handshake and idle timeouts.
//! - [`streams`]: caps on open `WatchTasks` and `StreamLogs` streams, and answer pages.
//!
//! The same numbers are written in `proto/cube.proto` and the README; a test reads them from
//! here, so a change shows up where it must be documented again.

pub mod conn;
pub mod node;
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
    use super::{conn::*, node::*, server::*, spec::*, streams::*};

    /// `n` as the README writes it: `65,536`.
    fn with_commas(n: usize) -> String {
        let digits = n.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    }

    /// Each limit is written in the README's row for it, and the proto's comments say the
    /// ones a client meets: a change of a number here fails until the docs follow.
    #[test]
    fn the_docs_say_the_limits() {
        let readme = include_str!("../../README.md");
        let proto = include_str!("../../proto/cube.proto");
        let row = |start: &str| {
            readme
                .lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("the README has no row {start}"))
        };
        let secs = MAX_DURATION.as_secs() as usize;
        let rows: [(&str, usize, bool); 19] = [
            ("| a request message |", MAX_REQUEST_BYTES, false),
            ("| `spec`, encoded |", MAX_SPEC_BYTES, true),
            ("| `spec.name` |", crate::task::MAX_NAME_LEN, true),
            ("| `spec.image` |", MAX_IMAGE_LEN, true),
            ("| `spec.command` + `spec.args` |", MAX_ARGS, true),
            ("| `spec.command` + `spec.args` |", MAX_ARGS_BYTES, true),
            ("| `spec.env` |", MAX_ENV, true),
            ("| `spec.labels`, `spec.constraints` |", MAX_LABELS, true),
            (
                "| `spec.labels`, `spec.constraints` |",
                MAX_LABEL_VALUE_LEN,
                true,
            ),
            ("| `spec.ports` |", MAX_PORTS, true),
            (
                "| `spec.resources.cpu_millis` |",
                MAX_CPU_MILLIS as usize,
                true,
            ),
            (
                "| `spec.resources.memory_bytes` |",
                MIN_MEMORY_BYTES as usize,
                true,
            ),
            ("| `spec.stop_grace_period`", secs, true),
            ("| `RegisterWorker` |", MAX_NODE_NAME_LEN, true),
            ("| `RegisterWorker` |", MAX_ADDRESS_LEN, true),
            ("| `RegisterWorker` |", MAX_NODE_LABELS_BYTES, true),
            ("| open `WatchTasks` streams", MAX_WATCHES, true),
            ("| open `StreamLogs` streams", MAX_LOG_STREAMS, true),
            ("| one answer of tasks", MAX_ANSWER_BYTES, true),
        ];
        for (start, value, in_proto) in rows {
            let line = row(start);
            assert!(
                line.contains(&with_commas(value)),
                "the README row {start} does not say {value}: {line}"
            );
            assert!(
                !in_proto || proto.contains(&value.to_string()),
                "proto/cube.proto does not say {value} ({start})"
            );
        }
        let others = [
            ("| open `WatchTasks` streams", SNAPSHOTS_AT_ONCE),
            ("| open `WatchTasks` streams", WATCH_SNAPSHOT_PAGE),
            ("| open `WatchTasks` streams", MAX_WATCHED_IDS),
            (
                "| concurrent streams per connection |",
                MAX_STREAMS_PER_CONNECTION as usize,
            ),
            ("| connections |", LISTEN_BACKLOG as usize),
            ("| connections |", KEEPALIVE_INTERVAL.as_secs() as usize),
            ("| connections |", KEEPALIVE_TIMEOUT.as_secs() as usize),
        ];
        for (start, value) in others {
            assert!(row(start).contains(&with_commas(value)), "{start} {value}");
        }
        assert!(readme.contains(&format!(
            "| `--handshake-timeout D` | `{}s`",
            HANDSHAKE_TIMEOUT.as_secs()
        )));
        assert!(readme.contains(&format!(
            "| `--idle-timeout D` | `{}m`",
            IDLE_TIMEOUT.as_secs() / 60
        )));
        assert!(readme.contains(&format!("| `--max-connections N` | {MAX_CONNECTIONS}")));
    }

    #[test]
    fn a_summary_is_bounded_and_says_so() {
        assert_eq!(super::summary("short", 10), "short");
        let long = "é".repeat(1000);
        let cut = super::summary(&long, 9);
        assert!(cut.starts_with("éééé…"), "{cut}");
        assert!(cut.ends_with("(2000 bytes in all)"), "{cut}");
    }
}
