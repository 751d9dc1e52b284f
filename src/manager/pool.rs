//! The manager's connections to workers: one tonic channel per worker address, made on first
//! use and shared by the dispatcher, the stopper, the poll loops and the logs proxy.
//!
//! It has its own lock, apart from the task state's: dialling a worker never waits on a task
//! change, nor a task change on a dial.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tonic::transport::Channel;

use crate::{error::Result, proto::pb::worker_service_client::WorkerServiceClient};

/// How long a connection to a worker may serve one call at most (streams of logs excepted:
/// the timeout covers their start only). Each call sets its own, shorter deadline.
const CHANNEL_TIMEOUT: Duration = Duration::from_secs(120);

/// The channels to workers, by address; clones share them.
#[derive(Clone, Default)]
pub(crate) struct WorkerPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// TLS showing the manager's certificate; None on a plaintext (`--dev`) cluster.
    tls: Option<crate::tls::ClientTls>,
}

impl WorkerPool {
    /// A pool dialling over `tls` when given, else plaintext.
    pub fn new(tls: Option<crate::tls::ClientTls>) -> Self {
        Self {
            channels: Arc::default(),
            tls,
        }
    }

    /// A client for the worker at `address`, over its (cached) channel.
    pub fn client(&self, address: &str) -> Result<WorkerServiceClient<Channel>> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(address) {
            return Ok(WorkerServiceClient::new(channel.clone()));
        }
        let channel = match &self.tls {
            Some(tls) => tls.channel(address, CHANNEL_TIMEOUT)?,
            None => crate::grpc::channel(address, CHANNEL_TIMEOUT)?,
        };
        channels.insert(address.to_string(), channel.clone());
        Ok(WorkerServiceClient::new(channel))
    }

    /// Drops the channel to `address` (a worker that moved to another address).
    pub fn forget(&self, address: &str) {
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(address);
    }
}
