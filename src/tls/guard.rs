//! Who is calling, and may they: the door of ManagerService and of WorkerService.
//!
//! The manager's door takes a bearer token (admin, reader or worker) or a node certificate,
//! and lets each call through only to the methods its holder may use; the caller rides on to
//! the handler in the request's extensions, so a handler can check that a node speaks for
//! itself and hide env values from readers. A worker's door lets only the manager's
//! certificate in. Health and reflection are served to anyone who completes the TLS
//! handshake: they tell nothing secret.

use std::{convert::Infallible, future::Future, pin::Pin, sync::Arc};

use tonic::{body::Body, server::NamedService, transport::server::TcpConnectInfo, Status};

use super::{
    identity::{self, Identity},
    token::{Role, Tokens},
};
use crate::error::Error;

/// Who made a call, as the handlers see it (in the request's extensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A token's holder.
    Token(Role),
    /// A worker with its node certificate.
    Node(String),
    /// A plaintext server on loopback (`--dev`): no credentials exist.
    Local,
}

impl Caller {
    /// Whether this caller may see env values (admins and local callers).
    pub fn sees_secrets(&self) -> bool {
        matches!(self, Caller::Token(Role::Admin) | Caller::Local)
    }
}

/// The caller of a request (`Local` when no door put one there: a plaintext server).
pub fn caller_of<T>(request: &tonic::Request<T>) -> Caller {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Local)
}

/// What a ManagerService method does, for the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Join,
    Node,
}

/// The kind of ManagerService method `method`: reads are listed, and anything unlisted
/// (a method added later included) changes state and needs an admin.
fn kind_of(method: &str) -> Kind {
    match method {
        "GetTask" | "ListTasks" | "WatchTasks" | "ListNodes" | "ListEvents" | "ExplainTask"
        | "StreamLogs" | "GetService" | "ListServices" | "GetVersion" | "TopNodes" | "TopTasks" => {
            Kind::Read
        }
        "JoinCluster" => Kind::Join,
        "RegisterWorker" | "Heartbeat" => Kind::Node,
        _ => Kind::Write,
    }
}

/// Whether `caller` may call a method of `kind`; the refusal says why.
fn allowed(caller: &Caller, kind: Kind, method: &str) -> Result<(), Error> {
    let ok = matches!(
        (caller, kind),
        (Caller::Local, _)
            | (
                Caller::Token(Role::Admin),
                Kind::Read | Kind::Write | Kind::Join
            )
            | (Caller::Token(Role::Reader), Kind::Read)
            | (Caller::Token(Role::Worker), Kind::Join)
            | (Caller::Node(_), Kind::Node)
    );
    if ok {
        return Ok(());
    }
    Err(Error::PermissionDenied(match (caller, kind) {
        (_, Kind::Node) => format!(
            "{method} takes a node certificate: a worker gets one by joining with --join-token"
        ),
        (Caller::Node(name), _) => {
            format!("node {name:?} may only register and heartbeat, not call {method}")
        }
        (Caller::Token(role), _) => format!("a {role} token may not call {method}"),
        (Caller::Local, _) => format!("{method} is not allowed"),
    }))
}

/// The peer's certificate identity, when it showed one the CA signed.
fn peer_identity<B>(request: &http::Request<B>) -> Option<Identity> {
    use tonic::transport::server::TlsConnectInfo;
    let extensions = request.extensions();
    // Cube's servers accept through the connection limits, whose info TLS carries; a plain
    // tonic listener's is TCP's.
    let certs = extensions
        .get::<TlsConnectInfo<crate::limits::conn::ConnInfo>>()
        .and_then(|info| info.peer_certs())
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.peer_certs())
        })?;
    identity::of_der(certs.first()?)
}

/// The caller of a ManagerService request, from its bearer token or its certificate.
fn authenticate<B>(tokens: &Tokens, request: &http::Request<B>) -> Result<Caller, Error> {
    if let Some(value) = request.headers().get(http::header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Error::Unauthenticated("the authorization header is not \"Bearer <token>\"".into())
            })?;
        return tokens.role(token).map(Caller::Token).ok_or_else(|| {
            Error::Unauthenticated(
                "the token is not valid for this cluster (mistyped, for another cluster, or \
                 rotated)"
                    .into(),
            )
        });
    }
    match peer_identity(request) {
        Some(Identity::Node(name)) => Ok(Caller::Node(name)),
        _ => Err(Error::Unauthenticated(
            "no credentials: send \"authorization: Bearer <token>\" (cubectl --token or \
             CUBE_TOKEN; cube-manager token ROLE prints one)"
                .into(),
        )),
    }
}

/// Who a door lets in.
#[derive(Clone)]
enum Policy {
    /// The manager's: tokens and node certificates, by method.
    Manager(Tokens),
    /// A worker's: the manager's certificate only.
    ManagerOnly,
}

/// A service behind a door; see the module's doc.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    policy: Arc<Policy>,
}

impl<S> Guarded<S> {
    /// ManagerService behind the manager's door.
    pub fn manager(inner: S, tokens: Tokens) -> Self {
        Self {
            inner,
            policy: Arc::new(Policy::Manager(tokens)),
        }
    }

    /// WorkerService, open to the manager alone.
    pub fn worker(inner: S) -> Self {
        Self {
            inner,
            policy: Arc::new(Policy::ManagerOnly),
        }
    }

    fn admit<B>(&self, request: &http::Request<B>) -> Result<Caller, Error> {
        match &*self.policy {
            Policy::Manager(tokens) => {
                let caller = authenticate(tokens, request)?;
                let method = request.uri().path().rsplit('/').next().unwrap_or_default();
                allowed(&caller, kind_of(method), method)?;
                Ok(caller)
            }
            Policy::ManagerOnly => match peer_identity(request) {
                Some(Identity::Manager) => Ok(Caller::Local),
                Some(other) => Err(Error::PermissionDenied(format!(
                    "a worker answers only its manager, not {other}"
                ))),
                None => Err(Error::Unauthenticated(
                    "a worker answers only its manager, which shows the manager's certificate"
                        .into(),
                )),
            },
        }
    }
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Guarded<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        match self.admit(&request) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                // The clone that was made ready is the one called; the fresh clone waits.
                let clone = self.inner.clone();
                let mut ready = std::mem::replace(&mut self.inner, clone);
                Box::pin(ready.call(request))
            }
            Err(error) => {
                let status = Status::from(error);
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_reaches_its_methods_only() {
        let admin = Caller::Token(Role::Admin);
        let reader = Caller::Token(Role::Reader);
        let worker = Caller::Token(Role::Worker);
        let node = Caller::Node("w1".into());
        for (caller, method, ok) in [
            (&admin, "SubmitTask", true),
            (&admin, "DrainNode", true),
            (&admin, "Heartbeat", false),
            (&reader, "GetTask", true),
            (&reader, "StreamLogs", true),
            (&reader, "GetVersion", true),
            (&reader, "RemoveTask", false),
            (&reader, "StopTask", false),
            (&reader, "SubmitTask", false),
            (&reader, "JoinCluster", false),
            (&worker, "JoinCluster", true),
            (&worker, "ListTasks", false),
            (&worker, "RegisterWorker", false),
            (&node, "RegisterWorker", true),
            (&node, "Heartbeat", true),
            (&node, "ListTasks", false),
            (&reader, "SomeFutureMethod", false),
        ] {
            let result = allowed(caller, kind_of(method), method);
            assert_eq!(result.is_ok(), ok, "{caller:?} {method}: {result:?}");
            if let Err(e) = result {
                assert_eq!(Status::from(e).code(), tonic::Code::PermissionDenied);
            }
        }
    }
}
