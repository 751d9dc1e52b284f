//! The worker's durable record of its tasks: one redb table, task id -> the `Task` message.
//!
//! Writes go through one writer task that commits everything queued so far in one
//! transaction (a group commit), so many concurrent `StartTask` calls share an fsync while each
//! still answers only after its own write is durable.

use std::{collections::HashMap, path::Path, sync::Arc};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use crate::{
    error::{Error, Result},
    pb,
    store::StoreKind,
    TaskId,
};

/// Task id (16 bytes) -> the task, prost-encoded.
const TASKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("worker_tasks");

/// One queued write and the caller waiting for it to be durable.
struct Write {
    tasks: Vec<pb::Task>,
    done: oneshot::Sender<Result<()>>,
}

/// A handle to the worker's store; cloning shares the one writer.
#[derive(Clone)]
pub(crate) struct WorkerStore {
    writes: mpsc::UnboundedSender<Write>,
}

impl WorkerStore {
    /// Opens the store in `data_dir`, returns it with every task it holds, and starts its
    /// writer thread (which ends when the last handle is dropped).
    pub fn open(data_dir: &Path) -> Result<(Self, Vec<pb::Task>)> {
        let db = crate::store::open(data_dir, StoreKind::Worker)?;
        let tasks = load(&db)?;
        let (writes, queue) = mpsc::unbounded_channel();
        let db = Arc::new(db);
        std::thread::Builder::new()
            .name("cube-worker-store".into())
            .spawn(move || writer(db, queue))
            .map_err(|e| Error::Internal(format!("starting the store writer: {e}")))?;
        Ok((Self { writes }, tasks))
    }

    /// Queues these tasks for writing (their order with other writes is kept) and returns a
    /// future that resolves once they are committed; dropping it does not cancel the write.
    pub fn queue(
        &self,
        tasks: Vec<pb::Task>,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let (done, wait) = oneshot::channel();
        let sent = self.writes.send(Write { tasks, done });
        async move {
            sent.map_err(|_| Error::Unavailable("the worker is shutting down".into()))?;
            wait.await
                .map_err(|_| Error::Unavailable("the worker is shutting down".into()))?
        }
    }
}

fn load(db: &Database) -> Result<Vec<pb::Task>> {
    let read = db.begin_read()?;
    let table = match read.open_table(TASKS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut tasks = Vec::new();
    for entry in table.iter()? {
        let (_, value) = entry?;
        let task = pb::Task::decode(value.value())
            .map_err(|e| Error::Store(format!("a stored task does not decode: {e}")))?;
        tasks.push(task);
    }
    Ok(tasks)
}

/// Commits queued writes in groups until every handle is gone.
fn writer(db: Arc<Database>, mut queue: mpsc::UnboundedReceiver<Write>) {
    while let Some(first) = queue.blocking_recv() {
        let mut group = vec![first];
        while let Ok(next) = queue.try_recv() {
            group.push(next);
        }
        // Later writes of the same task win; the queue keeps their order.
        let mut latest: HashMap<String, &pb::Task> = HashMap::new();
        for write in &group {
            for task in &write.tasks {
                latest.insert(task.id.clone(), task);
            }
        }
        let result = commit(&db, latest.values().copied());
        if let Err(e) = &result {
            tracing::error!(error = %e, "writing the worker store failed");
        }
        for write in group {
            let _ = write.done.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(Error::Store(e.to_string())),
            });
        }
    }
}

fn commit<'a>(db: &Database, tasks: impl Iterator<Item = &'a pb::Task>) -> Result<()> {
    let write = db.begin_write()?;
    {
        let mut table = write.open_table(TASKS)?;
        for task in tasks {
            let id = TaskId::parse("task.id", &task.id)?;
            table.insert(id.as_bytes().as_slice(), task.encode_to_vec().as_slice())?;
        }
    }
    write.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
            store.queue(vec![task.clone()]).await.unwrap();
            task.revision = 2;
            drop(store.queue(vec![task.clone()]));
            task.revision = 3;
            store.queue(vec![task]).await.unwrap();
        }
        // The writer thread lets go of the database once every handle is dropped.
        let reopened = wait_reopen(dir.path()).await;
        assert_eq!(reopened.len(), 1);
        assert_eq!(reopened[0].id, id);
        assert_eq!(reopened[0].revision, 3);
    }

    async fn wait_reopen(dir: &Path) -> Vec<pb::Task> {
        for _ in 0..100 {
            if let Ok((_, tasks)) = WorkerStore::open(dir) {
                return tasks;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the store did not reopen");
    }
}
