//! `cubectl nodes`: every node with its state, allocated/capacity resources and last contact.

use std::time::SystemTime;

use clap::Args;

use crate::{
    client::Client,
    proto::pb,
    units::{format_bytes, format_cpu},
};

use super::{
    output::{self, age, node_state, Table},
    Outcome, OutputArg,
};

/// Arguments of `cubectl nodes`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  cubectl nodes\n  cubectl nodes -o json")]
pub struct NodesArgs {
    /// Output format.
    #[command(flatten)]
    pub output: OutputArg,
}

/// Runs `cubectl nodes`.
pub async fn run(client: &Client, args: NodesArgs) -> Outcome {
    let response = client.list_nodes().await?;
    output::print(args.output.format, &response, |r| {
        render(r, SystemTime::now())
    })
}

/// The nodes table: NAME, ADDRESS, STATE, RUNTIME, CPU, MEMORY, DISK (allocated/capacity),
/// TASKS, LABELS, LAST SEEN, and MESSAGE when some node has one; above it, the manager's own trouble if it
/// has one ("manager: store read-only: disk full").
pub fn render(response: &pb::ListNodesResponse, now: SystemTime) -> String {
    let table = render_table(response, now);
    if response.manager_message.is_empty() {
        table
    } else {
        format!("manager: {}\n{table}", response.manager_message)
    }
}

fn render_table(response: &pb::ListNodesResponse, now: SystemTime) -> String {
    let with_message = response.nodes.iter().any(|n| !n.message.is_empty());
    let mut header = vec![
        "NAME",
        "ADDRESS",
        "STATE",
        "RUNTIME",
        "CPU",
        "MEMORY",
        "DISK",
        "TASKS",
        "LABELS",
        "LAST SEEN",
    ];
    if with_message {
        header.push("MESSAGE");
    }
    let mut table = Table::new(&header);
    for node in &response.nodes {
        let capacity = node
            .capacity
            .or_else(|| node.stats.as_ref().and_then(|s| s.capacity))
            .unwrap_or_default();
        let allocated = node.allocated.unwrap_or_default();
        let mut row = vec![
            node.name.clone(),
            node.address.clone(),
            node_state(node.state),
            node.stats
                .as_ref()
                .map(|s| s.runtime.clone())
                .unwrap_or_default(),
            format!(
                "{}/{}",
                format_cpu(allocated.cpu_millis),
                format_cpu(capacity.cpu_millis)
            ),
            format!(
                "{}/{}",
                format_bytes(allocated.memory_bytes),
                format_bytes(capacity.memory_bytes)
            ),
            format!(
                "{}/{}",
                format_bytes(allocated.disk_bytes),
                format_bytes(capacity.disk_bytes)
            ),
            node.task_count.to_string(),
            output::pairs(&node.labels),
            match node.last_seen.as_ref() {
                Some(_) => format!("{} ago", age(node.last_seen.as_ref(), now)),
                None => "never".to_string(),
            },
        ];
        if with_message {
            row.push(node.message.clone());
        }
        table.row(row);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn nodes_show_allocated_over_capacity() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let response = pb::ListNodesResponse {
            nodes: vec![
                pb::Node {
                    name: "w1".into(),
                    address: "127.0.0.1:5556".into(),
                    state: pb::NodeState::Ready.into(),
                    last_seen: Some(prost_types::Timestamp {
                        seconds: 97,
                        nanos: 0,
                    }),
                    task_count: 2,
                    labels: [("zone".to_string(), "a".to_string())].into(),
                    stats: Some(pb::NodeStats {
                        runtime: "exec".into(),
                        ..Default::default()
                    }),
                    capacity: Some(pb::Resources {
                        cpu_millis: 2000,
                        memory_bytes: 1 << 30,
                        disk_bytes: 10 << 30,
                    }),
                    allocated: Some(pb::Resources {
                        cpu_millis: 1000,
                        memory_bytes: 512 << 20,
                        disk_bytes: 0,
                    }),
                    ..Default::default()
                },
                pb::Node {
                    name: "w2".into(),
                    address: "127.0.0.1:5557".into(),
                    state: pb::NodeState::Down.into(),
                    message: "no answer for 3s".into(),
                    ..Default::default()
                },
            ],
            manager_message: String::new(),
        };
        assert_eq!(
            render(&response, now),
            "NAME   ADDRESS          STATE   RUNTIME   CPU   MEMORY      DISK     TASKS   LABELS   LAST SEEN   MESSAGE\n\
             w1     127.0.0.1:5556   READY   exec      1/2   512Mi/1Gi   0/10Gi   2       zone=a   3s ago\n\
             w2     127.0.0.1:5557   DOWN              0/0   0/0         0/0      0                never       no answer for 3s\n"
        );
    }

    #[test]
    fn a_manager_that_cannot_write_says_so_above_the_nodes() {
        let response = pb::ListNodesResponse {
            nodes: Vec::new(),
            manager_message: "store read-only: disk full".into(),
        };
        let out = render(&response, SystemTime::UNIX_EPOCH);
        assert!(
            out.starts_with("manager: store read-only: disk full\n"),
            "{out}"
        );
    }
}
