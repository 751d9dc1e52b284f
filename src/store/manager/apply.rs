//! How a group of queued writes is applied in the writer's transaction, including removals:
//! a removed task takes its events with it, and the sequences it held are never used again.

use prost::Message;
use redb::{ReadableTable, WriteTransaction};

use super::{Op, COUNTERS, EVENTS, NODES, SERVICES, TASKS, TASK_EVENTS};
use crate::{store::StoreError, task::TaskId};

/// Applies a group of queued writes, oldest first, in the writer's transaction.
pub(super) fn apply(write: &WriteTransaction, group: &[Vec<Op>]) -> Result<(), StoreError> {
    let mut tasks = write.open_table(TASKS)?;
    let mut events = write.open_table(EVENTS)?;
    let mut task_events = write.open_table(TASK_EVENTS)?;
    let mut nodes = write.open_table(NODES)?;
    let mut services = write.open_table(SERVICES)?;
    let mut removed_any = false;
    for op in group.iter().flatten() {
        match op {
            Op::PutTask { seq, task, .. } => {
                tasks.insert(*seq, task.encode_to_vec().as_slice())?;
            }
            Op::PutEvent { task, event } => {
                events.insert(event.seq, event.encode_to_vec().as_slice())?;
                task_events.insert((task.as_u128(), event.seq), ())?;
            }
            Op::PutNode(node) => {
                nodes.insert(node.name.as_str(), node.encode_to_vec().as_slice())?;
            }
            Op::DeleteNode { name } => {
                nodes.remove(name.as_str())?;
            }
            Op::PutService(service) => {
                let name = service.spec.as_ref().map_or("", |s| s.name.as_str());
                services.insert(name, service.encode_to_vec().as_slice())?;
            }
            Op::DeleteService { name } => {
                services.remove(name.as_str())?;
            }
            Op::DeleteTask { seq, id } => {
                if !removed_any {
                    keep_counters(write, &tasks, &events)?;
                    removed_any = true;
                }
                tasks.remove(*seq)?;
                trim(&mut events, &mut task_events, *id, 0)?;
            }
            Op::TrimEvents { id, keep } => {
                if !removed_any {
                    keep_counters(write, &tasks, &events)?;
                    removed_any = true;
                }
                trim(&mut events, &mut task_events, *id, *keep)?;
            }
        }
    }
    Ok(())
}

/// Records the next free task and event sequences before any is removed, so that removing
/// the newest never lets a restarted manager use its sequence again.
fn keep_counters(
    write: &WriteTransaction,
    tasks: &redb::Table<'_, u64, &[u8]>,
    events: &redb::Table<'_, u64, &[u8]>,
) -> Result<(), StoreError> {
    let mut counters = write.open_table(COUNTERS)?;
    let next_seq = tasks.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
    let next_event = events.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
    for (name, next) in [("next_seq", next_seq), ("next_event", next_event)] {
        let kept = counters.get(name)?.map(|v| v.value()).unwrap_or(1);
        if next > kept {
            counters.insert(name, next)?;
        }
    }
    Ok(())
}

/// Removes task `id`'s oldest events, keeping its newest `keep`.
fn trim(
    events: &mut redb::Table<'_, u64, &[u8]>,
    task_events: &mut redb::Table<'_, (u128, u64), ()>,
    id: TaskId,
    keep: u32,
) -> Result<(), StoreError> {
    let task = id.as_u128();
    let mut seqs = Vec::new();
    for entry in task_events.range((task, 0)..=(task, u64::MAX))? {
        let (key, _) = entry?;
        seqs.push(key.value().1);
    }
    let drop = seqs.len().saturating_sub(keep as usize);
    for seq in &seqs[..drop] {
        events.remove(*seq)?;
        task_events.remove((task, *seq))?;
    }
    Ok(())
}
