//! The crate's error type and its one mapping to `tonic::Status`.
//!
//! Domain code returns [`Error`]; rpc handlers turn it into a status with `?` through the one
//! exhaustive `From<Error> for Status` below, so a new variant forces a decision about its code.

use std::borrow::Cow;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    proto::{pb::TaskState, state_name},
    store::StoreError,
};

pub(crate) mod runtime;

pub use runtime::RuntimeError;

/// A move of the task state machine that is not allowed (`cube::task::check_transition`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a task cannot move from {} to {}", state_name(*.from), state_name(*.to))]
pub struct TransitionError {
    /// The state the task is in.
    pub from: TaskState,
    /// The state it was asked to move to.
    pub to: TaskState,
}

/// Cube's errors, each carrying what a person needs to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is missing or wrong.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The field's path, e.g. `spec.resources.cpu_millis`.
        field: Cow<'static, str>,
        /// What is wrong with it.
        reason: String,
    },
    /// Something named by id or name does not exist.
    #[error("{what} {id:?} not found")]
    NotFound {
        /// What kind of thing: "task", "node".
        what: &'static str,
        /// The id or name asked for.
        id: String,
    },
    /// A task that existed, finished, and was removed by retention.
    #[error("task {id:?} finished and was cleaned up")]
    Gone {
        /// The task's id.
        id: String,
    },
    /// A retried request whose task finished and was removed by retention.
    #[error("request_id {request_id:?} created task {id:?}, which finished and was cleaned up")]
    RequestGone {
        /// The request id retried.
        request_id: String,
        /// The task it created.
        id: String,
    },
    /// Something with that id or name exists already.
    #[error("{what} {id:?} already exists")]
    AlreadyExists {
        /// What kind of thing.
        what: &'static str,
        /// The id or name.
        id: String,
    },
    /// A submission reused a `request_id` with a different spec (AIP-155).
    #[error(
        "{field}: {request_id:?} belongs to {owner}, submitted with a different spec; a retry \
         must send the same spec, and a new task needs a new request_id"
    )]
    RequestIdReused {
        /// The field's path: `request_id` or `tasks[3].request_id`.
        field: String,
        /// The request id.
        request_id: String,
        /// What it belongs to: `task ID`, or an earlier request of the same call.
        owner: String,
    },
    /// A limit of this server is reached (open streams); the message names it.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The state machine forbids the move.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The request does not fit the current state of things.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A conditional change lost a race: the client read an older version (optimistic
    /// concurrency, as Kubernetes' resourceVersion); it reads again and retries.
    #[error("{0}")]
    Aborted(String),
    /// A peer (worker, manager, Docker engine) cannot be reached, or this server is stopping.
    #[error("{0}")]
    Unavailable(String),
    /// The caller's credentials were refused.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this (a reader that writes, a node that speaks for
    /// another).
    #[error("{0}")]
    PermissionDenied(String),
    /// The embedded store failed (its message is its own: no prefix is added, so none doubles).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The container runtime failed in a way that is not the caller's doing.
    #[error("runtime: {0}")]
    Runtime(#[from] RuntimeError),
    /// A bug or an unexpected condition.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Cube's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An `InvalidArgument` for `field`.
    pub fn invalid(field: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error with an `InvalidArgument`'s field placed under `parent` (e.g.
    /// `tasks[3]` makes `spec.image` into `tasks[3].spec.image`); other errors are unchanged.
    pub fn within(self, parent: &str) -> Self {
        match self {
            Self::InvalidArgument { field, reason } => Self::InvalidArgument {
                field: format!("{parent}.{field}").into(),
                reason,
            },
            other => other,
        }
    }

    /// A `NotFound` for a task.
    pub fn task_not_found(id: impl ToString) -> Self {
        Self::NotFound {
            what: "task",
            id: id.to_string(),
        }
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound { .. } | Error::Gone { .. } => Code::NotFound,
            Error::AlreadyExists { .. } | Error::RequestGone { .. } => Code::AlreadyExists,
            Error::RequestIdReused { .. } => Code::AlreadyExists,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Transition(_) => Code::FailedPrecondition,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Aborted(_) => Code::Aborted,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Store(e) => store_code(e),
            Error::Runtime(error) => match error {
                // The engine being down is the worker's peer being unreachable.
                RuntimeError::Unreachable { .. } => Code::Unavailable,
                // A container or command the runtime does not find is not the caller's wrong
                // id (that is the task, checked before): it stays INTERNAL, as is every other
                // failure of the runtime.
                RuntimeError::NotFound { .. } => Code::Internal,
                RuntimeError::Docker { .. }
                | RuntimeError::ImageUnavailable { .. }
                | RuntimeError::Io { .. }
                | RuntimeError::Invalid(_)
                | RuntimeError::BadAddress { .. }
                | RuntimeError::Unexpected(_) => Code::Internal,
            },
            Error::Internal(_) => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let code = error.code();
        if code == Code::Internal {
            tracing::error!(error = %error, "internal error answered to a client");
        }
        // A bad field is also told the standard way (google.rpc.BadRequest in the status
        // details), for clients that read field violations rather than the message.
        if let Error::InvalidArgument { field, reason } = &error {
            let details = ErrorDetails::with_bad_request_violation(field.as_ref(), reason.as_str());
            return Status::with_error_details(code, error.to_string(), details);
        }
        Status::new(code, error.to_string())
    }
}

/// The code of a store error: a full disk is the caller's to wait out; a failed write, a store
/// being reopened or closing is unavailable; everything else (a broken or foreign file, a
/// failed read) internal.
fn store_code(error: &StoreError) -> Code {
    match error {
        StoreError::DiskFull { .. } => Code::ResourceExhausted,
        StoreError::Stopped | StoreError::WriteFailed { .. } | StoreError::Reopening => {
            Code::Unavailable
        }
        // A read that met an I/O error (or a file poisoned by one) may succeed again.
        e if e.is_io() => Code::Unavailable,
        StoreError::CreateDir { .. }
        | StoreError::InUse { .. }
        | StoreError::NotCube { .. }
        | StoreError::WrongKind { .. }
        | StoreError::NoSchemaVersion { .. }
        | StoreError::NewerSchema { .. }
        | StoreError::Database(_)
        | StoreError::Transaction(_)
        | StoreError::Table(_)
        | StoreError::Storage(_)
        | StoreError::Commit(_)
        | StoreError::Durability(_)
        | StoreError::Decode { .. }
        | StoreError::InvalidKey { .. }
        | StoreError::StartWriter(_) => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_the_field() {
        let status = Status::from(Error::invalid("spec.image", "is required"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "spec.image: is required");
        let details = status.get_error_details();
        let violations = &details.bad_request().unwrap().field_violations;
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "spec.image");
        assert_eq!(violations[0].description, "is required");
    }

    #[test]
    fn not_found_names_the_id() {
        let status = Status::from(Error::task_not_found("abc"));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "task \"abc\" not found");
    }

    /// A full disk is RESOURCE_EXHAUSTED naming the data dir, said once; other I/O errors
    /// are UNAVAILABLE with redb's words, without a doubled prefix.
    #[test]
    fn store_errors_read_once() {
        let io = |errno| {
            StoreError::from(redb::CommitError::Storage(redb::StorageError::Io(
                std::io::Error::from_raw_os_error(errno),
            )))
        };
        let dir = std::path::Path::new("/var/lib/cube");
        let status = Status::from(Error::from(io(libc::ENOSPC).in_dir(dir)));
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "no space left in /var/lib/cube");
        let status = Status::from(Error::from(io(libc::EIO).in_dir(dir)));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status
                .message()
                .starts_with("cannot write to the store in /var/lib/cube: I/O error: "),
            "{}",
            status.message()
        );
        assert_eq!(status.message().matches("I/O error").count(), 1);
        let status = Status::from(Error::from(StoreError::Stopped));
        assert_eq!(status.code(), Code::Unavailable);
    }
}
