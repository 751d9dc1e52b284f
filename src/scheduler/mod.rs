//! Placement: which node a task goes to, and why. Pure: no I/O, no clocks, no tonic.
//!
//! A decision has three phases over a snapshot of the nodes: every node goes through the same
//! [`Filter`]s (alive, not draining, runtime ready, fresh stats, cpu, memory, disk, host ports,
//! constraints; in `filter.rs`); the strategy scores the nodes that passed (lower is better); the lowest score
//! wins. A replica of a service first goes where its service has the fewest tasks (the spread
//! term, before the strategy's score), so the replicas of one service spread across nodes. The verdicts are kept, so `ExplainTask` can show them and a pending task can say why.
//! The scheduling loop itself uses [`Scheduler::place_fast`], which makes the same choice and
//! the same summary (`summary.rs`) without building a reason for every filter on every node.
//!
//! Strategies, one file each: [`Spread`] (least allocated, the default), [`Binpack`] (most
//! allocated that fits), [`Epvm`] (opportunity cost, Amir et al.), [`RoundRobin`].

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::proto::pb;

mod binpack;
mod epvm;
mod filter;
mod roundrobin;
mod spread;
mod summary;
#[cfg(test)]
mod tests;

pub use binpack::Binpack;
pub use epvm::Epvm;
pub use filter::{filter, first_failure, Filter, FilterOutcome};
pub use roundrobin::RoundRobin;
pub use spread::Spread;
pub use summary::summarize;

use summary::{summary_of, Tally};

/// Resources in plain units, as the scheduler counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Millicores.
    pub cpu_millis: i64,
    /// Bytes of memory.
    pub memory_bytes: i64,
    /// Bytes of disk.
    pub disk_bytes: i64,
}

impl From<&pb::Resources> for Resources {
    fn from(r: &pb::Resources) -> Self {
        Self {
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            disk_bytes: r.disk_bytes,
        }
    }
}

impl From<Resources> for pb::Resources {
    fn from(r: Resources) -> Self {
        Self {
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            disk_bytes: r.disk_bytes,
        }
    }
}

impl std::ops::Add for Resources {
    type Output = Resources;
    fn add(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis + o.cpu_millis,
            memory_bytes: self.memory_bytes + o.memory_bytes,
            disk_bytes: self.disk_bytes + o.disk_bytes,
        }
    }
}

impl std::ops::Sub for Resources {
    type Output = Resources;
    fn sub(self, o: Resources) -> Resources {
        Resources {
            cpu_millis: self.cpu_millis - o.cpu_millis,
            memory_bytes: self.memory_bytes - o.memory_bytes,
            disk_bytes: self.disk_bytes - o.disk_bytes,
        }
    }
}

/// What a task asks of a node.
#[derive(Debug, Clone, Default)]
pub struct Demand {
    /// Requested resources.
    pub resources: Resources,
    /// Host ports it publishes (port, protocol); 0 ports (runtime-chosen) are not listed.
    pub host_ports: Vec<(u32, pb::Protocol)>,
    /// Labels the node must carry with these values.
    pub constraints: BTreeMap<String, String>,
    /// Whether it runs an image (else a command on the host, with the Exec runtime).
    pub image: bool,
    /// The id of the service the task is a replica of (empty: none), for the spread term.
    pub service: String,
}

impl Demand {
    /// The demand of a (validated) spec.
    pub fn of(spec: &pb::TaskSpec) -> Self {
        Self {
            resources: spec
                .resources
                .as_ref()
                .map(Resources::from)
                .unwrap_or_default(),
            host_ports: spec
                .ports
                .iter()
                .filter(|p| p.host_port != 0)
                .map(|p| (p.host_port, crate::task::protocol_of(p)))
                .collect(),
            constraints: spec
                .constraints
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            image: !spec.image.is_empty(),
            service: String::new(),
        }
    }

    /// The demand of a (validated) task: its spec's, and its service for the spread term.
    pub fn of_task(task: &pb::Task) -> Self {
        Self {
            service: task.service_id.clone(),
            ..Self::of(task.spec.as_ref().unwrap_or(&pb::TaskSpec::default()))
        }
    }

    /// The spread term on `node`: how many tasks of the demand's service are there already
    /// (`None`: the task is no service's).
    pub fn peers_on(&self, node: &NodeView) -> Option<u32> {
        (!self.service.is_empty())
            .then(|| node.service_tasks.get(&self.service).copied().unwrap_or(0))
    }
}

/// A node as the scheduler sees it at the moment of a decision.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    /// The node's name.
    pub name: String,
    /// Whether the node answers (heartbeats or polls).
    pub alive: bool,
    /// Whether the node is draining (no new tasks).
    pub draining: bool,
    /// Whether its runtime (Docker) answers.
    pub runtime_ready: bool,
    /// Its store refuses writes (a full disk): it would refuse to start a task.
    pub store_read_only: bool,
    /// Whether its stats are known and recent.
    pub stats_fresh: bool,
    /// Whether its runtime runs images (Docker) or commands on the host (Exec); `None` when
    /// the worker did not say.
    pub runs_images: Option<bool>,
    /// What it offers.
    pub capacity: Resources,
    /// The sum of the requests of its unfinished tasks.
    pub allocated: Resources,
    /// Its cpu load, 0.0 to 1.0 (from its stats).
    pub cpu_load: f64,
    /// Host ports taken by its unfinished tasks.
    pub used_ports: HashSet<(u32, pb::Protocol)>,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its unfinished tasks.
    pub task_count: u32,
    /// How many of its unfinished tasks each service has, by service id.
    pub service_tasks: HashMap<String, u32>,
}

impl NodeView {
    /// What is left: capacity minus allocated.
    pub fn free(&self) -> Resources {
        self.capacity - self.allocated
    }
}

/// Every filter's verdict on one node, and its score if it passed them all.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The node.
    pub node: String,
    /// The filters in the order they ran.
    pub filters: Vec<FilterOutcome>,
    /// The strategy's score (lower is better); `None` when a filter failed.
    pub score: Option<f64>,
    /// The spread term, ranked before the score: the tasks of the task's service already on
    /// the node (`None`: the task is no service's).
    pub service_peers: Option<u32>,
}

impl Verdict {
    /// Whether every filter passed.
    pub fn eligible(&self) -> bool {
        self.filters.iter().all(|f| f.passed)
    }
}

/// The outcome of placing one task.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The chosen node, if any fits.
    pub node: Option<String>,
    /// Every node's verdict, in the order of the snapshot; empty from
    /// [`Scheduler::place_fast`], which builds none.
    pub verdicts: Vec<Verdict>,
    /// For people: why that node, or why none (`0/3 nodes fit: ...`).
    pub summary: String,
}

/// A placement strategy. Implementations are pure and cheap: `place` runs once per task.
///
/// Two ways to decide, with the same pick and the same summary:
/// - [`Scheduler::place`] keeps every node's [`Verdict`] with a reason per filter, for
///   `ExplainTask` and for a person reading why a task is pending;
/// - [`Scheduler::place_fast`] builds no reasons and leaves [`Decision::verdicts`] empty. It
///   allocates nothing per node, so the manager's scheduling pass stays well under a millisecond
///   over 1,000 nodes (see `bench/scheduler.rs`); building a reason string for each of nine
///   filters on every node costs more than the scoring itself.
pub trait Scheduler: Send + Sync {
    /// The strategy's name, as `--scheduler` takes it.
    fn name(&self) -> &'static str;

    /// Scores an eligible node for a demand; lower is better.
    fn score(&self, demand: &Demand, node: &NodeView) -> f64;

    /// Orders nodes whose scores are equal; lower is better, and the first node in the
    /// snapshot wins what is still tied. Tasks that request no resources score the same on
    /// every node, so without this they would all land on the first one.
    fn tie_break(&self, node: &NodeView) -> u32 {
        let _ = node;
        0
    }

    /// Runs the three phases and decides. `commit` is false for `ExplainTask`, which must not
    /// move stateful strategies (round-robin) forward.
    fn place(&self, demand: &Demand, nodes: &[NodeView], commit: bool) -> Decision {
        let _ = commit;
        decide(self, demand, nodes)
    }

    /// Like [`Scheduler::place`], with the same `node` and `summary`, but `verdicts` is left
    /// empty: the hot path for the scheduling loop. Use `place` when the verdicts are shown.
    fn place_fast(&self, demand: &Demand, nodes: &[NodeView], commit: bool) -> Decision {
        let _ = commit;
        decide_fast(self, demand, nodes)
    }
}

/// A score the comparison can trust: NaN (a strategy's arithmetic gone wrong) ranks last
/// instead of wherever `total_cmp` would put its sign.
fn sane(score: f64) -> f64 {
    if score.is_nan() {
        f64::INFINITY
    } else {
        score
    }
}

/// The three phases with the lowest score winning (ties: the lowest [`Scheduler::tie_break`],
/// then the first node in the snapshot).
pub fn decide<S: Scheduler + ?Sized>(
    strategy: &S,
    demand: &Demand,
    nodes: &[NodeView],
) -> Decision {
    let verdicts: Vec<Verdict> = nodes
        .iter()
        .map(|node| {
            let filters = filter(demand, node);
            let score = filters
                .iter()
                .all(|f| f.passed)
                .then(|| sane(strategy.score(demand, node)));
            Verdict {
                node: node.name.clone(),
                filters,
                score,
                service_peers: demand.peers_on(node),
            }
        })
        .collect();
    let best = verdicts
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let peers = v.service_peers.unwrap_or(0);
            v.score
                .map(|s| (i, (peers, s, strategy.tie_break(&nodes[i]))))
        })
        .min_by(|a, b| rank(a.1, b.1).then(a.0.cmp(&b.0)))
        .map(|(i, _)| i);
    let node = best.map(|i| verdicts[i].node.clone());
    let summary = summarize(demand, nodes, &verdicts, node.as_deref());
    Decision {
        node,
        verdicts,
        summary,
    }
}

/// Orders (spread term, score, tie break) keys: the fewest tasks of the same service first,
/// then the score, then the tie break.
fn rank(a: (u32, f64, u32), b: (u32, f64, u32)) -> std::cmp::Ordering {
    a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2))
}

/// [`decide`] without verdicts: one pass, no allocation per node. Same pick, same summary.
pub fn decide_fast<S: Scheduler + ?Sized>(
    strategy: &S,
    demand: &Demand,
    nodes: &[NodeView],
) -> Decision {
    let mut tally = Tally::default();
    let mut best: Option<(usize, (u32, f64, u32))> = None;
    for (i, node) in nodes.iter().enumerate() {
        match first_failure(demand, node) {
            Some(f) => tally.add(f),
            None => {
                let key = (
                    demand.peers_on(node).unwrap_or(0),
                    sane(strategy.score(demand, node)),
                    strategy.tie_break(node),
                );
                // Strictly lower only: full ties keep the first node, as `decide` does.
                if best.is_none_or(|(_, b)| rank(key, b).is_lt()) {
                    best = Some((i, key));
                }
            }
        }
    }
    let picked = best.map(|(i, (_, score, _))| (nodes[i].name.as_str(), score));
    Decision {
        node: picked.map(|(name, _)| name.to_owned()),
        verdicts: Vec::new(),
        summary: summary_of(demand, nodes, &tally, picked),
    }
}

/// Used over capacity, as a fraction (1.0 = full). A resource a node does not offer at all
/// counts as full when anything of it is used, and as empty otherwise.
pub(crate) fn fraction(used: i64, capacity: i64) -> f64 {
    if capacity > 0 {
        used as f64 / capacity as f64
    } else if used > 0 {
        1.0
    } else {
        0.0
    }
}

/// How full a node would be with the demand placed: the larger of its cpu and memory
/// allocation fractions. Spread minimises it, binpack maximises it.
pub(crate) fn fullness_after(demand: &Demand, node: &NodeView) -> f64 {
    let after = node.allocated + demand.resources;
    fraction(after.cpu_millis, node.capacity.cpu_millis)
        .max(fraction(after.memory_bytes, node.capacity.memory_bytes))
}

/// The strategies `--scheduler` accepts ([`DEFAULT_STRATEGY`] is the default).
pub const STRATEGIES: &[&str] = &["roundrobin", "spread", "binpack", "epvm"];

/// The strategy `--scheduler` uses when none is given.
pub const DEFAULT_STRATEGY: &str = "spread";

/// The strategy called `name`, if there is one.
pub fn by_name(name: &str) -> Option<Box<dyn Scheduler>> {
    match name {
        "roundrobin" | "round-robin" => Some(Box::new(RoundRobin::default())),
        "spread" => Some(Box::new(Spread)),
        "binpack" => Some(Box::new(Binpack)),
        "epvm" | "e-pvm" => Some(Box::new(Epvm::default())),
        _ => None,
    }
}
