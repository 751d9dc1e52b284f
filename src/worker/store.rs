//! The worker's durable record of its tasks: one redb table, task id -> the `Task` message.
//!
//! Writes go through one writer thread that commits everything queued so far in one
//! transaction (a group commit), so many concurrent `StartTask` calls share an fsync while each
//! still answers only after its own write is durable. A group of writes that asked for no
//! fsync (see [`WorkerStore::queue`]) is committed without one; the next fsync'd commit makes
//! it durable, and the writer makes one itself within [`FLUSH_WITHIN`] when none comes.

use std::{
    collections::HashMap,
    path::Path,
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::{
    error::{Error, Result},
    pb,
    store::StoreKind,
    TaskId,
};

/// Task id (16 bytes) -> the task, prost-encoded.
const TASKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("worker_tasks");

/// The longest a write queued without an fsync waits for one.
pub(crate) const FLUSH_WITHIN: Duration = Duration::from_secs(1);

/// A commit that takes this long is logged (a WARN): callers that wait for it, StartTask
/// among them, wait as long.
const SLOW_COMMIT: Duration = Duration::from_millis(500);

/// One queued write and the caller waiting for it to be committed.
struct Write {
    tasks: Vec<pb::Task>,
    fsync: bool,
    done: oneshot::Sender<Result<()>>,
}

/// A handle to the worker's store; cloning shares the one writer.
#[derive(Clone)]
pub(crate) struct WorkerStore {
    writes: mpsc::Sender<Write>,
}

impl WorkerStore {
    /// Opens the store in `data_dir`, returns it with every task it holds, and starts its
    /// writer thread (which ends when the last handle is dropped).
    pub fn open(data_dir: &Path) -> Result<(Self, Vec<pb::Task>)> {
        let db = crate::store::open(data_dir, StoreKind::Worker)?;
        let tasks = load(&db)?;
        let (writes, queue) = mpsc::channel();
        let db = Arc::new(db);
        std::thread::Builder::new()
            .name("cube-worker-store".into())
            .spawn(move || writer(db, queue))
            .map_err(|e| Error::Internal(format!("starting the store writer: {e}")))?;
        Ok((Self { writes }, tasks))
    }

    /// Queues these tasks for writing (their order with other writes is kept) and returns a
    /// future that resolves once they are committed; dropping it does not cancel the write.
    /// With `fsync`, committed means on disk; without, on disk within [`FLUSH_WITHIN`] (or
    /// with the next write that asks for an fsync, or when the store closes).
    pub fn queue(
        &self,
        tasks: Vec<pb::Task>,
        fsync: bool,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let (done, wait) = oneshot::channel();
        let sent = self.writes.send(Write { tasks, fsync, done });
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
fn writer(db: Arc<Database>, queue: mpsc::Receiver<Write>) {
    // When the oldest commit made without an fsync is due to get one.
    let mut flush_due: Option<Instant> = None;
    loop {
        let first = match flush_due {
            None => queue
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(due) => queue.recv_timeout(due.saturating_duration_since(Instant::now())),
        };
        let first = match first {
            Ok(first) => first,
            Err(timeout_or_closed) => {
                // Nothing asked for an fsync in time (or the store closes): an empty commit
                // with one makes the earlier ones durable.
                if let Err(e) = commit(&db, std::iter::empty(), true) {
                    tracing::error!(error = %e, "flushing the worker store failed");
                }
                flush_due = None;
                match timeout_or_closed {
                    mpsc::RecvTimeoutError::Timeout => continue,
                    mpsc::RecvTimeoutError::Disconnected => return,
                }
            }
        };
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
        let fsync =
            group.iter().any(|w| w.fsync) || flush_due.is_some_and(|due| due <= Instant::now());
        let started = Instant::now();
        let result = commit(&db, latest.values().copied(), fsync);
        let took = started.elapsed();
        if took >= SLOW_COMMIT {
            tracing::warn!(
                tasks = latest.len(),
                fsync,
                took_ms = took.as_millis() as u64,
                "slow store commit"
            );
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "writing the worker store failed");
        }
        if fsync && result.is_ok() {
            flush_due = None;
        } else if !fsync {
            flush_due.get_or_insert_with(|| Instant::now() + FLUSH_WITHIN);
        }
        for write in group {
            let _ = write.done.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(Error::Store(e.to_string())),
            });
        }
    }
}

fn commit<'a>(db: &Database, tasks: impl Iterator<Item = &'a pb::Task>, fsync: bool) -> Result<()> {
    let mut write = db.begin_write()?;
    if !fsync {
        write
            .set_durability(redb::Durability::None)
            .map_err(|e| Error::Store(e.to_string()))?;
    }
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
            tokio::time::sleep(FLUSH_WITHIN + Duration::from_millis(200)).await;
        }
        let mut reopened = wait_reopen(dir.path()).await;
        reopened.sort_by_key(|t| t.revision);
        let found: Vec<&String> = reopened.iter().map(|t| &t.id).collect();
        assert_eq!(found, ids.iter().collect::<Vec<_>>());
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
