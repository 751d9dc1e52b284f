//! Services in the core: declared, read, changed and removed, each durable before the
//! answer. A change of the task template starts a rollout, which `core::replicas` carries.

use std::{collections::HashMap, sync::Arc};

use super::{Core, Tx};
use crate::{
    error::{Error, Result},
    limits::MAX_ANSWER_BYTES,
    manager::replicas::{history, MAX_SERVICES},
    proto::{
        now,
        pb::{self, RolloutState},
    },
    task::TaskId,
};

/// A service's replicas, for the metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplicaCounts {
    /// What the service declares.
    pub desired: i64,
    /// Tasks RUNNING and wanted running.
    pub running: i64,
    /// Of those, the ones whose task version is the service's current one.
    pub updated: i64,
}

/// A change to a service's spec.
enum Change {
    /// A new spec, from UpdateService, which read `version`.
    Update {
        spec: Box<pb::ServiceSpec>,
        version: u64,
    },
    /// Only the replicas.
    Scale(u32),
    /// Back to the previous spec.
    Rollback,
}

impl Core {
    /// Declares a checked service; answers once it is durable.
    pub async fn create_service(&self, spec: pb::ServiceSpec) -> Result<pb::Service> {
        self.writable()?;
        let (service, durable) = {
            let mut tx = self.tx();
            if tx.state.services.contains_key(&spec.name) {
                return Err(Error::AlreadyExists {
                    what: "service",
                    id: spec.name,
                });
            }
            if tx.state.services.len() >= MAX_SERVICES {
                return Err(Error::ResourceExhausted(format!(
                    "this manager keeps at most {MAX_SERVICES} services; remove one first"
                )));
            }
            let at = now();
            let service = pb::Service {
                id: TaskId::new().to_string(),
                spec: Some(spec),
                version: 1,
                task_version: 1,
                previous_spec: None,
                rollout: None,
                rollouts: Vec::new(),
                created_at: Some(at),
                updated_at: Some(at),
            };
            tx.put_service(service.clone());
            (service, tx.commit())
        };
        durable.wait().await?;
        Ok(service)
    }

    /// One service by name, as stored.
    pub fn service(&self, name: &str) -> Result<pb::Service> {
        self.shared
            .view()
            .services
            .get(name)
            .map(|s| pb::Service::clone(s))
            .ok_or_else(|| service_missing(name))
    }

    /// Services named after `after`, by name, at most `limit` and about
    /// [`MAX_ANSWER_BYTES`]; and the name to continue after when there may be more.
    pub fn services(&self, after: &str, limit: usize) -> (Vec<pb::Service>, Option<String>) {
        let view = self.shared.view();
        let mut out = Vec::new();
        let mut bytes = 0;
        let after = (std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded);
        let mut last = None;
        for (name, service) in view.services.range::<str, _>(after) {
            let size = prost::Message::encoded_len(service.as_ref());
            if out.len() == limit || (!out.is_empty() && bytes + size > MAX_ANSWER_BYTES) {
                return (out, last);
            }
            bytes += size;
            out.push(pb::Service::clone(service));
            last = Some(name.clone());
        }
        (out, None)
    }

    /// Replaces a service's spec; `version` must be the one stored (else ABORTED).
    pub async fn update_service(&self, spec: pb::ServiceSpec, version: u64) -> Result<pb::Service> {
        let name = spec.name.clone();
        self.change_service(
            &name,
            Change::Update {
                spec: Box::new(spec),
                version,
            },
        )
        .await
    }

    /// Sets a service's replicas.
    pub async fn scale_service(&self, name: &str, replicas: u32) -> Result<pb::Service> {
        self.change_service(name, Change::Scale(replicas)).await
    }

    /// Puts a service's previous spec back.
    pub async fn rollback_service(&self, name: &str) -> Result<pb::Service> {
        self.change_service(name, Change::Rollback).await
    }

    async fn change_service(&self, name: &str, change: Change) -> Result<pb::Service> {
        self.writable()?;
        let (service, durable) = {
            let mut tx = self.tx();
            let current = tx
                .state
                .services
                .get(name)
                .ok_or_else(|| service_missing(name))?;
            let unchanged = matches!(change, Change::Scale(n)
                if current.spec.as_ref().is_some_and(|s| s.replicas == n));
            if unchanged {
                // Scaling to the replicas it has is done already (`apply` twice changes
                // nothing); the empty commit waits for the service to be durable.
                (pb::Service::clone(current), tx.commit())
            } else {
                let service = changed(current, change)?;
                tx.put_service(service.clone());
                (service, tx.commit())
            }
        };
        durable.wait().await?;
        Ok(service)
    }

    /// Removes a service; the reconciler stops its tasks.
    pub async fn delete_service(&self, name: &str) -> Result<pb::Service> {
        self.writable()?;
        let (service, durable) = {
            let mut tx = self.tx();
            let service = tx
                .state
                .services
                .remove(name)
                .ok_or_else(|| service_missing(name))?;
            tx.changes
                .ops
                .push(crate::store::manager::Op::DeleteService {
                    name: name.to_string(),
                });
            tx.changes.wake_services = true;
            (pb::Service::clone(&service), tx.commit())
        };
        durable.wait().await?;
        Ok(service)
    }

    /// Each service's replicas as stored, by name, for the metrics: one pass over the tasks.
    pub fn service_counts(&self) -> Vec<(String, ReplicaCounts)> {
        let view = self.shared.view();
        let mut by_id: HashMap<&str, (&str, ReplicaCounts, u64)> = HashMap::new();
        for (name, service) in &view.services {
            let counts = ReplicaCounts {
                desired: service.spec.as_ref().map_or(0, |s| i64::from(s.replicas)),
                ..Default::default()
            };
            by_id.insert(&service.id, (name, counts, service.task_version));
        }
        for task in view.tasks.values() {
            let Some((_, counts, version)) = by_id.get_mut(task.service_id.as_str()) else {
                continue;
            };
            if task.state() == pb::TaskState::Running
                && task.desired_state() == pb::DesiredState::Running
            {
                counts.running += 1;
                counts.updated += i64::from(task.service_version == *version);
            }
        }
        by_id
            .into_values()
            .map(|(name, counts, _)| (name.to_string(), counts))
            .collect()
    }

    /// The id of the service named `name`, for filters.
    pub fn service_id(&self, name: &str) -> Result<String> {
        self.service(name).map(|s| s.id)
    }
}

impl Tx<'_> {
    /// Stores a service (memory and a write) and wakes the reconciler.
    pub(super) fn put_service(&mut self, service: pb::Service) {
        let service = Arc::new(service);
        let name = service.spec.as_ref().map(|s| s.name.clone());
        self.state
            .services
            .insert(name.unwrap_or_default(), service.clone());
        self.changes
            .ops
            .push(crate::store::manager::Op::PutService(service));
        self.changes.wake_services = true;
    }
}

/// The service after `change`, or why the change is refused.
fn changed(current: &pb::Service, change: Change) -> Result<pb::Service> {
    let spec = current.spec.clone().unwrap_or_default();
    let old_template = spec.task.clone();
    let rolling_back = matches!(change, Change::Rollback);
    let (new_spec, previous) = match change {
        Change::Update { spec: new, version } => {
            if version != current.version {
                return Err(Error::Aborted(format!(
                    "version: service {:?} is at version {}, not {version}; read it again and \
                     retry",
                    spec.name, current.version
                )));
            }
            if *new == spec {
                return Err(Error::FailedPrecondition(format!(
                    "spec: the update changes nothing in service {:?}",
                    spec.name
                )));
            }
            (*new, Some(spec))
        }
        Change::Scale(replicas) => {
            let scaled = pb::ServiceSpec {
                replicas,
                ..spec.clone()
            };
            (scaled, current.previous_spec.clone())
        }
        Change::Rollback => {
            let previous = current.previous_spec.clone().ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "service {:?} has no previous spec to roll back to (it was never updated)",
                    spec.name
                ))
            })?;
            (previous, Some(spec))
        }
    };
    let template_changed = new_spec.task != old_template;
    let task_version = current.task_version + u64::from(template_changed);
    let rollout = if template_changed {
        let (state, message) = if rolling_back {
            (RolloutState::RollingBack, "rolling back, as asked")
        } else {
            (RolloutState::Updating, "updating")
        };
        Some(rollout(
            state,
            current.task_version,
            task_version,
            message.into(),
        ))
    } else {
        current.rollout.clone()
    };
    let mut next = pb::Service {
        version: current.version + 1,
        task_version,
        spec: Some(new_spec),
        previous_spec: previous,
        updated_at: Some(now()),
        rollout,
        ..current.clone()
    };
    if template_changed {
        history::supersede(&mut next.rollouts, current.rollout.as_ref(), task_version);
        history::record(&mut next);
    }
    Ok(next)
}

/// A new rollout record from `from_task_version` to `task_version`.
fn rollout(
    state: RolloutState,
    from_task_version: u64,
    task_version: u64,
    message: String,
) -> pb::Rollout {
    let at = now();
    pb::Rollout {
        state: state as i32,
        task_version,
        from_task_version,
        message,
        started_at: Some(at),
        updated_at: Some(at),
        ended_at: None,
    }
}

fn service_missing(name: &str) -> Error {
    Error::NotFound {
        what: "service",
        id: name.to_string(),
    }
}
