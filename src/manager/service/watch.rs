//! One `WatchTasks` stream: the current tasks in pages, a `synced` marker, then the changes.
//!
//! The stream subscribes to changes first and then reads the snapshot a page at a time
//! ([`Core::list`]), so a watch holds one page of tasks, not a copy of every task (500 watches
//! copying every large task once took a manager to 13.5 GB). A task changed while the pages
//! were read may show a newer state in the snapshot than a change still queued for it: such a
//! change is skipped, so no watcher sees a task go back to an older state. A few watches send
//! their snapshot at a time (`limits::streams::SNAPSHOTS_AT_ONCE`), so the answers waiting for
//! slow clients in the server's send buffers stay a few MB.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use futures::Stream;
use tokio::sync::{
    broadcast::{self, error::RecvError},
    OwnedSemaphorePermit, Semaphore,
};
use tonic::Status;

use super::super::core::{Core, TaskFilter};
use crate::{
    error::Error,
    limits::streams::{StreamPermit, WATCH_SNAPSHOT_PAGE},
    proto::pb,
    tls::Caller,
};

/// The messages of one watch; it ends after a status or when the manager stops.
pub(in crate::manager) fn stream(
    core: Core,
    filter: TaskFilter,
    permit: StreamPermit,
    snapshots: Arc<Semaphore>,
    caller: Caller,
) -> impl Stream<Item = Result<pb::WatchTasksResponse, Status>> + Send + 'static {
    let (changes, from_revision) = core.subscribe();
    let watch = Watch {
        core,
        filter,
        changes,
        from_revision,
        phase: Phase::Snapshot { after: Some(0) },
        page: VecDeque::new(),
        newer: HashMap::new(),
        snapshots,
        turn: None,
        caller,
        _permit: permit,
    };
    futures::stream::unfold(watch, |mut watch| async move {
        let item = watch.next().await?;
        if item.is_err() {
            watch.phase = Phase::Ended;
        }
        Some((item, watch))
    })
}

enum Phase {
    /// Sending the snapshot; `after` is where the next page starts (None: no more pages).
    Snapshot { after: Option<u64> },
    /// Sending changes.
    Live,
    /// A status was sent; nothing follows.
    Ended,
}

struct Watch {
    core: Core,
    filter: TaskFilter,
    changes: broadcast::Receiver<Arc<pb::Task>>,
    /// The revision of the last change made before the subscription.
    from_revision: u64,
    phase: Phase,
    page: VecDeque<pb::Task>,
    /// Tasks the snapshot showed at a revision after `from_revision`: their queued changes
    /// up to that revision are not sent again.
    newer: HashMap<String, u64>,
    /// The turns of snapshots, and this watch's while it sends its own.
    snapshots: Arc<Semaphore>,
    turn: Option<OwnedSemaphorePermit>,
    /// Who watches: env values are redacted for a reader.
    caller: Caller,
    /// The watch's place under the cap of open watches.
    _permit: StreamPermit,
}

impl Watch {
    async fn next(&mut self) -> Option<Result<pb::WatchTasksResponse, Status>> {
        loop {
            match self.phase {
                Phase::Snapshot { after } => {
                    if let Some(task) = self.page.pop_front() {
                        if task.revision > self.from_revision {
                            self.newer.insert(task.id.clone(), task.revision);
                        }
                        return Some(Ok(self.message(task, true)));
                    }
                    let Some(after) = after else {
                        self.turn = None;
                        self.phase = Phase::Live;
                        return Some(Ok(pb::WatchTasksResponse {
                            task: None,
                            initial: false,
                            synced: true,
                        }));
                    };
                    if self.turn.is_none() {
                        // Closed only when the server stops, and then the stream ends anyway.
                        self.turn = Some(self.snapshots.clone().acquire_owned().await.ok()?);
                    }
                    let (tasks, next) = self.core.list(&self.filter, after, WATCH_SNAPSHOT_PAGE);
                    self.page = tasks.into();
                    self.phase = Phase::Snapshot { after: next };
                }
                Phase::Live => return self.change().await,
                Phase::Ended => return None,
            }
        }
    }

    /// The next change that passes the filter. After a lag the stream ends with UNAVAILABLE:
    /// the client watches again and gets a fresh snapshot, rather than a silent gap; a watcher
    /// that does not read holds no more than the manager's shared buffer of changes.
    async fn change(&mut self) -> Option<Result<pb::WatchTasksResponse, Status>> {
        loop {
            match self.changes.recv().await {
                Ok(task) if self.filter.matches(&task) => {
                    if self
                        .newer
                        .get(&task.id)
                        .is_some_and(|&seen| task.revision <= seen)
                    {
                        continue;
                    }
                    return Some(Ok(self.message((*task).clone(), false)));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => {
                    return Some(Err(Status::from(Error::Unavailable(format!(
                        "this watch read too slowly and fell {n} changes behind; the manager \
                         does not hold changes for a slow reader: watch again"
                    )))))
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

impl Watch {
    /// One task as this watcher may see it.
    fn message(&self, mut task: pb::Task, initial: bool) -> pb::WatchTasksResponse {
        super::super::admission::redact(&self.caller, &mut task);
        pb::WatchTasksResponse {
            task: Some(task),
            initial,
            synced: false,
        }
    }
}
