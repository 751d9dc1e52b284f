//! The typed client's calls about nodes and the cluster: listing, usage, drain, the manager's
//! version and garbage collection.

use super::{Client, ClientError};
use crate::proto::pb;

impl Client {
    /// What every node uses now.
    pub async fn top_nodes(&self) -> Result<pb::TopNodesResponse, ClientError> {
        let request = self.request(pb::TopNodesRequest {});
        let response = self.inner.clone().top_nodes(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// What every running task uses now (only on `node`, when not empty).
    pub async fn top_tasks(&self, node: &str) -> Result<pb::TopTasksResponse, ClientError> {
        let request = self.request(pb::TopTasksRequest {
            node: node.to_string(),
        });
        let response = self.inner.clone().top_tasks(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// The manager's version and build.
    pub async fn get_version(&self) -> Result<pb::GetVersionResponse, ClientError> {
        let request = self.request(pb::GetVersionRequest {});
        let response = self.inner.clone().get_version(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// Every node.
    pub async fn list_nodes(&self) -> Result<pb::ListNodesResponse, ClientError> {
        let request = self.request(pb::ListNodesRequest {});
        let response = self.inner.clone().list_nodes(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// Takes no new tasks on `node` and moves its tasks elsewhere.
    pub async fn drain_node(&self, node: &str) -> Result<pb::DrainNodeResponse, ClientError> {
        let request = self.request(pb::DrainNodeRequest {
            node: node.to_string(),
        });
        let response = self.inner.clone().drain_node(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// Makes a drained node eligible again.
    pub async fn undrain_node(&self, node: &str) -> Result<pb::UndrainNodeResponse, ClientError> {
        let request = self.request(pb::UndrainNodeRequest {
            node: node.to_string(),
        });
        let response = self.inner.clone().undrain_node(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// Removes what retention no longer keeps, now.
    pub async fn collect_garbage(&self) -> Result<pb::CollectGarbageResponse, ClientError> {
        let request = self.request(pb::CollectGarbageRequest {});
        let response = self.inner.clone().collect_garbage(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }
}
