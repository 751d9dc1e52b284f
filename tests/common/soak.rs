//! The nemesis soak (issue 18), shared by `tests/network_soak.rs` (60 s) and `cargo bench
//! --bench soak` (300 s): clients submit and stop tasks on a [`NetCluster`] while a seeded
//! nemesis partitions workers, SIGKILLs and restarts workers and the manager, and slows
//! links. Every client call and its answer go into a history; at the end, with every fault
//! healed, a checker verifies: every acknowledged submission exists, every acknowledged stop
//! was honoured, no task has two live runs once converged (counted from the processes), and
//! convergence comes within 30 s of the last fault. The seed is printed, for a replay.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::{counted_spec, grpc::manager_client, netns::Net, NetCluster};
use cube::pb::{self, TaskState};

/// Submitting and stopping clients.
const CLIENTS: u64 = 3;
/// Workers on the network.
const WORKERS: usize = 3;
/// The checker's bound on convergence after the last fault.
pub const CONVERGE_WITHIN: Duration = Duration::from_secs(30);
/// How long the converged state is watched for duplicate runs.
const WATCH_AFTER: Duration = Duration::from_secs(5);
/// One client call's bound (a call to a killed manager fails sooner).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One client call and its answer.
#[derive(Debug, Clone)]
enum Call {
    /// A submission of task `name`: its id when acknowledged.
    Submit { name: String, id: Option<String> },
    /// A stop of task `id`, and whether it was acknowledged.
    Stop { id: String, acked: bool },
}

/// What a soak found.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub faults: BTreeMap<&'static str, usize>,
    pub calls: usize,
    pub acknowledged: usize,
    pub lost: usize,
    pub stops_acknowledged: usize,
    pub stops_not_honoured: usize,
    pub duplicates: usize,
    /// From the end of the last fault to a converged state; None: not within the bound.
    pub convergence: Option<Duration>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.stops_not_honoured == 0
            && self.duplicates == 0
            && self.convergence.is_some()
    }
}

/// The seed: `CUBE_SOAK_SEED`, or the clock's.
pub fn seed() -> u64 {
    std::env::var("CUBE_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// Runs the soak for `duration` with `seed` on `net`.
pub async fn run(net: Net, duration: Duration, seed: u64) -> Report {
    eprintln!("soak: seed {seed} (CUBE_SOAK_SEED={seed} replays it), {duration:?}");
    let mut cluster = NetCluster::start(net, &[]);
    for i in 0..WORKERS {
        cluster.add_worker(&format!("s{i}"));
    }
    let history: Arc<Mutex<Vec<Call>>> = Arc::default();
    let end = Instant::now() + duration;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let (url, runs, history) = (
                cluster.url().to_string(),
                cluster.runs_dir(),
                history.clone(),
            );
            tokio::spawn(client(url, runs, seed ^ (k + 1), k, history, end))
        })
        .collect();
    let mut report = Report {
        seed,
        ..Default::default()
    };
    let last_fault = nemesis(&mut cluster, seed, end, &mut report.faults).await;
    for c in clients {
        c.await.unwrap();
    }
    let history = history.lock().unwrap().clone();
    check(&cluster, &history, last_fault, &mut report).await;
    eprintln!("soak: {report:?}");
    report
}

/// Submits (60 %) and stops (40 %) until `end`, recording every call.
async fn client(
    url: String,
    runs: PathBuf,
    seed: u64,
    k: u64,
    history: Arc<Mutex<Vec<Call>>>,
    end: Instant,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut client = manager_client(&url).await;
    let mut mine: Vec<String> = Vec::new();
    let mut n = 0;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..700))).await;
        if mine.is_empty() || rng.random_bool(0.6) {
            n += 1;
            let name = format!("soak-{k}-{n}");
            let request = pb::SubmitTaskRequest {
                spec: Some(counted_spec(&runs, &name)),
                request_id: format!("{name}-{seed}"),
            };
            let answer = tokio::time::timeout(CALL_TIMEOUT, client.submit_task(request)).await;
            let id = match answer {
                Ok(Ok(task)) => task.into_inner().task.map(|t| t.id),
                _ => None,
            };
            if let Some(id) = &id {
                mine.push(id.clone());
            }
            history.lock().unwrap().push(Call::Submit { name, id });
        } else {
            let id = mine.swap_remove(rng.random_range(0..mine.len()));
            let request = pb::StopTaskRequest {
                task_id: id.clone(),
            };
            let answer = tokio::time::timeout(CALL_TIMEOUT, client.stop_task(request)).await;
            let acked = matches!(answer, Ok(Ok(_)));
            history.lock().unwrap().push(Call::Stop { id, acked });
        }
    }
}

/// Injects one fault at a time, at seeded intervals, until `end`; returns when the last one
/// was healed.
async fn nemesis(
    cluster: &mut NetCluster,
    seed: u64,
    end: Instant,
    faults: &mut BTreeMap<&'static str, usize>,
) -> Instant {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut healed = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(rng.random_range(1000..4000))).await;
        if Instant::now() >= end {
            return healed;
        }
        let i = rng.random_range(0..cluster.worker_count());
        let hold = Duration::from_millis(rng.random_range(2000..7000));
        let kind = match rng.random_range(0..4) {
            0 => {
                cluster.net.partition(i);
                tokio::time::sleep(hold).await;
                cluster.net.heal(i);
                "partition a worker, then heal"
            }
            1 => {
                tokio::task::block_in_place(|| cluster.kill_worker(i));
                tokio::time::sleep(hold / 3).await;
                tokio::task::block_in_place(|| cluster.start_worker(i));
                "SIGKILL a worker, then restart it"
            }
            2 => {
                tokio::task::block_in_place(|| cluster.kill_manager());
                tokio::time::sleep(hold / 3).await;
                tokio::task::block_in_place(|| cluster.start_manager());
                "SIGKILL the manager, then restart it"
            }
            _ => {
                let applied = cluster.net.slow(i, 200, 10);
                tokio::time::sleep(hold).await;
                cluster.net.unslow(i);
                if applied.starts_with("netem") {
                    "200 ms delay and 10 % loss on a link (netem)"
                } else {
                    "200 ms delay (link relays) and 10 % loss (nftables) on a link"
                }
            }
        };
        *faults.entry(kind).or_default() += 1;
        healed = Instant::now();
    }
}

/// What the history says each task should be once converged.
struct Expected {
    /// Acknowledged submissions: (name, id).
    acked: Vec<(String, String)>,
    /// Ids whose stop was acknowledged.
    stopped: Vec<String>,
    /// Ids with a stop sent (answered or not): their fate is either.
    stop_sent: Vec<String>,
    /// Every name submitted, acknowledged or not.
    names: Vec<String>,
}

fn expected(history: &[Call]) -> Expected {
    let mut e = Expected {
        acked: Vec::new(),
        stopped: Vec::new(),
        stop_sent: Vec::new(),
        names: Vec::new(),
    };
    for call in history {
        match call {
            Call::Submit { name, id } => {
                e.names.push(name.clone());
                if let Some(id) = id {
                    e.acked.push((name.clone(), id.clone()));
                }
            }
            Call::Stop { id, acked } => {
                e.stop_sent.push(id.clone());
                if *acked {
                    e.stopped.push(id.clone());
                }
            }
        }
    }
    e
}

/// Waits for convergence, then watches it; fills the report.
async fn check(cluster: &NetCluster, history: &[Call], last_fault: Instant, report: &mut Report) {
    let e = expected(history);
    report.calls = history.len();
    report.acknowledged = e.acked.len();
    report.stops_acknowledged = e.stopped.len();
    let mut client = cluster.client().await;
    loop {
        let tasks: BTreeMap<String, pb::Task> = super::list_all(&mut client)
            .await
            .into_iter()
            .map(|t| (t.id.clone(), t))
            .collect();
        let converged = e.acked.iter().all(|(name, id)| {
            let runs = cluster.live_runs(name).len();
            let Some(task) = tasks.get(id) else {
                return false;
            };
            if e.stopped.contains(id) {
                runs == 0 && cube::task::is_finished(task.state())
            } else if e.stop_sent.contains(id) {
                runs <= 1
            } else {
                runs == 1 && task.state() == TaskState::Running
            }
        }) && e.names.iter().all(|n| cluster.live_runs(n).len() <= 1);
        if converged {
            report.convergence = Some(last_fault.elapsed());
            break;
        }
        if last_fault.elapsed() > CONVERGE_WITHIN {
            report.lost = e
                .acked
                .iter()
                .filter(|(_, id)| !tasks.contains_key(id))
                .count();
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if report.convergence.is_none() {
        report.duplicates = e
            .names
            .iter()
            .filter(|n| cluster.live_runs(n).len() > 1)
            .count();
        report.stops_not_honoured = e
            .acked
            .iter()
            .filter(|(n, id)| e.stopped.contains(id) && !cluster.live_runs(n).is_empty())
            .count();
        return;
    }
    // Converged: it stays so, with never two runs of a task and no stopped one back.
    let until = Instant::now() + WATCH_AFTER;
    while Instant::now() < until {
        let twice = e
            .names
            .iter()
            .filter(|n| cluster.live_runs(n).len() > 1)
            .count();
        report.duplicates = report.duplicates.max(twice);
        let back = e
            .acked
            .iter()
            .filter(|(n, id)| e.stopped.contains(id) && !cluster.live_runs(n).is_empty())
            .count();
        report.stops_not_honoured = report.stops_not_honoured.max(back);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
