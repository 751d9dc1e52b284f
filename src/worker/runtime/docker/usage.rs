//! A container's cpu time and memory from one Docker stats reading (`one-shot`: no wait for a
//! second sample; the caller takes two readings apart to make a rate).

use bollard::{query_parameters::StatsOptions, Docker};
use futures::StreamExt;

use super::{is_not_found, RuntimeError, RuntimeResult};
use crate::worker::runtime::Usage;

/// What `container_id` uses now; `None` when Docker does not know it.
pub(super) async fn of(docker: &Docker, container_id: &str) -> RuntimeResult<Option<Usage>> {
    let options = StatsOptions {
        stream: false,
        one_shot: true,
    };
    let mut stats = docker.stats(container_id, Some(options));
    let reading = match stats.next().await {
        None => return Ok(None),
        Some(Err(e)) if is_not_found(&e) => return Ok(None),
        Some(Err(e)) => return Err(RuntimeError::docker("reading container stats", e)),
        Some(Ok(reading)) => reading,
    };
    let cpu_nanos = reading
        .cpu_stats
        .and_then(|c| c.cpu_usage)
        .and_then(|u| u.total_usage);
    let memory_bytes = reading.memory_stats.and_then(|m| m.usage);
    // A stopped container answers with empty stats.
    Ok(cpu_nanos.map(|cpu_nanos| Usage {
        cpu_nanos,
        memory_bytes: memory_bytes.unwrap_or(0),
    }))
}
