//! The tasks table that `status` prints (narrow, fitted to the terminal, or wide) and `watch`
//! prints row by row.

use std::time::SystemTime;

use super::{age, format_age, pairs, ports, short_id, task_state, Table};
use crate::proto::pb;

/// The columns of the tasks table.
pub const COLUMNS: [&str; 9] = [
    "ID", "NAME", "STATE", "HEALTH", "NODE", "IMAGE", "AGE", "RESTARTS", "EXIT",
];

/// The columns `-o wide` adds after [`COLUMNS`].
const WIDE_COLUMNS: [&str; 3] = ["PORTS", "LABELS", "MESSAGE"];

/// Columns that give up width when the table is wider than the terminal, widest first: the
/// image and the name, whose values can be long; the others are short by nature.
const SHRINKABLE: [usize; 2] = [5, 1];

/// One task as a row of the tasks table.
pub fn row(task: &pb::Task, now: SystemTime) -> Vec<String> {
    let spec = task.spec.clone().unwrap_or_default();
    vec![
        short_id(&task.id).to_string(),
        spec.name,
        state_cell(task, now),
        health_cell(task.healthy).to_string(),
        task.node.clone(),
        spec.image,
        age(task.created_at.as_ref(), now),
        task.restart_count.to_string(),
        task.exit_code.map(|c| c.to_string()).unwrap_or_default(),
    ]
}

/// The state, with the countdown of a restart the manager is waiting to make:
/// `FAILED (restart in 8s)`.
fn state_cell(task: &pb::Task, now: SystemTime) -> String {
    let state = task_state(task.state);
    let waiting = task.state == pb::TaskState::Failed as i32
        && task.desired_state == pb::DesiredState::Running as i32;
    let Some(at) = task
        .restart_at
        .filter(|_| waiting)
        .and_then(|t| SystemTime::try_from(t).ok())
    else {
        return state;
    };
    match at.duration_since(now) {
        Ok(left) => format!("{state} (restart in {})", format_age(left)),
        Err(_) => format!("{state} (restarting)"),
    }
}

/// What the last health check said.
fn health_cell(healthy: Option<bool>) -> &'static str {
    match healthy {
        Some(true) => "healthy",
        Some(false) => "unhealthy",
        None => "",
    }
}

/// The tasks table: ID (short), NAME, STATE, HEALTH, NODE, IMAGE, AGE, RESTARTS, EXIT; with
/// `width`, long names and images are cut with an ellipsis so that lines fit in it.
pub fn table(tasks: &[pb::Task], now: SystemTime, width: Option<usize>) -> String {
    let mut table = Table::new(&COLUMNS);
    for task in tasks {
        table.row(row(task, now));
    }
    match width {
        Some(width) => table.fit(width, &SHRINKABLE),
        None => table,
    }
    .render()
}

/// The wide tasks table: the full ids and every value uncut, with ports, labels and message.
pub fn wide_table(tasks: &[pb::Task], now: SystemTime) -> String {
    let header: Vec<&str> = COLUMNS.iter().chain(&WIDE_COLUMNS).copied().collect();
    let mut table = Table::new(&header);
    for task in tasks {
        let mut cells = row(task, now);
        cells[0] = task.id.clone();
        let spec = task.spec.clone().unwrap_or_default();
        cells.extend([
            ports(&task.ports),
            pairs(&spec.labels),
            task.message.clone(),
        ]);
        table.row(cells);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_restart_waiting_shows_its_countdown() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let mut task = pb::Task {
            state: pb::TaskState::Failed as i32,
            desired_state: pb::DesiredState::Running as i32,
            restart_at: Some(crate::proto::timestamp(now + Duration::from_secs(8))),
            healthy: Some(false),
            ..Default::default()
        };
        let cells = row(&task, now);
        assert_eq!(cells[2], "FAILED (restart in 8s)");
        assert_eq!(cells[3], "unhealthy");
        task.desired_state = pb::DesiredState::Stopped as i32;
        assert_eq!(
            row(&task, now)[2],
            "FAILED",
            "a stopped task restarts no more"
        );
    }
}
