//! TopNodes and TopTasks: what nodes and running tasks use now. Nodes come from the workers'
//! latest samples; tasks are asked of every READY worker at once.

use std::time::Duration;

use futures::future::join_all;

use crate::{manager::pool::WorkerPool, proto::pb};

/// How long a worker has to answer TopTasks: its two readings take half a second, and a
/// Docker engine under load answers stats in a second or two.
const WORKER_DEADLINE: Duration = Duration::from_secs(5);

/// What `node` uses now, beside what is allocated on it and what it offers.
pub(super) fn node_usage(node: pb::Node) -> pb::NodeUsage {
    let stats = node.stats.unwrap_or_default();
    pb::NodeUsage {
        name: node.name,
        state: node.state,
        cpu_cores_used: stats.cpu_usage * f64::from(stats.cpu_count),
        memory_used_bytes: (stats.memory_total_bytes - stats.memory_available_bytes).max(0),
        memory_total_bytes: stats.memory_total_bytes,
        allocated: node.allocated,
        capacity: node.capacity,
        load_average_1m: stats.load_average_1m,
        sampled_at: stats.sampled_at,
    }
}

/// Asks the READY nodes among `nodes` (only `only`, when set) for their tasks' usage at once;
/// the tasks by node then id, and the nodes that did not answer with why.
pub(super) async fn tasks(
    pool: &WorkerPool,
    nodes: Vec<pb::Node>,
    only: &str,
) -> pb::TopTasksResponse {
    let asked = nodes.into_iter().filter(|n| {
        n.state == pb::NodeState::Ready as i32
            && !n.address.is_empty()
            && (only.is_empty() || n.name == only)
    });
    let answers = join_all(asked.map(|node| async move {
        let answer = match pool.client(&node.address) {
            Ok(mut client) => {
                let mut request = tonic::Request::new(pb::WorkerServiceTopTasksRequest {});
                request.set_timeout(WORKER_DEADLINE);
                let call = client.top_tasks(request);
                match tokio::time::timeout(WORKER_DEADLINE, call).await {
                    Ok(Ok(response)) => Ok(response.into_inner().tasks),
                    Ok(Err(status)) => Err(status.message().to_string()),
                    Err(_) => Err("deadline exceeded".to_string()),
                }
            }
            Err(error) => Err(error.to_string()),
        };
        (node.name, answer)
    }))
    .await;
    let mut response = pb::TopTasksResponse::default();
    for (name, answer) in answers {
        match answer {
            Ok(tasks) => response.tasks.extend(tasks.into_iter().map(|mut t| {
                t.node = name.clone();
                t
            })),
            Err(why) => response.unanswered.push(format!("{name}: {why}")),
        }
    }
    response
        .tasks
        .sort_by(|a, b| (&a.node, &a.task_id).cmp(&(&b.node, &b.task_id)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_usage_is_in_cores_and_bytes() {
        let node = pb::Node {
            name: "w1".into(),
            stats: Some(pb::NodeStats {
                cpu_count: 4,
                cpu_usage: 0.25,
                memory_total_bytes: 1000,
                memory_available_bytes: 400,
                load_average_1m: 1.5,
                ..Default::default()
            }),
            ..Default::default()
        };
        let usage = node_usage(node);
        assert!((usage.cpu_cores_used - 1.0).abs() < 1e-9);
        assert_eq!(usage.memory_used_bytes, 600);
        assert_eq!(usage.memory_total_bytes, 1000);
        assert_eq!(usage.load_average_1m, 1.5);
    }
}
