//! The stats sampler: samples the machine (sysinfo) and the runtime in the background, so
//! `GetStats` answers at once from the latest sample.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use sysinfo::{Disks, System};
use tokio_util::sync::CancellationToken;

use super::runtime::Runtime;
use crate::pb;

/// How often the machine is sampled. sysinfo's cpu usage needs at least 200 ms between two
/// refreshes; a second keeps the sample fresh for schedulers at almost no cost.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// How often the runtime is pinged: often enough that a dead Docker engine is reported within a
/// few heartbeats, rarely enough to cost nothing.
const PING_EVERY: Duration = Duration::from_secs(3);

/// What `--cpu`, `--memory` and `--disk` declare, replacing the machine's totals as capacity.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Declared {
    pub cpu_millis: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub disk_bytes: Option<i64>,
}

/// The latest sample, shared with the handlers.
#[derive(Clone)]
pub(crate) struct Stats {
    latest: Arc<Mutex<pb::NodeStats>>,
}

impl Stats {
    /// The latest sample (its task count is filled in by the caller).
    pub fn latest(&self) -> pb::NodeStats {
        self.latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

struct Sampler {
    system: Option<System>,
    disks: Option<Disks>,
    data_dir: PathBuf,
    declared: Declared,
}

impl Sampler {
    fn sample(&mut self, previous: &pb::NodeStats) -> pb::NodeStats {
        let (cpu_count, cpu_usage, memory_total, memory_available) = match &mut self.system {
            Some(system) => {
                system.refresh_cpu_usage();
                system.refresh_memory();
                (
                    system.cpus().len() as u32,
                    f64::from(system.global_cpu_usage()) / 100.0,
                    system.total_memory() as i64,
                    system.available_memory() as i64,
                )
            }
            None => (0, 0.0, 0, 0),
        };
        let (disk_total, disk_free) = match &mut self.disks {
            Some(disks) => {
                disks.refresh(true);
                disk_of(disks, &self.data_dir)
            }
            None => (0, 0),
        };
        let load = System::load_average().unwrap_or(sysinfo::LoadAvg {
            one: 0.0,
            five: 0.0,
            fifteen: 0.0,
        });
        pb::NodeStats {
            cpu_count,
            cpu_usage: cpu_usage.clamp(0.0, 1.0),
            memory_total_bytes: memory_total,
            memory_available_bytes: memory_available,
            disk_total_bytes: disk_total,
            disk_free_bytes: disk_free,
            load_average_1m: load.one,
            load_average_5m: load.five,
            load_average_15m: load.fifteen,
            task_count: 0,
            sampled_at: Some(crate::proto::now()),
            capacity: Some(pb::Resources {
                cpu_millis: self
                    .declared
                    .cpu_millis
                    .unwrap_or(i64::from(cpu_count) * 1000),
                memory_bytes: self.declared.memory_bytes.unwrap_or(memory_total),
                disk_bytes: self.declared.disk_bytes.unwrap_or(disk_total),
            }),
            runtime_ready: previous.runtime_ready,
            runtime_message: previous.runtime_message.clone(),
            runtime: previous.runtime.clone(),
            // Filled in when the stats are answered, from the store's health then.
            store_message: String::new(),
        }
    }
}

/// Total and free bytes of the disk holding `dir`: the mount point that is its longest prefix.
fn disk_of(disks: &Disks, dir: &Path) -> (i64, i64) {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    disks
        .iter()
        .filter(|d| dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map_or((0, 0), |d| {
            (d.total_space() as i64, d.available_space() as i64)
        })
}

/// Takes a first sample now (so the first `GetStats` has real numbers) and returns the
/// handle with the sampler's future, which runs until `cancel`.
pub(crate) async fn start<R: Runtime + Clone>(
    data_dir: PathBuf,
    declared: Declared,
    (runtime, kind): (R, &str),
    cancel: CancellationToken,
) -> (Stats, impl std::future::Future<Output = ()> + Send) {
    let mut sampler = Sampler {
        system: System::new()
            .inspect_err(|e| tracing::warn!(error = %e, "no cpu and memory stats"))
            .ok(),
        disks: Disks::new_with_refreshed_list()
            .inspect_err(|e| tracing::warn!(error = %e, "no disk stats"))
            .ok(),
        data_dir,
        declared,
    };
    let mut first = sampler.sample(&pb::NodeStats {
        runtime: kind.to_string(),
        ..Default::default()
    });
    match runtime.ping().await {
        Ok(()) => first.runtime_ready = true,
        Err(e) => first.runtime_message = e.to_string(),
    }
    let stats = Stats {
        latest: Arc::new(Mutex::new(first)),
    };
    let latest = stats.latest.clone();
    let sampler_loop = async move {
        let mut sample = tokio::time::interval(SAMPLE_EVERY);
        let mut ping = tokio::time::interval(PING_EVERY);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = sample.tick() => {
                    let previous = latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                    let next = sampler.sample(&previous);
                    let mut guard = latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    // Keep what the ping loop wrote since.
                    let (ready, message) = (guard.runtime_ready, guard.runtime_message.clone());
                    *guard = pb::NodeStats { runtime_ready: ready, runtime_message: message, ..next };
                }
                _ = ping.tick() => {
                    let result = runtime.ping().await;
                    let mut guard = latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    match result {
                        Ok(()) => {
                            guard.runtime_ready = true;
                            guard.runtime_message.clear();
                        }
                        Err(e) => {
                            if guard.runtime_ready {
                                tracing::warn!(error = %e, "the runtime stopped answering");
                            }
                            guard.runtime_ready = false;
                            guard.runtime_message = e.to_string();
                        }
                    }
                }
            }
        }
    };
    (stats, sampler_loop)
}
