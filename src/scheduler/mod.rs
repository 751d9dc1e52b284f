//! Placement: which node a task goes to, and why. Pure: no I/O, no clocks, no tonic.
//!
//! A decision has three phases over a snapshot of the nodes: every node goes through the same
//! filters (alive, not draining, runtime ready, fresh stats, cpu, memory, disk, host ports,
//! constraints); the strategy scores the nodes that passed (lower is better); the lowest score
//! wins. The verdicts are kept, so `ExplainTask` can show them and a pending task can say why.
//! The scheduling loop itself uses [`Scheduler::place_fast`], which makes the same choice and
//! the same summary without building a reason for every filter on every node.
//!
//! Strategies, one file each: [`Spread`] (least allocated, the default), [`Binpack`] (most
//! allocated that fits), [`Epvm`] (opportunity cost, Amir et al.), [`RoundRobin`].

use std::collections::{BTreeMap, HashSet};

use crate::proto::pb;

mod binpack;
mod epvm;
mod roundrobin;
mod spread;
#[cfg(test)]
mod tests;

pub use binpack::Binpack;
pub use epvm::Epvm;
pub use roundrobin::RoundRobin;
pub use spread::Spread;

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
        }
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
    /// Whether its stats are known and recent.
    pub stats_fresh: bool,
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
}

impl NodeView {
    /// What is left: capacity minus allocated.
    pub fn free(&self) -> Resources {
        self.capacity - self.allocated
    }
}

/// One filter's verdict on one node.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterOutcome {
    /// The filter: "alive", "draining", "runtime", "stats", "cpu", "memory", "disk", "ports",
    /// "constraints".
    pub filter: &'static str,
    /// Whether the node passed.
    pub passed: bool,
    /// What was checked, or why it failed.
    pub reason: String,
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

/// The filters, in the order they run; [`FilterOutcome::filter`] is one of these names. A node
/// is counted in a summary by the first one it fails.
pub const FILTERS: [&str; 9] = [
    "alive",
    "draining",
    "runtime",
    "stats",
    "cpu",
    "memory",
    "disk",
    "ports",
    "constraints",
];

/// Whether `node` passes the filter at index `i` of [`FILTERS`]: the one place the checks
/// live, shared by [`filter`] (with reasons) and [`first_failure`] (without).
fn passes(i: usize, demand: &Demand, node: &NodeView) -> bool {
    let want = &demand.resources;
    let free = || node.free();
    match i {
        0 => node.alive,
        1 => !node.draining,
        2 => node.runtime_ready,
        3 => node.stats_fresh,
        4 => want.cpu_millis <= free().cpu_millis,
        5 => want.memory_bytes <= free().memory_bytes,
        6 => want.disk_bytes <= free().disk_bytes,
        7 => demand
            .host_ports
            .iter()
            .all(|p| !node.used_ports.contains(p)),
        8 => demand
            .constraints
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v)),
        _ => unreachable!("there are {} filters", FILTERS.len()),
    }
}

/// The index in [`FILTERS`] of the first filter `node` fails, if any.
fn first_failed(demand: &Demand, node: &NodeView) -> Option<usize> {
    (0..FILTERS.len()).find(|&i| !passes(i, demand, node))
}

/// The first filter `node` fails, or `None` when it may take the task. Same checks as
/// [`filter`], without building reasons (allocation-free).
pub fn first_failure(demand: &Demand, node: &NodeView) -> Option<&'static str> {
    first_failed(demand, node).map(|i| FILTERS[i])
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
            }
        })
        .collect();
    let best = verdicts
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.score.map(|s| (i, (s, strategy.tie_break(&nodes[i])))))
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

/// Orders (score, tie break) keys: the score first, then the tie break.
fn rank(a: (f64, u32), b: (f64, u32)) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

/// [`decide`] without verdicts: one pass, no allocation per node. Same pick, same summary.
pub fn decide_fast<S: Scheduler + ?Sized>(
    strategy: &S,
    demand: &Demand,
    nodes: &[NodeView],
) -> Decision {
    let mut tally = Tally::default();
    let mut best: Option<(usize, (f64, u32))> = None;
    for (i, node) in nodes.iter().enumerate() {
        match first_failed(demand, node) {
            Some(f) => tally.add(f),
            None => {
                let key = (sane(strategy.score(demand, node)), strategy.tie_break(node));
                // Strictly lower only: full ties keep the first node, as `decide` does.
                if best.is_none_or(|(_, b)| rank(key, b).is_lt()) {
                    best = Some((i, key));
                }
            }
        }
    }
    let picked = best.map(|(i, (score, _))| (nodes[i].name.as_str(), score));
    Decision {
        node: picked.map(|(name, _)| name.to_owned()),
        verdicts: Vec::new(),
        summary: summary_of(demand, nodes, &tally, picked),
    }
}

/// How many nodes failed each filter first, and in which order the filters first failed (so a
/// summary reads in the order of the snapshot).
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    counts: [usize; FILTERS.len()],
    first_seen: [usize; FILTERS.len()],
    seen: usize,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            counts: [0; FILTERS.len()],
            first_seen: [usize::MAX; FILTERS.len()],
            seen: 0,
        }
    }
}

impl Tally {
    /// Counts one node that failed filter `i` first.
    pub(crate) fn add(&mut self, i: usize) {
        if self.counts[i] == 0 {
            self.first_seen[i] = self.seen;
            self.seen += 1;
        }
        self.counts[i] += 1;
    }

    /// (filter index, nodes) in the order the filters first failed.
    fn ordered(&self) -> Vec<(usize, usize)> {
        let mut out: Vec<(usize, usize)> = (0..FILTERS.len())
            .filter(|&i| self.counts[i] > 0)
            .map(|i| (i, self.counts[i]))
            .collect();
        out.sort_by_key(|&(i, _)| self.first_seen[i]);
        out
    }
}

/// Runs every filter on a node, in order, with a reason a person can read.
pub fn filter(demand: &Demand, node: &NodeView) -> Vec<FilterOutcome> {
    let free = node.free();
    let want = demand.resources;
    let cpu = |m: i64| crate::units::format_cpu(m.max(0));
    let bytes = |b: i64| crate::units::format_bytes(b.max(0));
    FILTERS
        .iter()
        .enumerate()
        .map(|(i, &name)| {
            let passed = passes(i, demand, node);
            let reason: String = match (i, passed) {
                (0, true) => "answering".into(),
                (0, false) => "down".into(),
                (1, true) => "not draining".into(),
                (1, false) => "draining".into(),
                (2, true) => "runtime ready".into(),
                (2, false) => "runtime not ready".into(),
                (3, true) => "stats fresh".into(),
                (3, false) => "stats unknown or stale".into(),
                (4, _) => format!(
                    "wanted {}, free {}",
                    cpu(want.cpu_millis),
                    cpu(free.cpu_millis)
                ),
                (5, _) => format!(
                    "wanted {}, free {}",
                    bytes(want.memory_bytes),
                    bytes(free.memory_bytes)
                ),
                (6, _) => format!(
                    "wanted {}, free {}",
                    bytes(want.disk_bytes),
                    bytes(free.disk_bytes)
                ),
                (7, true) => "host ports free".into(),
                (7, false) => {
                    let taken: Vec<String> = demand
                        .host_ports
                        .iter()
                        .filter(|p| node.used_ports.contains(p))
                        .map(|(port, _)| port.to_string())
                        .collect();
                    format!("host port {} in use", taken.join(", "))
                }
                (8, true) => "constraints met".into(),
                (8, false) => {
                    let missing: Vec<String> = demand
                        .constraints
                        .iter()
                        .filter(|(k, v)| node.labels.get(*k) != Some(*v))
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    format!("constraint {} not met", missing.join(", "))
                }
                _ => unreachable!("there are {} filters", FILTERS.len()),
            };
            FilterOutcome {
                filter: name,
                passed,
                reason,
            }
        })
        .collect()
}

/// A human summary of a decision: `placed on w1 (score 0.2500)` or
/// `0/3 nodes fit: 2 insufficient cpu (wanted 500m, largest free 250m), 1 down`.
///
/// Each node that does not fit is counted once, by the first filter it failed; the groups are
/// listed in the order they first appear in the snapshot. "Largest free" is taken over the
/// nodes that pass every filter but the resource ones (alive, not draining, runtime ready,
/// fresh stats, ports free, constraints met), so it says what the task would have to shrink to.
pub fn summarize(
    demand: &Demand,
    nodes: &[NodeView],
    verdicts: &[Verdict],
    picked: Option<&str>,
) -> String {
    let mut tally = Tally::default();
    for verdict in verdicts {
        if let Some(failed) = verdict.filters.iter().find(|f| !f.passed) {
            if let Some(i) = FILTERS.iter().position(|&f| f == failed.filter) {
                tally.add(i);
            }
        }
    }
    let picked = picked.map(|name| {
        let score = verdicts
            .iter()
            .find(|v| v.node == name)
            .and_then(|v| v.score)
            .unwrap_or_default();
        (name, score)
    });
    summary_of(demand, nodes, &tally, picked)
}

/// The summary from a tally of first failures and the pick with its score.
fn summary_of(
    demand: &Demand,
    nodes: &[NodeView],
    tally: &Tally,
    picked: Option<(&str, f64)>,
) -> String {
    if let Some((name, score)) = picked {
        return format!("placed on {name} (score {score:.4})");
    }
    if nodes.is_empty() {
        return "0/0 nodes fit: no nodes are known".into();
    }
    // Every filter but cpu, memory and disk (indices 4 to 6).
    let could_fit = |n: &&NodeView| [0, 1, 2, 3, 7, 8].iter().all(|&i| passes(i, demand, n));
    let largest = |f: fn(&NodeView) -> i64| {
        nodes
            .iter()
            .filter(could_fit)
            .map(f)
            .max()
            .unwrap_or(0)
            .max(0)
    };
    let want = demand.resources;
    let parts: Vec<String> = tally
        .ordered()
        .into_iter()
        .map(|(i, n)| match FILTERS[i] {
            "alive" => format!("{n} down"),
            "draining" => format!("{n} draining"),
            "runtime" => format!("{n} runtime not ready"),
            "stats" => format!("{n} stats unknown"),
            "cpu" => format!(
                "{n} insufficient cpu (wanted {}, largest free {})",
                crate::units::format_cpu(want.cpu_millis),
                crate::units::format_cpu(largest(|v| v.free().cpu_millis))
            ),
            "memory" => format!(
                "{n} insufficient memory (wanted {}, largest free {})",
                crate::units::format_bytes(want.memory_bytes),
                crate::units::format_bytes(largest(|v| v.free().memory_bytes))
            ),
            "disk" => format!(
                "{n} insufficient disk (wanted {}, largest free {})",
                crate::units::format_bytes(want.disk_bytes),
                crate::units::format_bytes(largest(|v| v.free().disk_bytes))
            ),
            "ports" => {
                let ports: Vec<String> = demand
                    .host_ports
                    .iter()
                    .map(|(p, _)| p.to_string())
                    .collect();
                format!("{n} host port {} in use", ports.join(","))
            }
            "constraints" => {
                let wanted: Vec<String> = demand
                    .constraints
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!("{n} constraint {} not met", wanted.join(","))
            }
            other => format!("{n} {other}"),
        })
        .collect();
    format!("0/{} nodes fit: {}", nodes.len(), parts.join(", "))
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
