//! The service rpcs: check, call the core, answer. Specs are checked by
//! [`crate::manager::replicas`]; env values are hidden from readers as in task answers.

use tonic::{Request, Response, Status};

use super::{page_size, Api};
use crate::{
    error::{Error, Result},
    manager::{
        admission,
        replicas::{check_service_name, check_service_spec, MAX_REPLICAS},
    },
    proto::pb,
    tls::{caller_of, Caller},
};

type Answer<T> = Result<Response<T>, Status>;

/// A readers' copy of a service: env values of its templates hidden.
fn redacted(caller: &Caller, mut service: pb::Service) -> pb::Service {
    for spec in [service.spec.as_mut(), service.previous_spec.as_mut()]
        .into_iter()
        .flatten()
    {
        if let Some(task) = spec.task.take() {
            let mut shown = pb::Task {
                spec: Some(task),
                ..Default::default()
            };
            admission::redact(caller, &mut shown);
            spec.task = shown.spec;
        }
    }
    service
}

fn checked_spec(spec: Option<pb::ServiceSpec>) -> Result<pb::ServiceSpec> {
    check_service_spec(spec.ok_or_else(|| Error::invalid("spec", "is required"))?)
}

fn checked_replicas(replicas: u32) -> Result<u32> {
    if replicas > MAX_REPLICAS {
        return Err(Error::invalid(
            "replicas",
            format!("{replicas} is above the limit of {MAX_REPLICAS}"),
        ));
    }
    Ok(replicas)
}

impl Api {
    pub(super) async fn create_service_rpc(
        &self,
        request: Request<pb::CreateServiceRequest>,
    ) -> Answer<pb::CreateServiceResponse> {
        let spec = checked_spec(request.into_inner().spec)?;
        let service = self.core.create_service(spec).await?;
        tracing::info!(service = %service.id, "service created");
        Ok(Response::new(pb::CreateServiceResponse {
            service: Some(service),
        }))
    }

    pub(super) async fn get_service_rpc(
        &self,
        request: Request<pb::GetServiceRequest>,
    ) -> Answer<pb::GetServiceResponse> {
        let caller = caller_of(&request);
        let name = request.into_inner().name;
        check_service_name("name", &name)?;
        let service = redacted(&caller, self.core.service(&name)?);
        Ok(Response::new(pb::GetServiceResponse {
            service: Some(service),
        }))
    }

    pub(super) async fn list_services_rpc(
        &self,
        request: Request<pb::ListServicesRequest>,
    ) -> Answer<pb::ListServicesResponse> {
        let caller = caller_of(&request);
        let request = request.into_inner();
        let size = i32::try_from(request.page_size).unwrap_or(i32::MAX);
        let limit = page_size("page_size", size)?;
        if !request.page_token.is_empty() {
            check_service_name("page_token", &request.page_token)?;
        }
        let (services, last) = self.core.services(&request.page_token, limit);
        Ok(Response::new(pb::ListServicesResponse {
            services: services.into_iter().map(|s| redacted(&caller, s)).collect(),
            next_page_token: last.unwrap_or_default(),
        }))
    }

    pub(super) async fn update_service_rpc(
        &self,
        request: Request<pb::UpdateServiceRequest>,
    ) -> Answer<pb::UpdateServiceResponse> {
        let request = request.into_inner();
        let spec = checked_spec(request.spec)?;
        let service = self.core.update_service(spec, request.version).await?;
        tracing::info!(service = %service.id, version = service.version, "service updated");
        Ok(Response::new(pb::UpdateServiceResponse {
            service: Some(service),
        }))
    }

    pub(super) async fn scale_service_rpc(
        &self,
        request: Request<pb::ScaleServiceRequest>,
    ) -> Answer<pb::ScaleServiceResponse> {
        let request = request.into_inner();
        check_service_name("name", &request.name)?;
        let replicas = checked_replicas(request.replicas)?;
        let service = self.core.scale_service(&request.name, replicas).await?;
        tracing::info!(service = %service.id, replicas, "service scaled");
        Ok(Response::new(pb::ScaleServiceResponse {
            service: Some(service),
        }))
    }

    pub(super) async fn rollback_service_rpc(
        &self,
        request: Request<pb::RollbackServiceRequest>,
    ) -> Answer<pb::RollbackServiceResponse> {
        let name = request.into_inner().name;
        check_service_name("name", &name)?;
        let service = self.core.rollback_service(&name).await?;
        tracing::info!(service = %service.id, "service rolled back");
        Ok(Response::new(pb::RollbackServiceResponse {
            service: Some(service),
        }))
    }

    pub(super) async fn delete_service_rpc(
        &self,
        request: Request<pb::DeleteServiceRequest>,
    ) -> Answer<pb::DeleteServiceResponse> {
        let name = request.into_inner().name;
        check_service_name("name", &name)?;
        let service = self.core.delete_service(&name).await?;
        tracing::info!(service = %service.id, "service removed");
        Ok(Response::new(pb::DeleteServiceResponse {
            service: Some(service),
        }))
    }
}
