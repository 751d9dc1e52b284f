//! What the store holds, in memory: the tasks and node records readers see. It changes only
//! once a write is durable, on the store's writer thread and in commit order, and watchers hear
//! of a task's change from here, so no reader or watcher ever sees a change the disk refused.
//!
//! When the store refuses writes (a full disk), the core's working state goes back to this
//! view: as after a restart, but in place (the nodes' liveness, the poll loops and the counters
//! are kept, and every worker is asked for a full sync).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Weak},
};

use super::{state::State, Shared};
use crate::{
    proto::pb,
    store::{manager::Op, Owner},
    task::TaskId,
};

/// The durable tasks and node records.
#[derive(Default)]
pub(super) struct Committed {
    /// Tasks by submission sequence.
    pub tasks: BTreeMap<u64, Arc<pb::Task>>,
    /// Task id -> submission sequence, in id order so that an id prefix is a range.
    pub ids: BTreeMap<TaskId, u64>,
    /// Task name -> the ids of the tasks that have it (finished ones too).
    pub names: HashMap<String, BTreeSet<TaskId>>,
    /// Stored node records by name.
    pub nodes: BTreeMap<String, pb::Node>,
    /// The revision of the last task change published.
    pub revision: u64,
    /// Stored services by name.
    pub services: BTreeMap<String, Arc<pb::Service>>,
}

impl Committed {
    /// The view of a state just loaded from the store, sharing its tasks.
    pub fn of(state: &State, nodes: &[pb::Node]) -> Committed {
        let mut committed = Committed::default();
        for (seq, id) in &state.order {
            let task = state.tasks[id].task.clone();
            committed.name(&task, *id);
            committed.tasks.insert(*seq, task);
            committed.ids.insert(*id, *seq);
        }
        for node in nodes {
            committed.nodes.insert(node.name.clone(), node.clone());
        }
        committed.revision = state.revision;
        committed.services = state.services.clone();
        committed
    }

    /// One task by id.
    pub fn task(&self, id: TaskId) -> Option<&Arc<pb::Task>> {
        self.ids.get(&id).and_then(|seq| self.tasks.get(seq))
    }

    /// Records `task`'s name (a name never changes once submitted).
    fn name(&mut self, task: &pb::Task, id: TaskId) {
        let name = task.spec.as_ref().map(|s| s.name.as_str()).unwrap_or("");
        if !name.is_empty() {
            self.names.entry(name.to_string()).or_default().insert(id);
        }
    }

    /// Forgets the task at `seq`, with its id and name.
    fn forget(&mut self, seq: u64, id: TaskId) {
        self.ids.remove(&id);
        let Some(task) = self.tasks.remove(&seq) else {
            return;
        };
        let name = task.spec.as_ref().map(|s| s.name.as_str()).unwrap_or("");
        if let Some(ids) = self.names.get_mut(name) {
            ids.remove(&id);
            if ids.is_empty() {
                self.names.remove(name);
            }
        }
    }
}

/// The manager's side of its store: publishes what is durable, and puts the working state back
/// to it when writes are refused. It holds the core weakly: the writer thread outlives no core.
pub(super) struct StoreOwner {
    pub shared: Weak<Shared>,
}

impl Owner<Op> for StoreOwner {
    fn durable(&mut self, records: Vec<Vec<Op>>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        // Watchers hear of a change under the view's lock, so a watch that takes its snapshot
        // under the same lock misses nothing and sees nothing twice.
        let mut view = shared.view_mut();
        for op in records.into_iter().flatten() {
            match op {
                Op::PutTask { seq, id, task } => {
                    view.revision = view.revision.max(task.revision);
                    view.ids.insert(id, seq);
                    view.name(&task, id);
                    view.tasks.insert(seq, task.clone());
                    let _ = shared.changes.send(task);
                }
                Op::PutNode(node) => {
                    view.nodes.insert(node.name.clone(), *node);
                }
                Op::DeleteNode { name } => {
                    view.nodes.remove(&name);
                }
                Op::DeleteTask { seq, id } => view.forget(seq, id),
                Op::PutService(service) => {
                    let name = service.spec.as_ref().map(|s| s.name.clone());
                    view.services.insert(name.unwrap_or_default(), service);
                }
                Op::DeleteService { name } => {
                    view.services.remove(&name);
                }
                Op::PutEvent { .. } | Op::TrimEvents { .. } => {}
            }
        }
    }

    fn refused(&mut self, records: Vec<Vec<Op>>, refuse_queued: &mut dyn FnMut()) {
        let Some(shared) = self.shared.upgrade() else {
            refuse_queued();
            return;
        };
        let mut state = shared.lock_state();
        {
            let view = shared.view();
            state.roll_back(&view);
        }
        // Under the state lock: what is still queued was made before the state went back.
        refuse_queued();
        drop(state);
        let writes: usize = records.iter().map(Vec::len).sum();
        tracing::warn!(
            refused_writes = writes,
            "the store refused writes; memory went back to what the store holds"
        );
        shared.wake_all();
    }
}
