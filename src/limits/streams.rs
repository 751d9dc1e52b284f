//! Caps on open server streams, and the size of one answer.
//!
//! A `WatchTasks` stream holds a subscription and, while it sends its snapshot, a page of
//! tasks; a `StreamLogs` stream holds an upstream stream to a worker. Without a cap, 500
//! watches of large tasks once took a manager from 207 MB to 13.5 GB.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{Error, Result};

/// The most `WatchTasks` streams a manager keeps open at once.
pub const MAX_WATCHES: usize = 256;
/// The most `StreamLogs` streams a server (manager or worker) keeps open at once.
pub const MAX_LOG_STREAMS: usize = 128;
/// The most encoded bytes of tasks one answer carries before it is cut into pages: gRPC
/// clients refuse messages above 4 MiB by default, and a task is at most 64 KiB of spec plus
/// what Cube adds.
pub const MAX_ANSWER_BYTES: usize = 2 * 1024 * 1024;
/// The most task ids one watch may name: a watch keeps them for its life.
pub const MAX_WATCHED_IDS: usize = 1000;
/// How many tasks a watch copies at a time while it sends its snapshot: the memory one
/// watch holds is one page, not every task.
pub const WATCH_SNAPSHOT_PAGE: usize = 64;

/// How many watches send their snapshot at once; the others wait their turn. A stream's
/// answer waits in the server's HTTP/2 send buffer (up to 400 KiB a stream) until its client
/// reads it, so 256 watches reading 1,000 tasks at once held 100 MB there; a few at a time
/// hold a few MB, and the snapshots, which a client reads at its own pace, take no longer in
/// all.
pub const SNAPSHOTS_AT_ONCE: usize = 8;

/// A cap on streams of one kind: a stream holds a [`StreamPermit`] while it is open.
#[derive(Clone)]
pub struct StreamCap {
    what: &'static str,
    max: usize,
    permits: Arc<Semaphore>,
}

/// Held by an open stream; dropping it frees the place.
pub type StreamPermit = OwnedSemaphorePermit;

impl StreamCap {
    /// A cap of `max` open streams of `what` (e.g. "WatchTasks").
    pub fn new(what: &'static str, max: usize) -> Self {
        Self {
            what,
            max,
            permits: Arc::new(Semaphore::new(max)),
        }
    }

    /// A place for one more stream, or RESOURCE_EXHAUSTED naming the limit.
    pub fn open(&self) -> Result<StreamPermit> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            Error::ResourceExhausted(format!(
                "{} open {} streams is this server's limit; close one or try again later",
                self.max, self.what
            ))
        })
    }

    /// How many streams are open now.
    pub fn open_now(&self) -> usize {
        self.max - self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_cap_is_resource_exhausted_naming_it() {
        let cap = StreamCap::new("WatchTasks", 2);
        let a = cap.open().unwrap();
        let _b = cap.open().unwrap();
        let status = tonic::Status::from(cap.open().unwrap_err());
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("2 open WatchTasks streams"));
        drop(a);
        assert_eq!(cap.open_now(), 1);
        let _c = cap.open().unwrap();
    }
}
