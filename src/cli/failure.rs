//! A failed command ([`Failure`]): its `error:` line, its `hint:` line and its exit code, and
//! how a client error becomes one (one hint per gRPC code; field violations one a line).

use std::io::Write;

use tonic::Code;

use crate::client::ClientError;

/// A failed command: what went wrong, and what the user can do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The cause, printed after `error: `.
    pub message: String,
    /// What to try, printed after `hint: `.
    pub hint: Option<String>,
    /// The exit code: 1 (the request failed) unless said otherwise.
    pub exit_code: u8,
}

impl Failure {
    /// A failure with a hint.
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: Some(hint.into()),
            exit_code: 1,
        }
    }

    /// Replaces the exit code (130 after Ctrl-C).
    pub fn with_exit_code(mut self, exit_code: u8) -> Self {
        self.exit_code = exit_code;
        self
    }

    /// Replaces the hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Prints `error: ...` and `hint: ...` on stderr.
    pub fn print(&self) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "error: {}", self.message);
        if let Some(hint) = &self.hint {
            let _ = writeln!(err, "hint: {hint}");
        }
    }
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Self {
        let hint = match &error {
            ClientError::BadUrl { .. } => {
                "--manager (or CUBE_MANAGER) takes a URL like https://10.0.0.1:5555 (with --token), \
                 or http://127.0.0.1:5555 for a --dev manager"
            }
            ClientError::Unreachable { .. } => {
                "is cube-manager running? (cube-manager --dev starts one)"
            }
            ClientError::Timeout { .. } => {
                "the manager may be overloaded or stuck; --timeout allows more time"
            }
            ClientError::Rpc(status) => match status.code() {
                Code::NotFound => "cubectl status lists tasks",
                Code::InvalidArgument => {
                    "fix the field named above; `cubectl run --help` lists the flags"
                }
                Code::AlreadyExists => "pick another name",
                Code::FailedPrecondition => "cubectl status ID shows the task's state",
                Code::Unavailable => {
                    "the manager is starting, stopping or cannot reach a worker; try again"
                }
                Code::DeadlineExceeded => {
                    "the manager did not finish in time; --timeout allows more"
                }
                Code::Unimplemented => "this manager is older than cubectl; upgrade cube-manager",
                Code::Unauthenticated => {
                    "give a token with --token or CUBE_TOKEN (cube-manager token admin prints one)"
                }
                Code::PermissionDenied => "this token's role may not do this; an admin token may",
                Code::ResourceExhausted if status.message().starts_with("no space left") => {
                    "the manager's disk is full: free space in its data dir; it takes changes \
                     again by itself within seconds, and reads keep working meanwhile"
                }
                Code::ResourceExhausted => "a limit was reached; try again shortly",
                Code::Ok
                | Code::Cancelled
                | Code::Unknown
                | Code::Aborted
                | Code::OutOfRange
                | Code::Internal
                | Code::DataLoss => "the manager's log says more",
            },
        };
        Failure::new(message_of(&error), hint)
    }
}

/// What went wrong: an INVALID_ARGUMENT's field violations (google.rpc.BadRequest) one a
/// line when it carries them, else the error's own words.
fn message_of(error: &ClientError) -> String {
    use tonic_types::StatusExt;
    if let ClientError::Rpc(status) = error {
        let details = status.get_error_details();
        let violations = details
            .bad_request()
            .map(|b| b.field_violations.as_slice())
            .unwrap_or_default();
        if status.code() == Code::InvalidArgument && !violations.is_empty() {
            return violations
                .iter()
                .map(|v| format!("{}: {}", v.field, v.description))
                .collect::<Vec<_>>()
                .join("\n");
        }
    }
    error.to_string()
}

/// A failure of a call that named a task: unknown or malformed ids point at the task list.
pub fn task_failure(error: ClientError) -> Failure {
    let code = error.code();
    let failure = Failure::from(error);
    match code {
        Code::NotFound | Code::InvalidArgument => failure.with_hint(
            "cubectl status -a lists tasks; a task is named by its id, 4 or more of its \
                 first characters, or the name of one unfinished task",
        ),
        _ => failure,
    }
}
