//! The filters every node goes through before it is scored: one enum, and for each filter its
//! name, its check, its reason on one node and its line in a pending task's summary.

use std::fmt;

use crate::units::{format_bytes, format_cpu};

use super::{Demand, NodeView};

/// A check a node must pass to take a task. The variants are listed in the order the filters
/// run; a node that fails several is counted in a summary by the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Filter {
    /// The node answers (heartbeats or polls).
    Alive,
    /// The node is not draining.
    NotDraining,
    /// Its runtime (Docker) answers.
    RuntimeReady,
    /// Its store takes writes: a worker that cannot record a task refuses to start it.
    StoreWritable,
    /// Its runtime runs what the task is: an image (Docker), or a command on the host (Exec).
    Image,
    /// Its stats are known and recent.
    StatsFresh,
    /// Enough free cpu.
    Cpu,
    /// Enough free memory.
    Memory,
    /// Enough free disk.
    Disk,
    /// The host ports the task publishes are free.
    Ports,
    /// The node carries every label the task's constraints ask for.
    Constraints,
}

impl Filter {
    /// Every filter, in the order they run.
    pub const ALL: [Filter; 11] = [
        Filter::Alive,
        Filter::NotDraining,
        Filter::RuntimeReady,
        Filter::StoreWritable,
        Filter::Image,
        Filter::StatsFresh,
        Filter::Cpu,
        Filter::Memory,
        Filter::Disk,
        Filter::Ports,
        Filter::Constraints,
    ];

    /// The filter's name in `ExplainTask` (`FilterResult.filter`): `alive`, `draining`,
    /// `runtime`, `store`, `image`, `stats`, `cpu`, `memory`, `disk`, `ports`, `constraints`.
    pub fn name(self) -> &'static str {
        match self {
            Filter::Alive => "alive",
            Filter::NotDraining => "draining",
            Filter::RuntimeReady => "runtime",
            Filter::StoreWritable => "store",
            Filter::Image => "image",
            Filter::StatsFresh => "stats",
            Filter::Cpu => "cpu",
            Filter::Memory => "memory",
            Filter::Disk => "disk",
            Filter::Ports => "ports",
            Filter::Constraints => "constraints",
        }
    }

    /// Whether the filter counts resources (the ones a smaller task could pass).
    pub fn is_resource(self) -> bool {
        matches!(self, Filter::Cpu | Filter::Memory | Filter::Disk)
    }

    /// Whether `node` passes: the one place each check lives, for [`filter`] (with reasons)
    /// and [`first_failure`] (without).
    pub fn check(self, demand: &Demand, node: &NodeView) -> bool {
        let want = &demand.resources;
        match self {
            Filter::Alive => node.alive,
            Filter::NotDraining => !node.draining,
            Filter::RuntimeReady => node.runtime_ready,
            Filter::StoreWritable => !node.store_read_only,
            Filter::Image => node.runs_images.is_none_or(|images| images == demand.image),
            Filter::StatsFresh => node.stats_fresh,
            Filter::Cpu => want.cpu_millis <= node.free().cpu_millis,
            Filter::Memory => want.memory_bytes <= node.free().memory_bytes,
            Filter::Disk => want.disk_bytes <= node.free().disk_bytes,
            Filter::Ports => demand
                .host_ports
                .iter()
                .all(|p| !node.used_ports.contains(p)),
            Filter::Constraints => demand
                .constraints
                .iter()
                .all(|(k, v)| node.labels.get(k) == Some(v)),
        }
    }

    /// What was checked on `node`, or why it failed, for a person: `down`,
    /// `wanted 500m, free 250m`, `host port 8080 in use`.
    pub fn reason(self, demand: &Demand, node: &NodeView, passed: bool) -> String {
        let want = demand.resources;
        let free = node.free();
        let cpu = |m: i64| format_cpu(m.max(0));
        let bytes = |b: i64| format_bytes(b.max(0));
        let plain = |yes: &str, no: &str| if passed { yes } else { no }.to_string();
        match self {
            Filter::Alive => plain("answering", "down"),
            Filter::NotDraining => plain("not draining", "draining"),
            Filter::RuntimeReady => plain("runtime ready", "runtime not ready"),
            Filter::StoreWritable => plain("store writable", "store read-only"),
            Filter::Image => match (node.runs_images, demand.image) {
                (None, _) => "runtime unknown".into(),
                (Some(true), true) => "runs images".into(),
                (Some(false), false) => "runs commands on the host".into(),
                (Some(false), true) => "runs no images (exec runtime)".into(),
                (Some(true), false) => "needs an image (docker runtime)".into(),
            },
            Filter::StatsFresh => plain("stats fresh", "stats unknown or stale"),
            Filter::Cpu => format!(
                "wanted {}, free {}",
                cpu(want.cpu_millis),
                cpu(free.cpu_millis)
            ),
            Filter::Memory => format!(
                "wanted {}, free {}",
                bytes(want.memory_bytes),
                bytes(free.memory_bytes)
            ),
            Filter::Disk => format!(
                "wanted {}, free {}",
                bytes(want.disk_bytes),
                bytes(free.disk_bytes)
            ),
            Filter::Ports if passed => "host ports free".into(),
            Filter::Ports => {
                let taken: Vec<String> = demand
                    .host_ports
                    .iter()
                    .filter(|p| node.used_ports.contains(p))
                    .map(|(port, _)| port.to_string())
                    .collect();
                format!("host port {} in use", taken.join(", "))
            }
            Filter::Constraints if passed => "constraints met".into(),
            Filter::Constraints => {
                let missing: Vec<String> = demand
                    .constraints
                    .iter()
                    .filter(|(k, v)| node.labels.get(*k) != Some(*v))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!("constraint {} not met", missing.join(", "))
            }
        }
    }

    /// The summary's words for `count` nodes that failed this filter first: `2 down`,
    /// `1 insufficient cpu (wanted 500m, largest free 250m)`. "Largest free" is taken over the
    /// nodes that pass every filter but the resource ones, so it says what the task would have
    /// to shrink to.
    pub fn summary(self, count: usize, demand: &Demand, nodes: &[NodeView]) -> String {
        let n = count;
        let want = demand.resources;
        let could_fit = |node: &&NodeView| {
            Filter::ALL
                .iter()
                .filter(|f| !f.is_resource())
                .all(|f| f.check(demand, node))
        };
        let largest = |free: fn(&NodeView) -> i64| {
            nodes
                .iter()
                .filter(could_fit)
                .map(free)
                .max()
                .unwrap_or(0)
                .max(0)
        };
        match self {
            Filter::Alive => format!("{n} down"),
            Filter::NotDraining => format!("{n} draining"),
            Filter::RuntimeReady => format!("{n} runtime not ready"),
            Filter::StoreWritable => format!("{n} store read-only"),
            Filter::Image if demand.image => format!("{n} run no images (exec runtime)"),
            Filter::Image => format!("{n} need an image (docker runtime)"),
            Filter::StatsFresh => format!("{n} stats unknown"),
            Filter::Cpu => format!(
                "{n} insufficient cpu (wanted {}, largest free {})",
                format_cpu(want.cpu_millis),
                format_cpu(largest(|v| v.free().cpu_millis))
            ),
            Filter::Memory => format!(
                "{n} insufficient memory (wanted {}, largest free {})",
                format_bytes(want.memory_bytes),
                format_bytes(largest(|v| v.free().memory_bytes))
            ),
            Filter::Disk => format!(
                "{n} insufficient disk (wanted {}, largest free {})",
                format_bytes(want.disk_bytes),
                format_bytes(largest(|v| v.free().disk_bytes))
            ),
            Filter::Ports => {
                let ports: Vec<String> = demand
                    .host_ports
                    .iter()
                    .map(|(p, _)| p.to_string())
                    .collect();
                format!("{n} host port {} in use", ports.join(","))
            }
            Filter::Constraints => {
                let wanted: Vec<String> = demand
                    .constraints
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!("{n} constraint {} not met", wanted.join(","))
            }
        }
    }

    /// The filter's place in [`Filter::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One filter's verdict on one node.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterOutcome {
    /// The filter.
    pub filter: Filter,
    /// Whether the node passed.
    pub passed: bool,
    /// What was checked, or why it failed.
    pub reason: String,
}

/// Runs every filter on a node, in order, with a reason a person can read.
pub fn filter(demand: &Demand, node: &NodeView) -> Vec<FilterOutcome> {
    Filter::ALL
        .iter()
        .map(|&filter| {
            let passed = filter.check(demand, node);
            FilterOutcome {
                filter,
                passed,
                reason: filter.reason(demand, node, passed),
            }
        })
        .collect()
}

/// The first filter `node` fails, or `None` when it may take the task. Same checks as
/// [`filter`], without building reasons (allocation-free).
pub fn first_failure(demand: &Demand, node: &NodeView) -> Option<Filter> {
    Filter::ALL.into_iter().find(|f| !f.check(demand, node))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_filter_at_its_index() {
        for (i, filter) in Filter::ALL.iter().enumerate() {
            assert_eq!(filter.index(), i, "{filter}");
        }
        let names: Vec<_> = Filter::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "alive",
                "draining",
                "runtime",
                "store",
                "image",
                "stats",
                "cpu",
                "memory",
                "disk",
                "ports",
                "constraints"
            ]
        );
    }

    #[test]
    fn a_node_that_cannot_answer_fails_first_by_alive() {
        let node = NodeView {
            name: "a".into(),
            draining: true,
            ..Default::default()
        };
        let demand = Demand::default();
        assert_eq!(first_failure(&demand, &node), Some(Filter::Alive));
        let outcomes = filter(&demand, &node);
        assert_eq!(outcomes[0].reason, "down");
        assert_eq!(outcomes[1].reason, "draining");
        assert_eq!(
            Filter::NotDraining.summary(2, &demand, &[node]),
            "2 draining"
        );
    }
}
