//! Benchmark (1), the control plane: one release `cube-manager` and 10 release `cube-worker`
//! processes on the Exec runtime, all on 127.0.0.1, the workers registered with `--manager`
//! (so they heartbeat, and the manager polls them). Every `node lost` in the manager's log is
//! counted: no worker stops, so each is a false DOWN.
//!
//! - 10,000 `true` tasks submitted by 16 clients: tasks per second from the first submit until
//!   the manager shows every task SCHEDULED, and until it shows every task COMPLETED (seen
//!   through `WatchTasks`, as a user of Cube would see them). Twice: one task a call
//!   (SubmitTask), then 1,000 a call (SubmitTasks, as `cubectl run --count` or a Nomad job's
//!   count would submit them).
//! - Submit-to-RUNNING latency p50/p99 at a steady 100 submissions per second (1,000
//!   `sleep 600` tasks).
//! - One reconcile cycle with 10,000 RUNNING `sleep 600` tasks on the 10 workers, in two
//!   parts: the ListTasks round trip and the manager's apply of the answer (`apply_us` of the
//!   manager's `worker polled` debug line). When nothing changed, the manager's own poll waits
//!   (a long poll), so its round trip is measured here with `wait` unset, from this process,
//!   against each worker; a full sync (the manager restarted, so each worker sends all its
//!   tasks) answers at once, and both parts come from the manager's log line.
//!
//! `cargo bench --bench control` (`CUBE_BENCH_UPDATE_INTERVAL=1s` by default). Everything it
//! started is stopped at the end, the tasks' process groups included, and checked gone.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common.rs"]
mod common;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use common::{quantile, Security, Server};
use cube::pb::{self, TaskState};
use futures::StreamExt;

/// Workers, as issue 8 asks.
const WORKERS: usize = 10;
/// Short tasks for the throughput run.
const SHORT_TASKS: usize = 10_000;
/// Concurrent submitting clients (one connection each).
const CLIENTS: usize = 16;
/// Tasks per SubmitTasks call in the batched runs (the most one call may carry).
const SUBMIT_BATCH: usize = cube::task::MAX_SUBMIT_BATCH;
/// The steady submission rate of the latency run, per second.
const STEADY_RATE: u64 = 100;
/// Tasks of the latency run (10 s at the steady rate).
const STEADY_TASKS: usize = 1_000;
/// RUNNING tasks for the reconcile measurement.
const RUNNING_TASKS: usize = 10_000;
/// The longest any phase may take before the benchmark gives up.
const PHASE_TIMEOUT: Duration = Duration::from_secs(300);

/// TLS or plaintext, and the admin token: set once at the start of `main`.
static SECURITY: std::sync::OnceLock<Security> = std::sync::OnceLock::new();

/// The RESULTS.md section: TLS is how Cube runs, so the plaintext run is the one named apart.
fn title() -> &'static str {
    if security().tls() {
        "Control plane"
    } else {
        "Control plane (plaintext)"
    }
}

fn security() -> &'static Security {
    SECURITY.get().expect("main sets the security first")
}

/// When the watch first saw each task reach a state (or pass it).
#[derive(Default, Clone, Copy)]
struct Seen {
    scheduled: Option<Instant>,
    running: Option<Instant>,
    finished: Option<Instant>,
    failed: bool,
}

type Board = Arc<Mutex<HashMap<String, Seen>>>;

fn note(board: &Board, task: &pb::Task) {
    let now = Instant::now();
    let mut board = board.lock().unwrap();
    let seen = board.entry(task.id.clone()).or_default();
    let state = task.state();
    if matches!(
        state,
        TaskState::Scheduled | TaskState::Running | TaskState::Completed | TaskState::Failed
    ) {
        seen.scheduled.get_or_insert(now);
    }
    if matches!(state, TaskState::Running | TaskState::Completed) && task.started_at.is_some() {
        seen.running.get_or_insert(now);
    }
    if state == TaskState::Failed && !seen.failed {
        println!("   FAILED {}: {}", task.id, task.message);
    }
    if matches!(state, TaskState::Completed | TaskState::Failed) {
        seen.finished.get_or_insert(now);
        seen.failed |= state == TaskState::Failed;
    }
}

/// Watches every task until the process ends, watching again after a lag.
fn watch(url: String, board: Board) {
    tokio::spawn(async move {
        loop {
            let mut client = security().manager(&url);
            let Ok(stream) = client.watch_tasks(pb::WatchTasksRequest::default()).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut stream = stream.into_inner();
            while let Some(Ok(message)) = stream.next().await {
                if let Some(task) = message.task {
                    note(&board, &task);
                }
            }
        }
    });
}

fn spec(i: usize, command: &[&str]) -> pb::TaskSpec {
    pb::TaskSpec {
        name: format!("b{i}"),
        image: String::new(), // Exec workers run no image
        command: command.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Submits `count` tasks from `CLIENTS` clients, `batch` a call (1: SubmitTask, more:
/// SubmitTasks); returns their ids.
async fn submit_many(
    url: &str,
    first: usize,
    count: usize,
    batch: usize,
    command: &[&str],
) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let mut handles = Vec::new();
    for _ in 0..CLIENTS {
        let (url, next, ids) = (url.to_string(), next.clone(), ids.clone());
        let command: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        handles.push(tokio::spawn(async move {
            let command: Vec<&str> = command.iter().map(String::as_str).collect();
            let mut c = security().manager(&url);
            loop {
                let from = next.fetch_add(batch, Ordering::Relaxed);
                if from >= count {
                    return;
                }
                let requests = (from..count.min(from + batch)).map(|i| pb::SubmitTaskRequest {
                    spec: Some(spec(first + i, &command)),
                    request_id: String::new(),
                });
                let tasks: Vec<pb::Task> = if batch == 1 {
                    let request = requests.into_iter().next().unwrap();
                    let answer = c.submit_task(request).await.unwrap().into_inner();
                    answer.task.into_iter().collect()
                } else {
                    let request = pb::SubmitTasksRequest {
                        tasks: requests.collect(),
                    };
                    let answer = c.submit_tasks(request).await.unwrap().into_inner();
                    answer.tasks.into_iter().filter_map(|a| a.task).collect()
                };
                ids.lock().unwrap().extend(tasks.into_iter().map(|t| t.id));
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    Arc::try_unwrap(ids).unwrap().into_inner().unwrap()
}

/// Submits `SHORT_TASKS` `true` tasks, `batch` a call, and measures when the manager shows
/// them all submitted, SCHEDULED and finished.
async fn short_tasks(url: &str, board: &Board, first: usize, batch: usize) -> Throughput {
    let t0 = Instant::now();
    let ids = submit_many(url, first, SHORT_TASKS, batch, &["true"]).await;
    let submitted = t0.elapsed();
    wait_all(board, &ids, "SCHEDULED", |s| s.scheduled.is_some()).await;
    wait_all(board, &ids, "finished", |s| s.finished.is_some()).await;
    let board = board.lock().unwrap();
    let seen: Vec<Seen> = ids.iter().map(|id| board[id]).collect();
    let throughput = Throughput {
        submitted,
        scheduled: seen.iter().filter_map(|s| s.scheduled).max().unwrap() - t0,
        finished: seen.iter().filter_map(|s| s.finished).max().unwrap() - t0,
        failed: seen.iter().filter(|s| s.failed).count(),
    };
    println!(
        "   submitted in {:?}, all SCHEDULED after {:?}, all finished after {:?} ({} FAILED)",
        throughput.submitted, throughput.scheduled, throughput.finished, throughput.failed
    );
    throughput
}

/// CPU seconds used so far by the manager, the workers themselves, the task processes the
/// workers reaped, and this benchmark process (its submitters and its watch).
struct CpuUse {
    manager: f64,
    workers: f64,
    tasks: f64,
    bench: f64,
}

impl CpuUse {
    fn now(manager: &Server, workers: &[Server]) -> CpuUse {
        let (manager, _) = common::cpu_seconds(manager.pid());
        let (mut own, mut tasks) = (0.0, 0.0);
        for w in workers {
            let (o, t) = common::cpu_seconds(w.pid());
            own += o;
            tasks += t;
        }
        CpuUse {
            manager,
            workers: own,
            tasks,
            bench: common::cpu_seconds(std::process::id()).0,
        }
    }

    fn since(&self, before: &CpuUse) -> CpuUse {
        CpuUse {
            manager: self.manager - before.manager,
            workers: self.workers - before.workers,
            tasks: self.tasks - before.tasks,
            bench: self.bench - before.bench,
        }
    }

    /// Microseconds of CPU per short task, by who spent them.
    fn per_task(&self) -> String {
        let us = |s: f64| s * 1e6 / SHORT_TASKS as f64;
        let total = self.manager + self.workers + self.tasks + self.bench;
        format!(
            "{:.0} µs in all: manager {:.0}, workers {:.0}, task processes {:.0}, this benchmark {:.0}",
            us(total),
            us(self.manager),
            us(self.workers),
            us(self.tasks),
            us(self.bench)
        )
    }
}

/// One run of the short tasks: from the first submit until each point.
struct Throughput {
    submitted: Duration,
    scheduled: Duration,
    finished: Duration,
    failed: usize,
}

/// Waits until `done` holds for every id in `ids`, or panics after PHASE_TIMEOUT. The times
/// come from the watch (see [`note`]), so how often this looks changes no result, only what
/// this process takes from the cores the benchmark measures: it looks every 100 ms, and only
/// at the ids still missing.
async fn wait_all(board: &Board, ids: &[String], what: &str, done: impl Fn(&Seen) -> bool) {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let mut missing: Vec<&String> = ids.iter().collect();
    loop {
        {
            let board = board.lock().unwrap();
            missing.retain(|id| !board.get(*id).is_some_and(&done));
        }
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} tasks never {what}",
            missing.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ready_nodes(url: &str) -> usize {
    let mut c = security().manager(url);
    let nodes = c
        .list_nodes(pb::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    nodes
        .iter()
        .filter(|n| n.state() == pb::NodeState::Ready)
        .count()
}

/// One `worker polled` line of the manager's JSON log.
struct Cycle {
    tasks: u64,
    complete: bool,
    /// The ListTasks round trip (with the long poll's wait, if it waited).
    poll_us: u64,
    /// The manager applying the answer.
    apply_us: u64,
}

/// Nodes the manager took for lost (its `node lost` log lines) over the whole run: every
/// worker stays up, so each one is a false DOWN.
static NODES_LOST: AtomicUsize = AtomicUsize::new(0);

/// The reconcile cycles in the manager's log since the last call; counts `node lost` lines
/// on the way.
fn cycles(manager: &Server) -> Vec<Cycle> {
    let mut found = Vec::new();
    while let Ok(line) = manager.stderr.try_recv() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let fields = &value["fields"];
        if fields["message"] == "node lost" {
            NODES_LOST.fetch_add(1, Ordering::Relaxed);
            println!("   FALSE DOWN: {}", fields["node"]);
        }
        if fields["message"] != "worker polled" {
            continue;
        }
        found.push(Cycle {
            tasks: fields["tasks"].as_u64().unwrap_or(0),
            complete: fields["complete"].as_bool().unwrap_or(false),
            poll_us: fields["poll_us"].as_u64().unwrap_or(0),
            apply_us: fields["apply_us"].as_u64().unwrap_or(0),
        });
    }
    found
}

/// Starts the manager on `listen` (the address the workers were given with `--manager`; the
/// same one again after a restart). The workers register and heartbeat, and it polls them.
fn start_manager(data: &std::path::Path, listen: &str, interval: &str) -> Server {
    let mut args = vec![
        "--listen".to_string(),
        listen.into(),
        "--data-dir".into(),
        data.display().to_string(),
        "--update-interval".into(),
        interval.into(),
        "--log-format".into(),
        "json".into(),
    ];
    if !security().tls() {
        args.push("--plaintext".into());
    }
    Server::start(
        common::MANAGER,
        &args,
        &[("RUST_LOG", "info,cube::manager::reconciler=debug")],
    )
}

/// Round trips of a delta ListTasks that finds nothing new (no wait), `rounds` per worker, in
/// microseconds; and how many tasks each worker holds.
async fn quiet_polls(workers: &[Server], rounds: usize) -> (Vec<f64>, usize) {
    let mut times = Vec::new();
    let mut held = 0;
    for w in workers {
        let mut c = security().worker(&w.addr);
        let all = c
            .list_tasks(pb::WorkerServiceListTasksRequest::default())
            .await
            .unwrap()
            .into_inner();
        held = held.max(all.tasks.len());
        for _ in 0..rounds {
            let asked = Instant::now();
            let delta = c
                .list_tasks(pb::WorkerServiceListTasksRequest {
                    since_revision: all.revision,
                    instance_id: all.instance_id.clone(),
                    wait: None,
                    page_token: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            times.push(asked.elapsed().as_micros() as f64);
            assert!(delta.tasks.is_empty(), "a RUNNING task changed");
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (times, held)
}

async fn wait_ready(url: &str, want: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready_nodes(url).await < want {
        assert!(Instant::now() < deadline, "the workers never became READY");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() {
    common::settle_disk();
    // Each RUNNING Exec task is two processes (the shim and the command).
    let pid_max: usize = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(usize::MAX);
    assert!(
        pid_max >= 4 * RUNNING_TASKS,
        "kernel.pid_max is {pid_max}: {RUNNING_TASKS} RUNNING tasks are {} processes, so \
         `fork` fails near the end; raise it (sysctl kernel.pid_max=4194304)",
        2 * RUNNING_TASKS
    );
    let machine = common::machine();
    let interval = std::env::var("CUBE_BENCH_UPDATE_INTERVAL").unwrap_or_else(|_| "1s".to_string());
    let root = tempfile::tempdir().unwrap();
    let _reaper = common::Reaper(root.path().to_path_buf());
    let manager_dir = root.path().join("manager");
    let sec = SECURITY.get_or_init(|| Security::from_env(&manager_dir));
    println!(
        "== {}",
        if sec.tls() {
            "TLS: mTLS to the workers, the admin token on every call"
        } else {
            "plaintext (CUBE_BENCH_TLS=0)"
        }
    );
    // The manager starts first, so the workers can be told its address (`--manager`): their
    // heartbeats are what this run checks for starvation. A restart keeps that address.
    let mut manager = start_manager(&manager_dir, "127.0.0.1:0", &interval);
    let listen = manager.addr.clone();
    let workers: Vec<Server> = (0..WORKERS)
        .map(|i| {
            let name = format!("w{i}");
            sec.node_cert(&name, &root.path().join(&name));
            common::start_worker(root.path(), &name, &["--manager".into(), sec.url(&listen)])
        })
        .collect();
    manager.url = sec.url(&manager.addr);
    wait_ready(&manager.url, WORKERS).await;
    let board: Board = Arc::default();
    watch(manager.url.clone(), board.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 1. Throughput of short tasks: one per SubmitTask, then SUBMIT_BATCH per SubmitTasks.
    println!("== {SHORT_TASKS} `true` tasks, {CLIENTS} clients, one task a call");
    let single = short_tasks(&manager.url, &board, 0, 1).await;
    let ramp = cycles(&manager);
    let busiest = ramp.iter().max_by_key(|c| c.tasks);
    println!("== {SHORT_TASKS} `true` tasks, {CLIENTS} clients, {SUBMIT_BATCH} tasks a call");
    let before = CpuUse::now(&manager, &workers);
    let batched = short_tasks(&manager.url, &board, SHORT_TASKS, SUBMIT_BATCH).await;
    let cpu = CpuUse::now(&manager, &workers).since(&before);
    println!("   CPU per task: {}", cpu.per_task());
    let _ = cycles(&manager);
    let first_steady = 2 * SHORT_TASKS;

    // 2. Submit-to-RUNNING latency at a steady rate.
    println!("== {STEADY_TASKS} `sleep 600` tasks at {STEADY_RATE}/s");
    let sent = Arc::new(Mutex::new(Vec::with_capacity(STEADY_TASKS)));
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / STEADY_RATE));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let client = security().manager(&manager.url);
    let mut handles = Vec::new();
    for i in 0..STEADY_TASKS {
        ticker.tick().await;
        let (mut c, sent) = (client.clone(), sent.clone());
        handles.push(tokio::spawn(async move {
            let at = Instant::now();
            let task = c
                .submit_task(pb::SubmitTaskRequest {
                    spec: Some(spec(first_steady + i, &["sleep", "600"])),
                    request_id: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .task
                .unwrap();
            sent.lock().unwrap().push((task.id, at));
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let sent = Arc::try_unwrap(sent).unwrap().into_inner().unwrap();
    let steady_ids: Vec<String> = sent.iter().map(|(id, _)| id.clone()).collect();
    wait_all(&board, &steady_ids, "RUNNING", |s| s.running.is_some()).await;
    let mut latencies: Vec<f64> = {
        let board = board.lock().unwrap();
        sent.iter()
            .map(|(id, at)| (board[id].running.unwrap() - *at).as_secs_f64() * 1000.0)
            .collect()
    };
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (p50, p99) = (quantile(&latencies, 0.5), quantile(&latencies, 0.99));
    println!("   p50 {p50:.0} ms, p99 {p99:.0} ms");

    // 3. Reconcile cycles with 10,000 RUNNING tasks.
    let more = RUNNING_TASKS - STEADY_TASKS;
    println!("== {more} more `sleep 600` tasks, to {RUNNING_TASKS} RUNNING");
    let mut running_ids = submit_many(
        &manager.url,
        first_steady + STEADY_TASKS,
        more,
        SUBMIT_BATCH,
        &["sleep", "600"],
    )
    .await;
    running_ids.extend(steady_ids);
    wait_all(&board, &running_ids, "RUNNING", |s| s.running.is_some()).await;
    // Let two full intervals pass so every worker's cursor is current, then measure.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = cycles(&manager);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut quiet: Vec<f64> = cycles(&manager)
        .iter()
        .filter(|c| c.tasks == 0)
        .map(|c| c.apply_us as f64)
        .collect();
    quiet.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (quiet_polls, held) = quiet_polls(&workers, 20).await;
    // Full sync: restart the manager; the first poll of each worker asks for everything.
    let started = Instant::now();
    let _ = cycles(&manager);
    manager.stop();
    let manager = start_manager(&manager_dir, &listen, &interval);
    let reload = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut full = Vec::new();
    let mut seen = 0;
    while full.len() < WORKERS && Instant::now() < deadline {
        let batch = cycles(&manager);
        seen += batch.len();
        full.extend(batch.into_iter().filter(|c| c.complete));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if full.is_empty() {
        println!("   no full sync seen in the restarted manager's log ({seen} cycles)");
        full.push(Cycle {
            tasks: 0,
            complete: true,
            poll_us: 0,
            apply_us: 0,
        });
    }
    let sorted = |f: &dyn Fn(&Cycle) -> u64| {
        let mut v: Vec<f64> = full.iter().map(|c| f(c) as f64).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    };
    let full_poll = sorted(&|c| c.poll_us);
    let full_apply = sorted(&|c| c.apply_us);
    let full_us = sorted(&|c| c.poll_us + c.apply_us);
    let full_tasks: u64 = full.iter().map(|c| c.tasks).sum::<u64>() / full.len() as u64;

    // Clean up: the manager, the workers, and every task process group they left.
    let _ = cycles(&manager);
    manager.stop();
    for w in workers {
        w.stop();
    }
    let groups = common::kill_tasks_under(root.path());
    println!("   cleanup: killed {groups} task process groups; none left");

    let ms = |us: f64| us / 1000.0;
    let rate = |d: Duration, failed: Option<usize>| {
        let per_second = SHORT_TASKS as f64 / d.as_secs_f64();
        match failed {
            None => format!("{per_second:.0} tasks/s ({d:.2?})"),
            Some(failed) => format!("{per_second:.0} tasks/s ({d:.2?}; {failed} FAILED)"),
        }
    };
    let busiest = busiest.map_or("-".to_string(), |c| {
        format!(
            "apply {:.1} ms, round trip {:.1} ms ({} tasks in the answer)",
            ms(c.apply_us as f64),
            ms(c.poll_us as f64),
            c.tasks
        )
    });
    let grace = format!(
        "{:?} (the default: {} heartbeats of {:?})",
        cube::manager::DEFAULT_HEARTBEAT_INTERVAL * cube::manager::DEFAULT_GRACE_HEARTBEATS,
        cube::manager::DEFAULT_GRACE_HEARTBEATS,
        cube::manager::DEFAULT_HEARTBEAT_INTERVAL
    );
    let table = format!(
        "## Control plane\n\n\
One manager and {WORKERS} `cube-worker --runtime exec --manager URL` processes (release builds) on one machine: {machine}; {date}.\n\
Command: `cargo bench --bench control` (update interval {interval}).\n\n\
| measurement | result |\n|---|---|\n\
| {SHORT_TASKS} `true` tasks, {CLIENTS} clients, one task a call (SubmitTask): submitted | {s1} |\n\
| ... submit to all SCHEDULED | **{d1}** |\n\
| ... submit to all COMPLETED | **{c1}** |\n\
| {SHORT_TASKS} `true` tasks, {CLIENTS} clients, {SUBMIT_BATCH} tasks a call (SubmitTasks): submitted | {s2} |\n\
| ... submit to all SCHEDULED | **{d2}** |\n\
| ... submit to all COMPLETED | **{c2}** |\n\
| ... CPU per task (user + system) | {cpu} |\n\
| submit to RUNNING at a steady {STEADY_RATE}/s ({STEADY_TASKS} tasks): p50 | {p50:.0} ms |\n\
| ... p99 | {p99:.0} ms |\n\
| one reconcile cycle, {RUNNING_TASKS} RUNNING on {WORKERS} workers ({held} tasks held per worker), nothing changed: delta ListTasks round trip (no wait), median of {np} | {p50q:.2} ms (max {pmaxq:.2} ms) |\n\
| ... the manager's apply of the empty answer, median of {nq} | {q50:.3} ms (max {qmax:.3} ms) |\n\
| one reconcile cycle, full sync after a manager restart ({full_tasks} tasks per worker), median of {nf}: round trip + apply | **{f50:.1} ms** (max {fmax:.1} ms) |\n\
| ... round trip alone / apply alone, medians | {fp50:.1} ms / {fa50:.1} ms |\n\
| busiest cycle while the short tasks ran | {busiest} |\n\
| manager restart with {total} tasks in the store, to `listening on` | {reload:.2?} |\n\
| nodes lost over the whole run (each a false DOWN: no worker stopped), node grace {grace} | **{lost}** |\n",
        lost = NODES_LOST.load(Ordering::Relaxed),
        date = common::date(),
        s1 = rate(single.submitted, None),
        d1 = rate(single.scheduled, None),
        c1 = rate(single.finished, Some(single.failed)),
        s2 = rate(batched.submitted, None),
        d2 = rate(batched.scheduled, None),
        c2 = rate(batched.finished, Some(batched.failed)),
        cpu = cpu.per_task(),
        np = quiet_polls.len(),
        p50q = ms(quantile(&quiet_polls, 0.5)),
        pmaxq = ms(quiet_polls.last().copied().unwrap_or(f64::NAN)),
        fp50 = ms(quantile(&full_poll, 0.5)),
        fa50 = ms(quantile(&full_apply, 0.5)),
        nq = quiet.len(),
        q50 = ms(quantile(&quiet, 0.5)),
        qmax = ms(quiet.last().copied().unwrap_or(f64::NAN)),
        nf = full_us.len(),
        f50 = ms(quantile(&full_us, 0.5)),
        fmax = ms(full_us.last().copied().unwrap_or(f64::NAN)),
        total = 2 * SHORT_TASKS + RUNNING_TASKS,
    );
    common::record(title(), &table);
}
