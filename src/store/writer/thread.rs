//! The writer thread: takes groups off the queue, commits them, tells the owner, and keeps the
//! store read-only after a failed commit until a reopened database takes a probe write.

use std::{
    sync::{mpsc, Arc},
    time::{Instant, SystemTime},
};

use redb::{TableDefinition, WriteTransaction};
use tokio::sync::watch;

use super::{
    Health, Opener, OwnerSlot, Queued, FLUSH_WITHIN, MAX_GROUP, PROBE_BYTES, REMIND_EVERY,
    RETRY_EVERY,
};
use crate::store::StoreError;

/// A commit that takes this long is logged (a WARN): callers that wait for it, SubmitTask and
/// StartTask among them, wait as long.
const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Where the probe write goes; the table is dropped again at once.
const PROBE: TableDefinition<'static, &'static str, &'static [u8]> =
    TableDefinition::new("cube_write_probe");

/// A store that refuses writes, and when it tries again.
struct ReadOnly {
    error: StoreError,
    since: Instant,
    next_try: Instant,
    reminded: Instant,
}

/// The thread's side: the database, how a group is applied, the owner, and the pending flush.
pub(super) struct Thread<T, F> {
    opener: Opener,
    apply: F,
    owner: OwnerSlot<T>,
    health: watch::Sender<Health>,
    /// When the oldest commit made without an fsync is due to get one.
    flush_due: Option<Instant>,
    /// The records of commits made without an fsync since the last one that had it.
    unflushed: Vec<Vec<T>>,
    read_only: Option<ReadOnly>,
    /// The database handle met an I/O error: redb refuses everything on it, reads too, until
    /// it is opened again.
    poisoned: bool,
}

/// A group taken off the queue.
struct Group<T> {
    records: Vec<Vec<T>>,
    waiters: Vec<Option<tokio::sync::oneshot::Sender<Result<(), StoreError>>>>,
    count: usize,
    /// A write with records asks for an fsync.
    fsync: bool,
    /// Any write asks for one, even an empty one (which then waits for earlier writes to be
    /// durable, not only seen).
    barrier_fsync: bool,
}

impl<T: Send + 'static, F> Thread<T, F>
where
    F: FnMut(&WriteTransaction, &[Vec<T>]) -> Result<(), StoreError>,
{
    pub(super) fn new(
        opener: Opener,
        apply: F,
        owner: OwnerSlot<T>,
        health: watch::Sender<Health>,
    ) -> Self {
        Thread {
            opener,
            apply,
            owner,
            health,
            flush_due: None,
            unflushed: Vec::new(),
            read_only: None,
            poisoned: false,
        }
    }

    pub(super) fn run(mut self, rx: mpsc::Receiver<Queued<T>>) {
        loop {
            let due = match &self.read_only {
                Some(read_only) => Some(read_only.next_try),
                None => self.flush_due,
            };
            let first = match due {
                None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(due) => rx.recv_timeout(due.saturating_duration_since(Instant::now())),
            };
            let first = match first {
                Ok(first) => first,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if self.read_only.is_some() {
                        self.try_writable();
                    } else {
                        self.flush(&rx);
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // The store closes: what waits for an fsync gets it.
                    if self.read_only.is_none() {
                        self.flush(&rx);
                    }
                    return;
                }
            };
            if self.read_only.is_some() {
                self.refuse(first, &rx);
                continue;
            }
            let group = take_group(first, &rx);
            self.commit_group(group, &rx);
        }
    }

    /// Commits one group, if it needs a commit, and answers its waiters. A failure makes the
    /// store read-only, and the owner hears that the group (and everything not yet durable)
    /// is refused.
    fn commit_group(&mut self, group: Group<T>, rx: &mpsc::Receiver<Queued<T>>) {
        let overdue = self.flush_due.is_some_and(|due| due <= Instant::now());
        let flush = self.flush_due.is_some() && (overdue || group.barrier_fsync);
        if group.count == 0 && !flush {
            answer(group.waiters, &Ok(()));
            return;
        }
        let fsync = group.fsync || flush;
        let started = Instant::now();
        let outcome = self.commit(&group.records, fsync);
        let took = started.elapsed();
        if took >= SLOW_COMMIT {
            tracing::warn!(
                store = %self.opener.name,
                writes = group.count,
                fsync,
                took_ms = took.as_millis() as u64,
                "slow store commit"
            );
        }
        match outcome {
            Ok(()) if fsync => {
                self.flush_due = None;
                let mut durable = std::mem::take(&mut self.unflushed);
                durable.extend(group.records);
                self.owner().durable(durable);
                answer(group.waiters, &Ok(()));
            }
            Ok(()) => {
                self.flush_due
                    .get_or_insert_with(|| Instant::now() + FLUSH_WITHIN);
                self.unflushed.extend(group.records);
                answer(group.waiters, &Ok(()));
            }
            Err(error) => {
                // Memory goes back first, so a caller told of the failure finds it back.
                self.turn_read_only(error.clone(), group.records, rx);
                answer(group.waiters, &Err(error));
            }
        }
    }

    /// Makes what earlier commits left without an fsync durable, with an empty commit.
    fn flush(&mut self, rx: &mpsc::Receiver<Queued<T>>) {
        if self.flush_due.is_none() {
            return;
        }
        match self.commit(&[], true) {
            Ok(()) => {
                self.flush_due = None;
                let durable = std::mem::take(&mut self.unflushed);
                self.owner().durable(durable);
            }
            Err(error) => self.turn_read_only(error, Vec::new(), rx),
        }
    }

    /// A commit failed: nothing is written until the store can write again. Everything not
    /// durable (this group, earlier commits without an fsync) is refused, and so is every
    /// write queued meanwhile, which may build on it.
    fn turn_read_only(
        &mut self,
        error: StoreError,
        records: Vec<Vec<T>>,
        rx: &mpsc::Receiver<Queued<T>>,
    ) {
        let store = &self.opener.name;
        tracing::error!(
            store,
            error = %with_causes(&error),
            "store read-only: a write failed; writes are refused until it can write again"
        );
        let now = Instant::now();
        self.flush_due = None;
        self.read_only = Some(ReadOnly {
            error: error.clone(),
            since: now,
            next_try: now + RETRY_EVERY,
            reminded: now,
        });
        self.health.send_replace(Health::ReadOnly {
            error,
            since: SystemTime::now(),
        });
        let mut refused = std::mem::take(&mut self.unflushed);
        refused.extend(records);
        self.tell_refused(refused, rx);
        // Readers get a handle redb still answers on.
        self.poisoned = true;
        let _ = self.reopen();
    }

    /// A write that arrives while read-only is refused at once, with every one queued behind
    /// it; an empty one (a barrier) succeeds: nothing before it is left to commit.
    fn refuse(&mut self, first: Queued<T>, rx: &mpsc::Receiver<Queued<T>>) {
        let Some(error) = self.read_only.as_ref().map(|r| r.error.clone()) else {
            return;
        };
        let mut refused = Vec::new();
        let mut next = Some(first);
        while let Some(queued) = next {
            refuse_one(queued, &error, &mut refused);
            next = rx.try_recv().ok();
        }
        if !refused.is_empty() {
            self.tell_refused(refused, rx);
        }
    }

    /// Tells the owner of refused records; it refuses what is queued under its own lock.
    fn tell_refused(&mut self, records: Vec<Vec<T>>, rx: &mpsc::Receiver<Queued<T>>) {
        let Some(error) = self.read_only.as_ref().map(|r| r.error.clone()) else {
            return;
        };
        let mut refuse_queued = || {
            let mut ignored = Vec::new();
            while let Ok(queued) = rx.try_recv() {
                refuse_one(queued, &error, &mut ignored);
            }
        };
        self.owner().refused(records, &mut refuse_queued);
    }

    /// Read-only, and the time to try again has come: reopen the database and probe it.
    fn try_writable(&mut self) {
        let Some(read_only) = &self.read_only else {
            return;
        };
        if read_only.next_try > Instant::now() {
            return;
        }
        let store = self.opener.name.clone();
        match self.probe() {
            Ok(()) => {
                let after = self.read_only.take().map(|r| r.since.elapsed());
                tracing::info!(
                    store,
                    read_only_secs = after.unwrap_or_default().as_secs(),
                    "store writable again"
                );
                self.health.send_replace(Health::Writable);
            }
            Err(error) => {
                let Some(read_only) = &mut self.read_only else {
                    return;
                };
                let now = Instant::now();
                read_only.next_try = now + RETRY_EVERY;
                if now.duration_since(read_only.reminded) >= REMIND_EVERY {
                    read_only.reminded = now;
                    tracing::warn!(
                        store,
                        read_only_secs = read_only.since.elapsed().as_secs(),
                        error = %with_causes(&error),
                        "store still read-only"
                    );
                }
            }
        }
    }

    /// Drops the database (once no reader holds it) and opens it again, if an I/O error
    /// poisoned it.
    fn reopen(&mut self) -> Result<(), StoreError> {
        if !self.poisoned {
            return Ok(());
        }
        self.opener.db.close()?;
        let db = (self.opener.open)()?;
        self.opener.db.set(Arc::new(db));
        self.poisoned = false;
        Ok(())
    }

    /// Whether the store can write again: [`PROBE_BYTES`] written to a file beside the
    /// database (which leaves the database alone if they do not fit), then the same into the
    /// database and removed again, each with an fsync. A failure in the database poisons the
    /// handle; it is opened again at once for readers.
    fn probe(&mut self) -> Result<(), StoreError> {
        self.reopen()?;
        probe_file(&self.opener.dir)
            .map_err(|e| StoreError::from(redb::StorageError::Io(e)).in_dir(&self.opener.dir))?;
        let probed = self.probe_database();
        if probed.is_err() {
            self.poisoned = true;
            let _ = self.reopen();
        }
        probed
    }

    fn probe_database(&mut self) -> Result<(), StoreError> {
        let dir = &self.opener.dir;
        let in_dir = |e: StoreError| e.in_dir(dir);
        let db = self.opener.db.get()?;
        let write = db.begin_write().map_err(|e| in_dir(e.into()))?;
        write
            .open_table(PROBE)
            .map_err(|e| in_dir(e.into()))?
            .insert("probe", vec![0u8; PROBE_BYTES].as_slice())
            .map_err(|e| in_dir(e.into()))?;
        write.commit().map_err(|e| in_dir(e.into()))?;
        let write = db.begin_write().map_err(|e| in_dir(e.into()))?;
        write.delete_table(PROBE).map_err(|e| in_dir(e.into()))?;
        write.commit().map_err(|e| in_dir(e.into()))?;
        Ok(())
    }

    fn commit(&mut self, records: &[Vec<T>], fsync: bool) -> Result<(), StoreError> {
        let dir = &self.opener.dir;
        let db = self.opener.db.get()?;
        let mut write = db
            .begin_write()
            .map_err(|e| StoreError::from(e).in_dir(dir))?;
        if !fsync {
            write
                .set_durability(redb::Durability::None)
                .map_err(StoreError::from)?;
        }
        (self.apply)(&write, records).map_err(|e| e.in_dir(dir))?;
        write.commit().map_err(|e| StoreError::from(e).in_dir(dir))
    }

    fn owner(&self) -> std::sync::MutexGuard<'_, Box<dyn super::Owner<T>>> {
        self.owner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes [`PROBE_BYTES`] to a file in `dir` with an fsync, and removes it.
fn probe_file(dir: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = dir.join(".cube-write-probe");
    let written = std::fs::File::create(&path).and_then(|mut file| {
        file.write_all(&vec![0u8; PROBE_BYTES])?;
        file.sync_all()
    });
    let _ = std::fs::remove_file(&path);
    written
}

/// Takes `first` and every write queued behind it, up to [`MAX_GROUP`] records.
fn take_group<T>(first: Queued<T>, rx: &mpsc::Receiver<Queued<T>>) -> Group<T> {
    let mut group = Group {
        count: first.records.len(),
        fsync: first.fsync && !first.records.is_empty(),
        barrier_fsync: first.fsync,
        records: vec![first.records],
        waiters: vec![first.done],
    };
    while group.count < MAX_GROUP {
        let Ok(next) = rx.try_recv() else { break };
        group.count += next.records.len();
        group.fsync |= next.fsync && !next.records.is_empty();
        group.barrier_fsync |= next.fsync;
        group.records.push(next.records);
        group.waiters.push(next.done);
    }
    group
}

/// Refuses one write: its waiter hears `error` (a barrier hears success), its records join
/// `refused`.
fn refuse_one<T>(queued: Queued<T>, error: &StoreError, refused: &mut Vec<Vec<T>>) {
    let outcome = if queued.records.is_empty() {
        Ok(())
    } else {
        Err(error.clone())
    };
    if let Some(done) = queued.done {
        let _ = done.send(outcome);
    }
    if !queued.records.is_empty() {
        refused.push(queued.records);
    }
}

fn answer(
    waiters: Vec<Option<tokio::sync::oneshot::Sender<Result<(), StoreError>>>>,
    outcome: &Result<(), StoreError>,
) {
    for done in waiters.into_iter().flatten() {
        let _ = done.send(outcome.clone());
    }
}

/// An error with its causes, each once: "no space left in /d: I/O error: No space left…".
fn with_causes(error: &StoreError) -> String {
    let mut out = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
