//! Placement: which node a task goes to, and why. Pure: no I/O, no clocks, no tonic.
//!
//! A decision has three phases over a snapshot of the nodes: every node goes through the same
//! filters (alive, not draining, runtime ready, fresh stats, cpu, memory, disk, host ports,
//! constraints); the strategy scores the nodes that passed (lower is better); the lowest score
//! wins. The verdicts are kept, so `ExplainTask` can show them and a pending task can say why.

use std::collections::{BTreeMap, HashSet};

use crate::proto::pb;

mod roundrobin;

pub use roundrobin::RoundRobin;

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
    /// Every node's verdict, in the order of the snapshot.
    pub verdicts: Vec<Verdict>,
    /// For people: why that node, or why none (`0/3 nodes fit: ...`).
    pub summary: String,
}

/// A placement strategy. Implementations are pure and cheap: `place` runs once per task.
pub trait Scheduler: Send + Sync {
    /// The strategy's name, as `--scheduler` takes it.
    fn name(&self) -> &'static str;

    /// Scores an eligible node for a demand; lower is better.
    fn score(&self, demand: &Demand, node: &NodeView) -> f64;

    /// Runs the three phases and decides. `commit` is false for `ExplainTask`, which must not
    /// move stateful strategies (round-robin) forward.
    fn place(&self, demand: &Demand, nodes: &[NodeView], commit: bool) -> Decision {
        let _ = commit;
        decide(self, demand, nodes)
    }
}

/// The three phases with the lowest score winning (ties: the first node in the snapshot).
pub fn decide<S: Scheduler + ?Sized>(
    strategy: &S,
    demand: &Demand,
    nodes: &[NodeView],
) -> Decision {
    let mut verdicts: Vec<Verdict> = nodes
        .iter()
        .map(|node| {
            let filters = filter(demand, node);
            let score = filters
                .iter()
                .all(|f| f.passed)
                .then(|| strategy.score(demand, node));
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
        .filter_map(|(i, v)| v.score.map(|s| (i, s)))
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
        .map(|(i, _)| i);
    let node = best.map(|i| verdicts[i].node.clone());
    let summary = summarize(demand, nodes, &verdicts, node.as_deref());
    verdicts.shrink_to_fit();
    Decision {
        node,
        verdicts,
        summary,
    }
}

/// Runs every filter on a node, in order.
pub fn filter(demand: &Demand, node: &NodeView) -> Vec<FilterOutcome> {
    let mut out = Vec::with_capacity(9);
    let mut push = |filter: &'static str, passed: bool, reason: String| {
        out.push(FilterOutcome {
            filter,
            passed,
            reason,
        })
    };
    push(
        "alive",
        node.alive,
        if node.alive { "answering" } else { "down" }.into(),
    );
    push(
        "draining",
        !node.draining,
        if node.draining {
            "draining"
        } else {
            "not draining"
        }
        .into(),
    );
    push(
        "runtime",
        node.runtime_ready,
        if node.runtime_ready {
            "runtime ready"
        } else {
            "runtime not ready"
        }
        .into(),
    );
    push(
        "stats",
        node.stats_fresh,
        if node.stats_fresh {
            "stats fresh"
        } else {
            "stats unknown or stale"
        }
        .into(),
    );
    let free = node.free();
    let want = demand.resources;
    push(
        "cpu",
        want.cpu_millis <= free.cpu_millis,
        format!(
            "wanted {}, free {}",
            crate::task::format_cpu(want.cpu_millis),
            crate::task::format_cpu(free.cpu_millis.max(0))
        ),
    );
    push(
        "memory",
        want.memory_bytes <= free.memory_bytes,
        format!(
            "wanted {}, free {}",
            crate::task::format_bytes(want.memory_bytes),
            crate::task::format_bytes(free.memory_bytes.max(0))
        ),
    );
    push(
        "disk",
        want.disk_bytes <= free.disk_bytes,
        format!(
            "wanted {}, free {}",
            crate::task::format_bytes(want.disk_bytes),
            crate::task::format_bytes(free.disk_bytes.max(0))
        ),
    );
    let taken: Vec<String> = demand
        .host_ports
        .iter()
        .filter(|p| node.used_ports.contains(p))
        .map(|(port, _)| port.to_string())
        .collect();
    push(
        "ports",
        taken.is_empty(),
        if taken.is_empty() {
            "host ports free".into()
        } else {
            format!("host port {} in use", taken.join(", "))
        },
    );
    let missing: Vec<String> = demand
        .constraints
        .iter()
        .filter(|(k, v)| node.labels.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    push(
        "constraints",
        missing.is_empty(),
        if missing.is_empty() {
            "constraints met".into()
        } else {
            format!("constraint {} not met", missing.join(", "))
        },
    );
    out
}

/// A human summary of a decision: `placed on w1 (score 0.25)` or
/// `0/3 nodes fit: 2 insufficient cpu (wanted 500m, largest free 250m), 1 down`.
pub fn summarize(
    demand: &Demand,
    nodes: &[NodeView],
    verdicts: &[Verdict],
    picked: Option<&str>,
) -> String {
    if let Some(name) = picked {
        let score = verdicts
            .iter()
            .find(|v| v.node == name)
            .and_then(|v| v.score)
            .unwrap_or_default();
        return format!("placed on {name} (score {score:.4})");
    }
    if nodes.is_empty() {
        return "0/0 nodes fit: no nodes are known".into();
    }
    // Count each node once, by the first filter it failed.
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut order: Vec<&'static str> = Vec::new();
    for verdict in verdicts {
        if let Some(failed) = verdict.filters.iter().find(|f| !f.passed) {
            if !counts.contains_key(failed.filter) {
                order.push(failed.filter);
            }
            *counts.entry(failed.filter).or_default() += 1;
        }
    }
    let largest = |f: fn(&NodeView) -> i64| {
        nodes
            .iter()
            .filter(|n| n.alive)
            .map(f)
            .max()
            .unwrap_or(0)
            .max(0)
    };
    let parts: Vec<String> = order
        .iter()
        .map(|filter| {
            let n = counts[filter];
            match *filter {
                "alive" => format!("{n} down"),
                "draining" => format!("{n} draining"),
                "runtime" => format!("{n} runtime not ready"),
                "stats" => format!("{n} stats unknown"),
                "cpu" => format!(
                    "{n} insufficient cpu (wanted {}, largest free {})",
                    crate::task::format_cpu(demand.resources.cpu_millis),
                    crate::task::format_cpu(largest(|v| v.free().cpu_millis))
                ),
                "memory" => format!(
                    "{n} insufficient memory (wanted {}, largest free {})",
                    crate::task::format_bytes(demand.resources.memory_bytes),
                    crate::task::format_bytes(largest(|v| v.free().memory_bytes))
                ),
                "disk" => format!(
                    "{n} insufficient disk (wanted {}, largest free {})",
                    crate::task::format_bytes(demand.resources.disk_bytes),
                    crate::task::format_bytes(largest(|v| v.free().disk_bytes))
                ),
                "ports" => format!("{n} host port in use"),
                "constraints" => {
                    let wanted: Vec<String> = demand
                        .constraints
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    format!("{n} constraint {} not met", wanted.join(","))
                }
                other => format!("{n} {other}"),
            }
        })
        .collect();
    format!("0/{} nodes fit: {}", nodes.len(), parts.join(", "))
}

/// The strategies `--scheduler` accepts.
pub const STRATEGIES: &[&str] = &["roundrobin"];

/// The strategy called `name`, if there is one.
pub fn by_name(name: &str) -> Option<Box<dyn Scheduler>> {
    match name {
        "roundrobin" | "round-robin" => Some(Box::new(RoundRobin::default())),
        _ => None,
    }
}
