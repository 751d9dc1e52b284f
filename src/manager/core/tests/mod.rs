//! The core's unit tests: registration and liveness on paused time, resends, adoption of a
//! late copy, filters, and the state machine enforced on every change.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use super::*;
use crate::{manager::policy::MAX_RESENDS, store::manager::ManagerStore};

mod store;

pub(super) fn core(dir: &std::path::Path) -> Core {
    let (store, loaded) = ManagerStore::open(dir).unwrap();
    let scheduler = crate::scheduler::by_name("spread").unwrap();
    Core::new(store, loaded, scheduler, &[], Duration::from_secs(5))
}

fn state_of(core: &Core, name: &str) -> pb::NodeState {
    let node = core.nodes().into_iter().find(|n| n.name == name).unwrap();
    node.state()
}

/// Registration, heartbeats, and the grace period measured on tokio's paused clock.
#[tokio::test(start_paused = true)]
async fn a_node_silent_for_the_grace_period_is_down_until_it_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path());
    let grace = Duration::from_secs(3);
    assert!(
        core.register("w1", "127.0.0.1:1", BTreeMap::new(), "i1".into(), None)
            .needs_poll
    );
    assert_eq!(state_of(&core, "w1"), pb::NodeState::Ready);
    assert_eq!(
        core.heartbeat("w2", "i1", None),
        None,
        "unknown: register again"
    );
    assert_eq!(
        core.heartbeat("w1", "other", None),
        None,
        "a new instance registers"
    );
    tokio::time::advance(Duration::from_millis(2900)).await;
    core.check_liveness(grace);
    assert_eq!(state_of(&core, "w1"), pb::NodeState::Ready);
    assert_eq!(core.heartbeat("w1", "i1", None), Some(vec![]));
    tokio::time::advance(Duration::from_millis(2900)).await;
    core.check_liveness(grace);
    assert_eq!(
        state_of(&core, "w1"),
        pb::NodeState::Ready,
        "the heartbeat counted"
    );
    tokio::time::advance(Duration::from_millis(200)).await;
    core.check_liveness(grace);
    assert_eq!(state_of(&core, "w1"), pb::NodeState::Down);
    assert_eq!(core.heartbeat("w1", "i1", None), Some(vec![]));
    assert_eq!(state_of(&core, "w1"), pb::NodeState::Ready);
    core.drain("w1", true).await.unwrap();
    assert_eq!(state_of(&core, "w1"), pb::NodeState::Draining);
    assert!(core.drain("nope", true).await.is_err());
}

/// A worker that takes tasks: registered with fresh stats and room (its runtime unsaid).
pub(super) fn ready_node(core: &Core, name: &str) {
    ready_node_with(core, name, "");
}

/// A worker that takes tasks, with runtime `runtime` (`docker`, `exec`, or unsaid).
fn ready_node_with(core: &Core, name: &str, runtime: &str) {
    let stats = pb::NodeStats {
        runtime: runtime.into(),
        cpu_count: 2,
        memory_total_bytes: 1 << 34,
        memory_available_bytes: 1 << 34,
        runtime_ready: true,
        capacity: Some(pb::Resources {
            cpu_millis: 2_000,
            memory_bytes: 1 << 34,
            disk_bytes: 0,
        }),
        ..Default::default()
    };
    let address = format!("127.0.0.1:{}", 1 + name.len());
    let registered = core.register(name, &address, BTreeMap::new(), name.into(), Some(stats));
    assert!(registered.needs_poll);
}

pub(super) async fn submitted(core: &Core) -> TaskId {
    let spec = pb::TaskSpec {
        name: "t".into(),
        command: vec!["sleep".into(), "600".into()],
        ..Default::default()
    };
    let (task, _) = core.submit(spec, String::new()).await.unwrap();
    TaskId::parse("id", &task.id).unwrap()
}

/// The jobs of the next dispatcher pass, with every backoff cut short (their lengths are
/// `dispatch_backoff`'s test).
pub(super) async fn next_jobs(core: &Core) -> Vec<Dispatch> {
    for entry in core.lock().tasks.values_mut() {
        entry.not_before = None;
    }
    let (jobs, durable, _) = core.place_pending();
    durable.wait().await.unwrap();
    jobs
}

fn task(core: &Core, id: TaskId) -> pb::Task {
    pb::Task::clone(&core.lock().tasks[&id].task)
}

/// A StartTask without an answer is made again to the same node, with the same attempt
/// (the worker may hold the task); after MAX_RESENDS more the task is placed anew. A
/// refusal places it anew at once.
#[tokio::test]
async fn a_start_without_an_answer_is_sent_again_to_the_same_node() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path());
    ready_node(&core, "w1");
    let id = submitted(&core).await;
    let mut job = next_jobs(&core).await.pop().unwrap();
    assert_eq!((job.node.as_str(), job.attempt), ("w1", 0));
    for resend in 1..=MAX_RESENDS {
        core.dispatch_failed(&job, &SendFailure::NoAnswer("no answer within 10s".into()));
        let now = task(&core, id);
        assert_eq!(
            (now.state(), now.node.as_str()),
            (TaskState::Scheduled, "w1")
        );
        assert!(now.message.contains("sending again"), "{}", now.message);
        let again = next_jobs(&core).await;
        assert_eq!(again.len(), 1, "resend {resend}");
        assert_eq!(
            (again[0].id, again[0].node.as_str(), again[0].attempt),
            (id, "w1", 0)
        );
        job = again[0].clone();
    }
    core.dispatch_failed(&job, &SendFailure::NoAnswer("no answer within 10s".into()));
    let now = task(&core, id);
    assert_eq!((now.state(), now.node.as_str()), (TaskState::Pending, ""));

    // Placed anew (only w1 is there), then refused: back to PENDING at once.
    let job = next_jobs(&core).await.pop().unwrap();
    core.dispatch_failed(&job, &SendFailure::Refused("INVALID_ARGUMENT: bad".into()));
    assert_eq!(task(&core, id).state(), TaskState::Pending);
    assert!(core.lock().resend.is_empty());
}

/// A worker reporting its copy of a PENDING task (its StartTask answer came too late) at
/// the task's attempt keeps it there rather than stopping it; a copy of another attempt
/// is stopped.
#[tokio::test]
async fn a_pending_task_keeps_the_copy_a_worker_reports() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path());
    ready_node(&core, "w1");
    ready_node(&core, "w22");
    let copy = |id: TaskId, node: &str, attempt| pb::Task {
        id: id.to_string(),
        state: TaskState::Running as i32,
        node: node.into(),
        container_id: "pid:42".into(),
        restart_count: attempt,
        started_at: Some(crate::proto::now()),
        ..Default::default()
    };
    let mut kept = Vec::new();
    for attempt in [0, 1] {
        let id = submitted(&core).await;
        let job = next_jobs(&core).await.pop().unwrap();
        core.dispatch_failed(&job, &SendFailure::Refused("UNAVAILABLE: busy".into()));
        assert_eq!(task(&core, id).state(), TaskState::Pending);
        core.observed(
            &job.node,
            vec![copy(id, &job.node, attempt)],
            false,
            Instant::now(),
        );
        kept.push((id, job.node));
    }
    let (id, node) = &kept[0];
    let now = task(&core, *id);
    assert_eq!((now.state(), &now.node), (TaskState::Running, node));
    assert_eq!(now.container_id, "pid:42");
    let (other, other_node) = &kept[1];
    assert_eq!(task(&core, *other).state(), TaskState::Pending);
    let stops: Vec<StopJob> = core.lock().stops.iter().cloned().collect();
    assert_eq!(
        stops,
        vec![StopJob {
            id: *other,
            node: other_node.clone(),
            stale: true
        }],
        "only the copy of another attempt is stopped"
    );
}

#[test]
fn filters_match_ids_state_and_node() {
    let task = pb::Task {
        id: "a".into(),
        state: TaskState::Running as i32,
        node: "w1".into(),
        ..Default::default()
    };
    assert!(TaskFilter::default().matches(&task));
    let by_state = TaskFilter {
        state: Some(TaskState::Pending),
        ..Default::default()
    };
    assert!(!by_state.matches(&task));
    let by_node = TaskFilter {
        node: Some("w2".into()),
        ..Default::default()
    };
    assert!(!by_node.matches(&task));
    let by_id = TaskFilter {
        ids: ["a".to_string()].into(),
        ..Default::default()
    };
    assert!(by_id.matches(&task));
}

#[test]
fn filters_match_labels_name_and_unfinished() {
    let spec = pb::TaskSpec {
        name: "web".into(),
        labels: [
            ("app".to_string(), "shop".to_string()),
            ("tier".into(), "front".into()),
        ]
        .into(),
        ..Default::default()
    };
    let task = pb::Task {
        spec: Some(spec),
        state: TaskState::Running as i32,
        ..Default::default()
    };
    let labels = |pairs: &[(&str, &str)]| TaskFilter {
        labels: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    assert!(labels(&[("app", "shop")]).matches(&task));
    assert!(labels(&[("app", "shop"), ("tier", "front")]).matches(&task));
    assert!(!labels(&[("app", "shop"), ("tier", "back")]).matches(&task));
    assert!(!labels(&[("zone", "a")]).matches(&task));
    let named = |name: &str| TaskFilter {
        name: Some(name.into()),
        ..Default::default()
    };
    assert!(named("web").matches(&task));
    assert!(!named("db").matches(&task));
    let unfinished = TaskFilter {
        unfinished: true,
        ..Default::default()
    };
    assert!(unfinished.matches(&task));
    let done = pb::Task {
        state: TaskState::Completed as i32,
        ..task
    };
    assert!(!unfinished.matches(&done));
}

/// The manager's one update function refuses a move the state machine forbids: the task, its
/// events and the store are left as they were, and the refusal is counted.
#[tokio::test]
async fn an_illegal_move_is_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path());
    let id = submitted(&core).await;
    let stopped = core.stop(id).await.unwrap();
    assert_eq!(
        stopped.state(),
        TaskState::Completed,
        "a stop of PENDING ends it"
    );
    assert!(stopped.message.contains("never ran"), "{}", stopped.message);
    let counter = || {
        crate::metrics::metrics()
            .illegal_transitions
            .with_label_values(&["manager", "COMPLETED", "RUNNING"])
            .get()
    };
    let (before, refused_before) = (task(&core, id), counter());
    let mut tx = core.tx();
    let moved = tx.update(id, Some(TaskState::Running), None, |task| {
        task.message = "must not stick".into();
    });
    assert!(!moved);
    assert!(tx.changes.ops.is_empty(), "nothing is written");
    tx.commit().wait().await.unwrap();
    assert_eq!(task(&core, id), before, "the task is unchanged");
    assert_eq!(counter(), refused_before + 1);
}

/// A state a reader was shown has its event readable at once: GetTask's events and
/// ListEvents reach the task's current state.
#[tokio::test]
async fn events_are_never_behind_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path());
    ready_node(&core, "w1");
    let id = submitted(&core).await;
    let job = next_jobs(&core).await.pop().unwrap();
    let running = pb::Task {
        id: id.to_string(),
        state: TaskState::Running as i32,
        container_id: "pid:7".into(),
        started_at: Some(crate::proto::now()),
        ..Default::default()
    };
    core.observed(&job.node, vec![running], false, Instant::now());
    // The RUNNING write is only queued (no answer waited for it) when the task is read: the
    // reader sees the state the store holds, SCHEDULED or already RUNNING, and its event.
    let (task, events) = core.task_with_events(id).await.unwrap();
    assert!(
        events.iter().any(|e| e.state() == task.state()),
        "{:?} has no event in {events:?}",
        task.state()
    );
    let all = core.events(0, usize::MAX).await.unwrap();
    assert_eq!(all.last().map(|e| e.state()), Some(TaskState::Running));
    // Once the write is durable (the barrier above), readers see it.
    assert_eq!(core.task(id).unwrap().state(), TaskState::Running);
}

/// A drain whose new copy fails leaves the task on its old copy, which kept running: no stop is
/// sent to it, the drain does not try that task again, and the node says why.
#[tokio::test]
async fn a_drain_whose_new_copy_fails_keeps_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path());
    ready_node(&core, "w1");
    let id = submitted(&core).await;
    assert_eq!(next_jobs(&core).await.pop().unwrap().node, "w1");
    ready_node(&core, "w22");
    let (from, to) = ("w1", "w22");
    let running = |node: &str, container: &str, state: TaskState| pb::Task {
        id: id.to_string(),
        state: state as i32,
        node: node.into(),
        container_id: container.into(),
        started_at: Some(crate::proto::now()),
        message: if state == TaskState::Failed {
            "command \"httpd\" not found".into()
        } else {
            String::new()
        },
        ..Default::default()
    };
    core.observed(
        from,
        vec![running(from, "pid:1", TaskState::Running)],
        false,
        Instant::now(),
    );
    core.drain(from, true).await.unwrap();
    core.drain_step();
    assert_eq!(task(&core, id).state(), TaskState::Pending, "moving");
    let job = next_jobs(&core).await.pop().unwrap();
    assert_eq!(job.node, to);
    core.observed(
        to,
        vec![running(to, "pid:2", TaskState::Failed)],
        false,
        Instant::now(),
    );
    let now = task(&core, id);
    assert_eq!((now.state(), now.node.as_str()), (TaskState::Running, from));
    assert_eq!(
        now.container_id, "pid:1",
        "the original copy's record is back"
    );
    assert!(now.message.contains("keeps running"), "{}", now.message);
    assert!(
        core.lock().stops.is_empty(),
        "the original is not stopped: {:?}",
        core.lock().stops
    );
    core.drain_step();
    assert_eq!(
        task(&core, id).state(),
        TaskState::Running,
        "not moved again"
    );
    let node = core.nodes().into_iter().find(|n| n.name == from).unwrap();
    assert!(node.message.contains("cannot move"), "{}", node.message);
    core.drain(from, false).await.unwrap();
    assert!(core.lock().unmovable.is_empty());
}

/// A task with an image is placed only where images run: drained off the only Docker node,
/// with an Exec node beside it, it waits PENDING (saying why) while its copy runs on.
#[tokio::test]
async fn an_image_task_never_goes_to_a_node_that_runs_no_images() {
    let dir = tempfile::tempdir().unwrap();
    let core = core(dir.path());
    ready_node_with(&core, "docker1", "docker");
    let spec = pb::TaskSpec {
        name: "web".into(),
        image: "cube-test/busybox:latest".into(),
        ..Default::default()
    };
    let (submitted, _) = core.submit(spec, String::new()).await.unwrap();
    let id = TaskId::parse("id", &submitted.id).unwrap();
    assert_eq!(next_jobs(&core).await.pop().unwrap().node, "docker1");
    ready_node_with(&core, "exec1", "exec");
    let running = pb::Task {
        id: id.to_string(),
        state: TaskState::Running as i32,
        container_id: "c1".into(),
        started_at: Some(crate::proto::now()),
        ..Default::default()
    };
    core.observed("docker1", vec![running], false, Instant::now());
    core.drain("docker1", true).await.unwrap();
    core.drain_step();
    assert!(next_jobs(&core).await.is_empty(), "exec1 runs no images");
    let now = task(&core, id);
    assert_eq!(now.state(), TaskState::Pending);
    assert!(now.message.contains("run no images"), "{}", now.message);
    assert!(core.lock().stops.is_empty(), "the copy on docker1 runs on");
    let (_, decision) = core.explain(id).unwrap();
    let exec = decision
        .verdicts
        .iter()
        .find(|v| v.node == "exec1")
        .unwrap();
    let image = exec
        .filters
        .iter()
        .find(|f| f.filter.name() == "image")
        .unwrap();
    assert!(!image.passed, "explain names the image filter: {image:?}");
}
