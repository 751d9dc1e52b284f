//! What can go wrong in a runtime, one variant per kind of failure, each keeping its cause.
//!
//! The messages are written for people: a task that fails to start carries one as its
//! message, and a runtime error answered to a client becomes a status through
//! [`crate::Error::code`]. They name what was being done and say the cause in few words
//! (Docker's own message, without bollard's "Docker responded with status code" preamble);
//! the cause itself stays reachable through [`std::error::Error::source`].

use std::borrow::Cow;

use bollard::errors::Error as DockerError;

/// A runtime's error.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The Docker engine does not answer at all.
    #[error("the Docker engine does not answer: {}", short(.source))]
    Unreachable {
        /// What the client saw.
        #[source]
        source: DockerError,
    },
    /// A call to the Docker engine failed.
    #[error("{action}: {}", short(.source))]
    Docker {
        /// What was being done: "creating container cube-web-1a2b3c4d".
        action: Cow<'static, str>,
        /// Docker's answer.
        #[source]
        source: DockerError,
    },
    /// A task's image is not on the engine and could not be pulled.
    #[error("image {image} not found locally and could not be pulled: {}", short(.source))]
    ImageUnavailable {
        /// The image as the spec names it.
        image: String,
        /// Why the pull failed.
        #[source]
        source: DockerError,
    },
    /// A file or process operation failed (the Exec runtime).
    #[error("{action}: {source}")]
    Io {
        /// What was being done: "opening the task's out file".
        action: Cow<'static, str>,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// Something a task names does not exist, e.g. its command on the PATH.
    #[error("{what} {name:?} not found")]
    NotFound {
        /// What kind of thing: "command".
        what: &'static str,
        /// Its name.
        name: String,
    },
    /// The request asks for something the runtime cannot do (an Exec task without a command).
    #[error("{0}")]
    Invalid(&'static str),
    /// The runtime reported an address that is not one.
    #[error("bad container IP {ip}")]
    BadAddress {
        /// What the runtime reported.
        ip: String,
        /// Why it does not parse.
        #[source]
        source: std::net::AddrParseError,
    },
    /// The runtime is in a state it should not be in (a container without an address, a
    /// process that has no pid right after its start).
    #[error("{0}")]
    Unexpected(&'static str),
}

impl RuntimeError {
    /// A failed Docker call, described by what was being done.
    pub(crate) fn docker(action: impl Into<Cow<'static, str>>, source: DockerError) -> Self {
        Self::Docker {
            action: action.into(),
            source,
        }
    }

    /// A failed file or process operation, described by what was being done.
    pub(crate) fn io(action: impl Into<Cow<'static, str>>, source: std::io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source,
        }
    }
}

/// Docker's message without bollard's "Docker responded with status code" preamble.
pub(crate) fn short(error: &DockerError) -> String {
    match error {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        DockerError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// The message carries Docker's words without bollard's preamble; the cause stays the
    /// source.
    #[test]
    fn docker_errors_read_short_and_keep_their_cause() {
        let error = RuntimeError::docker(
            "removing container",
            DockerError::DockerResponseServerError {
                status_code: 500,
                message: "device busy".into(),
            },
        );
        assert_eq!(error.to_string(), "removing container: device busy");
        let source = error.source().expect("the cause is kept");
        assert!(source.to_string().contains("500"), "{source}");
    }

    #[test]
    fn a_missing_command_is_named() {
        let error = RuntimeError::NotFound {
            what: "command",
            name: "nope".into(),
        };
        assert_eq!(error.to_string(), "command \"nope\" not found");
    }

    /// A runtime error answers as INTERNAL (a missing container or command too, as before
    /// the errors were typed), with its message; only an engine that does not answer is
    /// UNAVAILABLE.
    #[test]
    fn runtime_errors_become_statuses() {
        let not_found = crate::Error::from(RuntimeError::NotFound {
            what: "command",
            name: "nope".into(),
        });
        assert_eq!(not_found.code(), tonic::Code::Internal);
        let status = tonic::Status::from(not_found);
        assert_eq!(status.message(), "runtime: command \"nope\" not found");
        let gone = RuntimeError::docker(
            "reading logs",
            DockerError::DockerResponseServerError {
                status_code: 404,
                message: "No such container: 4f2a".into(),
            },
        );
        let status = tonic::Status::from(crate::Error::from(gone));
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(
            status.message(),
            "runtime: reading logs: No such container: 4f2a"
        );
        let down = RuntimeError::Unreachable {
            source: DockerError::RequestTimeoutError,
        };
        assert_eq!(crate::Error::from(down).code(), tonic::Code::Unavailable);
    }
}
