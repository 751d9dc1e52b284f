//! `cubectl service explain NAME`: for each slot, whether its replica is up, and if not why:
//! no task yet, pending (with the scheduler's reason), starting, restarting in a crash loop,
//! unhealthy, or not yet up long enough; and where the service's rollout stands.

use clap::Args;

use crate::{
    cli::{output, print_out, Outcome},
    client::Client,
    proto::pb::{self, DesiredState, TaskState},
};

/// Arguments of `cubectl service explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The service.
    pub name: String,
}

/// Runs `cubectl service explain`.
pub async fn run(client: &Client, args: ExplainArgs) -> Outcome {
    let service = client
        .get_service(&args.name)
        .await
        .map_err(super::service_failure)?
        .service
        .unwrap_or_default();
    let tasks = client
        .service_tasks(&args.name)
        .await
        .map_err(super::service_failure)?;
    print_out(&explain(&service, &tasks));
    Ok(())
}

/// The explanation: a line for the service and its rollout, then a table with a row a slot.
pub fn explain(service: &pb::Service, tasks: &[pb::Task]) -> String {
    let spec = service.spec.clone().unwrap_or_default();
    let mut text = format!(
        "service {} version {} (task version {}), {} replicas\n",
        spec.name, service.version, service.task_version, spec.replicas
    );
    if let Some(rollout) = &service.rollout {
        let state = output::enum_name(rollout.state().as_str_name(), "ROLLOUT_STATE_");
        text.push_str(&format!("rollout: {state}: {}\n", rollout.message));
    }
    let mut table = output::Table::new(&["SLOT", "TASK", "VERSION", "STATE", "NODE", "WHY"]);
    for slot in 1..=spec.replicas {
        let row = match live(tasks, slot) {
            None => vec![
                slot.to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                "no task yet: the service reconciler creates one".into(),
            ],
            Some(task) => vec![
                slot.to_string(),
                output::short_id(&task.id).to_string(),
                task.service_version.to_string(),
                output::task_state(task.state),
                task.node.clone(),
                why(task),
            ],
        };
        table.row(row);
    }
    text.push_str(&table.render());
    text.push_str(&spread(tasks, spec.replicas));
    text
}

/// Where the slots' tasks are, per node: the scheduler places a replica where its service has
/// the fewest tasks before it scores nodes, so these stay within one of each other when the
/// nodes fit.
fn spread(tasks: &[pb::Task], replicas: u32) -> String {
    let mut by_node: std::collections::BTreeMap<&str, u32> = Default::default();
    for task in (1..=replicas).filter_map(|slot| live(tasks, slot)) {
        if !task.node.is_empty() {
            *by_node.entry(task.node.as_str()).or_default() += 1;
        }
    }
    if by_node.is_empty() {
        return String::new();
    }
    let nodes: Vec<String> = by_node
        .iter()
        .map(|(node, n)| format!("{node} {n}"))
        .collect();
    format!(
        "spread (replicas per node, fewest first when placing): {}\n",
        nodes.join(", ")
    )
}

/// The task of `slot` wanted running: the newest of the newest version.
pub(super) fn live(tasks: &[pb::Task], slot: u32) -> Option<&pb::Task> {
    tasks
        .iter()
        .filter(|t| t.slot == slot && t.desired_state() == DesiredState::Running)
        .max_by_key(|t| {
            (
                t.service_version,
                t.created_at.map(|c| (c.seconds, c.nanos)),
            )
        })
}

/// Why the task of a slot is (not) up ("up..." when it is).
pub(super) fn why(task: &pb::Task) -> String {
    let checked = task
        .spec
        .as_ref()
        .and_then(|s| s.health_check.as_ref())
        .is_some();
    match task.state() {
        TaskState::Running if task.healthy == Some(false) => {
            "unhealthy: its health check fails".into()
        }
        TaskState::Running if checked && task.healthy.is_none() => {
            "starting: no health check has passed yet".into()
        }
        TaskState::Running if task.restart_count > 0 => {
            format!("up, after {} restarts", task.restart_count)
        }
        TaskState::Running => "up".into(),
        TaskState::Pending if task.restart_count > 0 => format!(
            "crash loop: restart {} waits: {}",
            task.restart_count, task.message
        ),
        TaskState::Pending => format!("pending: {}", task.message),
        TaskState::Scheduled => format!("starting on {}", task.node),
        TaskState::Failed => format!(
            "failed ({} restarts so far): {}",
            task.restart_count, task.message
        ),
        TaskState::Completed | TaskState::Unspecified => task.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_says_why() {
        let service = pb::Service {
            spec: Some(pb::ServiceSpec {
                name: "web".into(),
                replicas: 3,
                ..Default::default()
            }),
            version: 2,
            task_version: 1,
            ..Default::default()
        };
        let task = |slot, state: TaskState, message: &str| pb::Task {
            id: format!("0000000{slot}-0000-0000-0000-000000000000"),
            slot,
            state: state as i32,
            desired_state: DesiredState::Running as i32,
            message: message.into(),
            ..Default::default()
        };
        let text = explain(
            &service,
            &[
                task(1, TaskState::Running, ""),
                task(2, TaskState::Pending, "no node has 4 cpus free"),
            ],
        );
        assert!(text.contains("3 replicas"), "{text}");
        assert!(text.contains("pending: no node has 4 cpus free"), "{text}");
        assert!(text.contains("no task yet"), "{text}");
        assert!(!text.contains("spread"), "no placed task yet: {text}");
        let placed = |slot, node: &str| pb::Task {
            node: node.into(),
            ..task(slot, TaskState::Running, "")
        };
        let text = explain(
            &service,
            &[placed(1, "w1"), placed(2, "w2"), placed(3, "w1")],
        );
        assert!(
            text.contains("per node, fewest first when placing): w1 2, w2 1"),
            "{text}"
        );
    }
}
