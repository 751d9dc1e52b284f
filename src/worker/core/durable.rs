//! The core's side toward its store: the durable view, whether the store takes writes, going
//! back to the view after a refused write, and forgetting finished tasks.

use tokio::sync::watch;

use super::{Committed, Core, Result};
use crate::{
    task::is_finished,
    worker::{committed, runtime::Runtime},
    TaskId,
};

impl<R: Runtime> Core<R> {
    /// The durable view.
    pub(crate) fn committed(&self) -> std::sync::MutexGuard<'_, Committed> {
        self.inner
            .committed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where waiting `ListTasks` calls learn of a new durable revision.
    pub(crate) fn changed(&self) -> &watch::Sender<u64> {
        &self.inner.changed
    }

    /// `Ok` while the store takes writes, else the error a change would be refused with
    /// (RESOURCE_EXHAUSTED for a full disk): nothing is changed that cannot be recorded.
    pub fn writable(&self) -> Result<()> {
        Ok(self.inner.store.writable()?)
    }

    /// "store read-only: disk full" while the store refuses writes, else empty.
    pub fn store_message(&self) -> String {
        self.inner
            .store
            .health()
            .borrow()
            .summary()
            .unwrap_or_default()
    }

    /// Whether the store takes writes; changes as it turns read-only and back.
    pub fn store_health(&self) -> watch::Receiver<crate::store::Health> {
        self.inner.store.health()
    }

    /// Finished tasks that ended before `before`, whose end is durable and seen by the manager,
    /// with their container ids: what retention may forget.
    pub(crate) fn finished_before(&self, before: std::time::SystemTime) -> Vec<(TaskId, String)> {
        let state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let view = self.committed();
        state
            .tasks
            .iter()
            .filter(|(id, task)| {
                crate::worker::retention::ended_before(task, before)
                    && task.revision <= view.acked
                    && !committed::differs(task, view.tasks.get(id))
            })
            .map(|(id, task)| (*id, task.container_id.clone()))
            .collect()
    }

    /// Forgets these tasks (if still finished): memory at once, the store before it answers.
    pub(crate) async fn forget(&self, ids: Vec<TaskId>) -> Result<usize> {
        self.writable()?;
        let (count, written) = {
            let mut state = self
                .inner
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let ids: Vec<TaskId> = ids
                .into_iter()
                .filter(|id| state.tasks.get(id).is_some_and(|t| is_finished(t.state())))
                .collect();
            for id in &ids {
                state.tasks.remove(id);
                state.unfinished.remove(id);
            }
            (ids.len(), self.inner.store.forget(ids))
        };
        written.await?;
        Ok(count)
    }

    /// Sends every task whose change the store did not record back to its durable version
    /// (a task never recorded is forgotten, one whose removal was not recorded comes back),
    /// then refuses what is still queued, under the state lock. Returns how many tasks went
    /// back.
    pub(crate) fn roll_back(&self, refuse_queued: &mut dyn FnMut()) -> usize {
        let mut state = self
            .inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let view = self.committed();
        // Changed or new in memory, and forgotten in memory but still stored.
        let mut changed: Vec<TaskId> = state
            .tasks
            .iter()
            .filter(|(id, task)| committed::differs(task, view.tasks.get(id)))
            .map(|(id, _)| *id)
            .collect();
        changed.extend(view.tasks.keys().filter(|id| !state.tasks.contains_key(id)));
        for id in &changed {
            match view.tasks.get(id) {
                Some(task) => {
                    if !is_finished(task.state()) {
                        state.unfinished.insert(*id);
                    } else {
                        state.unfinished.remove(id);
                    }
                    state.tasks.insert(*id, task.clone());
                }
                None => {
                    state.unfinished.remove(id);
                    state.tasks.remove(id);
                }
            }
        }
        drop(view);
        refuse_queued();
        changed.len()
    }
}
