//! SendWork and its mirror: the loops that call workers' StartTask and StopTask.
//!
//! Both are event-driven (a `Notify` from the core) with a timer as a backstop, and make their
//! calls concurrently across workers, at most [`PER_WORKER`] at a time to one worker. Neither
//! drops work: a failed StartTask puts the task back in the queue with a backoff (the core
//! decides), a failed StopTask stays owed and is tried again.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tonic::Code;

use super::{
    core::{Core, Dispatch, SendFailure, StopJob},
    pool::WorkerPool,
};
use crate::proto::pb;

/// Calls in flight to one worker at most: enough to overlap a few container starts, few enough
/// not to swamp one Docker engine.
const PER_WORKER: usize = 8;

/// How long a StartTasks call may take: the worker only persists the tasks before it
/// answers (in one commit), but on a loaded machine an fsync can take seconds. A call past it
/// is made again (see `Core::dispatch_failed`).
const START_DEADLINE: Duration = Duration::from_secs(10);

/// The most placements on one worker sent in one StartTasks call.
const START_BATCH: usize = 16;

/// The backstop: loops look again this often even when nothing woke them (a backoff ended, a
/// node came back).
const BACKSTOP: Duration = Duration::from_secs(1);

/// A StopTask may take the task's grace period plus this, for the kill and the removal.
const STOP_EXTRA: Duration = Duration::from_secs(10);

/// Calls to workers under way: spawned on the manager's tracker (so shutdown waits for them),
/// at most [`PER_WORKER`] at a time to one worker.
#[derive(Clone)]
pub(crate) struct Calls {
    core: Core,
    pool: WorkerPool,
    tracker: TaskTracker,
    limits: Arc<std::sync::Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl Calls {
    /// Calls with their own per-worker limits.
    pub fn new(core: Core, pool: WorkerPool, tracker: TaskTracker) -> Calls {
        Calls {
            core,
            pool,
            tracker,
            limits: Arc::default(),
        }
    }

    /// Runs `call` once fewer than [`PER_WORKER`] calls to `address` are under way.
    fn spawn<F>(&self, address: &str, call: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let limit = {
            let mut map = self.limits.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(address.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(PER_WORKER)))
                .clone()
        };
        self.tracker.spawn(async move {
            let _permit = limit.acquire_owned().await;
            call.await;
        });
    }
}

/// Places pending tasks and sends them to their workers until `shutdown`.
pub(crate) async fn run_dispatcher(calls: Calls, shutdown: CancellationToken) {
    let core = &calls.core;
    loop {
        let (jobs, durable, next_due) = core.place_pending();
        if !jobs.is_empty() {
            match durable.wait().await {
                Ok(()) => {
                    let mut by_worker: HashMap<String, Vec<Dispatch>> = HashMap::new();
                    for job in jobs {
                        by_worker.entry(job.address.clone()).or_default().push(job);
                    }
                    for (address, jobs) in by_worker {
                        for batch in jobs.chunks(START_BATCH) {
                            let (core, pool, batch) =
                                (core.clone(), calls.pool.clone(), batch.to_vec());
                            calls.spawn(&address, async move {
                                send(&core, &pool, &batch).await;
                            });
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "placements could not be stored; retrying");
                    for job in &jobs {
                        let failure =
                            SendFailure::Refused("the placement could not be stored".into());
                        core.dispatch_failed(job, &failure);
                    }
                }
            }
        }
        let wait = next_due
            .map(|due| due.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or(BACKSTOP)
            .min(BACKSTOP);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = core.dispatch_notify().notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Calls StartTasks on the worker of `jobs` (all placed on the same worker) and records each
/// outcome: accepted (or already there) is sent; a refusal, or no answer, goes to
/// `Core::dispatch_failed`.
/// A worker's error answer as a task's or node's message shows it: `no space left in /d
/// (RESOURCE_EXHAUSTED)`.
pub(crate) fn answered(code: Code, message: &str) -> String {
    let debug = format!("{code:?}");
    let mut name = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    format!("{message} ({name})")
}

#[tracing::instrument(skip_all, fields(node = jobs.first().map(|j| j.node.as_str()), tasks = jobs.len()))]
pub(crate) async fn send(core: &Core, pool: &WorkerPool, jobs: &[Dispatch]) {
    let Some(first) = jobs.first() else { return };
    let outcome = async {
        let mut client = pool
            .client(&first.address)
            .map_err(|e| SendFailure::Refused(e.to_string()))?;
        let tasks = jobs
            .iter()
            .map(|job| pb::StartTaskRequest {
                task_id: job.id.to_string(),
                spec: Some(job.spec.clone()),
                attempt: job.attempt,
            })
            .collect();
        let mut request = tonic::Request::new(pb::StartTasksRequest { tasks });
        request.set_timeout(START_DEADLINE);
        match tokio::time::timeout(START_DEADLINE, client.start_tasks(request)).await {
            Err(_) => Err(SendFailure::NoAnswer(format!(
                "no answer within {START_DEADLINE:?}"
            ))),
            Ok(Err(status)) => {
                let error = answered(status.code(), status.message());
                // Whether the worker got the call is unknown after these; any other status
                // is the worker's answer.
                Err(match status.code() {
                    Code::DeadlineExceeded
                    | Code::Cancelled
                    | Code::Unavailable
                    | Code::Unknown => SendFailure::NoAnswer(error),
                    _ => SendFailure::Refused(error),
                })
            }
            Ok(Ok(response)) if response.get_ref().results.len() != jobs.len() => {
                Err(SendFailure::Refused(format!(
                    "the worker answered {} results for {} tasks",
                    response.get_ref().results.len(),
                    jobs.len()
                )))
            }
            Ok(Ok(response)) => Ok(response.into_inner().results),
        }
    }
    .await;
    let results: Vec<Result<(), SendFailure>> = match outcome {
        Err(failure) => vec![Err(failure); jobs.len()],
        Ok(results) => results
            .into_iter()
            .map(|result| match Code::from_i32(result.code) {
                Code::Ok => Ok(()),
                Code::AlreadyExists => {
                    // Its copy there may be one the manager will not hear of again by itself.
                    core.resync(&first.address);
                    Ok(())
                }
                code => Err(SendFailure::Refused(answered(code, &result.message))),
            })
            .collect(),
    };
    for (job, result) in jobs.iter().zip(results) {
        match result {
            Ok(()) => {
                tracing::info!(task_id = %job.id, node = %job.node, attempt = job.attempt, "task sent");
                core.dispatch_ok(job.id);
            }
            Err(failure) => {
                tracing::warn!(task_id = %job.id, node = %job.node, error = %failure, "StartTask failed");
                core.dispatch_failed(job, &failure);
            }
        }
    }
}

/// Calls StopTask for every stop owed (the user's stops and stale copies) until `shutdown`.
pub(crate) async fn run_stopper(calls: Calls, shutdown: CancellationToken) {
    loop {
        for (job, address, grace) in calls.core.stop_jobs() {
            let (core, pool) = (calls.core.clone(), calls.pool.clone());
            let span = tracing::info_span!("stop", task_id = %job.id, node = %job.node);
            let to = address.clone();
            let call = async move {
                let outcome = stop(&pool, &job, &to, grace + STOP_EXTRA).await;
                if let Err(error) = &outcome {
                    tracing::warn!(task_id = %job.id, node = %job.node, %error, "StopTask failed; will retry");
                } else {
                    tracing::info!(task_id = %job.id, node = %job.node, stale = job.stale, "task stopped");
                }
                core.stop_done(&job, outcome);
            };
            calls.spawn(&address, tracing::Instrument::instrument(call, span));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = calls.core.stopper_notify().notified() => {}
            _ = tokio::time::sleep(BACKSTOP) => {}
        }
    }
}

async fn stop(
    pool: &WorkerPool,
    job: &StopJob,
    address: &str,
    deadline: Duration,
) -> Result<Option<pb::Task>, String> {
    let mut client = pool.client(address).map_err(|e| e.to_string())?;
    let mut request = tonic::Request::new(pb::WorkerServiceStopTaskRequest {
        task_id: job.id.to_string(),
        reason: if job.stale {
            "placed elsewhere".into()
        } else {
            "stopped by user".into()
        },
    });
    request.set_timeout(deadline);
    match tokio::time::timeout(deadline, client.stop_task(request)).await {
        Err(_) => Err(format!("no answer within {deadline:?}")),
        Ok(Ok(response)) => Ok(response.into_inner().task),
        Ok(Err(status)) if status.code() == Code::NotFound => Ok(None),
        Ok(Err(status)) => Err(answered(status.code(), status.message())),
    }
}
