//! How a server shows its store's health: while the store refuses writes, the health service
//! says NOT_SERVING for the server's service (reads keep answering) and
//! `cube_store_read_only{store}` is 1.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic_health::{server::HealthReporter, ServingStatus};

use super::Health;

/// Follows `store` until `stop`, reporting it for `service` under the gauge label `label`;
/// calls `recovered` each time the store writes again after refusing writes.
pub async fn follow(
    mut store: watch::Receiver<Health>,
    health: HealthReporter,
    service: &'static str,
    label: &'static str,
    stop: CancellationToken,
    mut recovered: impl FnMut(),
) {
    let gauge = crate::metrics::metrics()
        .store_read_only
        .with_label_values(&[label]);
    let mut was_read_only = false;
    loop {
        let read_only = store.borrow_and_update().check().is_err();
        gauge.set(i64::from(read_only));
        let status = if read_only {
            ServingStatus::NotServing
        } else {
            ServingStatus::Serving
        };
        health.set_service_status(service, status).await;
        if was_read_only && !read_only {
            recovered();
        }
        was_read_only = read_only;
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = store.changed() => if changed.is_err() { return },
        }
    }
}
