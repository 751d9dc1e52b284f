//! UpdateTasks: one loop per worker that polls its ListTasks and GetStats and copies what it
//! observes into the manager.
//!
//! The poll asks only for what changed since the worker's last revision, so a quiet cluster
//! costs a few bytes per worker per interval; a new worker instance (a restart) or a first
//! poll gets everything, and that full answer lets the manager place again what the worker
//! does not know.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::core::Core;
use crate::proto::pb::{self, worker_service_client::WorkerServiceClient};

/// How long one poll (both calls) may take before the worker counts as not answering.
const POLL_DEADLINE: Duration = Duration::from_secs(3);

/// Where the last answer left off: the worker instance and its revision.
#[derive(Debug, Default)]
struct Cursor {
    instance_id: String,
    revision: u64,
}

/// Polls the worker at `address` every `interval` until `shutdown`.
pub(crate) async fn run_worker_poll(
    core: Core,
    address: String,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut cursor = Cursor::default();
    loop {
        let asked_at = Instant::now();
        match poll(&core, &address, &cursor).await {
            Ok((stats, list)) => {
                let answered = asked_at.elapsed();
                let node = core.worker_answered(&address, stats);
                let tasks = list.tasks.len();
                core.observed(&node, list.tasks, list.complete, asked_at);
                // The benchmarks read the cost of one cycle (poll + apply) from this line.
                tracing::debug!(
                    %node,
                    tasks,
                    complete = list.complete,
                    poll_us = answered.as_micros() as u64,
                    cycle_us = asked_at.elapsed().as_micros() as u64,
                    "worker polled"
                );
                cursor = Cursor {
                    instance_id: list.instance_id,
                    revision: list.revision,
                };
            }
            Err(error) => {
                core.worker_failed(&address, &error);
                // Ask for everything once it answers again: it may have restarted.
                cursor = Cursor::default();
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

async fn poll(
    core: &Core,
    address: &str,
    cursor: &Cursor,
) -> Result<(pb::GetStatsResponse, pb::WorkerServiceListTasksResponse), String> {
    let channel = core.channel(address).map_err(|e| e.to_string())?;
    let mut client = WorkerServiceClient::new(channel);
    let mut stats_client = client.clone();
    let mut stats_request = tonic::Request::new(pb::GetStatsRequest {});
    stats_request.set_timeout(POLL_DEADLINE);
    let mut list_request = tonic::Request::new(pb::WorkerServiceListTasksRequest {
        since_revision: cursor.revision,
        instance_id: cursor.instance_id.clone(),
    });
    list_request.set_timeout(POLL_DEADLINE);
    let both = async {
        tokio::join!(
            stats_client.get_stats(stats_request),
            client.list_tasks(list_request)
        )
    };
    match tokio::time::timeout(POLL_DEADLINE, both).await {
        Err(_) => Err(format!("no answer within {POLL_DEADLINE:?}")),
        Ok((Ok(stats), Ok(list))) => Ok((stats.into_inner(), list.into_inner())),
        Ok((Err(status), _)) | Ok((_, Err(status))) => {
            Err(format!("{}: {}", status.code(), status.message()))
        }
    }
}
