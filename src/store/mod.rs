//! The embedded on-disk store (redb): one database file per process in its data dir.
//!
//! This module opens the file, holds the lock that keeps a second process out, and checks the
//! schema version, so a newer or corrupt file is a clear error and never a silent reset.
//!
//! - `error`: [`StoreError`], what can go wrong, with its cause.
//! - `writer`: the group-commit [`Writer`] both stores write through.
//! - `report`: a store's health shown in the server's health service and metrics.
//! - `manager`: the manager's tables ([`manager::ManagerStore`]); the worker's one table lives
//!   with the worker (`worker::store`), on the same writer.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use redb::{Database, ReadableDatabase, TableDefinition};

mod error;
pub mod manager;
pub mod report;
mod writer;

pub use error::StoreError;
pub use writer::{Durable, Health, Opener, Owner, Writer, FLUSH_WITHIN, MAX_GROUP};

/// The schema this build writes. A file with a higher number was written by a newer Cube.
pub const SCHEMA_VERSION: u64 = 1;

/// Which process a database belongs to; a manager never opens a worker's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The manager's tasks, events, nodes and assignments.
    Manager,
    /// A worker's tasks and containers.
    Worker,
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            StoreKind::Manager => "manager",
            StoreKind::Worker => "worker",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The metadata table: `kind` and `schema_version`.
const META: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("meta");

/// The database file's name inside a data dir.
pub const FILE_NAME: &str = "cube.redb";

/// Opens (or creates) the database in `data_dir`, failing at once if another process holds it
/// and with a clear message if the file is not a Cube database of this kind and version.
pub fn open(data_dir: &Path, kind: StoreKind) -> Result<Database, StoreError> {
    std::fs::create_dir_all(data_dir).map_err(|e| StoreError::CreateDir {
        dir: data_dir.to_path_buf(),
        source: Arc::new(e),
    })?;
    let path: PathBuf = data_dir.join(FILE_NAME);
    let db = Database::create(&path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse {
            dir: data_dir.to_path_buf(),
        },
        other => StoreError::NotCube {
            path: path.clone(),
            source: Arc::new(other),
        },
    })?;
    check_meta(&db, &path, kind).map_err(|e| e.in_dir(data_dir))?;
    Ok(db)
}

/// The database handle readers and the writer share. The writer replaces it when it reopens
/// the file after a failed write; a reader holds its clone only for one read.
#[derive(Clone)]
pub struct DbCell(Arc<RwLock<Option<Arc<Database>>>>);

impl fmt::Debug for DbCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbCell").finish_non_exhaustive()
    }
}

/// How long closing the database waits for readers to finish.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

impl DbCell {
    /// A cell holding `db`.
    pub fn new(db: Database) -> DbCell {
        DbCell(Arc::new(RwLock::new(Some(Arc::new(db)))))
    }

    /// The database, or [`StoreError::Reopening`] while the writer reopens it.
    pub fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(StoreError::Reopening)
    }

    fn set(&self, db: Arc<Database>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Some(db);
    }

    /// Drops the database once no reader holds it (redb's file lock goes with it), so it can
    /// be opened again; gives it back and fails if a reader holds it past [`CLOSE_WAIT`].
    fn close(&self) -> Result<(), StoreError> {
        let Some(mut db) = self.0.write().unwrap_or_else(|p| p.into_inner()).take() else {
            return Ok(());
        };
        let deadline = Instant::now() + CLOSE_WAIT;
        loop {
            match Arc::try_unwrap(db) {
                Ok(db) => {
                    drop(db);
                    return Ok(());
                }
                Err(held) if Instant::now() >= deadline => {
                    self.set(held);
                    return Err(StoreError::Reopening);
                }
                Err(held) => {
                    db = held;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

fn check_meta(db: &Database, path: &Path, kind: StoreKind) -> Result<(), StoreError> {
    let read = db.begin_read()?;
    let existing = match read.open_table(META) {
        Ok(table) => {
            let kind_found = table.get("kind")?.map(|v| v.value().to_vec());
            let version = table.get("schema_version")?.map(|v| v.value().to_vec());
            Some((kind_found, version))
        }
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    drop(read);
    let Some((found_kind, version)) = existing else {
        let write = db.begin_write()?;
        {
            let mut table = write.open_table(META)?;
            table.insert("kind", kind.name().as_bytes())?;
            table.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
        }
        write.commit()?;
        return Ok(());
    };
    if found_kind.as_deref() != Some(kind.name().as_bytes()) {
        return Err(StoreError::WrongKind {
            path: path.to_path_buf(),
            found: found_kind
                .map(|k| String::from_utf8_lossy(&k).into_owned())
                .unwrap_or_else(|| "(unknown)".into()),
            expected: kind,
        });
    }
    let version = version
        .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| StoreError::NoSchemaVersion {
            path: path.to_path_buf(),
        })?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopens_its_own_file_and_refuses_others() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path(), StoreKind::Manager).unwrap());
        drop(open(dir.path(), StoreKind::Manager).unwrap());
        let err = open(dir.path(), StoreKind::Worker).unwrap_err();
        assert!(
            err.to_string().contains("belongs to a Cube manager"),
            "{err}"
        );
    }

    #[test]
    fn second_opener_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let _held = open(dir.path(), StoreKind::Worker).unwrap();
        let err = open(dir.path(), StoreKind::Worker).unwrap_err();
        assert!(
            err.to_string().contains("in use by another Cube process"),
            "{err}"
        );
    }

    #[test]
    fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"this is not a database at all").unwrap();
        let err = open(dir.path(), StoreKind::Manager).unwrap_err();
        assert!(
            err.to_string().contains("is not a readable Cube database"),
            "{err}"
        );
    }
}
