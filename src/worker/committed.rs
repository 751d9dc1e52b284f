//! What the worker's store holds, in memory: the tasks `ListTasks` answers with. A task's change
//! reaches this view (and the manager) only once its write is durable; when the store refuses
//! writes, the working state goes back to it, so the worker never reports, nor acts on, a change
//! it could not record.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Weak,
    time::Duration,
};

use super::{core::Core, runtime::Runtime, store::Row};
use crate::{pb, store::Owner, TaskId};

/// The durable tasks, with the revision index `ListTasks` reads.
#[derive(Default)]
pub(crate) struct Committed {
    pub tasks: HashMap<TaskId, pb::Task>,
    /// Revision -> the task last stored at it; one entry per task.
    by_revision: BTreeMap<u64, TaskId>,
    pub revision: u64,
    /// The highest revision this process's manager has polled past: it has seen every change
    /// up to it.
    pub acked: u64,
}

impl Committed {
    /// The view of tasks just loaded from the store.
    pub fn of(tasks: &HashMap<TaskId, pb::Task>) -> Committed {
        let mut committed = Committed::default();
        for (id, task) in tasks {
            committed.put(*id, task.clone());
        }
        committed
    }

    /// Forgets a task removed from the store.
    fn forget(&mut self, id: TaskId) {
        if let Some(old) = self.tasks.remove(&id) {
            self.by_revision.remove(&old.revision);
        }
    }

    /// Records a durable version of a task (an older one than known is ignored).
    fn put(&mut self, id: TaskId, task: pb::Task) {
        if let Some(old) = self.tasks.get(&id) {
            if old.revision > task.revision {
                return;
            }
            self.by_revision.remove(&old.revision);
        }
        self.revision = self.revision.max(task.revision);
        self.by_revision.insert(task.revision, id);
        self.tasks.insert(id, task);
    }
}

/// What `ListTasks` answers.
pub(crate) struct Listing {
    pub tasks: Vec<pb::Task>,
    pub revision: u64,
    pub complete: bool,
    /// Where the next page starts, when the answer was cut at the size limit.
    pub next_page_after: Option<u64>,
}

/// The worker's side of its store: durable rows join the view (and wake waiting `ListTasks`
/// calls); refused ones send the working state back to it.
pub(crate) struct StoreOwner<R> {
    pub core: Weak<super::core::Inner<R>>,
}

impl<R: Runtime> Owner<Row> for StoreOwner<R> {
    fn durable(&mut self, records: Vec<Vec<Row>>) {
        let Some(core) = self.core.upgrade().map(Core::from_inner) else {
            return;
        };
        let revision = {
            let mut committed = core.committed();
            for row in records.into_iter().flatten() {
                match row.task {
                    Some(task) => committed.put(row.id, task),
                    None => committed.forget(row.id),
                }
            }
            committed.revision
        };
        core.changed().send_replace(revision);
    }

    fn refused(&mut self, records: Vec<Vec<Row>>, refuse_queued: &mut dyn FnMut()) {
        let Some(core) = self.core.upgrade().map(Core::from_inner) else {
            refuse_queued();
            return;
        };
        let reverted = core.roll_back(refuse_queued);
        tracing::warn!(
            refused_writes = records.iter().map(Vec::len).sum::<usize>(),
            reverted,
            "the store refused writes; tasks went back to what the store holds"
        );
    }
}

impl<R: Runtime> Core<R> {
    /// Like [`Core::list`], but when nothing changed after `since` (of this instance) it first
    /// waits up to `wait` for a change: the manager's reconciler learns of a change at once
    /// while a quiet worker still answers only once per `wait`. A next page never waits.
    pub async fn list_waiting(
        &self,
        since: u64,
        instance_id: &str,
        wait: Duration,
        page_after: u64,
    ) -> Listing {
        // Revision 0 of this instance is a cursor too: a worker that has had no task yet
        // waits for its first change like any other.
        if !wait.is_zero() && page_after == 0 && instance_id == self.instance_id() {
            let mut changed = self.changed().subscribe();
            // wait_for looks at the current revision first, so a change made before the
            // subscription is not missed; the timeout is the normal end of a quiet wait.
            let _ = tokio::time::timeout(wait, changed.wait_for(|&r| r > since)).await;
        }
        self.list(since, instance_id, page_after)
    }

    /// The stored tasks changed after `since` (when `instance_id` is this process's), else
    /// all; in the order of their last change, from after revision `page_after`, cut before
    /// the answer passes [`crate::limits::MAX_ANSWER_BYTES`] (a full listing of large tasks
    /// once reached 7 MB, over every client's 4 MiB limit, and failed on every poll).
    pub fn list(&self, since: u64, instance_id: &str, page_after: u64) -> Listing {
        let mut committed = self.committed();
        let incremental = since > 0 && instance_id == self.instance_id();
        if incremental {
            // The manager has seen every change up to its cursor.
            committed.acked = committed.acked.max(since);
        }
        let from = if incremental { since } else { 0 }.max(page_after);
        let mut tasks = Vec::new();
        let mut bytes = 0;
        let mut last = None;
        let mut cut = false;
        // by_revision holds every task once, so it lists all of them in a stable order.
        for (revision, id) in committed.by_revision.range(from.saturating_add(1)..) {
            let Some(task) = committed.tasks.get(id) else {
                continue;
            };
            let size = prost::Message::encoded_len(task);
            if !tasks.is_empty() && bytes + size > crate::limits::MAX_ANSWER_BYTES {
                cut = true;
                break;
            }
            bytes += size;
            tasks.push(task.clone());
            last = Some(*revision);
        }
        Listing {
            tasks,
            revision: committed.revision,
            complete: !incremental,
            next_page_after: last.filter(|_| cut),
        }
    }
}

/// Whether a working task differs from its durable version (or has none).
pub(crate) fn differs(task: &pb::Task, committed: Option<&pb::Task>) -> bool {
    committed.is_none_or(|c| c.revision != task.revision)
}
