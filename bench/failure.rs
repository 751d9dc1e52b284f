//! Benchmark (4), failure: three release `cube-worker --runtime exec --manager URL` processes
//! registered with one release `cube-manager`, six RUNNING `sleep 600` tasks. Five times: the
//! worker holding the most tasks is SIGKILLed (a machine dying; its task processes go on, as
//! on a partitioned machine), and the benchmark measures the time until `ListNodes` shows it
//! DOWN and until all its tasks are RUNNING on another node; then the worker is started again
//! (same name and store) and the cluster converges before the next round. Medians of 5.
//!
//! `cargo bench --bench failure`. Needs worker membership and lost-node handling (issue 6).
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Server;
use cube::pb::{self, manager_service_client::ManagerServiceClient, NodeState, TaskState};

/// Workers and tasks of issue 6's scenario.
const WORKERS: usize = 3;
const TASKS: usize = 6;
/// Rounds; the table shows medians.
const ROUNDS: usize = 5;
/// How often the benchmark looks (its resolution).
const TICK: Duration = Duration::from_millis(20);
/// The longest a step may take before the benchmark gives up on it.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

type Client = ManagerServiceClient<tonic::transport::Channel>;

async fn nodes(c: &mut Client) -> Vec<pb::Node> {
    c.list_nodes(pb::ListNodesRequest {})
        .await
        .map(|r| r.into_inner().nodes)
        .unwrap_or_default()
}

async fn tasks(c: &mut Client) -> Vec<pb::Task> {
    c.list_tasks(pb::ListTasksRequest {
        page_size: 100,
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().tasks)
    .unwrap_or_default()
}

fn worker(root: &std::path::Path, name: &str, manager: &str) -> Server {
    common::start_worker(root, name, &["--manager".to_string(), manager.to_string()])
}

/// Waits until `ok` holds; None after `STEP_TIMEOUT`.
async fn until<F, Fut>(mut ok: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < STEP_TIMEOUT {
        if ok().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(TICK).await;
    }
    None
}

async fn settled(c: &mut Client) -> bool {
    let ready = nodes(c)
        .await
        .iter()
        .filter(|n| n.state() == NodeState::Ready)
        .count();
    let running = tasks(c)
        .await
        .iter()
        .filter(|t| t.state() == TaskState::Running)
        .count();
    ready == WORKERS && running == TASKS
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    common::quantile(&v, 0.5)
}

fn record_unavailable(machine: &str, why: &str) {
    let table = format!(
        "## Failure\n\n\
{machine}; {date}. Command: `cargo bench --bench failure`.\n\n\
Not measured: {why}\n",
        date = common::date()
    );
    common::record("Failure", &table);
}

#[tokio::main]
async fn main() {
    let machine = common::machine();
    let root = tempfile::tempdir().unwrap();
    let _reaper = common::Reaper(root.path().to_path_buf());
    let args = vec![
        "--listen".to_string(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        root.path().join("manager").display().to_string(),
        // Plaintext on loopback: this benchmark measures failover, not TLS.
        "--plaintext".into(),
    ];
    let manager = Server::start(common::MANAGER, &args, &[]);
    let mut workers: Vec<(String, Server)> = (0..WORKERS)
        .map(|i| {
            let name = format!("f{i}");
            let w = worker(root.path(), &name, &manager.url);
            (name, w)
        })
        .collect();
    let mut c = ManagerServiceClient::connect(manager.url.clone())
        .await
        .unwrap();
    let registered = until(|| {
        let mut c = c.clone();
        async move {
            nodes(&mut c)
                .await
                .iter()
                .filter(|n| n.state() == NodeState::Ready)
                .count()
                == WORKERS
        }
    })
    .await;
    if registered.is_none() {
        drop(workers);
        drop(manager);
        common::kill_tasks_under(root.path());
        record_unavailable(
            &machine,
            "the workers started with `--manager` never showed up READY in ListNodes \
             (worker registration and heartbeats are issue 6).",
        );
        return;
    }
    for i in 0..TASKS {
        c.submit_task(pb::SubmitTaskRequest {
            spec: Some(pb::TaskSpec {
                name: format!("f{i}"),
                image: String::new(), // Exec workers run no image
                command: vec!["sleep".into(), "600".into()],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
    }
    until(|| {
        let mut c = c.clone();
        async move { settled(&mut c).await }
    })
    .await
    .expect("six tasks never RUNNING");

    let (mut detect, mut moved) = (Vec::new(), Vec::new());
    let mut failure = None;
    for round in 0..ROUNDS {
        let all = tasks(&mut c).await;
        let victim = workers
            .iter()
            .map(|(name, _)| name.clone())
            .max_by_key(|name| all.iter().filter(|t| &t.node == name).count())
            .unwrap();
        let lost: Vec<String> = all
            .iter()
            .filter(|t| t.node == victim)
            .map(|t| t.id.clone())
            .collect();
        let at = workers.iter().position(|(n, _)| *n == victim).unwrap();
        let (_, server) = workers.remove(at);
        server.kill();
        let down = until(|| {
            let (mut c, victim) = (c.clone(), victim.clone());
            async move {
                nodes(&mut c)
                    .await
                    .iter()
                    .any(|n| n.name == victim && n.state() == NodeState::Down)
            }
        })
        .await;
        let elsewhere = until(|| {
            let (mut c, victim, lost) = (c.clone(), victim.clone(), lost.clone());
            async move {
                let now = tasks(&mut c).await;
                lost.iter().all(|id| {
                    now.iter()
                        .any(|t| &t.id == id && t.state() == TaskState::Running && t.node != victim)
                })
            }
        })
        .await;
        let (Some(_), Some(_)) = (down, elsewhere) else {
            failure = Some(format!(
                "round {}: after SIGKILL of worker {victim} ({} tasks) the manager {} within {STEP_TIMEOUT:?}.",
                round + 1,
                lost.len(),
                if down.is_none() {
                    "never marked it DOWN"
                } else {
                    "never ran its tasks on another node"
                }
            ));
            break;
        };
        // `down` counts from the kill; `elsewhere` from the moment DOWN was seen.
        let (down, total) = (down.unwrap(), down.unwrap() + elsewhere.unwrap());
        detect.push(down.as_secs_f64());
        moved.push(total.as_secs_f64());
        println!(
            "round {}: {victim} ({} tasks) DOWN after {:.2} s, its tasks RUNNING elsewhere after {:.2} s",
            round + 1,
            lost.len(),
            down.as_secs_f64(),
            total.as_secs_f64()
        );
        // Bring the worker back and let the cluster converge (its stale copies stopped).
        workers.push((victim.clone(), worker(root.path(), &victim, &manager.url)));
        until(|| {
            let mut c = c.clone();
            async move { settled(&mut c).await }
        })
        .await
        .expect("the cluster did not converge after the worker came back");
    }
    drop(workers);
    drop(manager);
    let groups = common::kill_tasks_under(root.path());
    println!("cleanup: killed {groups} task process groups; none left");
    if let Some(why) = failure {
        record_unavailable(&machine, &why);
        return;
    }
    let table = format!(
        "## Failure\n\n\
{WORKERS} `cube-worker --runtime exec --manager URL` processes (release), {TASKS} RUNNING `sleep 600` tasks, defaults everywhere; {machine}; {date}.\n\
Command: `cargo bench --bench failure`. The worker with the most tasks is SIGKILLed, {ROUNDS} rounds (it is restarted and the cluster converges in between); polled every {tick:?}.\n\n\
| measurement | median of {ROUNDS} | all rounds |\n|---|---|---|\n\
| SIGKILL to node DOWN in ListNodes | {d:.2} s | {dall} |\n\
| SIGKILL to all its tasks RUNNING on another node | {m:.2} s | {mall} |\n",
        date = common::date(),
        tick = TICK,
        d = median(detect.clone()),
        m = median(moved.clone()),
        dall = detect.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", "),
        mall = moved.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", "),
    );
    common::record("Failure", &table);
}
