//! Membership: a worker started with `--manager` registers itself (`RegisterWorker`) and then
//! heartbeats at the period the manager answers, stopping the tasks the manager says now
//! belong elsewhere and registering again when the manager asks.
//!
//! The heartbeat has a path of its own: a dedicated thread with its own single-threaded tokio
//! runtime and its own connection, so it never waits behind the worker's busy runtime (store
//! commits, runtime calls and container starts all run there). It sends on a fixed tick
//! without waiting for the previous answer, and reads the task count without waiting for the
//! core's lock. Whatever a heartbeat's answer asks (stopping stale copies) is handed back to
//! the worker's runtime.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{sync::mpsc, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{core::Core, runtime::Runtime, service::current_stats, stats::Stats};
use crate::{
    pb::{self, manager_service_client::ManagerServiceClient},
    TaskId,
};

/// The heartbeat period until the manager names one: DESIGN's 1 s default.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// How long one register or heartbeat call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Heartbeats sent and not yet answered, at most: a manager slow to answer still receives
/// one heartbeat a period (it records the contact before its slower work), while a manager
/// that does not answer at all is not sent an unbounded pile.
const MAX_IN_FLIGHT: usize = 4;

/// The first retry of a failed registration, doubled after each failure up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(500);

/// The longest wait between registration attempts: a restarted manager learns of the worker
/// within this.
const MAX_RETRY: Duration = Duration::from_secs(10);

/// Where and as what the worker registers.
pub(crate) struct Membership {
    pub manager: String,
    /// mTLS with the node certificate; None on a plaintext cluster.
    pub tls: Option<crate::tls::ClientTls>,
    pub advertise: String,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The wait before registration attempt `failures + 1`.
pub(crate) fn retry_delay(failures: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(MAX_RETRY)
}

fn interval_of(value: Option<prost_types::Duration>) -> Duration {
    value
        .and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_INTERVAL)
}

/// Registers, then heartbeats, until `cancel`: on a thread of its own (see the module's
/// doc), which this future waits for.
pub(crate) async fn run<R: Runtime>(
    core: Core<R>,
    stats: Stats,
    membership: Membership,
    cancel: CancellationToken,
) {
    let worker_runtime = tokio::runtime::Handle::current();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let spawned = std::thread::Builder::new()
        .name("cube-heartbeat".into())
        .spawn(move || {
            let _done = done_tx;
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(own) => own.block_on(beat(core, stats, membership, worker_runtime, cancel)),
                Err(e) => {
                    tracing::error!(error = %e, "no runtime for the heartbeat; not registering")
                }
            }
        });
    match spawned {
        // The sender is dropped when the thread ends, whatever way it ends.
        Ok(_) => {
            let _ = done_rx.await;
        }
        Err(e) => tracing::error!(error = %e, "no thread for the heartbeat; not registering"),
    }
}

/// The registration and heartbeat loop, on the heartbeat's own runtime; work for the worker
/// goes to `worker_runtime`.
async fn beat<R: Runtime>(
    core: Core<R>,
    stats: Stats,
    membership: Membership,
    worker_runtime: tokio::runtime::Handle,
    cancel: CancellationToken,
) {
    let channel = match &membership.tls {
        Some(tls) => tls.channel(&membership.manager, CALL_TIMEOUT),
        None => crate::grpc::channel(&membership.manager, CALL_TIMEOUT),
    };
    let channel = match channel {
        Ok(channel) => channel,
        Err(e) => {
            tracing::error!(error = %e, "cannot reach the manager; not registering");
            return;
        }
    };
    let mut client = ManagerServiceClient::new(channel);
    let mut failures = 0u32;
    loop {
        let request = pb::RegisterWorkerRequest {
            name: core.name().to_string(),
            address: membership.advertise.clone(),
            labels: membership.labels.clone().into_iter().collect(),
            instance_id: core.instance_id().to_string(),
            stats: Some(current_stats(&core, &stats)),
        };
        let interval = match client.register_worker(request).await {
            Ok(response) => {
                core.contact().touch();
                failures = 0;
                tracing::info!(manager = %membership.manager, address = %membership.advertise, "registered with the manager");
                interval_of(response.into_inner().heartbeat_interval)
            }
            Err(status) => {
                let delay = retry_delay(failures);
                if failures == 0 {
                    tracing::warn!(manager = %membership.manager, error = %status.message(), code = ?status.code(), "registering failed; retrying");
                }
                failures += 1;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        let session = Session {
            core: &core,
            stats: &stats,
            client: &client,
            worker_runtime: &worker_runtime,
        };
        if session.heartbeats(interval, &cancel).await == Next::Stop {
            return;
        }
    }
}

/// What follows a run of heartbeats.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Register,
    Stop,
}

/// One registration's heartbeats.
struct Session<'a, R> {
    core: &'a Core<R>,
    stats: &'a Stats,
    client: &'a ManagerServiceClient<tonic::transport::Channel>,
    worker_runtime: &'a tokio::runtime::Handle,
}

impl<R: Runtime> Session<'_, R> {
    /// Heartbeats every `interval` (as the manager changes it) until the manager asks for a
    /// new registration or `cancel`.
    async fn heartbeats(&self, mut interval: Duration, cancel: &CancellationToken) -> Next {
        let mut ticks = ticker(interval);
        let (answers_tx, mut answers) = mpsc::unbounded_channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut count = 0;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Next::Stop,
                _ = ticks.tick() => {
                    if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
                        continue;
                    }
                    in_flight.fetch_add(1, Ordering::Relaxed);
                    let request = pb::HeartbeatRequest {
                        name: self.core.name().to_string(),
                        instance_id: self.core.instance_id().to_string(),
                        stats: Some(heartbeat_stats(self.core, self.stats, &mut count)),
                    };
                    let mut client = self.client.clone();
                    let answers_tx = answers_tx.clone();
                    let in_flight = in_flight.clone();
                    tokio::spawn(async move {
                        let answer = client.heartbeat(request).await;
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                        let _ = answers_tx.send(answer);
                    });
                }
                Some(answer) = answers.recv() => match answer {
                    Ok(response) => {
                        self.core.contact().touch();
                        let response = response.into_inner();
                        let asked = interval_of(response.heartbeat_interval);
                        if asked != interval {
                            interval = asked;
                            ticks = ticker(interval);
                        }
                        self.stop_stale(&response.stale_task_ids);
                        if response.register_again {
                            return Next::Register;
                        }
                    }
                    Err(status) => {
                        // The worker keeps its tasks running while cut off: the manager decides.
                        tracing::debug!(error = %status.message(), "heartbeat failed");
                        if status.code() == tonic::Code::NotFound {
                            return Next::Register;
                        }
                    }
                },
            }
        }
    }

    /// Stops, on the worker's runtime, the copies the manager placed elsewhere.
    fn stop_stale(&self, stale: &[String]) {
        for stale in stale {
            let Ok(id) = TaskId::parse("stale_task_ids", stale) else {
                continue;
            };
            if self.core.get(id).is_none() {
                continue;
            }
            let core = self.core.clone();
            self.worker_runtime.spawn(async move {
                if let Err(e) = core.stop(id, "placed elsewhere by the manager").await {
                    tracing::warn!(task_id = %id, error = %e, "stopping a stale copy failed");
                }
            });
        }
    }
}

/// A tick every `interval`, the first one period from now; a late tick does not bunch up the
/// next ones.
fn ticker(interval: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks
}

/// The stats a heartbeat carries, read without waiting: when the core's lock is held at that
/// moment, the task count is the last one read (`count`).
fn heartbeat_stats<R: Runtime>(core: &Core<R>, stats: &Stats, count: &mut u32) -> pb::NodeStats {
    if let Some(now) = core.unfinished_count_now() {
        *count = now as u32;
    }
    let mut sample = stats.latest();
    sample.task_count = *count;
    sample.store_message = core.store_message();
    sample
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_backs_off_to_a_cap() {
        assert_eq!(retry_delay(0), Duration::from_millis(500));
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(3), Duration::from_secs(4));
        assert_eq!(retry_delay(5), MAX_RETRY);
        assert_eq!(retry_delay(1000), MAX_RETRY);
    }

    #[test]
    fn the_manager_sets_the_period() {
        assert_eq!(interval_of(None), DEFAULT_INTERVAL);
        assert_eq!(
            interval_of(Some(prost_types::Duration {
                seconds: 3,
                nanos: 0
            })),
            Duration::from_secs(3)
        );
        assert_eq!(
            interval_of(Some(prost_types::Duration::default())),
            DEFAULT_INTERVAL
        );
    }
}
