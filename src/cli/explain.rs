//! `cubectl explain`: each node's filter verdicts and score for a task, and the pick.

use clap::Args;

use crate::{client::Client, proto::pb};

use super::{
    output::{self, task_state},
    Outcome, OutputArg,
};

/// Arguments of `cubectl explain`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  cubectl explain 0b5c3a52-1f0e-4d51-9a8e-2f1c7f0e9b11")]
pub struct ExplainArgs {
    /// The task.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Output format.
    #[command(flatten)]
    pub output: OutputArg,
}

/// Runs `cubectl explain`.
pub async fn run(client: &Client, args: ExplainArgs) -> Outcome {
    let response = client
        .explain_task(&args.id)
        .await
        .map_err(super::task_failure)?;
    output::print(args.output.format, &response, render)
}

/// The explanation for people: a header, then per node its verdict, score and filters.
pub fn render(response: &pb::ExplainTaskResponse) -> String {
    let mut out = String::new();
    if let Some(task) = &response.task {
        let name = task.spec.as_ref().map(|s| s.name.as_str()).unwrap_or("");
        out.push_str(&format!(
            "task {} ({name}) is {}",
            task.id,
            task_state(task.state)
        ));
        if !task.node.is_empty() {
            out.push_str(&format!(" on {}", task.node));
        }
        out.push('\n');
    }
    if !response.strategy.is_empty() {
        out.push_str(&format!("strategy: {}\n", response.strategy));
    }
    if response.nodes.is_empty() {
        out.push_str("no nodes are known\n");
    }
    for node in &response.nodes {
        let verdict = if node.eligible {
            "fits"
        } else {
            "does not fit"
        };
        out.push_str(&format!("\nnode {}: {verdict}", node.node));
        if let Some(peers) = node.service_replicas {
            out.push_str(&format!(", spread: {peers} replicas of its service here"));
        }
        if let Some(score) = node.score {
            out.push_str(&format!(", score {score:.4}"));
        }
        if node.node == response.picked_node {
            out.push_str(" (picked)");
        }
        out.push('\n');
        for filter in &node.filters {
            let mark = if filter.passed { "pass" } else { "FAIL" };
            out.push_str(&format!("  {mark}  {}", filter.filter));
            if !filter.reason.is_empty() {
                out.push_str(&format!(": {}", filter.reason));
            }
            out.push('\n');
        }
    }
    out.push('\n');
    if response.picked_node.is_empty() {
        out.push_str("picked: none");
    } else {
        out.push_str(&format!("picked: {}", response.picked_node));
    }
    if !response.summary.is_empty() {
        out.push_str(&format!(" ({})", response.summary));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explanation_shows_every_filter_and_the_pick() {
        let filter = |name: &str, passed, reason: &str| pb::FilterResult {
            filter: name.into(),
            passed,
            reason: reason.into(),
        };
        let response = pb::ExplainTaskResponse {
            task: Some(pb::Task {
                id: "t1".into(),
                state: pb::TaskState::Pending.into(),
                spec: Some(pb::TaskSpec {
                    name: "big".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            strategy: "spread".into(),
            nodes: vec![
                pb::NodeExplanation {
                    node: "w1".into(),
                    filters: vec![
                        filter("alive", true, ""),
                        filter("cpu", false, "wanted 500m, free 250m"),
                    ],
                    eligible: false,
                    score: None,
                    service_replicas: None,
                },
                pb::NodeExplanation {
                    node: "w2".into(),
                    filters: vec![filter("alive", true, ""), filter("cpu", true, "")],
                    eligible: true,
                    score: Some(0.25),
                    service_replicas: None,
                },
            ],
            picked_node: "w2".into(),
            summary: "least allocated".into(),
        };
        assert_eq!(
            render(&response),
            "task t1 (big) is PENDING\n\
             strategy: spread\n\
             \n\
             node w1: does not fit\n  \
               pass  alive\n  \
               FAIL  cpu: wanted 500m, free 250m\n\
             \n\
             node w2: fits, score 0.2500 (picked)\n  \
               pass  alive\n  \
               pass  cpu\n\
             \n\
             picked: w2 (least allocated)\n"
        );
    }
}
