//! The loops that act on time: restarts whose timers are due, nodes that went silent,
//! drains in progress, and services kept at their replicas. Each only waits and calls the core; the decisions are in `policy` and
//! the core.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::core::Core;
use super::pool::WorkerPool;

/// How often the drainer looks at draining nodes when nothing woke it.
const DRAIN_TICK: Duration = Duration::from_millis(250);
/// How often the service reconciler looks when nothing woke it: a backstop only, since every
/// change of a service or of one of its tasks wakes it.
const SERVICES_TICK: Duration = Duration::from_secs(1);

/// Starts due restarts until `shutdown`: sleeps until the first timer, or until a new timer
/// wakes it.
pub(crate) async fn run_restarter(
    core: Core,
    pool: WorkerPool,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let (jobs, durable, next) = core.restarts_due(Instant::now());
        if !jobs.is_empty() {
            if let Err(e) = durable.wait().await {
                tracing::error!(error = %e, "restarts could not be stored; retrying");
            }
            for job in jobs {
                let (core, pool) = (core.clone(), pool.clone());
                tracker.spawn(async move {
                    super::dispatcher::send(&core, &pool, std::slice::from_ref(&job)).await
                });
            }
        }
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = core.restart_notify().notified() => {}
            _ = sleep => {}
        }
    }
}

/// Marks nodes silent for `grace` DOWN and places their tasks again, until `shutdown`. Checks
/// nodes (not tasks) ten times per grace period, so detection lags at most a tenth of it.
pub(crate) async fn run_liveness(core: Core, grace: Duration, shutdown: CancellationToken) {
    let tick = (grace / 10).max(Duration::from_millis(50));
    loop {
        core.check_liveness(grace);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

/// Moves tasks off draining nodes one at a time, until `shutdown`.
pub(crate) async fn run_drainer(core: Core, shutdown: CancellationToken) {
    loop {
        core.drain_step();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = core.drain_notify().notified() => {}
            _ = tokio::time::sleep(DRAIN_TICK) => {}
        }
    }
}

/// Keeps every service at its replicas and version, until `shutdown`: a level-triggered pass
/// (see `replicas::plan`) whenever a service or one of its tasks changes.
pub(crate) async fn run_services(core: Core, shutdown: CancellationToken) {
    loop {
        core.reconcile_services();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = core.services_notify().notified() => {}
            _ = tokio::time::sleep(SERVICES_TICK) => {}
        }
    }
}

/// Removes what retention no longer keeps until `shutdown`, every fifth of the shorter
/// retention period (at least every second, at most every minute).
pub(crate) async fn run_collector(
    core: Core,
    retention: super::core::Retention,
    shutdown: CancellationToken,
) {
    let shorter = retention.retain_finished.min(retention.forget_nodes_after);
    let every = (shorter / 5).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        // A read-only store keeps everything until it writes again.
        if core.writable().is_err() {
            continue;
        }
        match core.collect(&retention).await {
            Ok(collected) if collected.tasks > 0 || collected.nodes > 0 => tracing::info!(
                tasks = collected.tasks,
                nodes = collected.nodes,
                "finished tasks and lost nodes cleaned up"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cleaning up failed; trying again later"),
        }
    }
}
