//! The store's errors: what went wrong opening, reading or writing the database, with its cause.
//!
//! Every variant keeps its cause as its `source`. A variant's message never repeats its cause's
//! (the wrappers of redb's errors are transparent), so an error printed with its whole chain reads
//! each part once. The store's errors are `Clone` (their causes are shared behind an `Arc`)
//! because one failed group commit answers every write of the group with the same error.

use std::{io, path::PathBuf, sync::Arc};

use super::{StoreKind, SCHEMA_VERSION};

/// What went wrong in the embedded store.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The data dir does not exist and cannot be made.
    #[error("cannot create data dir {}", dir.display())]
    CreateDir {
        /// The data dir.
        dir: PathBuf,
        /// Why it cannot be made.
        #[source]
        source: Arc<io::Error>,
    },
    /// Another process has the database open (redb holds a file lock).
    #[error(
        "data dir {} is in use by another Cube process (its database is locked)",
        dir.display()
    )]
    InUse {
        /// The data dir.
        dir: PathBuf,
    },
    /// The file is not a database redb can open.
    #[error(
        "{} is not a readable Cube database; move it away or choose another --data-dir",
        path.display()
    )]
    NotCube {
        /// The database file.
        path: PathBuf,
        /// What redb found wrong with it.
        #[source]
        source: Arc<redb::DatabaseError>,
    },
    /// The file is the other kind's (a worker's file given to a manager, or the reverse).
    #[error("{} belongs to a Cube {found}, not a {expected}", path.display())]
    WrongKind {
        /// The database file.
        path: PathBuf,
        /// The kind it records ("(unknown)" when it records none).
        found: String,
        /// The kind this process is.
        expected: StoreKind,
    },
    /// The file records its kind but no schema version: not written by Cube.
    #[error("{} has no schema version", path.display())]
    NoSchemaVersion {
        /// The database file.
        path: PathBuf,
    },
    /// The file was written by a newer Cube, whose schema this build does not know.
    #[error(
        "{} has schema version {found}, newer than this Cube's {SCHEMA_VERSION}; run a newer Cube",
        path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version it records.
        found: u64,
    },
    /// A write failed because the data dir's file system is full.
    #[error("no space left in {}", dir.display())]
    DiskFull {
        /// The data dir.
        dir: PathBuf,
        /// The failure as redb reported it.
        #[source]
        source: Box<StoreError>,
    },
    /// A write failed for another reason than space (a failing disk, a broken file system);
    /// the cause is part of the message, since a client sees only the message.
    #[error("cannot write to the store in {}: {cause}", dir.display())]
    WriteFailed {
        /// The data dir.
        dir: PathBuf,
        /// The failure as redb reported it.
        cause: Box<StoreError>,
    },
    /// The database is being reopened after a failed write; a read may try again.
    #[error("the store is being reopened after a failed write; try again")]
    Reopening,
    /// Opening the database failed.
    #[error(transparent)]
    Database(Arc<redb::DatabaseError>),
    /// Beginning a transaction failed.
    #[error(transparent)]
    Transaction(Arc<redb::TransactionError>),
    /// Opening a table failed.
    #[error(transparent)]
    Table(Arc<redb::TableError>),
    /// Reading or writing the file failed.
    #[error(transparent)]
    Storage(Arc<redb::StorageError>),
    /// Committing a transaction failed.
    #[error(transparent)]
    Commit(Arc<redb::CommitError>),
    /// A transaction refused the durability asked of it.
    #[error(transparent)]
    Durability(Arc<redb::SetDurabilityError>),
    /// A stored record does not decode as the message it should be.
    #[error("stored {what} does not decode")]
    Decode {
        /// Which record, e.g. "task 7" or "event".
        what: String,
        /// What prost found wrong.
        #[source]
        source: prost::DecodeError,
    },
    /// A record cannot be keyed: its id is not a task id.
    #[error("a task with id {id:?} cannot be stored: its id is not a task id")]
    InvalidKey {
        /// The id as given.
        id: String,
    },
    /// The writer thread cannot be started.
    #[error("cannot start the store's writer thread")]
    StartWriter(#[source] Arc<io::Error>),
    /// The writer thread is gone: the store is closing with its process.
    #[error("the store is shutting down")]
    Stopped,
}

macro_rules! redb_errors {
    ($($ty:ty => $variant:ident),* $(,)?) => {$(
        impl From<$ty> for StoreError {
            fn from(error: $ty) -> Self {
                StoreError::$variant(Arc::new(error))
            }
        }
    )*};
}
redb_errors!(
    redb::DatabaseError => Database,
    redb::TransactionError => Transaction,
    redb::TableError => Table,
    redb::StorageError => Storage,
    redb::CommitError => Commit,
    redb::SetDurabilityError => Durability,
);

impl StoreError {
    /// Whether the error is the file system running out of space (ENOSPC, or a quota): a write
    /// that may succeed once space is freed, unlike a failing disk or a corrupt file.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::DiskFull { .. } => true,
            other => other.io_error().is_some_and(is_no_space),
        }
    }

    /// The error of a write in `dir`: [`StoreError::DiskFull`] when the disk ran full,
    /// [`StoreError::WriteFailed`] for another I/O error (or redb refusing to go on after
    /// one); any other error unchanged.
    pub fn in_dir(self, dir: &std::path::Path) -> StoreError {
        if matches!(
            self,
            StoreError::DiskFull { .. } | StoreError::WriteFailed { .. }
        ) {
            self
        } else if self.is_disk_full() {
            StoreError::DiskFull {
                dir: dir.to_path_buf(),
                source: Box::new(self),
            }
        } else if self.io_error().is_some() || self.is_previous_io() {
            StoreError::WriteFailed {
                dir: dir.to_path_buf(),
                cause: Box::new(self),
            }
        } else {
            self
        }
    }

    /// Whether the file could not be read or written (an I/O error, or redb refusing to go on
    /// after one), as opposed to a broken file or a bug.
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            StoreError::DiskFull { .. } | StoreError::WriteFailed { .. }
        ) || self.io_error().is_some()
            || self.is_previous_io()
    }

    /// redb refusing to go on after an earlier I/O error.
    fn is_previous_io(&self) -> bool {
        matches!(self.storage(), Some(redb::StorageError::PreviousIo))
    }

    /// The I/O error redb met, if that is what this is.
    fn io_error(&self) -> Option<&io::Error> {
        if let StoreError::CreateDir { source, .. } = self {
            return Some(source);
        }
        match self.storage() {
            Some(redb::StorageError::Io(e)) => Some(e),
            _ => None,
        }
    }

    /// The storage error inside whichever redb error this wraps.
    fn storage(&self) -> Option<&redb::StorageError> {
        match self {
            StoreError::Storage(e) => Some(&**e),
            StoreError::Database(e) => match &**e {
                redb::DatabaseError::Storage(s) => Some(s),
                _ => None,
            },
            StoreError::Transaction(e) => match &**e {
                redb::TransactionError::Storage(s) => Some(s),
                _ => None,
            },
            StoreError::Table(e) => match &**e {
                redb::TableError::Storage(s) => Some(s),
                _ => None,
            },
            StoreError::Commit(e) => match &**e {
                redb::CommitError::Storage(s) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }
}

/// ENOSPC, whether the standard library names it (`StorageFull`) or only its number; EDQUOT
/// (a quota) too, since freeing space is the remedy for both.
fn is_no_space(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::StorageFull
        || matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    fn io(error: io::Error) -> StoreError {
        redb::CommitError::Storage(redb::StorageError::Io(error)).into()
    }

    #[test]
    fn no_space_is_told_from_other_io_errors() {
        assert!(io(io::Error::from_raw_os_error(libc::ENOSPC)).is_disk_full());
        assert!(io(io::Error::from(io::ErrorKind::StorageFull)).is_disk_full());
        assert!(!io(io::Error::from_raw_os_error(libc::EIO)).is_disk_full());
        assert!(!StoreError::from(redb::StorageError::PreviousIo).is_disk_full());
        assert!(!StoreError::Stopped.is_disk_full());
    }

    /// A full disk names the data dir once, and its chain reads each cause once.
    #[test]
    fn disk_full_names_the_data_dir_and_keeps_its_cause() {
        let dir = std::path::Path::new("/data/cube");
        let full = io(io::Error::from_raw_os_error(libc::ENOSPC)).in_dir(dir);
        assert!(full.is_disk_full());
        assert_eq!(full.to_string(), "no space left in /data/cube");
        let cause = full.source().expect("the cause is kept").to_string();
        assert!(cause.starts_with("I/O error: "), "{cause}");
        assert!(cause.matches("I/O error").count() == 1, "{cause}");
        // Wrapping again changes nothing; other errors are left alone.
        assert!(matches!(full.in_dir(dir), StoreError::DiskFull { .. }));
        assert!(matches!(
            StoreError::Stopped.in_dir(dir),
            StoreError::Stopped
        ));
    }
}
