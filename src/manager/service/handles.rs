//! What the rpc handlers hold besides the core: the caps on open streams, and what starts the
//! poll loop of a worker that registers.

use crate::limits::{
    streams::{MAX_LOG_STREAMS, MAX_WATCHES},
    StreamCap,
};
use crate::manager::core::Core;

/// The caps on open `WatchTasks` and `StreamLogs` streams.
#[derive(Clone)]
pub(crate) struct StreamCaps {
    pub watches: StreamCap,
    pub logs: StreamCap,
    /// Turns of the watches that send their snapshot.
    pub snapshots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Default for StreamCaps {
    fn default() -> Self {
        Self {
            watches: StreamCap::new("WatchTasks", MAX_WATCHES),
            logs: StreamCap::new("StreamLogs", MAX_LOG_STREAMS),
            snapshots: std::sync::Arc::new(tokio::sync::Semaphore::new(
                crate::limits::streams::SNAPSHOTS_AT_ONCE,
            )),
        }
    }
}

/// What a registration needs to start polling a worker like a static one.
#[derive(Clone)]
pub(crate) struct Polls {
    pub pool: crate::manager::pool::WorkerPool,
    pub tracker: tokio_util::task::TaskTracker,
    pub stop: tokio_util::sync::CancellationToken,
    pub update_interval: std::time::Duration,
    pub heartbeat_interval: std::time::Duration,
}

impl Polls {
    /// Starts the poll loop of `address` unless one runs.
    pub fn start(&self, core: &Core, address: String) {
        if core.claim_poll(&address) {
            self.tracker
                .spawn(crate::manager::reconciler::run_worker_poll(
                    core.clone(),
                    self.pool.clone(),
                    address,
                    self.update_interval,
                    self.stop.clone(),
                ));
        }
    }
}
