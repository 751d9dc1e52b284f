//! The worker's part of the metrics: tasks by state, read from the core when the endpoint is
//! scraped, and failed health checks by probe kind. Runtime call latency is recorded by
//! `runtime::timed::Timed`, which wraps the runtime.

use std::collections::BTreeMap;

use super::{core::Core, runtime::Runtime};
use crate::{
    metrics::{metrics, on_scrape, set_counts, ScrapeHook, TASK_STATES},
    pb::{self, health_check::Probe},
    task::state_name,
};

/// Refreshes `cube_worker_tasks` from `core` at every scrape, while the hook lives.
pub(crate) fn register<R: Runtime>(core: &Core<R>) -> ScrapeHook {
    let core = core.clone();
    on_scrape(move || {
        let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
        for task in core.all() {
            *counts.entry(state_name(task.state())).or_default() += 1;
        }
        set_counts(
            &metrics().worker_tasks,
            TASK_STATES.iter().map(|s| state_name(*s)),
            &counts,
        );
    })
}

/// Counts one failed health probe of `check`.
pub(crate) fn health_check_failed(check: &pb::HealthCheck) {
    let probe = match &check.probe {
        Some(Probe::Http(_)) => "http",
        Some(Probe::Tcp(_)) => "tcp",
        Some(Probe::Exec(_)) => "exec",
        None => "none",
    };
    metrics()
        .worker_health_check_failures
        .with_label_values(&[probe])
        .inc();
}
