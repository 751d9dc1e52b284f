//! The group-commit writer both stores write through: one thread owns the write transactions.
//!
//! Callers queue writes (each a `Vec` of records, e.g. the manager's [`Op`](super::manager::Op)s
//! or the worker's tasks); the thread takes every write queued since its last commit (at most
//! [`MAX_GROUP`] records), hands them to the store's `apply` function inside one transaction,
//! commits it, and answers every waiter of the group with the commit's outcome. Many concurrent
//! writers thus share one fsync while each still hears back only after its own write is on disk.
//!
//! **Order.** The queue is one FIFO and groups are taken from its head, so a write queued later
//! commits no earlier than one queued before it, and a group applies its writes in queue order.
//! Hence waiting on an *empty* write ([`Writer::barrier`]) is a barrier: once it resolves, every
//! write queued before it has been committed (or has failed, and its own waiter was told).
//! An empty group costs no commit.
//!
//! **Durability.** A write queued with `fsync: false` is committed with `Durability::None`:
//! readers see it at once, and it reaches the disk with the next fsync'd commit, or by an empty
//! fsync'd commit the writer makes itself within [`FLUSH_WITHIN`] (or when the store closes).

use std::{
    path::PathBuf,
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use redb::{Database, WriteTransaction};
use tokio::sync::oneshot;

use super::StoreError;

/// At most this many queued records go into one transaction: large enough that a burst of
/// submissions shares one fsync, small enough that one commit stays a few milliseconds.
pub const MAX_GROUP: usize = 4096;

/// The longest a write queued without an fsync waits for one.
pub const FLUSH_WITHIN: Duration = Duration::from_secs(1);

/// A commit that takes this long is logged (a WARN): callers that wait for it, SubmitTask and
/// StartTask among them, wait as long.
const SLOW_COMMIT: Duration = Duration::from_millis(500);

/// One queued write and who waits for its commit (nobody, for writes no answer depends on).
struct Queued<T> {
    records: Vec<T>,
    fsync: bool,
    done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

/// A handle to a store's writer thread; clones share it, and the thread ends (flushing what
/// waits for an fsync) once the last clone is dropped.
pub struct Writer<T> {
    queue: mpsc::Sender<Queued<T>>,
}

impl<T> Clone for Writer<T> {
    fn clone(&self) -> Self {
        Writer {
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Writer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

/// Where a caller waits for its write to be committed.
#[derive(Debug)]
pub struct Durable(Option<oneshot::Receiver<Result<(), StoreError>>>);

impl Durable {
    /// Nothing to wait for.
    pub fn done() -> Durable {
        Durable(None)
    }

    /// Waits until the write is committed (durably, if it asked for an fsync).
    pub async fn wait(self) -> crate::error::Result<()> {
        Ok(self.wait_store().await?)
    }

    /// [`Durable::wait`] with the store's own error type.
    pub async fn wait_store(self) -> Result<(), StoreError> {
        match self.0 {
            None => Ok(()),
            Some(rx) => rx.await.map_err(|_| StoreError::Stopped)?,
        }
    }
}

impl<T: Send + 'static> Writer<T> {
    /// Starts the writer thread `name` over `db` in `dir` (named in a disk-full error).
    /// `apply` writes a group's records, oldest first, into the transaction it is given; the
    /// writer begins and commits the transaction.
    pub fn spawn<F>(
        name: &str,
        db: Arc<Database>,
        dir: PathBuf,
        apply: F,
    ) -> Result<Writer<T>, StoreError>
    where
        F: FnMut(&WriteTransaction, &[Vec<T>]) -> Result<(), StoreError> + Send + 'static,
    {
        let (queue, rx) = mpsc::channel();
        let thread = Thread {
            name: name.to_owned(),
            db,
            dir,
            apply,
            flush_due: None,
        };
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || thread.run(rx))
            .map_err(|e| StoreError::StartWriter(Arc::new(e)))?;
        Ok(Writer { queue })
    }

    /// Queues `records`; the handle resolves once they are committed, in queue order with
    /// every other write. With `fsync`, committed means on disk; without, on disk within
    /// [`FLUSH_WITHIN`]. Dropping the handle does not cancel the write.
    pub fn write(&self, records: Vec<T>, fsync: bool) -> Durable {
        let (done, rx) = oneshot::channel();
        // If the thread is gone, `done` is dropped with the refused write and `rx` answers
        // `Stopped`.
        let _ = self.queue.send(Queued {
            records,
            fsync,
            done: Some(done),
        });
        Durable(Some(rx))
    }

    /// Queues `records` (fsync'd) with nobody waiting: they are committed in order with
    /// everything else.
    pub fn write_later(&self, records: Vec<T>) {
        if !records.is_empty() {
            let _ = self.queue.send(Queued {
                records,
                fsync: true,
                done: None,
            });
        }
    }

    /// Resolves once every write queued before it is committed (see the module's "Order").
    pub fn barrier(&self) -> Durable {
        self.write(Vec::new(), false)
    }
}

/// The thread's side: the database, how a group is applied, and the pending flush.
struct Thread<F> {
    name: String,
    db: Arc<Database>,
    dir: PathBuf,
    apply: F,
    /// When the oldest commit made without an fsync is due to get one.
    flush_due: Option<Instant>,
}

impl<F> Thread<F> {
    fn run<T>(mut self, rx: mpsc::Receiver<Queued<T>>)
    where
        F: FnMut(&WriteTransaction, &[Vec<T>]) -> Result<(), StoreError>,
    {
        loop {
            let first = match self.flush_due {
                None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(due) => rx.recv_timeout(due.saturating_duration_since(Instant::now())),
            };
            let first = match first {
                Ok(first) => first,
                Err(timeout_or_closed) => {
                    // Nothing asked for an fsync in time (or the store closes): an empty
                    // commit with one makes the earlier ones durable.
                    if self.flush_due.is_some() {
                        if let Err(e) = self.commit(&[], true) {
                            let store = &self.name;
                            tracing::error!(store, error = %e, "flushing the store failed");
                        }
                        self.flush_due = None;
                    }
                    match timeout_or_closed {
                        mpsc::RecvTimeoutError::Timeout => continue,
                        mpsc::RecvTimeoutError::Disconnected => return,
                    }
                }
            };
            let mut count = first.records.len();
            // `fsync`: a write with records asks for one; `barrier_fsync`: any write does, even
            // an empty one (which then waits for earlier writes to be durable, not only seen).
            let mut fsync = first.fsync && count > 0;
            let mut barrier_fsync = first.fsync;
            let mut records = vec![first.records];
            let mut waiters = vec![first.done];
            while count < MAX_GROUP {
                let Ok(next) = rx.try_recv() else { break };
                count += next.records.len();
                fsync |= next.fsync && !next.records.is_empty();
                barrier_fsync |= next.fsync;
                records.push(next.records);
                waiters.push(next.done);
            }
            let outcome = self.group(&records, count, fsync, barrier_fsync);
            for done in waiters.into_iter().flatten() {
                let _ = done.send(outcome.clone());
            }
        }
    }

    /// Commits one group, if it needs a commit: it holds records, or it asks that what an
    /// earlier commit left without an fsync be made durable.
    fn group<T>(
        &mut self,
        records: &[Vec<T>],
        count: usize,
        fsync: bool,
        barrier_fsync: bool,
    ) -> Result<(), StoreError>
    where
        F: FnMut(&WriteTransaction, &[Vec<T>]) -> Result<(), StoreError>,
    {
        let overdue = self.flush_due.is_some_and(|due| due <= Instant::now());
        let flush = self.flush_due.is_some() && (overdue || barrier_fsync);
        if count == 0 && !flush {
            return Ok(());
        }
        let fsync = fsync || flush;
        let started = Instant::now();
        let outcome = self.commit(records, fsync);
        let took = started.elapsed();
        if took >= SLOW_COMMIT {
            tracing::warn!(
                store = %self.name,
                writes = count,
                fsync,
                took_ms = took.as_millis() as u64,
                "slow store commit"
            );
        }
        match &outcome {
            Err(e) => {
                let store = &self.name;
                tracing::error!(store, error = %e, writes = count, "store commit failed");
            }
            Ok(()) if fsync => self.flush_due = None,
            Ok(()) => {
                self.flush_due
                    .get_or_insert_with(|| Instant::now() + FLUSH_WITHIN);
            }
        }
        outcome
    }

    fn commit<T>(&mut self, records: &[Vec<T>], fsync: bool) -> Result<(), StoreError>
    where
        F: FnMut(&WriteTransaction, &[Vec<T>]) -> Result<(), StoreError>,
    {
        let mut write = self.db.begin_write().map_err(StoreError::from)?;
        if !fsync {
            write
                .set_durability(redb::Durability::None)
                .map_err(StoreError::from)?;
        }
        (self.apply)(&write, records).map_err(|e| e.in_dir(&self.dir))?;
        write
            .commit()
            .map_err(|e| StoreError::from(e).in_dir(&self.dir))
    }
}

#[cfg(test)]
mod tests;
