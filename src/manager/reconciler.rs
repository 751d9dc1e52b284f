//! UpdateTasks: one loop per worker that polls its ListTasks and GetStats and copies what it
//! observes into the manager.
//!
//! The poll asks only for what changed since the worker's last revision, so a quiet cluster
//! costs a few bytes per worker per interval; a new worker instance (a restart) or a first
//! poll gets everything, and that full answer lets the manager place again what the worker
//! does not know.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{core::Core, pool::WorkerPool};
use crate::proto::pb;

/// How long one poll (both calls) may take, beyond the long poll's wait, before the worker
/// counts as not answering.
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
    pool: WorkerPool,
    address: String,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut cursor = Cursor::default();
    loop {
        let Some(resync) = core.next_poll(&address) else {
            tracing::info!(
                address,
                "worker moved to another address; its old poll ends"
            );
            return;
        };
        if resync {
            cursor = Cursor::default();
        }
        let asked_at = Instant::now();
        let outcome;
        match poll(&pool, &address, &cursor, interval).await {
            Ok((stats, list)) => {
                outcome = if list.tasks.is_empty() {
                    Outcome::Quiet
                } else {
                    Outcome::Changed
                };
                let answered = Instant::now();
                let node = core.worker_answered(&address, stats);
                let tasks = list.tasks.len();
                core.observed(&node, list.tasks, list.complete, asked_at);
                // The benchmarks read a cycle's parts from this line: `poll_us` is the round
                // trip, including the worker's wait when nothing changed (the long poll);
                // `apply_us` is the manager's own work on the answer.
                tracing::debug!(
                    %node,
                    tasks,
                    complete = list.complete,
                    poll_us = (answered - asked_at).as_micros() as u64,
                    apply_us = answered.elapsed().as_micros() as u64,
                    "worker polled"
                );
                cursor = Cursor {
                    instance_id: list.instance_id,
                    revision: list.revision,
                };
            }
            Err(error) => {
                outcome = Outcome::Failed;
                core.worker_failed(&address, &error);
                // Ask for everything once it answers again: it may have restarted.
                cursor = Cursor::default();
            }
        }
        // The poll is a long poll (it waits up to `interval` for a change), so a poll that
        // brought changes is followed at once by the next; a quiet answer that came early
        // (a worker that does not wait) or a failure waits out the rest of the interval.
        let pause = match &outcome {
            Outcome::Changed => Duration::ZERO,
            Outcome::Quiet | Outcome::Failed => interval.saturating_sub(asked_at.elapsed()),
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// What one poll brought.
enum Outcome {
    Changed,
    Quiet,
    Failed,
}

/// One poll: GetStats, and ListTasks waiting up to `wait` for a change.
async fn poll(
    pool: &WorkerPool,
    address: &str,
    cursor: &Cursor,
    wait: Duration,
) -> Result<(pb::GetStatsResponse, pb::WorkerServiceListTasksResponse), String> {
    let deadline = POLL_DEADLINE + wait;
    let mut client = pool.client(address).map_err(|e| e.to_string())?;
    let mut stats_client = client.clone();
    let mut stats_request = tonic::Request::new(pb::GetStatsRequest {});
    stats_request.set_timeout(POLL_DEADLINE);
    let mut list_request = tonic::Request::new(pb::WorkerServiceListTasksRequest {
        since_revision: cursor.revision,
        instance_id: cursor.instance_id.clone(),
        wait: prost_types::Duration::try_from(wait).ok(),
        page_token: String::new(),
    });
    list_request.set_timeout(deadline);
    let both = async {
        tokio::join!(
            stats_client.get_stats(stats_request),
            client.list_tasks(list_request)
        )
    };
    let (stats, mut list) = match tokio::time::timeout(deadline, both).await {
        Err(_) => return Err(format!("no answer within {deadline:?}")),
        Ok((Ok(stats), Ok(list))) => (stats.into_inner(), list.into_inner()),
        Ok((Err(status), _)) | Ok((_, Err(status))) => {
            return Err(super::dispatcher::answered(status.code(), status.message()))
        }
    };
    // A listing cut at the answer size limit: the rest, page by page, taken as one answer
    // (the first page's revision is where the next poll continues).
    while !list.next_page_token.is_empty() {
        let mut request = tonic::Request::new(pb::WorkerServiceListTasksRequest {
            since_revision: cursor.revision,
            instance_id: cursor.instance_id.clone(),
            wait: None,
            page_token: std::mem::take(&mut list.next_page_token),
        });
        request.set_timeout(POLL_DEADLINE);
        let page = client
            .list_tasks(request)
            .await
            .map_err(|status| format!("{}: {}", status.code(), status.message()))?
            .into_inner();
        if page.instance_id != list.instance_id {
            return Err("the worker restarted while its tasks were listed".into());
        }
        list.tasks.extend(page.tasks);
        list.next_page_token = page.next_page_token;
    }
    Ok((stats, list))
}
