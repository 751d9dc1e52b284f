//! What the worker's running tasks use now (WorkerService.TopTasks): two readings of each
//! container's cpu time and memory, [`SAMPLE`] apart, make its cpu rate.

use std::time::{Duration, Instant};

use futures::{stream, StreamExt};

use super::{
    core::Core,
    runtime::{Runtime, Usage},
};
use crate::{pb, task::is_finished};

/// Between the two readings: long enough that a busy task shows its cpu to a few percent
/// (Linux counts cpu time in 10 ms ticks), short enough that `top --watch` stays lively.
pub(crate) const SAMPLE: Duration = Duration::from_millis(500);

/// Containers read at once: Docker answers stats calls one by one per container.
const AT_ONCE: usize = 16;

/// The usage of every running task of `core`, by id.
pub(crate) async fn sample<R: Runtime>(core: &Core<R>) -> Vec<pb::TaskUsage> {
    let running: Vec<pb::Task> = core
        .all()
        .into_iter()
        .filter(|t| !is_finished(t.state()) && !t.container_id.is_empty())
        .collect();
    let runtime = core.runtime();
    let first = readings(runtime, &running).await;
    let started = Instant::now();
    tokio::time::sleep(SAMPLE).await;
    let second = readings(runtime, &running).await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut out: Vec<pb::TaskUsage> = running
        .iter()
        .zip(first.into_iter().zip(second))
        .filter_map(|(task, readings)| match readings {
            (Some(before), Some(after)) => Some(usage(task, before, after, elapsed, core.name())),
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| a.task_id.cmp(&b.task_id));
    out
}

/// One reading of each task's container, in the order of `tasks`; `None` where the runtime
/// does not know the container or failed to read it.
async fn readings<R: Runtime>(runtime: &R, tasks: &[pb::Task]) -> Vec<Option<Usage>> {
    let containers: Vec<String> = tasks.iter().map(|t| t.container_id.clone()).collect();
    stream::iter(containers)
        .map(|container| async move { runtime.usage(&container).await.ok().flatten() })
        .buffered(AT_ONCE)
        .collect()
        .await
}

/// A task's usage from two readings `elapsed` seconds apart.
fn usage(task: &pb::Task, before: Usage, after: Usage, elapsed: f64, node: &str) -> pb::TaskUsage {
    let spec = task.spec.clone().unwrap_or_default();
    let resources = spec.resources.unwrap_or_default();
    let cpu = after.cpu_nanos.saturating_sub(before.cpu_nanos) as f64 / 1e9;
    pb::TaskUsage {
        task_id: task.id.clone(),
        name: spec.name,
        node: node.to_string(),
        cpu_cores: if elapsed > 0.0 { cpu / elapsed } else { 0.0 },
        memory_bytes: i64::try_from(after.memory_bytes).unwrap_or(i64::MAX),
        cpu_millis_requested: resources.cpu_millis,
        memory_bytes_requested: resources.memory_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_readings_make_a_rate() {
        let task = pb::Task {
            id: "t".into(),
            ..Default::default()
        };
        let before = Usage {
            cpu_nanos: 1_000_000_000,
            memory_bytes: 10,
        };
        let after = Usage {
            cpu_nanos: 1_250_000_000,
            memory_bytes: 20,
        };
        let top = usage(&task, before, after, 0.5, "w1");
        assert!((top.cpu_cores - 0.5).abs() < 1e-9, "{top:?}");
        assert_eq!(top.memory_bytes, 20);
        assert_eq!(top.node, "w1");
    }
}
