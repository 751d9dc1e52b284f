//! The worker's durable record of its tasks: one redb table, task id -> the `Task` message.
//!
//! Writes go through the shared group-commit [`Writer`], so many concurrent `StartTask` calls
//! share an fsync while each still answers only after its own write is durable. A write that
//! asks for no fsync (see [`WorkerStore::queue`]) is committed without one; the next fsync'd
//! commit makes it durable, and the writer makes one itself within
//! [`FLUSH_WITHIN`](crate::store::FLUSH_WITHIN) when none comes.

use std::{collections::HashMap, path::Path};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::{
    error::Result,
    pb,
    store::{DbCell, Health, Opener, Owner, StoreError, StoreKind, Writer},
    TaskId,
};

/// Task id (16 bytes) -> the task, prost-encoded.
const TASKS: TableDefinition<'static, &'static [u8], &'static [u8]> =
    TableDefinition::new("worker_tasks");

/// One task as the writer stores it: keyed by its id (parsed by the caller, so a bad id fails
/// its own write and not the group), encoded by the writer thread.
pub(crate) struct Row {
    pub id: TaskId,
    /// The task, or `None` to remove it (retention).
    pub task: Option<pb::Task>,
}

/// A handle to the worker's store; cloning shares the one writer.
#[derive(Clone)]
pub(crate) struct WorkerStore {
    writer: Writer<Row>,
}

impl WorkerStore {
    /// Opens the store in `data_dir`, returns it with every task it holds, and starts its
    /// writer thread (which ends when the last handle is dropped).
    pub fn open(data_dir: &Path) -> Result<(Self, Vec<pb::Task>)> {
        let db = crate::store::open(data_dir, StoreKind::Worker)?;
        let tasks = load(&db)?;
        let dir = data_dir.to_path_buf();
        let opener = Opener {
            name: "cube-worker-store".into(),
            dir: dir.clone(),
            db: DbCell::new(db),
            open: Box::new(move || crate::store::open(&dir, StoreKind::Worker)),
        };
        let writer = Writer::spawn(opener, apply)?;
        Ok((Self { writer }, tasks))
    }

    /// Makes `owner` the one told of durable and refused writes.
    pub fn set_owner(&self, owner: Box<dyn Owner<Row>>) {
        self.writer.set_owner(owner);
    }

    /// Whether the store takes writes; changes as it turns read-only and back.
    pub fn health(&self) -> tokio::sync::watch::Receiver<Health> {
        self.writer.health()
    }

    /// `Ok` when the store takes writes, else the error a write would be refused with.
    pub fn writable(&self) -> Result<(), StoreError> {
        self.writer.writable()
    }

    /// Queues these tasks for writing (their order with other writes is kept) and returns a
    /// future that resolves once they are committed; dropping it does not cancel the write.
    /// With `fsync`, committed means on disk; without, on disk within
    /// [`FLUSH_WITHIN`](crate::store::FLUSH_WITHIN) (or with the next write that asks for an
    /// fsync, or when the store closes).
    pub fn queue(
        &self,
        tasks: Vec<pb::Task>,
        fsync: bool,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let rows: Result<Vec<Row>, StoreError> = tasks
            .into_iter()
            .map(|task| match TaskId::parse("task.id", &task.id) {
                Ok(id) => Ok(Row {
                    id,
                    task: Some(task),
                }),
                Err(_) => Err(StoreError::InvalidKey { id: task.id }),
            })
            .collect();
        let durable = rows.map(|rows| self.writer.write(rows, fsync));
        async move { durable?.wait_store().await }
    }

    /// Queues the removal of these tasks; resolves once it is durable.
    pub fn forget(
        &self,
        ids: Vec<TaskId>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let rows = ids.into_iter().map(|id| Row { id, task: None }).collect();
        self.writer.write(rows, true).wait_store()
    }
}

fn load(db: &Database) -> Result<Vec<pb::Task>, StoreError> {
    let read = db.begin_read()?;
    let table = match read.open_table(TASKS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut tasks = Vec::new();
    for entry in table.iter()? {
        let (_, value) = entry?;
        let task = pb::Task::decode(value.value()).map_err(|source| StoreError::Decode {
            what: "task".into(),
            source,
        })?;
        tasks.push(task);
    }
    Ok(tasks)
}

/// Writes a group's tasks in the writer's transaction; of several writes of one task in the
/// group, the last queued wins (and the others cost no insert).
fn apply(write: &WriteTransaction, group: &[Vec<Row>]) -> Result<(), StoreError> {
    let mut latest: HashMap<TaskId, Option<&pb::Task>> = HashMap::new();
    for row in group.iter().flatten() {
        latest.insert(row.id, row.task.as_ref());
    }
    let mut table = write.open_table(TASKS)?;
    for (id, task) in latest {
        match task {
            Some(task) => {
                table.insert(id.as_bytes().as_slice(), task.encode_to_vec().as_slice())?;
            }
            None => {
                table.remove(id.as_bytes().as_slice())?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FLUSH_WITHIN;

    #[tokio::test]
    async fn tasks_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id = TaskId::new().to_string();
        {
            let (store, tasks) = WorkerStore::open(dir.path()).unwrap();
            assert!(tasks.is_empty());
            let mut task = pb::Task {
                id: id.clone(),
                revision: 1,
                ..Default::default()
            };
            store.queue(vec![task.clone()], true).await.unwrap();
            task.revision = 2;
            drop(store.queue(vec![task.clone()], true));
            task.revision = 3;
            store.queue(vec![task], true).await.unwrap();
        }
        // The writer thread lets go of the database once every handle is dropped.
        let reopened = wait_reopen(dir.path()).await;
        assert_eq!(reopened.len(), 1);
        assert_eq!(reopened[0].id, id);
        assert_eq!(reopened[0].revision, 3);
    }

    /// A write without an fsync is committed at once (a reader sees it) and is on disk when
    /// the store closes, even if nothing asked for an fsync after it.
    #[tokio::test]
    async fn writes_without_fsync_are_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..3).map(|_| TaskId::new().to_string()).collect();
        {
            let (store, _) = WorkerStore::open(dir.path()).unwrap();
            let task = |id: &String, revision| pb::Task {
                id: id.clone(),
                revision,
                ..Default::default()
            };
            store.queue(vec![task(&ids[0], 1)], false).await.unwrap();
            store.queue(vec![task(&ids[1], 2)], true).await.unwrap();
            // Past FLUSH_WITHIN the writer makes the last one durable itself.
            store.queue(vec![task(&ids[2], 3)], false).await.unwrap();
            tokio::time::sleep(FLUSH_WITHIN + std::time::Duration::from_millis(200)).await;
        }
        let mut reopened = wait_reopen(dir.path()).await;
        reopened.sort_by_key(|t| t.revision);
        let found: Vec<&String> = reopened.iter().map(|t| &t.id).collect();
        assert_eq!(found, ids.iter().collect::<Vec<_>>());
    }

    /// A task whose id is not a task id fails its own write, not the others queued with it.
    #[tokio::test]
    async fn a_bad_id_fails_only_its_own_write() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = WorkerStore::open(dir.path()).unwrap();
        let good = pb::Task {
            id: TaskId::new().to_string(),
            ..Default::default()
        };
        let bad = pb::Task {
            id: "not-an-id".into(),
            ..Default::default()
        };
        let bad = store.queue(vec![good.clone(), bad], true);
        let good = store.queue(vec![good], true);
        assert!(matches!(bad.await, Err(StoreError::InvalidKey { .. })));
        good.await.unwrap();
    }

    async fn wait_reopen(dir: &Path) -> Vec<pb::Task> {
        // The closing writer's last flush can take seconds on a loaded machine.
        for _ in 0..500 {
            if let Ok((_, tasks)) = WorkerStore::open(dir) {
                return tasks;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the store did not reopen");
    }
}
