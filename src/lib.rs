//! Cube: a small container orchestrator. One manager schedules tasks onto workers, which run
//! them as containers and report back; every hop is gRPC over `proto/cube.proto`.
//!
//! # Layout
//!
//! - [`proto`]: the generated contract (`pb`) and its descriptor set.
//! - [`task`]: ids, spec validation and the task state machine, without I/O.
//! - [`error`]: the crate's error type and its one mapping to `tonic::Status`.
//! - [`store`]: the embedded on-disk store (redb).
//! - [`scheduler`]: the `Scheduler` trait and its strategies, pure.
//! - [`manager`]: the control plane (`cube::manager::serve`).
//! - [`grpc`]: what every server shares (health, reflection, shutdown, channels).
//! - [`limits`]: the documented bounds of every input, connection and stream.
//! - [`client`]: a typed `ManagerService` client with deadlines, for cubectl and tests.
//! - [`cli`]: cubectl's verbs, one module each.
//! - [`worker`]: the data plane: runs tasks through a container runtime and reports them.
//! - [`disconnect`]: a task's disconnect policy: when its worker stops it, when the manager
//!   replaces it.
//! - [`units`]: durations, cpu and byte quantities: the one parser and printer of each.
//! - [`paths`]: the default data dirs.
//! - [`tls`]: the cluster CA, tokens, node certificates, mTLS and the door of each service.

pub mod cli;
pub mod client;
pub mod disconnect;
pub mod error;
pub mod grpc;
pub mod limits;
pub mod manager;
pub mod metrics;
pub mod paths;
pub mod proto;
pub mod scheduler;
pub mod store;
pub mod task;
pub mod tls;
pub mod units;
pub mod worker;

pub use error::{Error, Result};
pub use proto::pb;
pub use task::TaskId;
