//! The embedded on-disk store (redb): one database file per process in its data dir.
//!
//! This module opens the file, holds the lock that keeps a second process out, and checks the
//! schema version, so a newer or corrupt file is a clear error and never a silent reset. The
//! manager's and the worker's tables live in their own submodules.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};

use crate::error::{Error, Result};

pub mod manager;

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

/// The metadata table: `kind` and `schema_version`.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The database file's name inside a data dir.
pub const FILE_NAME: &str = "cube.redb";

/// Opens (or creates) the database in `data_dir`, failing at once if another process holds it
/// and with a clear message if the file is not a Cube database of this kind and version.
pub fn open(data_dir: &Path, kind: StoreKind) -> Result<Database> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        Error::Store(format!(
            "cannot create data dir {}: {e}",
            data_dir.display()
        ))
    })?;
    let path: PathBuf = data_dir.join(FILE_NAME);
    let db = Database::create(&path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => Error::Store(format!(
            "data dir {} is in use by another Cube process (its database is locked)",
            data_dir.display()
        )),
        other => Error::Store(format!(
            "{} is not a readable Cube database ({other}); move it away or choose another --data-dir",
            path.display()
        )),
    })?;
    check_meta(&db, &path, kind)?;
    Ok(db)
}

fn check_meta(db: &Database, path: &Path, kind: StoreKind) -> Result<()> {
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
    match existing {
        None => {
            let write = db.begin_write()?;
            {
                let mut table = write.open_table(META)?;
                table.insert("kind", kind.name().as_bytes())?;
                table.insert("schema_version", SCHEMA_VERSION.to_le_bytes().as_slice())?;
            }
            write.commit()?;
            Ok(())
        }
        Some((found_kind, version)) => {
            if found_kind.as_deref() != Some(kind.name().as_bytes()) {
                return Err(Error::Store(format!(
                    "{} belongs to a Cube {}, not a {}",
                    path.display(),
                    found_kind
                        .map(|k| String::from_utf8_lossy(&k).into_owned())
                        .unwrap_or_else(|| "(unknown)".into()),
                    kind.name()
                )));
            }
            let version = version
                .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| Error::Store(format!("{} has no schema version", path.display())))?;
            if version > SCHEMA_VERSION {
                return Err(Error::Store(format!(
                    "{} has schema version {version}, newer than this Cube's {SCHEMA_VERSION}; run a newer Cube",
                    path.display()
                )));
            }
            Ok(())
        }
    }
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
