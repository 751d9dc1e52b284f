//! Health checks, run by the worker next to each container that asks for one.
//!
//! A probe (HTTP GET, TCP connect, or a command inside the container) runs every interval;
//! failures during the start period do not count; `retries` failures in a row make the task
//! unhealthy: the worker records it FAILED with "health check failed: <what>" and stops its
//! container, and the manager restarts it under its policy. The result of each probe goes into
//! `Task.healthy`.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{
    core::{Core, Durability},
    runtime::Runtime,
    transition::finish,
};
use crate::{
    pb::{self, health_check::Probe, TaskState},
    task::{duration, DEFAULT_STOP_GRACE},
    TaskId,
};

/// Defaults as in Docker's HEALTHCHECK, except the interval: 10 s instead of 30 s, so a
/// broken task is replaced within half a minute.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: u32 = 3;

/// A check's timing, with defaults filled in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

impl Policy {
    /// The timing of `check` (validated specs only; bad durations fall back to defaults).
    pub fn of(check: &pb::HealthCheck) -> Self {
        let get = |field: &str, value: &Option<prost_types::Duration>, default: Duration| {
            value
                .as_ref()
                .and_then(|v| duration(field, v).ok())
                .filter(|d| !d.is_zero())
                .unwrap_or(default)
        };
        Self {
            interval: get("interval", &check.interval, DEFAULT_INTERVAL),
            timeout: get("timeout", &check.timeout, DEFAULT_TIMEOUT),
            retries: if check.retries == 0 {
                DEFAULT_RETRIES
            } else {
                check.retries
            },
            start_period: get("start_period", &check.start_period, Duration::ZERO),
        }
    }
}

/// What one probe result means for the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The probe passed.
    Healthy,
    /// It failed inside the start period: not counted.
    Starting,
    /// It failed; this many in a row, fewer than the retries.
    Failing(u32),
    /// It failed `retries` times in a row.
    Unhealthy,
}

/// Counts consecutive failures against a policy.
#[derive(Debug)]
pub(crate) struct Counter {
    policy: Policy,
    started: Instant,
    failures: u32,
    /// A first success ends the start period early (as in Docker).
    passed_once: bool,
}

impl Counter {
    /// A counter for a run that started at `started`.
    pub fn new(policy: Policy, started: Instant) -> Self {
        Self {
            policy,
            started,
            failures: 0,
            passed_once: false,
        }
    }

    /// Records one probe result taken at `now`.
    pub fn record(&mut self, ok: bool, now: Instant) -> Verdict {
        if ok {
            self.failures = 0;
            self.passed_once = true;
            return Verdict::Healthy;
        }
        if !self.passed_once && now.duration_since(self.started) < self.policy.start_period {
            return Verdict::Starting;
        }
        self.failures += 1;
        if self.failures >= self.policy.retries {
            Verdict::Unhealthy
        } else {
            Verdict::Failing(self.failures)
        }
    }
}

/// Probes one run of a task until it ends, its container changes, or `cancel`.
#[tracing::instrument(name = "health", skip_all, fields(task_id = %id, node = %core.name()))]
pub(crate) async fn run<R: Runtime>(
    core: Core<R>,
    id: TaskId,
    container_id: String,
    check: pb::HealthCheck,
    cancel: CancellationToken,
) {
    let policy = Policy::of(&check);
    let mut counter = Counter::new(policy, Instant::now());
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(policy.interval) => {}
        }
        let Some(task) = core.get(id) else { return };
        if task.state() != TaskState::Running || task.container_id != container_id {
            return;
        }
        let result = match tokio::time::timeout(
            policy.timeout,
            probe(core.runtime(), &container_id, &check),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(format!(
                "{} timed out after {:?}",
                describe(&check),
                policy.timeout
            )),
        };
        // A probe's error names its path or command, which a spec may make long: what is
        // logged on every probe and kept in the task is a bounded summary.
        let result = result.map_err(|e| crate::limits::summary(&e, crate::limits::MAX_SUMMARY));
        if result.is_err() {
            super::metrics::health_check_failed(&check);
        }
        let verdict = counter.record(result.is_ok(), Instant::now());
        let healthy = match verdict {
            Verdict::Healthy => Some(true),
            Verdict::Starting => None,
            Verdict::Failing(n) => {
                tracing::info!(task_id = %id, failures = n, error = ?result.as_ref().err(), "health check failed");
                Some(false)
            }
            Verdict::Unhealthy => {
                let what = result.err().unwrap_or_default();
                unhealthy(&core, id, &container_id, &task, what).await;
                return;
            }
        };
        if let Some(healthy) = healthy {
            let cid = container_id.clone();
            let _ = core
                .update(id, Durability::Later, |task| {
                    if task.container_id != cid || task.healthy == Some(healthy) {
                        return Ok(false);
                    }
                    task.healthy = Some(healthy);
                    Ok(true)
                })
                .await;
        }
    }
}

async fn unhealthy<R: Runtime>(
    core: &Core<R>,
    id: TaskId,
    container_id: &str,
    task: &pb::Task,
    what: String,
) {
    let message = format!("health check failed: {what}");
    tracing::warn!(task_id = %id, message = %message, "task unhealthy; stopping it");
    let cid = container_id.to_string();
    let recorded = core
        .update(id, Durability::Later, |task| {
            if task.container_id != cid {
                return Ok(false);
            }
            let changed = finish(task, TaskState::Failed, None, None, message)?;
            task.healthy = Some(false);
            Ok(changed)
        })
        .await;
    if recorded.is_ok_and(|t| t.container_id == container_id) {
        let grace = task
            .spec
            .as_ref()
            .and_then(|s| s.stop_grace_period.as_ref())
            .and_then(|g| duration("spec.stop_grace_period", g).ok())
            .unwrap_or(DEFAULT_STOP_GRACE);
        if let Err(e) = core.runtime().stop(container_id, grace).await {
            tracing::warn!(task_id = %id, error = %e, "stopping the unhealthy task failed");
        }
    }
}

fn describe(check: &pb::HealthCheck) -> String {
    match &check.probe {
        Some(Probe::Http(http)) => format!("http GET :{}{}", http.port, http.path),
        Some(Probe::Tcp(tcp)) => format!("tcp connect to port {}", tcp.port),
        Some(Probe::Exec(exec)) => format!("command {:?}", exec.command),
        None => "no probe".into(),
    }
}

/// Runs one probe; the error says what failed.
async fn probe<R: Runtime>(
    runtime: &R,
    container_id: &str,
    check: &pb::HealthCheck,
) -> Result<(), String> {
    let what = describe(check);
    match &check.probe {
        Some(Probe::Http(http)) => {
            let address = runtime
                .address(container_id, http.port)
                .await
                .map_err(|e| e.to_string())?;
            let mut stream = tokio::net::TcpStream::connect(address)
                .await
                .map_err(|e| format!("{what}: {e}"))?;
            let request = format!(
                "GET {} HTTP/1.0\r\nHost: {address}\r\nUser-Agent: cube-worker\r\nConnection: close\r\n\r\n",
                http.path
            );
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| format!("{what}: {e}"))?;
            let mut head = [0u8; 64];
            let mut read = 0;
            while read < head.len() && !head[..read].contains(&b'\n') {
                let n = stream
                    .read(&mut head[read..])
                    .await
                    .map_err(|e| format!("{what}: {e}"))?;
                if n == 0 {
                    break;
                }
                read += n;
            }
            let line = String::from_utf8_lossy(&head[..read]);
            let status: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("{what}: not an HTTP answer"))?;
            if (200..400).contains(&status) {
                Ok(())
            } else {
                Err(format!("{what} returned {status}"))
            }
        }
        Some(Probe::Tcp(tcp)) => {
            let address = runtime
                .address(container_id, tcp.port)
                .await
                .map_err(|e| e.to_string())?;
            tokio::net::TcpStream::connect(address)
                .await
                .map(|_| ())
                .map_err(|e| format!("{what}: {e}"))
        }
        Some(Probe::Exec(exec)) => match runtime
            .exec(container_id, &exec.command)
            .await
            .map_err(|e| e.to_string())?
        {
            0 => Ok(()),
            code => Err(format!("{what} exited with {code}")),
        },
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(retries: u32, start_period: u64) -> Policy {
        Policy {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            retries,
            start_period: Duration::from_secs(start_period),
        }
    }

    /// Failures in the start period do not count; after it, `retries` in a row are unhealthy,
    /// and a success in between resets the count.
    #[tokio::test(start_paused = true)]
    async fn counts_consecutive_failures_after_the_start_period() {
        let mut counter = Counter::new(policy(3, 5), Instant::now());
        assert_eq!(counter.record(false, Instant::now()), Verdict::Starting);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(counter.record(false, Instant::now()), Verdict::Starting);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(counter.record(false, Instant::now()), Verdict::Failing(1));
        assert_eq!(counter.record(false, Instant::now()), Verdict::Failing(2));
        assert_eq!(counter.record(true, Instant::now()), Verdict::Healthy);
        assert_eq!(counter.record(false, Instant::now()), Verdict::Failing(1));
        assert_eq!(counter.record(false, Instant::now()), Verdict::Failing(2));
        assert_eq!(counter.record(false, Instant::now()), Verdict::Unhealthy);
    }

    /// A first success ends the start period early.
    #[tokio::test(start_paused = true)]
    async fn a_success_ends_the_start_period() {
        let mut counter = Counter::new(policy(1, 60), Instant::now());
        assert_eq!(counter.record(true, Instant::now()), Verdict::Healthy);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(counter.record(false, Instant::now()), Verdict::Unhealthy);
    }

    #[test]
    fn defaults_fill_an_empty_check() {
        let p = Policy::of(&pb::HealthCheck::default());
        assert_eq!(p.interval, DEFAULT_INTERVAL);
        assert_eq!(p.timeout, DEFAULT_TIMEOUT);
        assert_eq!(p.retries, DEFAULT_RETRIES);
        assert_eq!(p.start_period, Duration::ZERO);
    }
}
