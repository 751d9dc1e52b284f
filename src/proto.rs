//! The generated gRPC code for `proto/cube.proto` and its encoded descriptor set.
//!
//! Everything on the wire comes from here: the message types, the `TaskState` enum the state
//! machine is written over, and the tonic clients and servers.
// expect: the descriptor set is written by the build: a bad one fails every test.
#![allow(clippy::expect_used)]

use std::sync::OnceLock;

use prost_reflect::DescriptorPool;

/// The code prost and tonic generate for package `cube.v1`.
#[allow(clippy::all, missing_docs)] // generated code: its style is prost's, not ours
pub mod pb {
    tonic::include_proto!("cube.v1");
}

/// The protobuf package Cube speaks (`package` in proto/cube.proto).
pub const PACKAGE: &str = "cube.v1";

/// This build: its release version, the protobuf package and the commit it was built from
/// (recorded by build.rs; "unknown" outside a checkout).
pub fn build_version() -> pb::GetVersionResponse {
    pb::GetVersionResponse {
        version: env!("CARGO_PKG_VERSION").to_string(),
        proto_package: PACKAGE.to_string(),
        commit: env!("CUBE_BUILD_COMMIT").to_string(),
    }
}

/// Cube's encoded `FileDescriptorSet` (with the well-known types it imports), for server
/// reflection and for rendering messages as proto3 JSON.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cube_descriptor.bin"));

/// The descriptor pool decoded once from [`FILE_DESCRIPTOR_SET`].
pub fn descriptor_pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("the build wrote a valid descriptor set")
    })
}

/// Converts a `SystemTime` to the wire's `Timestamp`.
pub fn timestamp(time: std::time::SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(time)
}

/// The wire's `Timestamp` as a `SystemTime`, if it is one (set, and in range).
pub fn system_time(time: Option<&prost_types::Timestamp>) -> Option<std::time::SystemTime> {
    time.and_then(|t| std::time::SystemTime::try_from(*t).ok())
}

/// Now, as the wire's `Timestamp`.
pub fn now() -> prost_types::Timestamp {
    timestamp(std::time::SystemTime::now())
}

/// A task state as people read it: `RUNNING`, `PENDING`, ...
pub fn state_name(state: pb::TaskState) -> &'static str {
    match state {
        pb::TaskState::Unspecified => "UNSPECIFIED",
        pb::TaskState::Pending => "PENDING",
        pb::TaskState::Scheduled => "SCHEDULED",
        pb::TaskState::Running => "RUNNING",
        pb::TaskState::Completed => "COMPLETED",
        pb::TaskState::Failed => "FAILED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_is_the_one_compiled() {
        let service = format!("{PACKAGE}.ManagerService");
        assert!(descriptor_pool().get_service_by_name(&service).is_some());
        assert!(!build_version().commit.is_empty());
    }
}
