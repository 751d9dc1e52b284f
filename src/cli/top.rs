//! `cubectl top`: what nodes (or, with `tasks`, running tasks) use now, like `kubectl top`
//! and `docker stats`; `--watch` refreshes it.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::{
    client::Client,
    proto::pb,
    units::{format_bytes, format_cpu},
};

use super::{
    output::{self, node_state, short_id, Table},
    print_err, Outcome, OutputArg,
};

/// Arguments of `cubectl top`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  cubectl top\n  cubectl top tasks --node worker-1\n  \
    cubectl top tasks --watch"
)]
pub struct TopArgs {
    /// What to show.
    #[arg(value_enum, default_value_t = What::Nodes)]
    pub what: What,
    /// Only tasks on this node (with `tasks`).
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Print again every 2 seconds (Ctrl-C to stop).
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArg,
}

/// What `top` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum What {
    /// Each node: cpu and memory used, allocated and offered, and load.
    Nodes,
    /// Each running task: cpu and memory used, and what it asked for.
    Tasks,
}

/// Between two prints of `--watch`.
const REFRESH: Duration = Duration::from_secs(2);

/// Runs `cubectl top`.
pub async fn run(client: &Client, args: TopArgs) -> Outcome {
    loop {
        match args.what {
            What::Nodes => {
                let response = client.top_nodes().await?;
                output::print(args.output.format, &response, nodes_table)?;
            }
            What::Tasks => {
                let node = args.node.as_deref().unwrap_or("");
                let response = client.top_tasks(node).await?;
                for why in &response.unanswered {
                    print_err(&format!("warning: no answer from node {why}\n"));
                }
                output::print(args.output.format, &response, tasks_table)?;
            }
        }
        if !args.watch {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        super::print_out("\n");
    }
}

/// Cores as millicores: `250m`, `2`.
fn cores(value: f64) -> String {
    format_cpu((value * 1000.0).round() as i64)
}

/// The nodes table: NAME, STATE, CPU and MEMORY used / allocated / capacity, LOAD.
fn nodes_table(response: &pb::TopNodesResponse) -> String {
    let mut table = Table::new(&["NAME", "STATE", "CPU", "MEMORY", "LOAD"]);
    for node in &response.nodes {
        let allocated = node.allocated.unwrap_or_default();
        let capacity = node.capacity.unwrap_or_default();
        table.row(vec![
            node.name.clone(),
            node_state(node.state),
            format!(
                "{} / {} / {}",
                cores(node.cpu_cores_used),
                format_cpu(allocated.cpu_millis),
                format_cpu(capacity.cpu_millis)
            ),
            format!(
                "{} / {} / {}",
                format_bytes(node.memory_used_bytes),
                format_bytes(allocated.memory_bytes),
                format_bytes(capacity.memory_bytes)
            ),
            format!("{:.2}", node.load_average_1m),
        ]);
    }
    let mut out = table.render();
    out.push_str("(cpu and memory: used / allocated / capacity)\n");
    out
}

/// The tasks table: ID, NAME, NODE, CPU, MEMORY, and what the task asked for.
fn tasks_table(response: &pb::TopTasksResponse) -> String {
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "NODE",
        "CPU",
        "MEMORY",
        "CPU REQ",
        "MEMORY REQ",
    ]);
    for task in &response.tasks {
        let requested = |value: i64, format: fn(i64) -> String| {
            if value == 0 {
                "-".to_string()
            } else {
                format(value)
            }
        };
        table.row(vec![
            short_id(&task.task_id).to_string(),
            task.name.clone(),
            task.node.clone(),
            cores(task.cpu_cores),
            format_bytes(task.memory_bytes),
            requested(task.cpu_millis_requested, format_cpu),
            requested(task.memory_bytes_requested, format_bytes),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_show_cpu_in_millicores_and_memory_in_binary_units() {
        let text = tasks_table(&pb::TopTasksResponse {
            tasks: vec![pb::TaskUsage {
                task_id: "0123456789ab".into(),
                name: "busy".into(),
                node: "w1".into(),
                cpu_cores: 0.9984,
                memory_bytes: 3 * 1024 * 1024,
                memory_bytes_requested: 64 * 1024 * 1024,
                ..Default::default()
            }],
            unanswered: vec![],
        });
        assert!(
            text.contains("01234567   busy   w1     998m   3Mi"),
            "{text}"
        );
        assert!(text.contains("-         64Mi"), "{text}");
    }
}
