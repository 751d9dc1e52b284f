//! The typed client's service calls, one per ManagerService service rpc.

use super::{Client, ClientError};
use crate::proto::pb;

impl Client {
    /// Declares a service.
    pub async fn create_service(
        &self,
        spec: pb::ServiceSpec,
    ) -> Result<pb::CreateServiceResponse, ClientError> {
        let request = self.request(pb::CreateServiceRequest { spec: Some(spec) });
        let response = self.inner.clone().create_service(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// One service by name.
    pub async fn get_service(&self, name: &str) -> Result<pb::GetServiceResponse, ClientError> {
        let request = self.request(pb::GetServiceRequest {
            name: name.to_string(),
        });
        let response = self.inner.clone().get_service(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// Every service, all pages joined.
    pub async fn list_all_services(&self) -> Result<Vec<pb::Service>, ClientError> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = self.request(pb::ListServicesRequest {
                page_size: 0,
                page_token,
            });
            let response = self.inner.clone().list_services(request).await;
            let page = response
                .map(|r| r.into_inner())
                .map_err(|s| self.error(s))?;
            all.extend(page.services);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// Replaces a service's spec; `version` is the one read.
    pub async fn update_service(
        &self,
        spec: pb::ServiceSpec,
        version: u64,
    ) -> Result<pb::UpdateServiceResponse, ClientError> {
        let request = self.request(pb::UpdateServiceRequest {
            spec: Some(spec),
            version,
        });
        let response = self.inner.clone().update_service(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// Sets a service's replicas.
    pub async fn scale_service(
        &self,
        name: &str,
        replicas: u32,
    ) -> Result<pb::ScaleServiceResponse, ClientError> {
        let request = self.request(pb::ScaleServiceRequest {
            name: name.to_string(),
            replicas,
        });
        let response = self.inner.clone().scale_service(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// Puts a service's previous spec back.
    pub async fn rollback_service(
        &self,
        name: &str,
    ) -> Result<pb::RollbackServiceResponse, ClientError> {
        let request = self.request(pb::RollbackServiceRequest {
            name: name.to_string(),
        });
        let response = self.inner.clone().rollback_service(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// Removes a service; its tasks are stopped.
    pub async fn delete_service(
        &self,
        name: &str,
    ) -> Result<pb::DeleteServiceResponse, ClientError> {
        let request = self.request(pb::DeleteServiceRequest {
            name: name.to_string(),
        });
        let response = self.inner.clone().delete_service(request).await;
        response.map(|r| r.into_inner()).map_err(|s| self.error(s))
    }

    /// Every task of service `name`, all pages joined.
    pub async fn service_tasks(&self, name: &str) -> Result<Vec<pb::Task>, ClientError> {
        let filter = pb::ListTasksRequest {
            service: name.to_string(),
            ..Default::default()
        };
        Ok(self.list_all_tasks(filter).await?.tasks)
    }
}
