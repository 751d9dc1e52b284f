//! The tasks table that `status` prints and `watch` prints row by row.

use std::time::SystemTime;

use super::{age, short_id, task_state, Table};
use crate::proto::pb;

/// The columns of the tasks table.
pub const COLUMNS: [&str; 8] = [
    "ID", "NAME", "STATE", "NODE", "IMAGE", "AGE", "RESTARTS", "EXIT",
];

/// One task as a row of the tasks table.
pub fn row(task: &pb::Task, now: SystemTime) -> Vec<String> {
    let spec = task.spec.clone().unwrap_or_default();
    vec![
        short_id(&task.id).to_string(),
        spec.name,
        task_state(task.state),
        task.node.clone(),
        spec.image,
        age(task.created_at.as_ref(), now),
        task.restart_count.to_string(),
        task.exit_code.map(|c| c.to_string()).unwrap_or_default(),
    ]
}

/// The tasks table: ID (short), NAME, STATE, NODE, IMAGE, AGE, RESTARTS, EXIT.
pub fn table(tasks: &[pb::Task], now: SystemTime) -> String {
    let mut table = Table::new(&COLUMNS);
    for task in tasks {
        table.row(row(task, now));
    }
    table.render()
}
