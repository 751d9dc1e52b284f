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
//!
//! **Memory follows the disk.** The store's [`Owner`] hears, on the writer thread and in commit
//! order, of every record once it is durable ([`Owner::durable`], before any waiter of it is
//! answered) and of every record that will never be ([`Owner::refused`]). An owner that shows
//! readers only what it was told is durable, and that goes back to that when told of a refusal,
//! never shows a change the disk does not hold.
//!
//! **Read-only.** A commit that fails (a full disk, an I/O error) puts the store in read-only
//! mode: every write is refused at once with that error, without touching the disk, and
//! [`Writer::health`] says so. Every [`RETRY_EVERY`] the thread reopens the database (redb
//! refuses every operation after an I/O error until it is reopened) and makes a probe write of
//! [`PROBE_BYTES`]; once that succeeds the store is writable again. Entering and leaving
//! read-only mode are logged once each, with a reminder every [`REMIND_EVERY`] in between.

use std::{
    path::PathBuf,
    sync::{mpsc, Arc, Mutex},
    time::{Duration, SystemTime},
};

use redb::{Database, WriteTransaction};
use tokio::sync::{oneshot, watch};

use super::{DbCell, StoreError};

mod thread;

/// At most this many queued records go into one transaction: large enough that a burst of
/// submissions shares one fsync, small enough that one commit stays a few milliseconds.
pub const MAX_GROUP: usize = 4096;

/// The longest a write queued without an fsync waits for one.
pub const FLUSH_WITHIN: Duration = Duration::from_secs(1);

/// How often a read-only store tries to become writable again.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// How often a store that stays read-only says so again in the log.
pub const REMIND_EVERY: Duration = Duration::from_secs(60);

/// The size of the probe a read-only store writes (and removes) to learn it can write again:
/// room for more than the smallest commit, so one freed page does not flip it back and forth.
pub const PROBE_BYTES: usize = 64 * 1024;

/// Whether the store takes writes.
#[derive(Debug, Clone)]
pub enum Health {
    /// Writes are committed.
    Writable,
    /// Writes are refused with `error` (what the failed commit met) since `since`.
    ReadOnly {
        /// The failure that made it read-only.
        error: StoreError,
        /// When it became read-only.
        since: SystemTime,
    },
}

impl Health {
    /// `Ok` when writable, else the error every write is refused with.
    pub fn check(&self) -> Result<(), StoreError> {
        match self {
            Health::Writable => Ok(()),
            Health::ReadOnly { error, .. } => Err(error.clone()),
        }
    }

    /// The line people read: "store read-only: disk full", or `None` when writable.
    pub fn summary(&self) -> Option<String> {
        match self {
            Health::Writable => None,
            Health::ReadOnly { error, .. } if error.is_disk_full() => {
                Some("store read-only: disk full".into())
            }
            Health::ReadOnly { error, .. } => Some(format!("store read-only: {error}")),
        }
    }
}

/// What the store's owner (the process state it is the record of) does as writes succeed and
/// fail. Both run on the writer thread, in commit order; they must not wait for the writer.
pub trait Owner<T>: Send + 'static {
    /// These records are durable, oldest first: those of the commit just made, after those
    /// of earlier commits made without an fsync, which it made durable.
    fn durable(&mut self, records: Vec<Vec<T>>);

    /// These records, oldest first, will never be stored (nor will anything queued up to now):
    /// memory must go back to what [`Owner::durable`] said. `refuse_queued` refuses every
    /// write still queued; an owner that queues writes under its own lock calls it under that
    /// lock, so the writes it refuses are exactly those made before memory went back.
    fn refused(&mut self, records: Vec<Vec<T>>, refuse_queued: &mut dyn FnMut());
}

/// An owner that keeps no memory of its own: refusals only refuse what is queued.
struct NoOwner;

impl<T> Owner<T> for NoOwner {
    fn durable(&mut self, _records: Vec<Vec<T>>) {}

    fn refused(&mut self, _records: Vec<Vec<T>>, refuse_queued: &mut dyn FnMut()) {
        refuse_queued();
    }
}

/// Where the owner lives: set after the writer starts (the owner is built from what the store
/// loaded).
type OwnerSlot<T> = Arc<Mutex<Box<dyn Owner<T>>>>;

/// How the writer thread (re)opens its database: `open` makes a fresh handle once the old one
/// is dropped.
pub struct Opener {
    /// The thread's name, also the store's name in the log.
    pub name: String,
    /// The data dir, named in a disk-full error.
    pub dir: PathBuf,
    /// The shared handle readers use too.
    pub db: DbCell,
    /// Opens the database again (after a failed commit, redb refuses everything until then).
    pub open: Box<dyn FnMut() -> Result<Database, StoreError> + Send>,
}

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
    health: watch::Receiver<Health>,
    owner: OwnerSlot<T>,
}

impl<T> Clone for Writer<T> {
    fn clone(&self) -> Self {
        Writer {
            queue: self.queue.clone(),
            health: self.health.clone(),
            owner: self.owner.clone(),
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
    /// Starts the writer thread over the database `opener` holds. `apply` writes a group's
    /// records, oldest first, into the transaction it is given; the writer begins and commits
    /// the transaction. Until [`Writer::set_owner`], nobody hears of durable records.
    pub fn spawn<F>(opener: Opener, apply: F) -> Result<Writer<T>, StoreError>
    where
        F: FnMut(&WriteTransaction, &[Vec<T>]) -> Result<(), StoreError> + Send + 'static,
    {
        let (queue, rx) = mpsc::channel();
        let (health_tx, health) = watch::channel(Health::Writable);
        let owner: OwnerSlot<T> = Arc::new(Mutex::new(Box::new(NoOwner)));
        let name = opener.name.clone();
        let thread = thread::Thread::new(opener, apply, owner.clone(), health_tx);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || thread.run(rx))
            .map_err(|e| StoreError::StartWriter(Arc::new(e)))?;
        Ok(Writer {
            queue,
            health,
            owner,
        })
    }

    /// Makes `owner` the one told of durable and refused records from now on.
    pub fn set_owner(&self, owner: Box<dyn Owner<T>>) {
        *self.owner.lock().unwrap_or_else(|p| p.into_inner()) = owner;
    }

    /// Whether the store takes writes; changes as it turns read-only and back.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.health.clone()
    }

    /// `Ok` when the store takes writes, else the error a write would be refused with: a
    /// caller checks first so it changes nothing the store would refuse.
    pub fn writable(&self) -> Result<(), StoreError> {
        self.health.borrow().check()
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

#[cfg(test)]
mod tests;
