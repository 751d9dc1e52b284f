//! Placement: pending tasks are placed on nodes (PENDING -> SCHEDULED) and handed to the
//! dispatcher as StartTask calls; the calls' outcomes come back here. A call that got no answer
//! is made again to the same node after a backoff; a refusal sends the task back to be placed
//! anew.

use std::time::Instant;

use super::{state::State, Core};
use crate::{
    manager::policy::{dispatch_backoff, MAX_RESENDS},
    proto::pb::{self, DesiredState, EventType, TaskState},
    scheduler::Demand,
    store::manager::Durable,
    task::TaskId,
};

/// A StartTask call to make.
#[derive(Debug, Clone)]
pub(crate) struct Dispatch {
    pub id: TaskId,
    pub node: String,
    pub address: String,
    pub spec: pb::TaskSpec,
    pub attempt: u32,
}

/// Why a StartTask for one task did not succeed.
#[derive(Debug, Clone)]
pub(crate) enum SendFailure {
    /// The worker does not hold the task: it answered and refused it, or it was never sent.
    Refused(String),
    /// No answer (a deadline, a broken connection): the worker may hold the task anyway.
    NoAnswer(String),
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendFailure::Refused(message) | SendFailure::NoAnswer(message) => f.write_str(message),
        }
    }
}

impl State {
    /// The resends whose backoff ended, as calls to make (marked in flight); `next_due` learns
    /// when the next one is due. A task that moved on meanwhile leaves the list; one whose node
    /// does not answer waits (if the node is lost, the task is placed anew from there).
    fn resends_due(
        &mut self,
        now: Instant,
        jobs: &mut Vec<Dispatch>,
        next_due: &mut Option<Instant>,
    ) {
        let ids: Vec<TaskId> = self.resend.iter().copied().collect();
        for id in ids {
            let Some(entry) = self.tasks.get_mut(&id) else {
                self.resend.remove(&id);
                continue;
            };
            if entry.task.state() != TaskState::Scheduled
                || entry.task.desired_state() == DesiredState::Stopped
                || entry.in_flight
            {
                self.resend.remove(&id);
                continue;
            }
            if let Some(due) = entry.not_before.filter(|due| *due > now) {
                *next_due = Some(next_due.map_or(due, |n| n.min(due)));
                continue;
            }
            let Some(address) = self
                .nodes
                .by_name
                .get(&entry.task.node)
                .filter(|n| n.alive && !n.address.is_empty())
                .map(|n| n.address.clone())
            else {
                continue;
            };
            self.resend.remove(&id);
            entry.in_flight = true;
            entry.dispatched_at = Some(now);
            jobs.push(Dispatch {
                id,
                node: entry.task.node.clone(),
                address,
                spec: entry.task.spec.clone().unwrap_or_default(),
                attempt: entry.task.restart_count,
            });
        }
    }
}

impl Core {
    /// Places every pending task that fits, oldest first, and marks it SCHEDULED. Returns the
    /// calls to make (once the returned writes are durable) and when a backed-off task is due.
    pub fn place_pending(&self) -> (Vec<Dispatch>, Durable, Option<Instant>) {
        // Placements could not be stored; the store's recovery wakes the dispatcher.
        if self.writable().is_err() {
            return (Vec::new(), Durable::done(), None);
        }
        let mut placed = self.tx();
        let mut messages = super::Changes::default();
        let mut jobs = Vec::new();
        let mut next_due: Option<Instant> = None;
        if placed.state.pending.is_empty() && placed.state.resend.is_empty() {
            return (jobs, Durable::done(), None);
        }
        let now_instant = Instant::now();
        let state = &mut *placed.state;
        state.resends_due(now_instant, &mut jobs, &mut next_due);
        let mut views = state.nodes.views(self.shared.stale_after);
        // Everything pending when capacity changed since the last pass; otherwise only what
        // became pending since (so a burst of submissions costs each task one try).
        let seqs: Vec<u64> = if state.passed_gen != Some(state.capacity_gen) {
            state.pending.iter().copied().collect()
        } else {
            state.to_try.iter().copied().collect()
        };
        state.to_try.clear();
        state.passed_gen = Some(state.capacity_gen);
        let scheduling = crate::metrics::metrics()
            .manager_scheduling_seconds
            .with_label_values(&[self.strategy()]);
        for seq in seqs {
            let state = &mut *placed.state;
            if !state.pending.contains(&seq) {
                continue;
            }
            let id = state.order[&seq];
            let entry = &state.tasks[&id];
            if let Some(due) = entry.not_before.filter(|d| *d > now_instant) {
                next_due = Some(next_due.map_or(due, |n| n.min(due)));
                state.to_try.insert(seq);
                continue;
            }
            if entry.unfit_at == Some(state.capacity_gen) {
                continue;
            }
            let spec = entry.task.spec.clone().unwrap_or_default();
            let demand = Demand::of_task(&entry.task);
            let started = Instant::now();
            // A node still owed the stop of an old copy of this task is no place for it: the
            // worker would take the old copy for the new placement, and then stop it.
            let avoid = state.stale_copies(id);
            let decision = if avoid.is_empty() {
                self.shared.scheduler.place_fast(&demand, &views, true)
            } else {
                let mut views = views.clone();
                for view in views.iter_mut().filter(|v| avoid.contains(&v.name)) {
                    view.alive = false;
                }
                self.shared.scheduler.place_fast(&demand, &views, true)
            };
            scheduling.observe(started.elapsed().as_secs_f64());
            let Some(node) = decision.node else {
                let capacity_gen = state.capacity_gen;
                let Some(entry) = state.tasks.get_mut(&id) else {
                    continue;
                };
                entry.unfit_at = Some(capacity_gen);
                if entry.task.message != decision.summary {
                    let summary = decision.summary;
                    state.update(&mut messages, id, None, None, |task| {
                        task.message = summary;
                    });
                }
                continue;
            };
            if let Some(view) = views.iter_mut().find(|v| v.name == node) {
                view.allocated = view.allocated + demand.resources;
                view.used_ports.extend(demand.host_ports.iter().copied());
                view.task_count += 1;
                if !demand.service.is_empty() {
                    *view
                        .service_tasks
                        .entry(demand.service.clone())
                        .or_default() += 1;
                }
            }
            let address = state.nodes.by_name[&node].address.clone();
            let summary = decision.summary;
            let moved = placed.update(id, Some(TaskState::Scheduled), None, |task| {
                task.node = node.clone();
                task.message = summary;
            });
            let Some(entry) = placed.state.tasks.get_mut(&id).filter(|_| moved) else {
                continue;
            };
            entry.dispatched_at = Some(now_instant);
            entry.in_flight = true;
            entry.unfit_at = None;
            jobs.push(Dispatch {
                id,
                node,
                address,
                spec,
                attempt: entry.task.restart_count,
            });
        }
        // A pass does not wake itself: what it sent back is tried on the next wake-up.
        messages.wake_dispatcher = false;
        placed.changes.wake_dispatcher = false;
        self.shared.store.write_later(messages.ops);
        if jobs.is_empty() {
            placed.commit_later();
            (jobs, Durable::done(), next_due)
        } else {
            (jobs, placed.commit(), next_due)
        }
    }

    /// A StartTask call succeeded (or the worker had the task already).
    pub fn dispatch_ok(&self, id: TaskId) {
        if let Some(entry) = self.lock().tasks.get_mut(&id) {
            entry.in_flight = false;
            entry.dispatch_failures = 0;
            entry.not_before = None;
        }
    }

    /// A StartTask call failed, unless it moved on meanwhile (stopped, or the worker reported
    /// it after all). A call that got no answer is made again to the same node after a backoff,
    /// up to [`MAX_RESENDS`] times: the worker may hold the task already. A refusal, or no
    /// answer after that, puts the task back to PENDING with a backoff, to be placed anew.
    pub fn dispatch_failed(&self, job: &Dispatch, failure: &SendFailure) {
        let mut tx = self.tx();
        let state = &mut *tx.state;
        let Some(entry) = state.tasks.get_mut(&job.id) else {
            return;
        };
        entry.in_flight = false;
        if entry.task.state() != TaskState::Scheduled
            || entry.task.node != job.node
            || entry.task.restart_count != job.attempt
        {
            return;
        }
        entry.dispatch_failures += 1;
        let backoff = dispatch_backoff(entry.dispatch_failures);
        entry.not_before = Some(Instant::now() + backoff);
        let stopped = entry.task.desired_state() == DesiredState::Stopped;
        let resend = matches!(failure, SendFailure::NoAnswer(_))
            && !stopped
            && entry.dispatch_failures <= MAX_RESENDS;
        let message = if resend {
            state.resend.insert(job.id);
            format!(
                "sending to {} got no answer ({failure}); sending again in {backoff:?}",
                job.node
            )
        } else {
            format!("sending to {} failed: {failure}", job.node)
        };
        // A resend keeps the task SCHEDULED on its node; otherwise it goes back to be placed,
        // or, stopped meanwhile, ends as a stop ends: COMPLETED, whatever the timing.
        let to = match (resend, stopped) {
            (true, _) => None,
            (false, true) => Some(TaskState::Completed),
            (false, false) => Some(TaskState::Pending),
        };
        let event = (EventType::DispatchFailed, message.clone());
        tx.update(job.id, to, Some(event), |task| {
            task.message = message;
            if resend {
                return;
            }
            task.node.clear();
            if stopped {
                task.message = "stopped before it was started; it never ran".into();
                task.finished_at = Some(crate::proto::now());
            }
        });
        tx.changes.wake_dispatcher |= resend;
        tx.commit_later();
    }
}
