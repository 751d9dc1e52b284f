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
//! | `services` | service name | `pb::Service` (spec, versions, previous spec) |
//!
//! Tasks are keyed by their submission sequence, so a scan is oldest first and the pending
//! order (oldest pending first) needs no table of its own; the task → node assignment is the
//! task's `node` field and the `request_id` → task index is rebuilt from the tasks at load.
//!
//! Writes go through the shared group-commit [`Writer`]: every write is fsync'd, many
//! concurrent submissions share one fsync, and each still answers only after its own write is
//! on disk. Queue order is commit order, so an empty write is a barrier (see [`Writer`]).

use std::{ops::RangeBounds, path::Path, sync::Arc};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

pub use super::Durable;
use super::{DbCell, Health, Opener, Owner, StoreError, StoreKind, Writer};
use crate::{error::Result, proto::pb, task::TaskId};

const TASKS: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("tasks");
const EVENTS: TableDefinition<'static, u64, &'static [u8]> = TableDefinition::new("events");
const TASK_EVENTS: TableDefinition<'static, (u128, u64), ()> = TableDefinition::new("task_events");
const NODES: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("nodes");
const SERVICES: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("services");
/// `next_seq` and `next_event`, kept once tasks are removed: a sequence is never used twice,
/// even when the newest task or event is gone.
const COUNTERS: TableDefinition<'static, &'static str, u64> = TableDefinition::new("counters");

/// Events kept per task: older ones are removed as new ones come.
pub const MAX_EVENTS_PER_TASK: u32 = 100;

/// One write to the store. Records are encoded by the writer thread, off the caller's lock.
#[derive(Debug)]
pub enum Op {
    /// Insert or replace a task under its submission sequence.
    PutTask {
        /// The task's submission sequence (its key).
        seq: u64,
        /// Its id.
        id: TaskId,
        /// The task, shared with the memory that made it.
        task: Arc<pb::Task>,
    },
    /// Append an event.
    PutEvent {
        /// The task it is about.
        task: TaskId,
        /// The event (its `seq` is its key).
        event: pb::TaskEvent,
    },
    /// Insert or replace a node record.
    PutNode(Box<pb::Node>),
    /// Forget a node record (a worker renamed itself, or it was DOWN too long).
    DeleteNode {
        /// The node's name.
        name: String,
    },
    /// Remove a task and all its events (it finished and its retention passed).
    DeleteTask {
        /// Its submission sequence.
        seq: u64,
        /// Its id.
        id: TaskId,
    },
    /// Insert or replace a service under its name.
    PutService(Arc<pb::Service>),
    /// Forget a service (its tasks stay, stopped, until retention removes them).
    DeleteService {
        /// The service's name.
        name: String,
    },
    /// Remove a task's oldest events, keeping its newest `keep`.
    TrimEvents {
        /// The task.
        id: TaskId,
        /// How many of its events stay.
        keep: u32,
    },
}

impl Op {
    /// A task write.
    pub fn task(seq: u64, id: TaskId, task: Arc<pb::Task>) -> Op {
        Op::PutTask { seq, id, task }
    }

    /// An event write.
    pub fn event(task: TaskId, event: pb::TaskEvent) -> Op {
        Op::PutEvent { task, event }
    }

    /// A node write.
    pub fn node(node: pb::Node) -> Op {
        Op::PutNode(Box::new(node))
    }
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
    /// The next free submission sequence.
    pub next_seq: u64,
    /// How many events each task has, by task id.
    pub event_counts: std::collections::HashMap<TaskId, u32>,
    /// The stored services, by name.
    pub services: Vec<pb::Service>,
}

/// The manager's store: reads on any thread, writes through the group-commit writer.
#[derive(Clone)]
pub struct ManagerStore {
    db: DbCell,
    writer: Writer<Op>,
}

impl std::fmt::Debug for ManagerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerStore").finish_non_exhaustive()
    }
}

impl ManagerStore {
    /// Opens the store in `data_dir` (see [`super::open`] for the checks) and starts its
    /// writer thread, which ends once every clone of the store is dropped.
    pub fn open(data_dir: &Path) -> Result<(ManagerStore, Loaded)> {
        Ok(Self::open_store(data_dir)?)
    }

    fn open_store(data_dir: &Path) -> Result<(ManagerStore, Loaded), StoreError> {
        let db = super::open(data_dir, StoreKind::Manager)?;
        {
            let write = db.begin_write()?;
            write.open_table(TASKS)?;
            write.open_table(EVENTS)?;
            write.open_table(TASK_EVENTS)?;
            write.open_table(NODES)?;
            write.open_table(COUNTERS)?;
            write.open_table(SERVICES)?;
            write.commit()?;
        }
        let loaded = load(&db)?;
        let db = DbCell::new(db);
        let dir = data_dir.to_path_buf();
        let opener = Opener {
            name: "cube-store-writer".into(),
            dir: dir.clone(),
            db: db.clone(),
            open: Box::new(move || super::open(&dir, StoreKind::Manager)),
        };
        let writer = Writer::spawn(opener, apply::apply)?;
        Ok((ManagerStore { db, writer }, loaded))
    }

    /// Makes `owner` the one told of durable and refused writes (see [`Owner`]).
    pub fn set_owner(&self, owner: Box<dyn Owner<Op>>) {
        self.writer.set_owner(owner);
    }

    /// Whether the store takes writes; changes as it turns read-only and back.
    pub fn health(&self) -> tokio::sync::watch::Receiver<Health> {
        self.writer.health()
    }

    /// `Ok` when the store takes writes, else the error a write would be refused with.
    pub fn writable(&self) -> Result<()> {
        Ok(self.writer.writable()?)
    }

    /// Queues writes; the returned handle resolves once they are durable. Queue order is commit
    /// order, so callers that queue under their own lock keep the store in their order, and
    /// waiting on an empty write is a barrier: it resolves once everything queued before it is
    /// committed.
    pub fn write(&self, ops: Vec<Op>) -> Durable {
        self.writer.write(ops, true)
    }

    /// Resolves once every write queued before it is committed: after it, a read sees them
    /// all. The same as an empty [`ManagerStore::write`].
    pub fn barrier(&self) -> Durable {
        self.writer.barrier()
    }

    /// Queues writes no answer waits for (observed state, messages). They are still committed
    /// in order with everything else.
    pub fn write_later(&self, ops: Vec<Op>) {
        self.writer.write_later(ops);
    }

    /// A task's events, oldest first, from event sequence `after` (exclusive), at most `limit`.
    pub fn task_events(
        &self,
        task: TaskId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<pb::TaskEvent>> {
        Ok(self.read_task_events(task, after, limit, false)?)
    }

    /// A task's last `limit` events, oldest first.
    pub fn last_task_events(&self, task: TaskId, limit: usize) -> Result<Vec<pb::TaskEvent>> {
        Ok(self.read_task_events(task, 0, limit, true)?)
    }

    /// Events after `after`: the first `limit` of them, or with `newest` the last `limit`;
    /// oldest first either way.
    fn read_task_events(
        &self,
        task: TaskId,
        after: u64,
        limit: usize,
        newest: bool,
    ) -> Result<Vec<pb::TaskEvent>, StoreError> {
        let id = task.as_u128();
        let read = self.db.get()?.begin_read()?;
        let index = read.open_table(TASK_EVENTS)?;
        let events = read.open_table(EVENTS)?;
        let start = after.saturating_add(1);
        let range = index.range((id, start)..=(id, u64::MAX))?;
        let mut out = Vec::new();
        for entry in window(range, limit, newest) {
            let (key, _) = entry?;
            let (_, seq) = key.value();
            if let Some(bytes) = events.get(seq)? {
                out.push(decode_event(bytes.value())?);
            }
        }
        if newest {
            out.reverse();
        }
        Ok(out)
    }

    /// All events, oldest first, from sequence `after` (exclusive), at most `limit`.
    pub fn events(&self, after: u64, limit: usize) -> Result<Vec<pb::TaskEvent>> {
        self.read_events(after, limit, false)
    }

    /// The last `limit` events of all tasks, oldest first.
    pub fn last_events(&self, limit: usize) -> Result<Vec<pb::TaskEvent>> {
        self.read_events(0, limit, true)
    }

    fn read_events(&self, after: u64, limit: usize, newest: bool) -> Result<Vec<pb::TaskEvent>> {
        let read = self.db.get()?.begin_read().map_err(StoreError::from)?;
        let events = read.open_table(EVENTS).map_err(StoreError::from)?;
        let start = after.saturating_add(1);
        Ok(range_decode(&events, start.., limit, newest)?)
    }
}

/// The first `limit` entries of a range, or with `newest` the last `limit`, newest first.
fn window<'a, I>(range: I, limit: usize, newest: bool) -> Box<dyn Iterator<Item = I::Item> + 'a>
where
    I: DoubleEndedIterator + 'a,
{
    if newest {
        Box::new(range.rev().take(limit))
    } else {
        Box::new(range.take(limit))
    }
}

fn range_decode(
    table: &redb::ReadOnlyTable<u64, &[u8]>,
    range: impl RangeBounds<u64>,
    limit: usize,
    newest: bool,
) -> Result<Vec<pb::TaskEvent>, StoreError> {
    let mut out = Vec::new();
    for entry in window(table.range(range)?, limit, newest) {
        let (_, bytes) = entry?;
        out.push(decode_event(bytes.value())?);
    }
    if newest {
        out.reverse();
    }
    Ok(out)
}

fn decode_event(bytes: &[u8]) -> Result<pb::TaskEvent, StoreError> {
    pb::TaskEvent::decode(bytes).map_err(|source| StoreError::Decode {
        what: "event".into(),
        source,
    })
}

fn load(db: &Database) -> Result<Loaded, StoreError> {
    let read = db.begin_read()?;
    let tasks_table = read.open_table(TASKS)?;
    let mut tasks = Vec::new();
    for entry in tasks_table.iter()? {
        let (seq, bytes) = entry?;
        let task = pb::Task::decode(bytes.value()).map_err(|source| StoreError::Decode {
            what: format!("task {}", seq.value()),
            source,
        })?;
        tasks.push((seq.value(), task));
    }
    let counters = read.open_table(COUNTERS)?;
    let counter = |name: &str| -> Result<u64, StoreError> {
        Ok(counters.get(name)?.map(|v| v.value()).unwrap_or(1))
    };
    let events = read.open_table(EVENTS)?;
    let next_event = events
        .last()?
        .map(|(k, _)| k.value() + 1)
        .unwrap_or(1)
        .max(counter("next_event")?);
    let next_seq = tasks
        .last()
        .map(|(s, _)| s + 1)
        .unwrap_or(1)
        .max(counter("next_seq")?);
    let mut event_counts = std::collections::HashMap::new();
    for entry in read.open_table(TASK_EVENTS)?.iter()? {
        let (key, _) = entry?;
        let (task, _) = key.value();
        *event_counts.entry(TaskId::from_u128(task)).or_insert(0u32) += 1;
    }
    let nodes_table = read.open_table(NODES)?;
    let mut nodes = Vec::new();
    for entry in nodes_table.iter()? {
        let (name, bytes) = entry?;
        let node = pb::Node::decode(bytes.value()).map_err(|source| StoreError::Decode {
            what: format!("node {:?}", name.value()),
            source,
        })?;
        nodes.push(node);
    }
    let mut services = Vec::new();
    for entry in read.open_table(SERVICES)?.iter()? {
        let (name, bytes) = entry?;
        let service = pb::Service::decode(bytes.value()).map_err(|source| StoreError::Decode {
            what: format!("service {:?}", name.value()),
            source,
        })?;
        services.push(service);
    }
    Ok(Loaded {
        tasks,
        next_event,
        nodes,
        next_seq,
        event_counts,
        services,
    })
}

mod apply;

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
                .write(vec![Op::task(7, id, Arc::new(task)), Op::event(id, event)])
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

    /// Queues (with nobody waiting) an event of task `task_of(seq)` for each of `seqs`.
    fn write_events_later(
        store: &ManagerStore,
        seqs: std::ops::RangeInclusive<u64>,
        task_of: impl Fn(u64) -> TaskId,
    ) {
        for seq in seqs {
            let id = task_of(seq);
            let event = pb::TaskEvent {
                seq,
                task_id: id.to_string(),
                ..Default::default()
            };
            store.write_later(vec![Op::event(id, event)]);
        }
    }

    /// Events written with nobody waiting are all readable once a barrier queued after them
    /// resolves: the read barrier the manager relies on.
    #[tokio::test]
    async fn a_barrier_makes_earlier_writes_readable() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = ManagerStore::open(dir.path()).unwrap();
        let id = TaskId::new();
        write_events_later(&store, 1..=500, |_| id);
        store.barrier().wait().await.unwrap();
        assert_eq!(store.task_events(id, 0, usize::MAX).unwrap().len(), 500);
        assert_eq!(store.events(0, usize::MAX).unwrap().len(), 500);
    }

    /// A tail reads the newest events backwards and answers them oldest first, of all tasks
    /// or of one.
    #[tokio::test]
    async fn the_last_events_come_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = ManagerStore::open(dir.path()).unwrap();
        let (a, b) = (TaskId::new(), TaskId::new());
        write_events_later(&store, 1..=9, |seq| if seq % 3 == 0 { b } else { a });
        store.barrier().wait().await.unwrap();
        let seqs = |events: Vec<pb::TaskEvent>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(store.last_events(3).unwrap()), [7, 8, 9]);
        assert_eq!(seqs(store.last_events(50).unwrap()).len(), 9);
        assert_eq!(seqs(store.last_task_events(a, 2).unwrap()), [7, 8]);
        assert_eq!(seqs(store.last_task_events(b, 5).unwrap()), [3, 6, 9]);
    }
}
