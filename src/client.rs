//! A typed client of `ManagerService`, used by cubectl and by tests.
//!
//! Every unary call carries a deadline (sent to the server as `grpc-timeout` too); streaming
//! calls are bounded until the server answers and then run for as long as the stream does.
//! Errors say whether the manager could not be reached at all or answered with a status, so
//! callers can tell "is it running?" from "it refused".

use std::time::Duration;

use tonic::{service::interceptor::InterceptedService, Code, Request, Status, Streaming};

use crate::{
    proto::pb::{self, manager_service_client::ManagerServiceClient},
    tls::{AuthChannel, Bearer, ClientTls, Token, Trust},
};

/// The manager cubectl talks to when neither `--manager` nor `CUBE_MANAGER` says otherwise.
pub const DEFAULT_MANAGER: &str = "http://127.0.0.1:5555";

/// The default deadline of one call: long enough for a durable write on a busy 2-core machine,
/// short enough that a hung manager is reported while the user still waits.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `submit_task` keeps retrying a manager that is unavailable (restarting, or not yet
/// listening) before it gives up: a manager restart takes a few seconds at most.
pub const SUBMIT_RETRY_BUDGET: Duration = Duration::from_secs(10);

/// The first pause between two submission attempts; it doubles up to [`SUBMIT_RETRY_MAX_PAUSE`].
const SUBMIT_RETRY_FIRST_PAUSE: Duration = Duration::from_millis(100);

/// The longest pause between two submission attempts, so a manager that comes back is noticed
/// within a second.
const SUBMIT_RETRY_MAX_PAUSE: Duration = Duration::from_secs(1);

/// The page size the `*_all` helpers ask for by default: the server's maximum, so long lists
/// take few round trips.
pub const DEFAULT_PAGE_SIZE: i32 = 1000;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The manager URL cannot be used.
    #[error("invalid manager URL {url:?}: {cause}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why it is not usable.
        cause: String,
    },
    /// No answer: nothing listens there, the connection broke, or the deadline passed before
    /// the manager answered.
    #[error("manager unreachable at {url}: {cause}")]
    Unreachable {
        /// The manager's URL.
        url: String,
        /// The transport's error chain.
        cause: String,
    },
    /// The manager did not answer within the deadline.
    #[error("manager at {url} did not answer within {}s", .after.as_secs_f64())]
    Timeout {
        /// The manager's URL.
        url: String,
        /// The deadline that passed.
        after: Duration,
    },
    /// The manager answered with an error status.
    #[error("{}", .0.message())]
    Rpc(Status),
}

impl ClientError {
    /// The gRPC code of the failure (`UNAVAILABLE` when the manager was not reached).
    pub fn code(&self) -> Code {
        match self {
            ClientError::BadUrl { .. } => Code::InvalidArgument,
            ClientError::Unreachable { .. } => Code::Unavailable,
            ClientError::Timeout { .. } => Code::DeadlineExceeded,
            ClientError::Rpc(status) => status.code(),
        }
    }

    /// Whether trying the same request again later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.code() == Code::Unavailable
    }
}

/// What a client proves itself with and trusts the manager by. Debug shows no token.
#[derive(Clone, Default)]
pub struct Credentials {
    /// A token (`cube-manager token ROLE`): sent as `authorization: Bearer`, and its CA
    /// digest verifies the manager when no CA certificate is given.
    pub token: Option<String>,
    /// The cluster CA's certificate, PEM (`<manager data-dir>/tls/ca.pem`).
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.as_ref().map(|_| "<token>"))
            .field("ca_pem", &self.ca_pem.is_some())
            .finish()
    }
}

impl Credentials {
    /// Whether there is anything to speak TLS with.
    pub fn is_empty(&self) -> bool {
        self.token.is_none() && self.ca_pem.is_none()
    }

    /// The channel these credentials call `url` over: TLS for `https://` (or a bare
    /// `host:port` when there are credentials), plaintext for `http://` (a `--dev` manager,
    /// and then with no token: a token never travels in clear).
    pub fn channel(&self, url: &str, timeout: Duration) -> Result<AuthChannel, crate::Error> {
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        let tls = match scheme {
            Some("https") => true,
            None => !self.is_empty(),
            Some(_) if self.token.is_some() => {
                return Err(crate::Error::invalid(
                    "manager",
                    format!(
                        "{url:?} is plaintext, and a token is sent over TLS only: use \
                         https://HOST:PORT"
                    ),
                ))
            }
            Some(_) => false,
        };
        if !tls {
            let channel = crate::grpc::channel(url, timeout)?;
            return Ok(InterceptedService::new(channel, Bearer::default()));
        }
        let trust = match (&self.ca_pem, &self.token) {
            (Some(pem), _) => Trust::from_pem(pem, "the CA certificate")?,
            (None, Some(token)) => Trust::Digest(
                Token::parse(token)
                    .map_err(|e| crate::Error::invalid("token", e))?
                    .ca_digest,
            ),
            (None, None) => {
                return Err(crate::Error::invalid(
                    "manager",
                    format!(
                        "{url:?} speaks TLS: give a token (--token or CUBE_TOKEN), whose CA \
                         digest verifies the manager, or the CA (--ca-cert or CUBE_CA_CERT)"
                    ),
                ))
            }
        };
        let channel = ClientTls::new(trust, None, true)?.channel(url, timeout)?;
        Ok(InterceptedService::new(
            channel,
            Bearer::new(self.token.as_deref())?,
        ))
    }
}

/// A `ManagerService` client with a deadline on every call. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    inner: ManagerServiceClient<AuthChannel>,
    url: String,
    timeout: Duration,
    page_size: i32,
}

impl Client {
    /// A client of the manager at `url` (`http://host:port` or `host:port`). Connects lazily:
    /// an unreachable manager shows up as [`ClientError::Unreachable`] on the first call.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, ClientError> {
        Self::with_credentials(url, timeout, &Credentials::default())
    }

    /// A client of the manager at `url` that proves itself with `credentials`; see
    /// [`Credentials::channel`] for when it speaks TLS.
    pub fn with_credentials(
        url: &str,
        timeout: Duration,
        credentials: &Credentials,
    ) -> Result<Self, ClientError> {
        let channel = credentials
            .channel(url, timeout)
            .map_err(|e| ClientError::BadUrl {
                url: url.to_string(),
                cause: e.to_string(),
            })?;
        Ok(Self {
            inner: ManagerServiceClient::new(channel),
            url: url.to_string(),
            timeout,
            page_size: DEFAULT_PAGE_SIZE,
        })
    }

    /// The same client asking for pages of `page_size` in the `*_all` helpers.
    pub fn with_page_size(mut self, page_size: i32) -> Self {
        self.page_size = page_size;
        self
    }

    /// The manager's URL, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The deadline of each unary call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    fn error(&self, status: Status) -> ClientError {
        classify(&self.url, self.timeout, status)
    }

    /// Submits one task once (no retry). `request_id` makes a retry return the same task.
    pub async fn submit_task_once(
        &self,
        spec: pb::TaskSpec,
        request_id: &str,
    ) -> Result<pb::SubmitTaskResponse, ClientError> {
        let request = self.request(pb::SubmitTaskRequest {
            spec: Some(spec),
            request_id: request_id.to_string(),
        });
        let response = self.inner.clone().submit_task(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// Submits one task, retrying the same `request_id` while the manager is unavailable, for
    /// up to [`SUBMIT_RETRY_BUDGET`]. `on_retry` is called before each retry with the error.
    pub async fn submit_task(
        &self,
        spec: pb::TaskSpec,
        request_id: &str,
        on_retry: impl FnMut(&ClientError),
    ) -> Result<pb::SubmitTaskResponse, ClientError> {
        retry_submission(on_retry, || self.submit_task_once(spec.clone(), request_id)).await
    }

    /// Submits several tasks in one call (all or none), each `(spec, request_id)`, retrying
    /// the same request ids while the manager is unavailable, as [`Client::submit_task`] does.
    pub async fn submit_tasks(
        &self,
        tasks: &[(pb::TaskSpec, String)],
        on_retry: impl FnMut(&ClientError),
    ) -> Result<pb::SubmitTasksResponse, ClientError> {
        retry_submission(on_retry, || async {
            let request = self.request(pb::SubmitTasksRequest {
                tasks: tasks
                    .iter()
                    .map(|(spec, request_id)| pb::SubmitTaskRequest {
                        spec: Some(spec.clone()),
                        request_id: request_id.clone(),
                    })
                    .collect(),
            });
            let response = self.inner.clone().submit_tasks(request).await;
            response.map(|r| r.into_inner()).map_err(|s| self.error(s))
        })
        .await
    }

    /// Asks for a task to stop.
    pub async fn stop_task(&self, task_id: &str) -> Result<pb::StopTaskResponse, ClientError> {
        let request = self.request(pb::StopTaskRequest {
            task_id: task_id.to_string(),
        });
        let response = self.inner.clone().stop_task(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// Removes a finished task and its events.
    pub async fn remove_task(&self, task_id: &str) -> Result<pb::RemoveTaskResponse, ClientError> {
        let request = self.request(pb::RemoveTaskRequest {
            task_id: task_id.to_string(),
        });
        let response = self.inner.clone().remove_task(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// One task with its events.
    pub async fn get_task(&self, task_id: &str) -> Result<pb::GetTaskResponse, ClientError> {
        let request = self.request(pb::GetTaskRequest {
            task_id: task_id.to_string(),
        });
        let response = self.inner.clone().get_task(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// One page of tasks.
    pub async fn list_tasks(
        &self,
        request: pb::ListTasksRequest,
    ) -> Result<pb::ListTasksResponse, ClientError> {
        let response = self.inner.clone().list_tasks(self.request(request)).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// Every task matching `filter` (a ListTasksRequest whose page fields are ignored), all
    /// pages joined into one response.
    pub async fn list_all_tasks(
        &self,
        filter: pb::ListTasksRequest,
    ) -> Result<pb::ListTasksResponse, ClientError> {
        let mut all = pb::ListTasksResponse::default();
        let mut request = pb::ListTasksRequest {
            page_size: self.page_size,
            page_token: String::new(),
            ..filter
        };
        loop {
            let page = self.list_tasks(request.clone()).await?;
            all.tasks.extend(page.tasks);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            request.page_token = page.next_page_token;
        }
    }

    /// The tasks matching the filter as they are now, then every change to them.
    pub async fn watch_tasks(
        &self,
        request: pb::WatchTasksRequest,
    ) -> Result<Streaming<pb::WatchTasksResponse>, ClientError> {
        // No grpc-timeout: the stream lives as long as the user watches. The channel's timeout
        // still bounds the wait for the server's first answer.
        let response = self.inner.clone().watch_tasks(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// One page of events.
    pub async fn list_events(
        &self,
        request: pb::ListEventsRequest,
    ) -> Result<pb::ListEventsResponse, ClientError> {
        let response = self.inner.clone().list_events(self.request(request)).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// Every event (of one task when `task_id` is not empty), all pages joined.
    pub async fn list_all_events(
        &self,
        task_id: &str,
    ) -> Result<pb::ListEventsResponse, ClientError> {
        let mut all = pb::ListEventsResponse::default();
        let mut page_token = String::new();
        loop {
            let page = self
                .list_events(pb::ListEventsRequest {
                    task_id: task_id.to_string(),
                    page_size: self.page_size,
                    page_token,
                    ..Default::default()
                })
                .await?;
            all.events.extend(page.events);
            all.cursor = page.cursor;
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// The last `tail` events (of one task when `task_id` is not empty), in one answer.
    pub async fn last_events(
        &self,
        task_id: &str,
        tail: u32,
    ) -> Result<pb::ListEventsResponse, ClientError> {
        self.list_events(pb::ListEventsRequest {
            task_id: task_id.to_string(),
            tail,
            ..Default::default()
        })
        .await
    }

    /// Why a task is where it is, or why it is pending.
    pub async fn explain_task(
        &self,
        task_id: &str,
    ) -> Result<pb::ExplainTaskResponse, ClientError> {
        let request = self.request(pb::ExplainTaskRequest {
            task_id: task_id.to_string(),
        });
        let response = self.inner.clone().explain_task(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// A task's output. Without `follow` the whole stream is bounded by the deadline.
    pub async fn stream_logs(
        &self,
        request: pb::StreamLogsRequest,
    ) -> Result<Streaming<pb::StreamLogsResponse>, ClientError> {
        let request = if request.follow {
            Request::new(request)
        } else {
            self.request(request)
        };
        let response = self.inner.clone().stream_logs(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// Turns an error status met while reading a stream into a [`ClientError`].
    pub fn stream_error(&self, status: Status) -> ClientError {
        self.error(status)
    }
}

/// Tells a status the server sent from one that tonic made up because no answer came.
///
/// Transport failures (refused connection, broken stream) carry the transport error as their
/// source, and a deadline that passed before the server said anything is tonic's own
/// `Timeout expired`; a status the manager sent has no source.
/// Calls `attempt` until it succeeds, fails for good, or [`SUBMIT_RETRY_BUDGET`] is spent on
/// retryable errors (a submission carries request ids, so a retry cannot create a task twice).
async fn retry_submission<T, F, Fut>(
    mut on_retry: impl FnMut(&ClientError),
    mut attempt: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let deadline = tokio::time::Instant::now() + SUBMIT_RETRY_BUDGET;
    let mut pause = SUBMIT_RETRY_FIRST_PAUSE;
    loop {
        match attempt().await {
            Err(error)
                if error.is_retryable() && tokio::time::Instant::now() + pause < deadline =>
            {
                on_retry(&error);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(SUBMIT_RETRY_MAX_PAUSE);
            }
            result => return result,
        }
    }
}

fn classify(url: &str, timeout: Duration, status: Status) -> ClientError {
    use std::error::Error as _;
    if status.code() == Code::Cancelled && status.message() == "Timeout expired" {
        return ClientError::Timeout {
            url: url.to_string(),
            after: timeout,
        };
    }
    if status.source().is_some() {
        ClientError::Unreachable {
            url: url.to_string(),
            cause: cause_chain(&status),
        }
    } else {
        ClientError::Rpc(status)
    }
}

/// The status message followed by each source's message, without repeats:
/// `transport error: tcp connect error: Connection refused (os error 111)`.
fn cause_chain(status: &Status) -> String {
    use std::error::Error as _;
    let mut parts: Vec<String> = Vec::new();
    if !status.message().is_empty() {
        parts.push(status.message().to_string());
    }
    let mut source = status.source();
    while let Some(error) = source {
        let text = error.to_string();
        if !parts.iter().any(|p| p == &text) {
            parts.push(text);
        }
        source = error.source();
    }
    if parts.is_empty() {
        format!("{:?}", status.code())
    } else {
        parts.join(": ")
    }
}

mod nodes;
mod services;

#[cfg(test)]
mod tests;
