//! A real `cube-worker --runtime exec`: the same flows as on Docker with child processes, logs
//! followed from the output files, and a worker restart that re-adopts its processes.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{exec_spec, new_id, Cluster, Runtime, WorkerClient};
use cube::pb::{self, TaskState};
use tonic::Code;

fn pid_of(task: &pb::Task) -> i32 {
    task.container_id
        .strip_prefix("pid:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not an exec container id: {}", task.container_id))
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// One Exec worker named `<prefix>-<8 hex>`, and no manager.
fn exec_worker(prefix: &str) -> Cluster {
    Cluster::builder()
        .without_manager()
        .runtime(Runtime::Exec)
        .worker(prefix, &[])
        .start()
}

#[test]
fn exec_worker_runs_stops_reports_and_readopts() {
    let mut cluster = exec_worker("x");
    let mut w = WorkerClient::connect(&cluster.worker(0).addr);

    let sleeper = new_id();
    w.start(&sleeper, exec_spec("sleeper", &["sleep", "300"]), 0)
        .unwrap();
    let exits3 = new_id();
    w.start(&exits3, exec_spec("three", &["sh", "-c", "exit 3"]), 0)
        .unwrap();
    let exits0 = new_id();
    w.start(&exits0, exec_spec("zero", &["sh", "-c", "exit 0"]), 0)
        .unwrap();
    let missing = new_id();
    w.start(&missing, exec_spec("nope", &["/no/such/program"]), 0)
        .unwrap();
    let killed = new_id();
    w.start(&killed, exec_spec("killed", &["sleep", "300"]), 0)
        .unwrap();
    // Exits while the worker is down (below): once the test creates `go`.
    let go = cluster.dir().join("go");
    let wait_for_go = format!(
        "while [ ! -e '{}' ]; do sleep 0.05; done; exit 7",
        go.display()
    );
    let later = new_id();
    w.start(&later, exec_spec("later", &["sh", "-c", &wait_for_go]), 0)
        .unwrap();
    let ticker = new_id();
    w.start(
        &ticker,
        exec_spec(
            "ticker",
            &[
                "sh",
                "-c",
                "for i in 1 2 3; do echo tick $i; echo warn $i >&2; sleep 0.6; done",
            ],
        ),
        0,
    )
    .unwrap();

    let running = w.wait_state(&sleeper, TaskState::Running, Duration::from_secs(5));
    let sleeper_pid = pid_of(&running);
    assert!(alive(sleeper_pid));
    let three = w.wait_state(&exits3, TaskState::Failed, Duration::from_secs(5));
    assert_eq!(three.exit_code, Some(3));
    let zero = w.wait_state(&exits0, TaskState::Completed, Duration::from_secs(5));
    assert_eq!(zero.exit_code, Some(0));
    let nope = w.wait_state(&missing, TaskState::Failed, Duration::from_secs(5));
    assert!(nope.message.contains("not found"), "{}", nope.message);

    // A process killed behind the worker's back is noticed.
    let k = w.wait_state(&killed, TaskState::Running, Duration::from_secs(5));
    common::run_ok("kill", &["-s", "KILL", "--", &format!("-{}", pid_of(&k))]);
    let k = w.wait_state(&killed, TaskState::Failed, Duration::from_secs(5));
    assert_eq!(k.exit_code, Some(137));

    // Followed logs arrive as written and end with the process.
    let followed = w.follow_logs(&ticker, Duration::from_secs(15));
    let out: String = followed
        .iter()
        .filter(|(s, _, _)| *s == pb::LogStream::Stdout)
        .map(|(_, d, _)| d.as_str())
        .collect();
    assert_eq!(out, "tick 1\ntick 2\ntick 3\n");
    assert!(followed
        .iter()
        .any(|(s, d, _)| *s == pb::LogStream::Stderr && d.contains("warn 3")));
    let spread = followed.last().unwrap().2.duration_since(followed[0].2);
    assert!(spread >= Duration::from_millis(500), "{spread:?}");
    let tail = w
        .logs(
            pb::WorkerServiceStreamLogsRequest {
                task_id: ticker.clone(),
                tail: 1,
                stdout: true,
                ..Default::default()
            },
            Duration::from_secs(5),
        )
        .unwrap();
    let tail: String = tail.iter().map(|(_, d, _)| d.as_str()).collect();
    assert_eq!(tail, "tick 3\n");

    // Stats count the unfinished tasks: the sleeper and `later`.
    assert_eq!(w.stats().stats.unwrap().task_count, 2);

    // SIGKILL the worker; `later` exits while it is down; start it again on the same dir.
    let later_pid = pid_of(&w.wait_state(&later, TaskState::Running, Duration::from_secs(5)));
    cluster.kill_worker(0);
    std::fs::write(&go, "").unwrap();
    common::wait_for(Duration::from_secs(10), "`later` to exit", || {
        (!alive(later_pid)).then_some(())
    });
    assert!(alive(sleeper_pid), "tasks outlive their worker");
    cluster.start_worker(0);
    let mut w = WorkerClient::connect(&cluster.worker(0).addr);
    let adopted = w.task(&sleeper).unwrap();
    assert_eq!(adopted.state(), TaskState::Running);
    assert_eq!(pid_of(&adopted), sleeper_pid, "adopted, not started again");
    let l = w.task(&later).unwrap();
    assert_eq!(l.state(), TaskState::Failed);
    assert_eq!(l.exit_code, Some(7));
    assert!(
        l.message.contains("while the worker was down"),
        "{}",
        l.message
    );
    // Ends recorded before the SIGKILL (written without their own fsync, the last one just
    // before it) are still the same ends.
    for (id, state, code) in [
        (&exits3, TaskState::Failed, 3),
        (&exits0, TaskState::Completed, 0),
        (&killed, TaskState::Failed, 137),
        (&ticker, TaskState::Completed, 0),
    ] {
        let t = w.task(id).unwrap();
        assert_eq!(
            (t.state(), t.exit_code),
            (state, Some(code)),
            "{}",
            t.message
        );
    }

    // Duplicate start and stop semantics.
    let err = w
        .start(&sleeper, exec_spec("sleeper", &["sleep", "300"]), 0)
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    w.stop(&sleeper).unwrap();
    let stopped = w.wait_state(&sleeper, TaskState::Completed, Duration::from_secs(10));
    assert_eq!(stopped.desired_state(), pb::DesiredState::Stopped);
    assert!(!alive(sleeper_pid));
    assert_eq!(w.stop(&sleeper).unwrap().state(), TaskState::Completed);

    assert!(cluster.terminate_worker(0), "a clean exit on SIGTERM");
}

/// The long poll of ListTasks on a worker that has never had a task (revision 0): it waits for
/// the first change and answers with it, instead of answering at once (which made the manager
/// poll a fresh worker only once per interval).
#[test]
fn a_fresh_worker_holds_the_long_poll_until_its_first_task() {
    let cluster = exec_worker("lp");
    let mut w = WorkerClient::connect(&cluster.worker(0).addr);
    let first = w.list_since(0, "");
    assert_eq!(first.revision, 0);
    assert!(first.tasks.is_empty());

    let mut poller = w.client.clone();
    let request = pb::WorkerServiceListTasksRequest {
        since_revision: first.revision,
        instance_id: first.instance_id.clone(),
        wait: Some(prost_types::Duration {
            seconds: 5,
            nanos: 0,
        }),
        page_token: String::new(),
    };
    let asked = std::time::Instant::now();
    let poll = w.rt.spawn(async move { poller.list_tasks(request).await });
    std::thread::sleep(Duration::from_millis(300));
    let id = new_id();
    w.start(&id, exec_spec("first", &["sleep", "300"]), 0)
        .unwrap();
    let answer = w.rt.block_on(poll).unwrap().unwrap().into_inner();
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "answered after {waited:?}"
    );
    assert!(answer.tasks.iter().any(|t| t.id == id), "{answer:?}");
    w.stop(&id).unwrap();
}

/// StartTasks answers each task on its own: accepted ones are persisted (they survive a
/// SIGKILL of the worker) and run; a bad request, or the same task twice, is refused in its
/// own result with StartTask's code; an empty or oversized call is INVALID_ARGUMENT.
#[test]
fn start_tasks_answers_each_task_on_its_own() {
    let mut cluster = exec_worker("x");
    let mut w = WorkerClient::connect(&cluster.worker(0).addr);
    let request = |id: &str, command: &[&str]| pb::StartTaskRequest {
        task_id: id.to_string(),
        spec: Some(exec_spec("batch", command)),
        attempt: 0,
    };
    let (a, b) = (new_id(), new_id());
    let tasks = vec![
        request(&a, &["sleep", "300"]),
        request("not-a-uuid", &["true"]),
        request(&b, &["sh", "-c", "exit 4"]),
        request(&a, &["sleep", "300"]),
    ];
    let results =
        w.rt.block_on(w.client.start_tasks(pb::StartTasksRequest { tasks }))
            .unwrap()
            .into_inner()
            .results;
    let codes: Vec<Code> = results.iter().map(|r| Code::from(r.code)).collect();
    assert_eq!(
        codes,
        [
            Code::Ok,
            Code::InvalidArgument,
            Code::Ok,
            Code::AlreadyExists
        ]
    );
    assert!(
        results[1].message.starts_with("tasks[1].task_id"),
        "{}",
        results[1].message
    );
    assert!(results[1].task.is_none());
    assert_eq!(results[0].task.as_ref().unwrap().id, a);
    assert_eq!(
        results[0].task.as_ref().unwrap().state(),
        TaskState::Scheduled
    );
    let running = w.wait_state(&a, TaskState::Running, Duration::from_secs(5));
    let failed = w.wait_state(&b, TaskState::Failed, Duration::from_secs(5));
    assert_eq!(failed.exit_code, Some(4));

    for tasks in [vec![], vec![request(&new_id(), &["true"]); 1001]] {
        let err =
            w.rt.block_on(w.client.start_tasks(pb::StartTasksRequest { tasks }))
                .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains("send 1 to 1000"),
            "{}",
            err.message()
        );
    }

    // Accepted means persisted: after a SIGKILL the worker still has both, the sleeper adopted.
    drop(w);
    cluster.kill_worker(0);
    cluster.start_worker(0);
    let mut w = WorkerClient::connect(&cluster.worker(0).addr);
    let adopted = w.task(&a).unwrap();
    assert_eq!(adopted.state(), TaskState::Running);
    assert_eq!(pid_of(&adopted), pid_of(&running));
    assert_eq!(w.task(&b).unwrap().exit_code, Some(4));
    w.stop(&a).unwrap();
    w.wait_state(&a, TaskState::Completed, Duration::from_secs(10));
    assert!(cluster.terminate_worker(0), "a clean exit on SIGTERM");
}
