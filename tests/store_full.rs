//! A failed write changes nothing (issue 23): the manager's and a worker's data dirs on small
//! tmpfs mounts, filled until writes fail. Refused changes are never visible and never run; the
//! store turns read-only (health NOT_SERVING, reads answering, a quiet log) and writes again by
//! itself once space is freed; nothing acknowledged is lost, not even across a SIGKILL.
//! Mounting needs root, as CI has.
// A test fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{containers_of, need_docker, wait_for, Cluster, Runtime, Tmpfs};
use cube::pb::{self, manager_service_client::ManagerServiceClient};
use cube::tls::AuthChannel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

/// Tasks per submission while filling the disk.
const BATCH: usize = 40;

/// The bound on error lines while read-only, over 10 s.
const QUIET: Duration = Duration::from_secs(10);

fn batch(round: usize, command: &[&str]) -> pb::SubmitTasksRequest {
    common::exec_batch(&format!("b{round}"), BATCH, command)
}

/// Submits batches until one is refused; returns the acknowledged task ids (by name) and the
/// refusal, with the round it refused.
async fn fill(
    client: &mut ManagerServiceClient<AuthChannel>,
    first_round: usize,
    acked: &mut HashMap<String, String>,
) -> (usize, tonic::Status) {
    for round in first_round..first_round + 2000 {
        match client.submit_tasks(batch(round, &["true"])).await {
            Ok(answer) => {
                for task in answer.into_inner().tasks {
                    let task = task.task.unwrap();
                    acked.insert(task.spec.unwrap().name, task.id);
                }
            }
            Err(status) => return (round, status),
        }
    }
    panic!("the disk never filled up");
}

async fn health(cluster: &Cluster, worker: Option<usize>, service: &str) -> ServingStatus {
    cluster.health(worker, service).await
}

/// What worker `i`'s store holds (its `ListTasks`), asked on a thread of its own (the worker
/// client blocks).
fn worker_tasks(cluster: &Cluster, i: usize) -> Vec<pb::Task> {
    std::thread::scope(|s| s.spawn(|| cluster.worker_client(i).tasks()).join().unwrap())
}

async fn names(client: &mut ManagerServiceClient<AuthChannel>) -> HashMap<String, pb::Task> {
    common::list_all(client)
        .await
        .into_iter()
        .map(|task| (task.spec.clone().unwrap().name, task))
        .collect()
}

/// Every task name a watch stream ever showed.
fn watch_names(
    mut stream: tonic::Streaming<pb::WatchTasksResponse>,
) -> Arc<Mutex<HashSet<String>>> {
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        while let Ok(Some(message)) = stream.message().await {
            if let Some(task) = message.task {
                out.lock().unwrap().insert(task.spec.unwrap().name);
            }
        }
    });
    seen
}

fn refused_round(names: &HashSet<String>, round: usize) -> Vec<String> {
    let prefix = format!("b{round}-");
    names
        .iter()
        .filter(|n| n.starts_with(&prefix))
        .cloned()
        .collect()
}

fn error_lines(log: &str, from_line: usize) -> usize {
    log.lines()
        .skip(from_line)
        .filter(|l| l.contains(" ERROR ") || l.contains(" WARN "))
        .count()
}

/// The manager's data dir fills up under submissions: the refused batch answers
/// RESOURCE_EXHAUSTED "no space left in <dir>" and is visible nowhere (ListTasks, WatchTasks,
/// the worker); the manager logs a handful of lines, says NOT_SERVING and keeps answering
/// reads. Grown, it takes a submission within 10 s by itself with nothing acknowledged lost.
/// Filled again and SIGKILLed while read-only, it restarts on freed space with every
/// acknowledged task and none of the refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_manager_disk_refuses_changes_and_recovers_by_itself() {
    let disk = Tmpfs::mount("384k");
    let mut cluster = Cluster::builder()
        .workers(1)
        .runtime(Runtime::Exec)
        .register()
        .update_interval("500ms")
        .manager_data(disk.join("manager"))
        .wait_ready(Duration::from_secs(20))
        .start();
    let mut client = cluster.client().await;
    let watch = client
        .watch_tasks(pb::WatchTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    let watched = watch_names(watch);

    let mut acked = HashMap::new();
    let log_mark = cluster.manager().logs().lines().count();
    let (refused, status) = fill(&mut client, 0, &mut acked).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let dir = cluster.manager_data().display().to_string();
    assert_eq!(status.message(), format!("no space left in {dir}"));
    assert!(!status.message().contains("store: store:"));

    // Read-only: reads answer, health says NOT_SERVING, nodes say why, changes are refused.
    let quiet_from = Instant::now();
    assert_eq!(
        health(&cluster, None, "cube.v1.ManagerService").await,
        ServingStatus::NotServing
    );
    let nodes = client
        .list_nodes(pb::ListNodesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(nodes.manager_message, "store read-only: disk full");
    let shown = cluster.ctl().ok(&["nodes"]);
    assert!(
        shown.starts_with("manager: store read-only: disk full"),
        "{shown}"
    );
    let again = client
        .submit_tasks(batch(refused + 1, &["true"]))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::ResourceExhausted, "{again:?}");
    let listed = names(&mut client).await;
    for (name, id) in &acked {
        assert_eq!(listed.get(name).map(|t| &t.id), Some(id), "{name} is kept");
    }
    let listed_names: HashSet<String> = listed.keys().cloned().collect();
    assert!(refused_round(&listed_names, refused).is_empty());
    assert!(refused_round(&listed_names, refused + 1).is_empty());
    // A task with its events, and the event log, read from the store itself.
    let some_id = acked.values().next().unwrap().clone();
    let shown = cluster.ctl().status(&some_id);
    assert!(!shown["events"].as_array().unwrap().is_empty(), "{shown}");
    let events = client
        .list_events(pb::ListEventsRequest {
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!events.events.is_empty());

    // Over 10 s the manager stays quiet: no hot loop of retries.
    tokio::time::sleep(QUIET.saturating_sub(quiet_from.elapsed())).await;
    let errors = error_lines(&cluster.manager().logs(), log_mark);
    eprintln!("error and warning lines from the filling to 10 s after the refusal: {errors}");
    assert!(
        errors < 20,
        "{errors} error lines in 10 s:\n{}",
        cluster.manager().logs()
    );

    // Grown: writes come back by themselves within 10 s, with everything acknowledged.
    disk.resize("8m");
    let grown = Instant::now();
    let round = refused + 2;
    let answer = loop {
        match client.submit_tasks(batch(round, &["true"])).await {
            Ok(answer) => break answer.into_inner(),
            Err(status) if grown.elapsed() < Duration::from_secs(10) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => panic!("no submission taken 10 s after space was freed: {status:?}"),
        }
    };
    eprintln!(
        "a submission was taken {:?} after the tmpfs grew",
        grown.elapsed()
    );
    for task in answer.tasks {
        let task = task.task.unwrap();
        acked.insert(task.spec.unwrap().name, task.id);
    }
    assert_eq!(
        health(&cluster, None, "cube.v1.ManagerService").await,
        ServingStatus::Serving
    );
    let listed = names(&mut client).await;
    for (name, id) in &acked {
        assert_eq!(listed.get(name).map(|t| &t.id), Some(id), "{name} is kept");
    }

    // Nothing refused ever reached a watcher or the worker.
    let worker_names: HashSet<String> = worker_tasks(&cluster, 0)
        .into_iter()
        .map(|t| t.spec.unwrap().name)
        .collect();
    let watched = watched.lock().unwrap().clone();
    for seen in [&watched, &worker_names] {
        assert!(refused_round(seen, refused).is_empty());
        assert!(refused_round(seen, refused + 1).is_empty());
    }

    // Filled again (a filler file takes the rest) and SIGKILLed while read-only: restarted on
    // freed space, every acknowledged task is there and no refused one.
    disk.fill("filler");
    let (refused_late, status) = fill(&mut client, round + 1, &mut acked).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    cluster.kill_manager();
    disk.unfill("filler");
    cluster.start_manager();
    let mut client = cluster.client().await;
    let listed = names(&mut client).await;
    for (name, id) in &acked {
        assert_eq!(listed.get(name).map(|t| &t.id), Some(id), "{name} is kept");
    }
    let listed_names: HashSet<String> = listed.keys().cloned().collect();
    assert!(refused_round(&listed_names, refused).is_empty());
    assert!(refused_round(&listed_names, refused_late).is_empty());
}

/// A worker whose data dir is full refuses a start it cannot record (RESOURCE_EXHAUSTED), is
/// passed over ("store read-only"), and the task runs on another worker; no container runs that
/// no store knows of. Once space is freed the worker takes tasks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_a_full_disk_refuses_starts_and_the_task_runs_elsewhere() {
    if !need_docker("a_worker_with_a_full_disk_refuses_starts_and_the_task_runs_elsewhere") {
        return;
    }
    let disk = Tmpfs::mount("1m");
    let mut cluster = Cluster::builder()
        .register()
        .wait_ready(Duration::from_secs(20))
        .start();
    let full = cluster.add_worker_with_data("full", Some(disk.join("worker")), &[]);
    let full_name = cluster.name(full).to_string();
    let ctl = cluster.ctl();
    ctl.wait_ready(&[&full_name], Duration::from_secs(20));
    disk.fill("filler");

    // Only the full worker exists: the task is sent there and refused; once the node says its
    // store is read-only the task is no longer sent there, and waits.
    let id = ctl.run_sleeper("refused-start");
    wait_for(Duration::from_secs(20), "the start is refused", || {
        let events = ctl.status(&id)["events"].to_string();
        events.contains("no space left in").then_some(())
    });
    let node = wait_for(Duration::from_secs(10), "the node says why", || {
        ctl.nodes().into_iter().find(|n| {
            n["name"] == full_name.as_str() && n["message"] == "store read-only: disk full"
        })
    });
    assert_eq!(node["state"], "NODE_STATE_READY", "{node}");
    wait_for(
        Duration::from_secs(20),
        "the task waits, saying why",
        || {
            let task = ctl.task(&id);
            let why = task["message"].as_str().unwrap_or_default().to_string();
            (task["state"] == "TASK_STATE_PENDING" && why.contains("1 store read-only"))
                .then_some(())
        },
    );
    assert_eq!(
        health(&cluster, Some(full), "cube.v1.WorkerService").await,
        ServingStatus::NotServing
    );

    // Another worker: the task runs there.
    let other = cluster.add_worker("other", &[]);
    let other_name = cluster.name(other).to_string();
    let running = ctl.wait_state(&id, "TASK_STATE_RUNNING", Duration::from_secs(30));
    assert_eq!(running["node"], other_name.as_str(), "{running}");

    // No container on the full worker, and its store knows no task.
    assert!(containers_of(&full_name).is_empty());
    assert!(worker_tasks(&cluster, full).is_empty());

    // Space freed: the worker writes again by itself.
    disk.unfill("filler");
    let freed = Instant::now();
    while health(&cluster, Some(full), "cube.v1.WorkerService").await != ServingStatus::Serving {
        assert!(
            freed.elapsed() < Duration::from_secs(10),
            "the worker does not write again 10 s after space was freed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ctl.ok(&["stop", &id]);
}
