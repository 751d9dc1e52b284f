//! Stops owed to workers: the user's stops and copies that belong elsewhere, handed to the
//! stopper as StopTask calls, and what their answers mean for the task.

use std::time::{Duration, Instant};

use super::Core;
use crate::{
    proto::{
        now,
        pb::{self, TaskState},
    },
    task::{is_finished, TaskId, DEFAULT_STOP_GRACE},
};

/// A StopTask call to make.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct StopJob {
    pub id: TaskId,
    pub node: String,
    /// True for a copy that belongs elsewhere (or to nobody), false for the user's stop.
    pub stale: bool,
}

impl Core {
    /// Stop calls owed and not under way, with the address of their node and the task's stop
    /// grace period.
    pub fn stop_jobs(&self) -> Vec<(StopJob, String, Duration)> {
        // A stop's outcome could not be stored; stops wait for the store's recovery.
        if self.writable().is_err() {
            return Vec::new();
        }
        let mut guard = self.lock();
        let state = &mut *guard;
        let jobs: Vec<StopJob> = state
            .stops
            .iter()
            .filter(|j| !state.stops_in_flight.contains(*j))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for job in jobs {
            let Some(address) = state
                .nodes
                .by_name
                .get(&job.node)
                .filter(|n| n.alive && !n.address.is_empty())
                .map(|n| n.address.clone())
            else {
                continue; // retried once the node answers
            };
            let grace = state
                .tasks
                .get(&job.id)
                .and_then(|e| e.task.spec.as_ref())
                .and_then(|s| s.stop_grace_period)
                .and_then(|d| Duration::try_from(d).ok())
                .unwrap_or(DEFAULT_STOP_GRACE);
            state.stops_in_flight.insert(job.clone());
            out.push((job, address, grace));
        }
        out
    }

    /// A stop call ended. On success the worker's answer is applied at once, as a report; a
    /// worker that does not know the task has nothing to stop, so the task is stopped.
    pub fn stop_done(&self, job: &StopJob, outcome: Result<Option<pb::Task>, String>) {
        let reported = {
            let mut state = self.lock();
            state.stops_in_flight.remove(job);
            if outcome.is_err() {
                return;
            }
            state.stops.remove(job);
            if job.stale {
                return;
            }
            let Some(entry) = state.tasks.get(&job.id) else {
                return;
            };
            match outcome {
                Ok(Some(task)) if task.id == entry.task.id => task,
                _ => {
                    // Not known there: it never started, so it is stopped.
                    if entry.task.node != job.node || is_finished(entry.task.state()) {
                        return;
                    }
                    // The worker's report, as it would have made it: a report, not a move of
                    // the manager's copy (that is `observed`'s to make).
                    pb::Task {
                        id: entry.task.id.clone(),
                        state: TaskState::Completed as i32,
                        restart_count: entry.task.restart_count,
                        finished_at: Some(now()),
                        message: "stopped".into(),
                        ..pb::Task::clone(&entry.task)
                    }
                }
            }
        };
        if is_finished(reported.state()) {
            self.observed(&job.node, vec![reported], false, Instant::now());
        }
    }
}
