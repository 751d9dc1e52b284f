//! Benchmark (scale): what one manager costs against the number of nodes and tasks.
//!
//! For each node count (default 10, 100, 1,000 and 10,000; `--nodes 10,100`): a release
//! `cube-manager` (plaintext on loopback: this measures the control plane, not TLS) and that
//! many simulated nodes in this process (`sim_node.rs`: the worker's contract in memory, no
//! runtime), each registering and heartbeating every second. Measured:
//! - the time until every node is READY;
//! - the manager's idle CPU (a share of one core) and RSS with the nodes registered;
//! - `--tasks` tasks (default 100,000) submitted 1,000 a call: the time until none is PENDING
//!   (placement) and until every one runs on its node, the manager's CPU per task, its RSS;
//! - 10 % of the nodes lost at once: the time until the manager says DOWN for all of them, and
//!   until their tasks run elsewhere.
//!
//! Then `--restart-tasks` (default 1,000,000) tasks in the store of a manager without nodes:
//! the store's bytes per task, and the time a SIGKILLed manager takes to serve again, with the
//! memory it then holds.
//!
//! Usage: `cargo bench --bench scale -- [--nodes 10,100,1000,10000] [--tasks N]
//! [--restart-tasks N] [--no-record]`. Writes the table to bench/RESULTS.md ("Scale") and the
//! rows as CSV to bench/scale.csv, which `bench/plot_scale.py` draws.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common.rs"]
mod common;
#[path = "sim_node.rs"]
mod sim_node;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    time::{Duration, Instant},
};

use common::Server;
use cube::pb::{self, manager_service_client::ManagerServiceClient};
use sim_node::{SimCluster, SimOptions};
use tonic::transport::Channel;

/// Resources each task asks for: small, so the nodes are never the limit.
const TASK_CPU_MILLIS: i64 = 1;
const TASK_MEMORY: i64 = 4 << 20;
/// How long any one step may take before the benchmark gives up on it.
const STEP_LIMIT: Duration = Duration::from_secs(600);

struct Options {
    nodes: Vec<usize>,
    tasks: usize,
    restart_tasks: usize,
    record: bool,
}

fn options() -> Options {
    let mut o = Options {
        nodes: vec![10, 100, 1000, 10_000],
        tasks: 100_000,
        restart_tasks: 1_000_000,
        record: true,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--nodes" => {
                o.nodes = value().split(',').map(|n| n.parse().unwrap()).collect();
                i += 1;
            }
            "--tasks" => {
                o.tasks = value().parse().unwrap();
                i += 1;
            }
            "--restart-tasks" => {
                o.restart_tasks = value().parse().unwrap();
                i += 1;
            }
            "--no-record" => o.record = false,
            // `cargo bench` passes --bench.
            _ => {}
        }
        i += 1;
    }
    o
}

/// One node count's results.
struct Row {
    nodes: usize,
    /// The first step that did not finish, and the state then; the steps after it are not run.
    broke: Option<String>,
    register_s: f64,
    idle_core_share: f64,
    idle_rss_mb: f64,
    placed_s: f64,
    running_s: f64,
    cpu_us_per_task: f64,
    loaded_rss_mb: f64,
    detect_s: f64,
    replace_s: f64,
}

/// The manager's Prometheus text.
fn scrape(addr: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

/// A gauge's value in `text`, e.g. `cube_manager_tasks{state="RUNNING"}`.
fn gauge(text: &str, series: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as i64
}

fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Waits until `done` holds, polling every 50 ms: the time it took, or what did not happen
/// within [`STEP_LIMIT`].
async fn until(what: &str, mut done: impl FnMut() -> bool) -> Result<f64, String> {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > STEP_LIMIT {
            return Err(format!("{what}: not within {} s", STEP_LIMIT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(start.elapsed().as_secs_f64())
}

fn manager(dir: &Path, metrics: &str) -> Server {
    let args: Vec<String> = [
        "--plaintext",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &dir.display().to_string(),
        "--metrics-listen",
        metrics,
        "--max-connections",
        "40000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Server::start(common::MANAGER, &args, &[])
}

fn spec(i: usize) -> pb::TaskSpec {
    pb::TaskSpec {
        name: format!("s{i}"),
        command: vec!["sleep".into(), "infinity".into()],
        resources: Some(pb::Resources {
            cpu_millis: TASK_CPU_MILLIS,
            memory_bytes: TASK_MEMORY,
            disk_bytes: 0,
        }),
        ..Default::default()
    }
}

/// Submits `count` tasks, 1,000 a call.
async fn submit(client: &mut ManagerServiceClient<Channel>, count: usize) {
    let mut left = count;
    while left > 0 {
        let n = left.min(1000);
        let tasks = (0..n)
            .map(|i| pb::SubmitTaskRequest {
                spec: Some(spec(i)),
                request_id: String::new(),
            })
            .collect();
        client
            .submit_tasks(pb::SubmitTasksRequest { tasks })
            .await
            .expect("SubmitTasks");
        left -= n;
    }
}

/// One node count's run; a step that does not finish ends it, as the row's `broke`.
async fn one_size(nodes: usize, tasks: usize) -> Row {
    let mut row = Row {
        nodes,
        register_s: f64::NAN,
        idle_core_share: f64::NAN,
        idle_rss_mb: f64::NAN,
        placed_s: f64::NAN,
        running_s: f64::NAN,
        cpu_us_per_task: f64::NAN,
        loaded_rss_mb: f64::NAN,
        detect_s: f64::NAN,
        replace_s: f64::NAN,
        broke: None,
    };
    if let Err(broke) = steps(nodes, tasks, &mut row).await {
        eprintln!("{nodes} nodes: {broke}");
        row.broke = Some(broke);
    }
    row
}

async fn steps(nodes: usize, tasks: usize, row: &mut Row) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let server = manager(dir.path(), &metrics);
    let pid = server.pid();
    let mut client = ManagerServiceClient::connect(server.url.clone())
        .await
        .unwrap();
    // Capacity for every task with a fifth to spare, however many nodes share them.
    let per_node = tasks.div_ceil(nodes) as i64 * 5 / 4 + 1;
    let options = SimOptions {
        cpu_millis: per_node * TASK_CPU_MILLIS,
        memory_bytes: per_node * TASK_MEMORY,
        run_for: None,
    };
    let start = Instant::now();
    let cluster = SimCluster::start(
        &server.url,
        "sim",
        nodes,
        nodes.min(1000),
        Duration::from_secs(1),
        options,
    )
    .await;
    let ready = r#"cube_manager_nodes{state="READY"}"#;
    let states = |metrics: &str| {
        let text = scrape(metrics);
        if text.is_empty() {
            return "the manager's metrics did not answer within 10 s".to_string();
        }
        format!(
            "{} READY, {} DOWN",
            gauge(&text, ready),
            gauge(&text, r#"cube_manager_nodes{state="DOWN"}"#)
        )
    };
    until("every node READY", || {
        gauge(&scrape(&metrics), ready) == nodes as i64
    })
    .await
    .map_err(|e| format!("{e} ({})", states(&metrics)))?;
    let register_s = start.elapsed().as_secs_f64();
    row.register_s = register_s;
    // Idle: the nodes heartbeat and are polled, nothing else happens.
    let (u0, s0) = common::cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (u1, s1) = common::cpu_seconds(pid);
    let idle_core_share = (u1 + s1 - u0 - s0) / 10.0;
    let idle_rss_mb = common::rss_bytes(pid) as f64 / 1e6;
    row.idle_core_share = idle_core_share;
    row.idle_rss_mb = idle_rss_mb;
    eprintln!(
        "{nodes} nodes: READY after {register_s:.1} s; idle {:.1} % of a core, {idle_rss_mb:.0} MB",
        idle_core_share * 100.0
    );
    // Placement.
    let (u0, s0) = common::cpu_seconds(pid);
    let start = Instant::now();
    submit(&mut client, tasks).await;
    let pending = "cube_manager_pending_tasks";
    let placed_s = start.elapsed().as_secs_f64()
        + until("no task PENDING", || gauge(&scrape(&metrics), pending) == 0).await?;
    row.placed_s = placed_s;
    let running_s = start.elapsed().as_secs_f64()
        + until("every task running on its node", || {
            cluster.running() == tasks
        })
        .await
        .map_err(|e| format!("{e} ({} running)", cluster.running()))?;
    row.running_s = running_s;
    let (u1, s1) = common::cpu_seconds(pid);
    let cpu_us_per_task = (u1 + s1 - u0 - s0) * 1e6 / tasks as f64;
    let loaded_rss_mb = common::rss_bytes(pid) as f64 / 1e6;
    row.cpu_us_per_task = cpu_us_per_task;
    row.loaded_rss_mb = loaded_rss_mb;
    eprintln!(
        "{tasks} tasks: placed after {placed_s:.1} s, running after {running_s:.1} s; \
         {cpu_us_per_task:.0} µs of manager CPU per task; {loaded_rss_mb:.0} MB"
    );
    // A tenth of the nodes lost at once.
    let lost = (nodes / 10).max(1);
    let start = Instant::now();
    cluster.lose(lost);
    let down = r#"cube_manager_nodes{state="DOWN"}"#;
    until("the lost nodes DOWN", || {
        gauge(&scrape(&metrics), down) == lost as i64
    })
    .await
    .map_err(|e| format!("{e} ({})", states(&metrics)))?;
    row.detect_s = start.elapsed().as_secs_f64();
    until("their tasks running elsewhere", || {
        cluster.running() == tasks
    })
    .await
    .map_err(|e| format!("{e} ({} running)", cluster.running()))?;
    row.replace_s = start.elapsed().as_secs_f64();
    let (detect_s, replace_s) = (row.detect_s, row.replace_s);
    eprintln!("{lost} nodes lost: DOWN after {detect_s:.1} s, replaced after {replace_s:.1} s");
    drop(cluster);
    server.stop();
    Ok(())
}

/// The store with `tasks` tasks and no node: bytes per task, restart time, memory after.
async fn restart(tasks: usize) -> (f64, f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_port();
    let server = manager(dir.path(), &metrics);
    let mut client = ManagerServiceClient::connect(server.url.clone())
        .await
        .unwrap();
    submit(&mut client, tasks).await;
    server.kill();
    let store = std::fs::metadata(dir.path().join("cube.redb"))
        .unwrap()
        .len();
    let start = Instant::now();
    let again = manager(dir.path(), &metrics);
    let took = start.elapsed().as_secs_f64();
    let rss = common::rss_bytes(again.pid()) as f64 / 1e6;
    again.stop();
    (store as f64 / tasks as f64, took, rss)
}

fn main() {
    let o = options();
    // Thousands of sockets on each side.
    raise_open_files();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rows: Vec<Row> = o
        .nodes
        .iter()
        .map(|&n| rt.block_on(one_size(n, o.tasks)))
        .collect();
    let (per_task, restart_s, restart_mb) = rt.block_on(restart(o.restart_tasks));
    eprintln!(
        "{} tasks in the store: {per_task:.0} bytes each; restart {restart_s:.1} s, {restart_mb:.0} MB",
        o.restart_tasks
    );
    let nodes = o
        .nodes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut table = format!(
        "## Scale\n\n{}; {}.\nCommand: `cargo bench --bench scale -- --nodes {nodes} --tasks {t} \
         --restart-tasks {}`. Simulated nodes (bench/sim_node.rs), heartbeat and update \
         interval 1 s, the default scheduler. A lost node's port closes, as when its worker \
         process dies.\n\n| nodes | all READY | idle manager CPU (of one core) | idle RSS | {t} \
         tasks placed | running | manager CPU per task | RSS loaded | 10 % of nodes lost: DOWN \
         | replaced |\n|---|---|---|---|---|---|---|---|---|---|\n",
        common::machine(),
        common::date(),
        o.restart_tasks,
        t = o.tasks
    );
    let mut csv = String::from(
        "nodes,register_s,idle_core_share,idle_rss_mb,placed_s,running_s,cpu_us_per_task,loaded_rss_mb,detect_s,replace_s\n",
    );
    for r in &rows {
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.nodes,
            cell(r.register_s, 1, " s"),
            cell(r.idle_core_share * 100.0, 1, " %"),
            cell(r.idle_rss_mb, 0, " MB"),
            cell(r.placed_s, 1, " s"),
            cell(r.running_s, 1, " s"),
            cell(r.cpu_us_per_task, 0, " µs"),
            cell(r.loaded_rss_mb, 0, " MB"),
            cell(r.detect_s, 1, " s"),
            cell(r.replace_s, 1, " s"),
        ));
        csv.push_str(&format!(
            "{},{:.3},{:.4},{:.1},{:.3},{:.3},{:.1},{:.1},{:.3},{:.3}\n",
            r.nodes,
            r.register_s,
            r.idle_core_share,
            r.idle_rss_mb,
            r.placed_s,
            r.running_s,
            r.cpu_us_per_task,
            r.loaded_rss_mb,
            r.detect_s,
            r.replace_s
        ));
    }
    for r in rows.iter().filter(|r| r.broke.is_some()) {
        table.push_str(&format!(
            "\nAt {} nodes the run stopped: {}.\n",
            r.nodes,
            r.broke.as_deref().unwrap_or_default()
        ));
    }
    table.push_str(&format!(
        "\n{} tasks in the store of a manager without nodes: {per_task:.0} bytes per task; after \
         a SIGKILL it serves again in {restart_s:.1} s holding {restart_mb:.0} MB.\n",
        o.restart_tasks
    ));
    if o.record {
        std::fs::write(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/scale.csv"),
            csv,
        )
        .unwrap();
        common::record("Scale", &table);
    } else {
        println!("\n{table}");
    }
}

/// Raises this process's open-file limit (the manager it starts inherits it): to a million
/// when allowed (root), else to the hard limit. Ten thousand nodes hold about 21,000 sockets
/// in this process.
fn raise_open_files() {
    // SAFETY: getrlimit/setrlimit with a valid, owned struct.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let wanted = libc::rlimit {
            rlim_cur: 1 << 20,
            rlim_max: limit.rlim_max.max(1 << 20),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A table cell: `value` with `decimals` and `unit`, or a dash for a step not reached.
fn cell(value: f64, decimals: usize, unit: &str) -> String {
    if value.is_nan() {
        "—".to_string()
    } else {
        format!("{value:.decimals$}{unit}")
    }
}
