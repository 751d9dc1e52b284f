//! The service reconciler's pass: for every service, judge its rollout (done, or failed and
//! then rolled back or paused, as its update config says) and apply
//! [`crate::manager::replicas::plan`], all under the state lock, so a decision and the tasks
//! it makes or stops are one change.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::{state::Entry, Core, Tx};
use crate::{
    manager::replicas::{history, judge, plan, Action, Config, Desired, Judgement, SlotTask},
    proto::{
        now,
        pb::{self, DesiredState, EventType, FailureAction, RolloutState, TaskState},
        system_time,
    },
    task::{is_finished, TaskId},
};

impl Core {
    /// One pass of the service reconciler: for every service, and every removed service that
    /// still has tasks, applies the plan. Returns how many actions it took.
    pub fn reconcile_services(&self) -> usize {
        if self.writable().is_err() {
            return 0;
        }
        let mut tx = self.tx();
        let mut taken = 0;
        let services: Vec<Arc<pb::Service>> = tx.state.services.values().cloned().collect();
        let mut seen = std::collections::HashSet::new();
        let at = SystemTime::now();
        for service in services {
            seen.insert(service.id.clone());
            let service = tx.judge_rollout(&service, at);
            taken += tx.reconcile_one(&service.id, Some(&service), at);
        }
        let orphans: Vec<String> = tx
            .state
            .by_service
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in orphans {
            taken += tx.reconcile_one(&id, None, at);
        }
        tx.commit_later();
        taken
    }
}

/// The template of `service` and its version.
fn current(service: &pb::Service) -> Option<(&pb::TaskSpec, u64)> {
    let template = service.spec.as_ref()?.task.as_ref()?;
    Some((template, service.task_version))
}

/// Whether a rollout in this state still replaces slots or is judged.
fn in_flight(service: &pb::Service) -> Option<&pb::Rollout> {
    service.rollout.as_ref().filter(|r| {
        matches!(
            r.state(),
            RolloutState::Updating | RolloutState::RollingBack | RolloutState::Paused
        )
    })
}

/// The update config that governs `service` now: its rollback config while rolling back.
fn config_of(service: &pb::Service) -> Config {
    let spec = service.spec.clone().unwrap_or_default();
    let rolling_back = in_flight(service).is_some_and(|r| r.state() == RolloutState::RollingBack);
    if rolling_back {
        Config::of(spec.rollback_config.as_ref(), true)
    } else {
        Config::of(spec.update_config.as_ref(), false)
    }
}

impl Tx<'_> {
    /// Judges the rollout of `service`, recording what changes (done; failed: rolled back or
    /// paused); the service as it now is.
    fn judge_rollout(&mut self, service: &Arc<pb::Service>, at: SystemTime) -> Arc<pb::Service> {
        let Some(rollout_now) = in_flight(service) else {
            return service.clone();
        };
        if rollout_now.state() == RolloutState::Paused {
            return service.clone();
        }
        let config = config_of(service);
        let replicas = service.spec.as_ref().map_or(0, |s| s.replicas);
        let tasks = self.slot_tasks(&service.id, current(service), config.monitor, at);
        let rolling_back = rollout_now.state() == RolloutState::RollingBack;
        let judgement = judge(
            replicas,
            service.task_version,
            config.max_failure_ratio,
            &tasks,
        );
        let mut next = pb::Service::clone(service);
        let record = next.rollout.get_or_insert_with(Default::default);
        match judgement {
            Judgement::Going => return service.clone(),
            Judgement::Done => {
                record.set_state(if rolling_back {
                    RolloutState::RolledBack
                } else {
                    RolloutState::Completed
                });
                let done = format!("every replica runs version {}", service.task_version);
                record.message = if rolling_back {
                    let why = record
                        .message
                        .strip_prefix("rolling back")
                        .unwrap_or_default();
                    format!("rolled back{why}; {done}")
                } else {
                    done
                };
                record.updated_at = Some(now());
            }
            Judgement::Failed { .. } if config.action == FailureAction::Continue => {
                return service.clone();
            }
            Judgement::Failed { slot, why } => {
                let failed = tasks
                    .iter()
                    .find(|t| t.slot == slot && t.version == service.task_version)
                    .map(|t| t.id);
                let rollback =
                    config.action == FailureAction::Rollback && service.previous_spec.is_some();
                let said = if rollback {
                    next = rolled_back(service, slot, &why);
                    next.rollout
                        .as_ref()
                        .map(|r| r.message.clone())
                        .unwrap_or_default()
                } else {
                    record.set_state(RolloutState::Paused);
                    record.message = format!(
                        "paused: version {} failed in slot {slot}: {why}",
                        service.task_version
                    );
                    record.updated_at = Some(now());
                    record.message.clone()
                };
                if let Some(id) = failed {
                    self.update(id, None, Some((EventType::Service, said)), |_| {});
                }
            }
        }
        history::record(&mut next);
        tracing::info!(service_id = %service.id, rollout = ?next.rollout, "rollout changed");
        self.put_service(next.clone());
        Arc::new(next)
    }

    /// Applies the plan of one service (`None`: removed) with id `id`.
    fn reconcile_one(&mut self, id: &str, service: Option<&pb::Service>, at: SystemTime) -> usize {
        let config = service.map(config_of);
        let monitor = config.map_or(Duration::ZERO, |c| c.monitor);
        let tasks = self.slot_tasks(id, service.and_then(current), monitor, at);
        let desired = service.zip(config).map(|(s, config)| {
            let paused = s
                .rollout
                .as_ref()
                .is_some_and(|r| r.state() == RolloutState::Paused);
            Desired {
                replicas: s.spec.as_ref().map_or(0, |s| s.replicas),
                version: s.task_version,
                parallelism: if paused { 0 } else { config.parallelism },
                start_first: config.start_first,
                hold: self.held(&s.id, s.task_version, config, at),
            }
        });
        let actions = plan(desired, &tasks);
        for action in &actions {
            match (action, service) {
                (Action::Stop { id, reason }, _) => {
                    let event = (EventType::Service, reason.says().to_string());
                    self.request_stop(*id, event);
                }
                (Action::Create { slot }, Some(service)) => self.create_replica(service, *slot),
                (Action::Create { .. }, None) => {}
            }
        }
        if service.is_none() && tasks.iter().all(|t| !t.live) {
            // Nothing of a removed service runs: the index has no more use for it.
            self.state.by_service.remove(id);
        }
        if !actions.is_empty() {
            tracing::info!(service_id = %id, actions = actions.len(), "service reconciled");
        }
        actions.len()
    }

    /// A new task of `service`'s current version for `slot`.
    fn create_replica(&mut self, service: &pb::Service, slot: u32) {
        let name = service.spec.as_ref().map_or("", |s| s.name.as_str());
        let task = pb::Task {
            spec: service.spec.as_ref().and_then(|s| s.task.clone()),
            service_id: service.id.clone(),
            slot,
            service_version: service.task_version,
            ..Default::default()
        };
        let accepted = format!(
            "created by service {name} for slot {slot} (version {})",
            service.task_version
        );
        self.add_task(task, accepted);
    }

    /// The tasks of service `id`, as the plan sees them: a task without a health check is up
    /// once it has run for `monitor`; a task whose spec is the current template counts as
    /// the current version (after a rollback, the slots the update never reached stay).
    fn slot_tasks(
        &self,
        id: &str,
        current: Option<(&pb::TaskSpec, u64)>,
        monitor: Duration,
        at: SystemTime,
    ) -> Vec<SlotTask> {
        let Some(ids) = self.state.by_service.get(id) else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|id| self.state.tasks.get(id).map(|e| (*id, e)))
            .map(|(id, entry)| slot_task(id, entry, current, monitor, at))
            .collect()
    }
}

/// One task as the plan sees it. A task of the `current` version (by number, or by a spec
/// equal to its template) without a health check is up once it has run for `monitor`.
fn slot_task(
    id: TaskId,
    entry: &Entry,
    current: Option<(&pb::TaskSpec, u64)>,
    monitor: Duration,
    at: SystemTime,
) -> SlotTask {
    let task = &entry.task;
    let version = match current {
        Some((template, version)) if task.spec.as_ref() == Some(template) => version,
        _ => task.service_version,
    };
    let is_new = current.is_some_and(|(_, v)| v == version);
    let ended = is_finished(task.state()) && entry.restart_at.is_none();
    let wanted = task.desired_state() == DesiredState::Running;
    let checked = task
        .spec
        .as_ref()
        .and_then(|s| s.health_check.as_ref())
        .is_some_and(|h| h.probe.is_some());
    let running = task.state() == TaskState::Running;
    let ran_long = !is_new
        || system_time(task.started_at.as_ref())
            .is_some_and(|s| at.duration_since(s).unwrap_or_default() >= monitor);
    let failure = if !wanted {
        None
    } else if task.state() == TaskState::Failed || (ended && task.exit_code.is_some()) {
        Some(if task.message.is_empty() {
            format!("exited with code {}", task.exit_code.unwrap_or_default())
        } else {
            task.message.clone()
        })
    } else if task.restart_count > 0 {
        Some(format!("restarted {} times", task.restart_count))
    } else if task.healthy == Some(false) {
        Some("its health check failed".into())
    } else {
        None
    };
    SlotTask {
        id,
        seq: entry.seq,
        slot: task.slot,
        version,
        live: wanted && !ended,
        ready: running
            && if checked {
                task.healthy == Some(true)
            } else {
                ran_long
            },
        failure,
        stopping: !wanted && !is_finished(task.state()),
    }
}

impl Tx<'_> {
    /// Whether the delay between batches holds the next one: the newest running task of
    /// `version` came up (started, plus the monitor period) less than `delay` ago.
    fn held(&self, id: &str, version: u64, config: Config, at: SystemTime) -> bool {
        if config.delay.is_zero() {
            return false;
        }
        let Some(ids) = self.state.by_service.get(id) else {
            return false;
        };
        let newest = ids
            .iter()
            .filter_map(|id| self.state.tasks.get(id))
            .map(|e| &e.task)
            .filter(|t| t.service_version == version && t.state() == TaskState::Running)
            .filter_map(|t| system_time(t.started_at.as_ref()))
            .max();
        newest.is_some_and(|started| started + config.monitor + config.delay > at)
    }
}

/// `service` after its update failed in `slot` for `why`: its previous spec back, as a new
/// task version, rolling back. The same rollout goes on (same start, same version it moved
/// from), now towards the previous spec, so its record ends ROLLED_BACK.
fn rolled_back(service: &pb::Service, slot: u32, why: &str) -> pb::Service {
    let failed = service.task_version;
    let task_version = failed + 1;
    let message = format!("rolling back: version {failed} failed in slot {slot}: {why}");
    let going = service.rollout.clone().unwrap_or_default();
    let rollout = pb::Rollout {
        state: RolloutState::RollingBack as i32,
        task_version,
        message,
        updated_at: Some(now()),
        ended_at: None,
        ..going
    };
    pb::Service {
        version: service.version + 1,
        task_version,
        spec: service.previous_spec.clone(),
        previous_spec: service.spec.clone(),
        updated_at: Some(now()),
        rollout: Some(rollout),
        ..service.clone()
    }
}
