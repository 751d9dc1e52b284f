//! The manager's tables, and the one writer that commits them in groups.
//!
//! Layout (every value is a prost-encoded message, so a field added to the proto is read back
//! by older and newer builds alike):
//!
//! | table | key | value |
//! |---|---|---|
//! | `tasks` | submission sequence (`u64`) | `pb::Task` |
//! | `events` | event sequence (`u64`) | `pb::TaskEvent` |
//! | `task_events` | (task id as `u128`, event sequence) | nothing: the per-task index |
//! | `nodes` | node name | `pb::Node` (address, labels, last stats) |
//!
//! Tasks are keyed by their submission sequence, so a scan is oldest first and the pending
//! order (oldest pending first) needs no table of its own; the task → node assignment is the
//! task's `node` field and the `request_id` → task index is rebuilt from the tasks at load.
//!
//! Writes go through [`Writer`]: one thread owns the write transactions, takes every write
//! queued since its last commit, applies them in one transaction and commits it durably, then
//! answers each waiter. Many concurrent submissions thus share one fsync (group commit) while
//! each still answers only after its own write is on disk.

use std::{ops::RangeBounds, path::Path, sync::Arc, thread};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use crate::{
    error::{Error, Result},
    proto::pb,
    store::{self, StoreKind},
    task::TaskId,
};

const TASKS: TableDefinition<u64, &[u8]> = TableDefinition::new("tasks");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const TASK_EVENTS: TableDefinition<(u128, u64), ()> = TableDefinition::new("task_events");
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");

/// At most this many queued writes go into one transaction: large enough that a burst of
/// submissions shares one fsync, small enough that one commit stays a few milliseconds.
const MAX_GROUP: usize = 4096;

/// One write to the store.
#[derive(Debug)]
pub enum Op {
    /// Insert or replace a task under its submission sequence.
    PutTask {
        /// The task's submission sequence (its key).
        seq: u64,
        /// The task, encoded.
        task: Vec<u8>,
    },
    /// Append an event.
    PutEvent {
        /// The event's sequence.
        seq: u64,
        /// The task it is about.
        task: TaskId,
        /// The event, encoded.
        event: Vec<u8>,
    },
    /// Insert or replace a node record.
    PutNode {
        /// The node's name.
        name: String,
        /// The node, encoded.
        node: Vec<u8>,
    },
    /// Forget a node record (a worker renamed itself).
    DeleteNode {
        /// The node's name.
        name: String,
    },
}

impl Op {
    /// A task write.
    pub fn task(seq: u64, task: &pb::Task) -> Op {
        Op::PutTask {
            seq,
            task: task.encode_to_vec(),
        }
    }

    /// An event write.
    pub fn event(task: TaskId, event: &pb::TaskEvent) -> Op {
        Op::PutEvent {
            seq: event.seq,
            task,
            event: event.encode_to_vec(),
        }
    }

    /// A node write.
    pub fn node(node: &pb::Node) -> Op {
        Op::PutNode {
            name: node.name.clone(),
            node: node.encode_to_vec(),
        }
    }
}

/// A group of writes and who waits for their commit (nobody, for writes no answer depends on).
struct Batch {
    ops: Vec<Op>,
    done: Option<oneshot::Sender<Result<()>>>,
}

/// Everything the manager stored, as read at start.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Tasks with their submission sequence, oldest first.
    pub tasks: Vec<(u64, pb::Task)>,
    /// The next free event sequence.
    pub next_event: u64,
    /// The stored nodes.
    pub nodes: Vec<pb::Node>,
}

/// The manager's store: reads on any thread, writes through the group-commit writer.
#[derive(Clone)]
pub struct ManagerStore {
    db: Arc<Database>,
    tx: mpsc::UnboundedSender<Batch>,
}

impl std::fmt::Debug for ManagerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerStore").finish_non_exhaustive()
    }
}

/// Where a caller waits for its writes to be durable.
#[derive(Debug)]
pub struct Durable(Option<oneshot::Receiver<Result<()>>>);

impl Durable {
    /// Nothing to wait for.
    pub fn done() -> Durable {
        Durable(None)
    }

    /// Waits until the writes are committed.
    pub async fn wait(self) -> Result<()> {
        match self.0 {
            None => Ok(()),
            Some(rx) => rx
                .await
                .map_err(|_| Error::Unavailable("the manager's store is shutting down".into()))?,
        }
    }
}

impl ManagerStore {
    /// Opens the store in `data_dir` (see [`store::open`] for the checks) and starts its writer
    /// thread, which ends once every clone of the store is dropped.
    pub fn open(data_dir: &Path) -> Result<(ManagerStore, Loaded)> {
        let db = store::open(data_dir, StoreKind::Manager)?;
        {
            let write = db.begin_write()?;
            write.open_table(TASKS)?;
            write.open_table(EVENTS)?;
            write.open_table(TASK_EVENTS)?;
            write.open_table(NODES)?;
            write.commit()?;
        }
        let db = Arc::new(db);
        let loaded = load(&db)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let writer_db = db.clone();
        thread::Builder::new()
            .name("cube-store-writer".into())
            .spawn(move || writer(writer_db, rx))
            .map_err(|e| Error::Internal(format!("cannot start the store writer: {e}")))?;
        Ok((ManagerStore { db, tx }, loaded))
    }

    /// Queues writes; the returned handle resolves once they are durable. Queue order is commit
    /// order, so callers that queue under their own lock keep the store in their order.
    pub fn write(&self, ops: Vec<Op>) -> Durable {
        let (done, rx) = oneshot::channel();
        if self
            .tx
            .send(Batch {
                ops,
                done: Some(done),
            })
            .is_err()
        {
            return Durable(None);
        }
        Durable(Some(rx))
    }

    /// Queues writes no answer waits for (observed state, messages). They are still committed
    /// in order with everything else.
    pub fn write_later(&self, ops: Vec<Op>) {
        if !ops.is_empty() {
            let _ = self.tx.send(Batch { ops, done: None });
        }
    }

    /// A task's events, oldest first, from event sequence `after` (exclusive), at most `limit`.
    pub fn task_events(
        &self,
        task: TaskId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<pb::TaskEvent>> {
        let id = u128::from_be_bytes(*task.as_bytes());
        let read = self.db.begin_read()?;
        let index = read.open_table(TASK_EVENTS)?;
        let events = read.open_table(EVENTS)?;
        let mut out = Vec::new();
        let start = after.saturating_add(1);
        for entry in index.range((id, start)..=(id, u64::MAX))?.take(limit) {
            let (key, _) = entry?;
            let (_, seq) = key.value();
            if let Some(bytes) = events.get(seq)? {
                out.push(decode_event(bytes.value())?);
            }
        }
        Ok(out)
    }

    /// All events, oldest first, from sequence `after` (exclusive), at most `limit`.
    pub fn events(&self, after: u64, limit: usize) -> Result<Vec<pb::TaskEvent>> {
        let read = self.db.begin_read()?;
        let events = read.open_table(EVENTS)?;
        let start = after.saturating_add(1);
        range_decode(&events, start.., limit)
    }
}

fn range_decode(
    table: &redb::ReadOnlyTable<u64, &[u8]>,
    range: impl RangeBounds<u64>,
    limit: usize,
) -> Result<Vec<pb::TaskEvent>> {
    let mut out = Vec::new();
    for entry in table.range(range)?.take(limit) {
        let (_, bytes) = entry?;
        out.push(decode_event(bytes.value())?);
    }
    Ok(out)
}

fn decode_event(bytes: &[u8]) -> Result<pb::TaskEvent> {
    pb::TaskEvent::decode(bytes)
        .map_err(|e| Error::Store(format!("a stored event is corrupt: {e}")))
}

fn load(db: &Database) -> Result<Loaded> {
    let read = db.begin_read()?;
    let tasks_table = read.open_table(TASKS)?;
    let mut tasks = Vec::new();
    for entry in tasks_table.iter()? {
        let (seq, bytes) = entry?;
        let task = pb::Task::decode(bytes.value())
            .map_err(|e| Error::Store(format!("stored task {} is corrupt: {e}", seq.value())))?;
        tasks.push((seq.value(), task));
    }
    let events = read.open_table(EVENTS)?;
    let next_event = events.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
    let nodes_table = read.open_table(NODES)?;
    let mut nodes = Vec::new();
    for entry in nodes_table.iter()? {
        let (name, bytes) = entry?;
        let node = pb::Node::decode(bytes.value())
            .map_err(|e| Error::Store(format!("stored node {} is corrupt: {e}", name.value())))?;
        nodes.push(node);
    }
    Ok(Loaded {
        tasks,
        next_event,
        nodes,
    })
}

/// The writer thread: one transaction per group of queued batches, committed durably, then
/// every waiter of the group is answered with the commit's outcome.
fn writer(db: Arc<Database>, mut rx: mpsc::UnboundedReceiver<Batch>) {
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        let mut count = group[0].ops.len();
        while count < MAX_GROUP {
            match rx.try_recv() {
                Ok(batch) => {
                    count += batch.ops.len();
                    group.push(batch);
                }
                Err(_) => break,
            }
        }
        // A group without writes (callers waiting for what was queued before them) needs no
        // commit: every earlier group is committed already.
        let outcome = if count == 0 {
            Ok(())
        } else {
            commit(&db, &group)
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %e, writes = count, "store commit failed");
        }
        for batch in group {
            if let Some(done) = batch.done {
                let _ = done.send(match &outcome {
                    Ok(()) => Ok(()),
                    Err(e) => Err(Error::Store(e.to_string())),
                });
            }
        }
    }
}

fn commit(db: &Database, group: &[Batch]) -> Result<()> {
    let write = db.begin_write()?;
    {
        let mut tasks = write.open_table(TASKS)?;
        let mut events = write.open_table(EVENTS)?;
        let mut task_events = write.open_table(TASK_EVENTS)?;
        let mut nodes = write.open_table(NODES)?;
        for op in group.iter().flat_map(|b| b.ops.iter()) {
            match op {
                Op::PutTask { seq, task } => {
                    tasks.insert(*seq, task.as_slice())?;
                }
                Op::PutEvent { seq, task, event } => {
                    events.insert(*seq, event.as_slice())?;
                    task_events.insert((u128::from_be_bytes(*task.as_bytes()), *seq), ())?;
                }
                Op::PutNode { name, node } => {
                    nodes.insert(name.as_str(), node.as_slice())?;
                }
                Op::DeleteNode { name } => {
                    nodes.remove(name.as_str())?;
                }
            }
        }
    }
    write.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_survive_a_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let id = TaskId::new();
        {
            let (store, loaded) = ManagerStore::open(dir.path()).unwrap();
            assert!(loaded.tasks.is_empty());
            assert_eq!(loaded.next_event, 1);
            let task = pb::Task {
                id: id.to_string(),
                ..Default::default()
            };
            let event = pb::TaskEvent {
                seq: 1,
                task_id: id.to_string(),
                ..Default::default()
            };
            store
                .write(vec![Op::task(7, &task), Op::event(id, &event)])
                .wait()
                .await
                .unwrap();
            assert_eq!(store.task_events(id, 0, 10).unwrap().len(), 1);
            assert_eq!(store.events(1, 10).unwrap().len(), 0);
        }
        // The writer thread lets go of the database once the store is dropped.
        let mut reopened = None;
        for _ in 0..100 {
            if let Ok(open) = ManagerStore::open(dir.path()) {
                reopened = Some(open);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let (_, loaded) = reopened.expect("the store reopens");
        assert_eq!(loaded.tasks.len(), 1);
        assert_eq!(loaded.tasks[0].0, 7);
        assert_eq!(loaded.next_event, 2);
    }
}
