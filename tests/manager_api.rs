//! The manager's API on its own (no worker answers): bad input gets the right codes, paging and
//! filters work, stop of a pending task, events, watch, explain, and grpcurl with JSON.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{get_task, grpcurl_run, list_nodes, spec, stop_task, submit, Cluster};
use cube::pb::{self, manager_service_client::ManagerServiceClient};
use cube::tls::AuthChannel;
use tonic::Code;

/// `sleep 300` on the test image, with no grace period of its own.
fn sleep_spec(name: &str) -> pb::TaskSpec {
    pb::TaskSpec {
        stop_grace_period: None,
        ..spec(name, &["sleep", "300"])
    }
}

/// The call was refused with INVALID_ARGUMENT, and the message names `field`.
fn assert_invalid<T: std::fmt::Debug>(answer: Result<T, tonic::Status>, field: &str) {
    let err = answer.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains(field), "{}", err.message());
}

/// Bad input gets INVALID_ARGUMENT naming the field, unknown ids NOT_FOUND, and an unreachable
/// static worker is listed DOWN while the task waits PENDING saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_codes_and_an_unreachable_worker() {
    // Port 9 (discard) on localhost: nothing listens there.
    let mut cluster = Cluster::builder()
        .manager_args(&["--workers", "127.0.0.1:9"])
        .update_interval("200ms")
        .start();
    let mut c = cluster.client().await;

    let err = c
        .submit_task(pb::SubmitTaskRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("spec"), "{}", err.message());

    let mut bad = sleep_spec("bad name!");
    bad.image = "x".into();
    let answer = c
        .submit_task(pb::SubmitTaskRequest {
            spec: Some(bad),
            request_id: String::new(),
        })
        .await;
    assert_invalid(answer, "spec.name");
    let answer = c
        .submit_task(pb::SubmitTaskRequest {
            spec: Some(sleep_spec("ok")),
            request_id: "r".repeat(129),
        })
        .await;
    assert_invalid(answer, "request_id");

    let unknown = uuid::Uuid::new_v4().to_string();
    let err = get_task(&mut c, &unknown).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = stop_task(&mut c, &unknown).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // A bare word is a name: no unfinished task has it. A space is in no id or name.
    let err = get_task(&mut c, "not-an-id").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_invalid(get_task(&mut c, "not an id").await, "task_id");

    let answer = c
        .list_tasks(pb::ListTasksRequest {
            page_size: -1,
            ..Default::default()
        })
        .await;
    assert_invalid(answer, "page_size");
    let answer = c
        .list_tasks(pb::ListTasksRequest {
            page_token: "bogus".into(),
            ..Default::default()
        })
        .await;
    assert_invalid(answer, "page_token");
    let answer = c
        .list_events(pb::ListEventsRequest {
            page_size: -5,
            ..Default::default()
        })
        .await;
    assert_invalid(answer, "page_size");

    // The unreachable worker is DOWN, and the task waits with a reason.
    let task = submit(&mut c, sleep_spec("waits")).await;
    assert_eq!(task.state(), pb::TaskState::Pending);
    let id = task.id.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let nodes = loop {
        let nodes = list_nodes(&mut c).await;
        if nodes.len() == 1 && nodes[0].state() == pb::NodeState::Down {
            break nodes;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node not DOWN: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(nodes[0].address, "127.0.0.1:9");
    let waiting = loop {
        let task = get_task(&mut c, &id).await.unwrap().task.unwrap();
        if task.message.contains("down") {
            break task;
        }
        assert!(std::time::Instant::now() < deadline, "no reason: {task:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(waiting.state(), pb::TaskState::Pending);
    assert!(
        waiting.message.starts_with("0/1 nodes fit"),
        "{}",
        waiting.message
    );

    let explained = c
        .explain_task(pb::ExplainTaskRequest {
            task_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(explained.picked_node, "");
    assert_eq!(explained.nodes.len(), 1);
    assert!(!explained.nodes[0].eligible);
    assert_eq!(explained.nodes[0].filters[0].filter, "alive");
    assert!(!explained.nodes[0].filters[0].passed);

    let err = c
        .stream_logs(pb::StreamLogsRequest {
            task_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Stopping a pending task: it is never placed, and ends COMPLETED (a stop the user asked
    // for is not a failure); a second stop changes nothing.
    let stopped = stop_task(&mut c, &id).await.unwrap();
    assert_eq!(stopped.state(), pb::TaskState::Completed);
    assert!(stopped.message.contains("never ran"), "{}", stopped.message);
    assert_eq!(stopped.desired_state(), pb::DesiredState::Stopped);
    let again = stop_task(&mut c, &id).await.unwrap();
    assert_eq!(again.revision, stopped.revision);
    let got = get_task(&mut c, &id).await.unwrap();
    let kinds: Vec<pb::EventType> = got.events.iter().map(|e| e.r#type()).collect();
    assert_eq!(
        kinds,
        [
            pb::EventType::Submitted,
            pb::EventType::StopRequested,
            pb::EventType::StateChanged
        ]
    );
    assert!(cluster.terminate_manager(), "clean shutdown");
}

/// ListTasks pages oldest first with an opaque token and filters by state; ListEvents pages;
/// WatchTasks sends the snapshot, then `synced`, then changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_filters_and_watch() {
    let mut cluster = Cluster::builder().start();
    let mut c = cluster.client().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(submit(&mut c, sleep_spec(&format!("t{i}"))).await.id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .list_tasks(pb::ListTasksRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        seen.extend(page.tasks.into_iter().map(|t| t.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids, "oldest first, every task once");
    assert_eq!(pages, 3);

    let mut watch = c
        .watch_tasks(pb::WatchTasksRequest {
            task_ids: vec![ids[0].clone(), ids[1].clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..2 {
        let m = watch.message().await.unwrap().unwrap();
        assert!(m.initial && !m.synced);
    }
    let synced = watch.message().await.unwrap().unwrap();
    assert!(synced.synced && synced.task.is_none());
    stop_task(&mut c, &ids[1]).await.unwrap();
    let change = watch.message().await.unwrap().unwrap();
    assert!(!change.initial);
    assert_eq!(change.task.unwrap().id, ids[1]);

    let stopped = c
        .list_tasks(pb::ListTasksRequest {
            state: pb::TaskState::Completed as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].id, ids[1]);

    let first = c
        .list_events(pb::ListEventsRequest {
            page_size: 4,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.events.len(), 4);
    let rest = c
        .list_events(pb::ListEventsRequest {
            page_size: 100,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // 5 submissions + stop requested + state changed.
    assert_eq!(rest.events.len(), 3);
    assert!(rest.next_page_token.is_empty());
    assert!(rest.events[0].seq > first.events[3].seq);
    assert!(cluster.terminate_manager(), "clean shutdown");
}

/// grpcurl finds ManagerService by reflection, and SubmitTask and ListTasks work with JSON.
#[test]
fn grpcurl_lists_and_calls_the_manager() {
    let Some(grpcurl) = common::grpcurl() else {
        assert!(!common::docker_required(), "grpcurl is missing");
        eprintln!("SKIPPED: grpcurl not installed");
        return;
    };
    let cluster = Cluster::builder().start();
    let addr = &cluster.manager().addr;
    let auth = cluster.grpcurl_auth(Some(&cluster.tokens().admin));
    let run = |args: &[&str]| {
        let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
        let (ok, stdout, stderr) = grpcurl_run(&grpcurl, &[&auth, args].concat());
        assert!(ok, "grpcurl {args:?}: {stderr}");
        stdout
    };
    let list = run(&[addr, "list"]);
    assert!(list.contains("cube.v1.ManagerService"), "{list}");
    let submitted = run(&[
        "-d",
        r#"{"spec":{"name":"json","image":"cube-test/busybox:latest","command":["sleep","5"]},"requestId":"grpcurl-1"}"#,
        addr,
        "cube.v1.ManagerService/SubmitTask",
    ]);
    let submitted: serde_json::Value = serde_json::from_str(&submitted).unwrap();
    let id = submitted["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(submitted["task"]["state"], "TASK_STATE_PENDING");
    let listed = run(&[
        "-d",
        r#"{"pageSize":10}"#,
        addr,
        "cube.v1.ManagerService/ListTasks",
    ]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["tasks"][0]["id"], id.as_str());
}

/// SubmitTasks accepts a batch in order and all at once: a bad request anywhere rejects the
/// call, naming its index, and creates nothing; a request_id repeated with the same spec within
/// the call or in a retry answers the same task, with another spec it is ALREADY_EXISTS; an
/// acknowledged batch survives a SIGKILL of the manager.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_tasks_is_all_or_nothing_and_durable() {
    let mut cluster = Cluster::builder().start();
    let mut c = cluster.client().await;
    let request = |name: &str, request_id: &str| pb::SubmitTaskRequest {
        spec: Some(sleep_spec(name)),
        request_id: request_id.into(),
    };
    let count = |c: &mut ManagerServiceClient<AuthChannel>| {
        let mut c = c.clone();
        async move {
            c.list_tasks(pb::ListTasksRequest::default())
                .await
                .unwrap()
                .into_inner()
                .tasks
                .len()
        }
    };

    let err = c
        .submit_tasks(pb::SubmitTasksRequest {
            tasks: vec![request("a", ""), request("bad name!", ""), request("c", "")],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("tasks[1].spec.name"),
        "{}",
        err.message()
    );
    let err = c
        .submit_tasks(pb::SubmitTasksRequest { tasks: vec![] })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("tasks: holds 0"),
        "{}",
        err.message()
    );
    let too_many = (0..1001).map(|i| request(&format!("t{i}"), "")).collect();
    let err = c
        .submit_tasks(pb::SubmitTasksRequest { tasks: too_many })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("1 to 1000"), "{}", err.message());
    // A request id repeated with another spec is a mistake, not a retry (AIP-155).
    let err = c
        .submit_tasks(pb::SubmitTasksRequest {
            tasks: vec![request("a", "ra"), request("a-again", "ra")],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(
        err.message()
            .starts_with("tasks[1].request_id: \"ra\" belongs to tasks[0] of this call"),
        "{}",
        err.message()
    );
    assert_eq!(count(&mut c).await, 0, "a rejected call creates nothing");

    let batch = pb::SubmitTasksRequest {
        tasks: vec![request("a", "ra"), request("b", "rb"), request("a", "ra")],
    };
    let answers = c
        .submit_tasks(batch.clone())
        .await
        .unwrap()
        .into_inner()
        .tasks;
    let shape: Vec<(String, bool)> = answers
        .iter()
        .map(|a| {
            (
                a.task.as_ref().unwrap().spec.as_ref().unwrap().name.clone(),
                a.created,
            )
        })
        .collect();
    assert_eq!(
        shape,
        [("a".into(), true), ("b".into(), true), ("a".into(), false)],
        "in order; the repeated request id answers its first task"
    );
    let ids: Vec<String> = answers.iter().map(|a| a.task.clone().unwrap().id).collect();
    assert_eq!(ids[0], ids[2]);
    assert_ne!(ids[0], ids[1]);
    for answer in &answers {
        assert_eq!(
            answer.task.as_ref().unwrap().state(),
            pb::TaskState::Pending
        );
    }

    // Acknowledged means durable: SIGKILL, restart on the same data dir.
    cluster.restart_manager();
    let mut c = cluster.client().await;
    assert_eq!(count(&mut c).await, 2);
    let retry = c.submit_tasks(batch).await.unwrap().into_inner().tasks;
    assert!(retry.iter().all(|a| !a.created), "a retry creates nothing");
    let retry_ids: Vec<String> = retry.iter().map(|a| a.task.clone().unwrap().id).collect();
    assert_eq!(retry_ids[0], ids[0]);
    assert_eq!(count(&mut c).await, 2);
    assert!(cluster.terminate_manager(), "clean shutdown");
}
