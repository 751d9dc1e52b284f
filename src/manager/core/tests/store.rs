//! The core against its store: a refused write sends memory back to what the store holds, and
//! a task keeps only its newest events.

use std::{sync::Arc, time::Duration};

use super::{core, next_jobs, ready_node, submitted};
use crate::{
    manager::core::{committed::StoreOwner, state, TaskId},
    proto::pb::{self, EventType, TaskState},
    store::manager::ManagerStore,
};

/// A refused write sends the working state back to what the store holds: a move the store did
/// not record is undone (with the node's allocation and the pending queue in step), a task it
/// never stored is gone (its request id too), and every polled worker is asked for a full sync.
#[tokio::test]
async fn a_refused_write_sends_memory_back_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path());
    ready_node(&core, "w1");
    assert!(core.claim_poll("127.0.0.1:3"));
    let id = submitted(&core).await;
    let job = next_jobs(&core).await.pop().unwrap();
    assert_eq!(job.id, id);
    // Changes made in memory whose write is never made: a move, and a new task.
    let ghost = TaskId::new();
    {
        let mut tx = core.tx();
        assert!(tx.update(id, Some(TaskState::Pending), None, |t| t.node.clear()));
        let state = &mut *tx.state;
        let seq = state.next_seq;
        state.next_seq += 1;
        let task = pb::Task {
            id: ghost.to_string(),
            request_id: "ghost".into(),
            ..Default::default()
        };
        state.requests.insert("ghost".into(), ghost);
        state.order.insert(seq, ghost);
        state
            .tasks
            .insert(ghost, state::Entry::new(seq, Arc::new(task)));
    }
    let mut owner = StoreOwner {
        shared: Arc::downgrade(&core.shared),
    };
    let mut refused_queue = false;
    crate::store::Owner::refused(&mut owner, Vec::new(), &mut || refused_queue = true);
    assert!(refused_queue, "the queue is refused under the state lock");
    let state = core.lock();
    assert_eq!(state.tasks[&id].task.state(), TaskState::Scheduled);
    assert_eq!(state.tasks[&id].task.node, "w1");
    assert!(state.pending.is_empty());
    assert!(state.nodes.by_name["w1"].tasks.contains(&id));
    assert!(!state.tasks.contains_key(&ghost));
    assert!(!state.requests.contains_key("ghost"));
    assert!(state.resync.contains("127.0.0.1:3"));
    assert!(state.polled.contains("127.0.0.1:3"));
}

/// A task keeps at most its newest MAX_EVENTS_PER_TASK events, in memory's count and in the
/// store, also across a restart.
#[tokio::test]
async fn a_task_keeps_only_its_newest_events() {
    use crate::store::manager::MAX_EVENTS_PER_TASK;
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let core = core(dir.path());
        let id = submitted(&core).await;
        for i in 0..150 {
            let mut tx = core.tx();
            let event = (EventType::StopRequested, format!("note {i}"));
            assert!(tx.update(id, None, Some(event), |_| {}));
            tx.commit().wait().await.unwrap();
        }
        let events = core.task_events(id, 0, usize::MAX).await.unwrap();
        assert_eq!(events.len(), MAX_EVENTS_PER_TASK as usize);
        assert_eq!(events.last().unwrap().message, "note 149");
        assert_eq!(core.lock().tasks[&id].events, MAX_EVENTS_PER_TASK);
        id
    };
    // The writer lets go of the file once the last handle is dropped.
    let mut reopened = None;
    for _ in 0..100 {
        if let Ok(open) = ManagerStore::open(dir.path()) {
            reopened = Some(open);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, loaded) = reopened.expect("the store reopens");
    assert_eq!(loaded.event_counts[&id], MAX_EVENTS_PER_TASK);
}
