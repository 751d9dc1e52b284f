//! The writer's promises: group commit, queue order (an empty write is a barrier), the
//! group bound, one outcome per group, and `Stopped` once the thread is gone.

use std::{sync::Mutex, time::Instant};

use redb::{ReadableDatabase, TableDefinition};

use super::*;

const TABLE: TableDefinition<'static, u64, u64> = TableDefinition::new("test");

/// A record: `(key, value)`; value `u64::MAX` makes the group fail, value `NO_SPACE` fails it
/// as a full disk would, key `u64::MAX` panics.
type Record = (u64, u64);

const NO_SPACE: u64 = u64::MAX - 1;

/// A writer over a fresh database whose first group, once being applied, says so on `entered`
/// and waits until `release` is sent, so a test can queue writes behind it and know they form
/// the next group. `groups` records the number of records of each group applied.
struct Fixture {
    dir: tempfile::TempDir,
    db: DbCell,
    writer: Writer<Record>,
    release: mpsc::Sender<()>,
    entered: mpsc::Receiver<()>,
    groups: Arc<Mutex<Vec<usize>>>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.redb");
    let db = DbCell::new(Database::create(&path).unwrap());
    let (release, gate) = mpsc::channel::<()>();
    let (enter, entered) = mpsc::channel::<()>();
    let groups = Arc::new(Mutex::new(Vec::new()));
    let seen = groups.clone();
    let gate = Mutex::new(Some(gate));
    let opener = Opener {
        name: "test-writer".into(),
        dir: dir.path().into(),
        db: db.clone(),
        open: Box::new(move || Ok(Database::create(&path)?)),
    };
    let writer = Writer::spawn(
        opener,
        move |write: &WriteTransaction, group: &[Vec<Record>]| {
            if let Some(gate) = gate.lock().unwrap().take() {
                let _ = enter.send(());
                let _ = gate.recv();
            }
            let records: Vec<&Record> = group.iter().flatten().collect();
            seen.lock().unwrap().push(records.len());
            let mut table = write.open_table(TABLE)?;
            for &&(key, value) in &records {
                assert!(key != u64::MAX, "a record asked the writer to panic");
                if value == NO_SPACE {
                    let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
                    return Err(redb::StorageError::Io(full).into());
                }
                if value == u64::MAX {
                    return Err(StoreError::InvalidKey {
                        id: key.to_string(),
                    });
                }
                table.insert(key, value)?;
            }
            Ok(())
        },
    )
    .unwrap();
    Fixture {
        dir,
        db,
        writer,
        release,
        entered,
        groups,
    }
}

fn read(db: &DbCell, key: u64) -> Option<u64> {
    let read = db.get().unwrap().begin_read().unwrap();
    let table = match read.open_table(TABLE) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return None,
        Err(e) => panic!("{e}"),
    };
    table.get(key).unwrap().map(|v| v.value())
}

/// Writes queued while a commit runs share the next one, applied in queue order: the later
/// write of a key wins.
#[tokio::test]
async fn writes_queued_together_share_one_commit_in_order() {
    let f = fixture();
    let first = f.writer.write(vec![(0, 0)], true);
    f.entered.recv().unwrap();
    let later: Vec<Durable> = (1..=100)
        .map(|i| f.writer.write(vec![(1, i), (i + 1, i)], true))
        .collect();
    f.release.send(()).unwrap();
    first.wait_store().await.unwrap();
    for durable in later {
        durable.wait_store().await.unwrap();
    }
    assert_eq!(*f.groups.lock().unwrap(), vec![1, 200]);
    assert_eq!(read(&f.db, 1), Some(100));
}

/// Waiting on an empty write is a barrier: writes queued before it with nobody waiting (and
/// without an fsync) are readable once it resolves.
#[tokio::test]
async fn an_empty_write_is_a_barrier_for_everything_before_it() {
    let f = fixture();
    f.release.send(()).unwrap();
    for i in 0..1000 {
        f.writer.write_later(vec![(i, i)]);
        if i % 3 == 0 {
            drop(f.writer.write(vec![(i, i + 1)], false));
        }
    }
    f.writer.barrier().wait_store().await.unwrap();
    for i in 0..1000 {
        let expected = if i % 3 == 0 { i + 1 } else { i };
        assert_eq!(read(&f.db, i), Some(expected), "key {i}");
    }
    // An empty write alone costs no commit.
    let groups = f.groups.lock().unwrap().len();
    f.writer.barrier().wait_store().await.unwrap();
    assert_eq!(f.groups.lock().unwrap().len(), groups);
}

/// A group stops taking writes once it holds MAX_GROUP records; the rest make the next one.
#[tokio::test]
async fn a_group_holds_at_most_max_group_records() {
    let f = fixture();
    let first = f.writer.write(vec![(0, 0)], true);
    f.entered.recv().unwrap();
    let half = MAX_GROUP as u64 / 2;
    let later: Vec<Durable> = (0..3)
        .map(|w| {
            f.writer
                .write((0..half).map(|i| (w * half + i, w)).collect(), true)
        })
        .collect();
    f.release.send(()).unwrap();
    first.wait_store().await.unwrap();
    for durable in later {
        durable.wait_store().await.unwrap();
    }
    let half = half as usize;
    assert_eq!(*f.groups.lock().unwrap(), vec![1, 2 * half, half]);
}

/// A failed commit answers every write of its group with the error and stores none of them;
/// the store then refuses every write (without applying it) until it can write again, which it
/// finds out by itself: the failing record is not written again, so the probe after
/// RETRY_EVERY succeeds and writes are taken again.
#[tokio::test]
async fn a_failed_group_makes_the_store_read_only_until_a_probe_succeeds() {
    let f = fixture();
    let mut health = f.writer.health();
    let first = f.writer.write(vec![(0, 0)], true);
    f.entered.recv().unwrap();
    let good = f.writer.write(vec![(1, 1)], true);
    let bad = f.writer.write(vec![(2, u64::MAX)], true);
    let barrier = f.writer.barrier();
    f.release.send(()).unwrap();
    first.wait_store().await.unwrap();
    for durable in [good, bad, barrier] {
        let err = durable.wait_store().await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidKey { .. }), "{err}");
    }
    assert!(f.writer.writable().is_err());
    let groups = f.groups.lock().unwrap().len();
    let refused = f.writer.write(vec![(3, 3)], true).wait_store().await;
    assert!(
        matches!(refused, Err(StoreError::InvalidKey { .. })),
        "{refused:?}"
    );
    // A barrier is not refused: nothing before it waits to be committed.
    f.writer.barrier().wait_store().await.unwrap();
    assert_eq!(f.groups.lock().unwrap().len(), groups, "nothing applied");
    let started = Instant::now();
    tokio::time::timeout(3 * RETRY_EVERY, health.wait_for(|h| h.check().is_ok()))
        .await
        .expect("writable again within the retry period")
        .unwrap();
    assert!(started.elapsed() >= RETRY_EVERY / 2);
    f.writer
        .write(vec![(4, 4)], true)
        .wait_store()
        .await
        .unwrap();
    assert_eq!(read(&f.db, 1), None);
    assert_eq!(read(&f.db, 3), None);
    assert_eq!(read(&f.db, 4), Some(4));
}

/// What the owner hears: durable records in commit order (those committed without an fsync
/// only once a later commit made them durable), and refused ones, with the queue refused under
/// its own call.
#[tokio::test]
async fn the_owner_hears_what_is_durable_and_what_is_refused() {
    #[derive(Default)]
    struct Heard {
        durable: Vec<Record>,
        refused: Vec<Record>,
    }
    struct Listener(Arc<Mutex<Heard>>);
    impl Owner<Record> for Listener {
        fn durable(&mut self, records: Vec<Vec<Record>>) {
            self.0
                .lock()
                .unwrap()
                .durable
                .extend(records.into_iter().flatten());
        }
        fn refused(&mut self, records: Vec<Vec<Record>>, refuse_queued: &mut dyn FnMut()) {
            self.0
                .lock()
                .unwrap()
                .refused
                .extend(records.into_iter().flatten());
            refuse_queued();
        }
    }
    let f = fixture();
    let heard = Arc::new(Mutex::new(Heard::default()));
    f.writer.set_owner(Box::new(Listener(heard.clone())));
    f.release.send(()).unwrap();
    f.writer
        .write(vec![(1, 1)], false)
        .wait_store()
        .await
        .unwrap();
    assert!(heard.lock().unwrap().durable.is_empty(), "not durable yet");
    f.writer
        .write(vec![(2, 2)], true)
        .wait_store()
        .await
        .unwrap();
    assert_eq!(heard.lock().unwrap().durable, vec![(1, 1), (2, 2)]);
    f.writer
        .write(vec![(3, 3)], false)
        .wait_store()
        .await
        .unwrap();
    let failed = f.writer.write(vec![(4, u64::MAX)], true).wait_store().await;
    assert!(failed.is_err());
    // The commit without an fsync is refused with the failed one: it may not be on disk.
    assert_eq!(heard.lock().unwrap().refused, vec![(3, 3), (4, u64::MAX)]);
    assert_eq!(heard.lock().unwrap().durable, vec![(1, 1), (2, 2)]);
}

/// A write that fails for lack of space says so, naming the data dir, and keeps redb's words
/// as its cause.
#[tokio::test]
async fn a_full_disk_names_the_data_dir() {
    let f = fixture();
    f.release.send(()).unwrap();
    let err = f.writer.write(vec![(1, NO_SPACE)], true).wait_store().await;
    let err = err.unwrap_err();
    assert!(err.is_disk_full());
    let summary = f.writer.health().borrow().summary();
    assert_eq!(summary.as_deref(), Some("store read-only: disk full"));
    let dir = f.dir.path().display().to_string();
    assert_eq!(err.to_string(), format!("no space left in {dir}"));
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("I/O error"), "{cause}");
}

/// Once the thread is gone, a write is answered `Stopped` rather than lost or left hanging.
#[tokio::test]
async fn writes_after_the_thread_died_are_refused() {
    let f = fixture();
    f.release.send(()).unwrap();
    let dead = f.writer.write(vec![(u64::MAX, 0)], true);
    assert!(matches!(dead.wait_store().await, Err(StoreError::Stopped)));
    let err = f.writer.write(vec![(1, 1)], true).wait().await.unwrap_err();
    assert!(
        matches!(err, crate::Error::Store(StoreError::Stopped)),
        "{err}"
    );
}

/// A write without an fsync is readable at once; the writer makes it durable by itself, with
/// an empty fsync'd commit (apply sees an empty group) within FLUSH_WITHIN.
#[tokio::test]
async fn writes_without_fsync_are_flushed_within_the_bound() {
    let f = fixture();
    f.release.send(()).unwrap();
    f.writer
        .write(vec![(1, 1)], false)
        .wait_store()
        .await
        .unwrap();
    assert_eq!(read(&f.db, 1), Some(1));
    let started = Instant::now();
    while f.groups.lock().unwrap().len() < 2 {
        assert!(
            started.elapsed() < 3 * FLUSH_WITHIN,
            "no flush within the bound"
        );
        tokio::time::sleep(FLUSH_WITHIN / 10).await;
    }
    assert_eq!(*f.groups.lock().unwrap(), vec![1, 0]);
}
