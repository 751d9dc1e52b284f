//! The crate's error type and its one mapping to `tonic::Status`.
//!
//! Domain code returns [`Error`]; rpc handlers turn it into a status with `?` through the one
//! exhaustive `From<Error> for Status` below, so a new variant forces a decision about its code.

use std::borrow::Cow;

use tonic::{Code, Status};

use crate::{task::TransitionError, worker::RuntimeError};

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
    /// Something with that id or name exists already.
    #[error("{what} {id:?} already exists")]
    AlreadyExists {
        /// What kind of thing.
        what: &'static str,
        /// The id or name.
        id: String,
    },
    /// The state machine forbids the move.
    #[error(transparent)]
    Transition(#[from] TransitionError),
    /// The request does not fit the current state of things.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A peer (worker, manager, Docker engine) cannot be reached, or this server is stopping.
    #[error("{0}")]
    Unavailable(String),
    /// The caller's credentials were refused.
    #[error("{0}")]
    Unauthenticated(String),
    /// The embedded store failed.
    #[error("store: {0}")]
    Store(String),
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
            Error::NotFound { .. } => Code::NotFound,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::Transition(_) => Code::FailedPrecondition,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::Store(_) => Code::Internal,
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
        Status::new(code, error.to_string())
    }
}

impl From<redb::Error> for Error {
    fn from(error: redb::Error) -> Self {
        Error::Store(error.to_string())
    }
}

macro_rules! store_errors {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Error {
            fn from(error: $ty) -> Self {
                Error::Store(error.to_string())
            }
        }
    )*};
}
store_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_the_field() {
        let status = Status::from(Error::invalid("spec.image", "is required"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "spec.image: is required");
    }

    #[test]
    fn not_found_names_the_id() {
        let status = Status::from(Error::task_not_found("abc"));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "task \"abc\" not found");
    }
}
