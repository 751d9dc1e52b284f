//! Membership: a worker started with `--manager` registers itself (`RegisterWorker`) and then
//! heartbeats at the period the manager answers, stopping the tasks the manager says now
//! belong elsewhere and registering again when the manager asks.

use std::time::Duration;

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

/// Registers, then heartbeats, until `cancel`.
pub(crate) async fn run<R: Runtime>(
    core: Core<R>,
    stats: Stats,
    membership: Membership,
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
        let mut interval = match client.register_worker(request).await {
            Ok(response) => {
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
        // Heartbeats until the manager asks for a new registration.
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            let request = pb::HeartbeatRequest {
                name: core.name().to_string(),
                instance_id: core.instance_id().to_string(),
                stats: Some(current_stats(&core, &stats)),
            };
            match client.heartbeat(request).await {
                Ok(response) => {
                    let response = response.into_inner();
                    interval = interval_of(response.heartbeat_interval);
                    for stale in &response.stale_task_ids {
                        let Ok(id) = TaskId::parse("stale_task_ids", stale) else {
                            continue;
                        };
                        if core.get(id).is_some() {
                            if let Err(e) = core.stop(id, "placed elsewhere by the manager").await {
                                tracing::warn!(task_id = %id, error = %e, "stopping a stale copy failed");
                            }
                        }
                    }
                    if response.register_again {
                        break;
                    }
                }
                Err(status) => {
                    // The worker keeps its tasks running while cut off: the manager decides.
                    tracing::debug!(error = %status.message(), "heartbeat failed");
                    if status.code() == tonic::Code::NotFound {
                        break;
                    }
                }
            }
        }
    }
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
