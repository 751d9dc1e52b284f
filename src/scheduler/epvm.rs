//! E-PVM: the opportunity-cost strategy of Amir, Awerbuch, Barak, Borgstrom and Keren, "An
//! Opportunity Cost Approach for Job Assignment in a Scalable Computing Cluster" (IEEE TPDS
//! 11(7), 2000).
//!
//! Each resource of a node costs `a^u` at utilisation `u` (0 empty, 1 full). The cost is convex:
//! the last quarter of a node costs far more than the first, so a task goes where it adds the
//! least cost, which weighs memory against cpu on one scale. A task's score on a node is its
//! marginal cost there:
//!
//! ```text
//! (a^(mem_after) - a^(mem_now)) + (a^(load + cpu/capacity) - a^(load))
//! ```
//!
//! - `mem_now` is the node's allocated memory over its capacity, `mem_after` adds the task's
//!   request;
//! - `load` is the node's measured cpu load (`NodeView::cpu_load`, clamped to 0..1) and the
//!   task adds its cpu request over the node's cpu capacity. Because the two cpu powers start
//!   from the real load, a busier node pays more for the same request (`a^x` grows faster at
//!   larger `x`); the seed's version added and subtracted the same load term, so its cpu cost
//!   never depended on the load at all.
//!
//! The base `a`: the paper takes it from the size of the cluster (the number of machines `n`),
//! which is what gives its O(log n) competitive bound: a full machine then costs `n` times an
//! empty one, so crowding one node is never cheaper than using the others. Cube uses
//! `a = max(n, 2)` with `n` the nodes in the snapshot (`2` keeps the cost increasing for one
//! node), unless a fixed base is given with [`Epvm::with_base`].

use super::{decide, decide_fast, fraction, Decision, Demand, NodeView, Scheduler};

/// The smallest base: `a^u` must grow with `u`, and with fewer than two nodes there is no
/// choice to weigh anyway.
const MIN_BASE: f64 = 2.0;

/// The E-PVM opportunity-cost strategy.
#[derive(Debug, Default, Clone, Copy)]
pub struct Epvm {
    /// A fixed base; `None` takes it from the number of nodes at each decision.
    base: Option<f64>,
}

impl Epvm {
    /// E-PVM with a fixed base instead of the cluster size (at least 2).
    pub fn with_base(base: f64) -> Self {
        Self {
            base: Some(base.max(MIN_BASE)),
        }
    }

    /// The base for a decision over `nodes` nodes.
    pub fn base_for(&self, nodes: usize) -> f64 {
        self.base.unwrap_or((nodes as f64).max(MIN_BASE))
    }

    /// This strategy with the base fixed for a snapshot of `nodes` nodes.
    fn for_cluster(&self, nodes: usize) -> Self {
        Self {
            base: Some(self.base_for(nodes)),
        }
    }
}

impl Scheduler for Epvm {
    fn name(&self) -> &'static str {
        "epvm"
    }

    /// The marginal cost of the task on the node (see the module doc). Without a fixed base
    /// and outside a decision the cluster size is unknown, so the base is 2.
    fn score(&self, demand: &Demand, node: &NodeView) -> f64 {
        // a^u as e^(u ln a): one logarithm per node instead of one per power.
        let ln_a = self.base_for(0).ln();
        let pow = |u: f64| (u * ln_a).exp();
        let want = demand.resources;
        let mem_now = fraction(node.allocated.memory_bytes, node.capacity.memory_bytes);
        let mem_after = fraction(
            node.allocated.memory_bytes + want.memory_bytes,
            node.capacity.memory_bytes,
        );
        let load = if node.cpu_load.is_finite() {
            node.cpu_load.clamp(0.0, 1.0)
        } else {
            // Unknown load is assumed to be full rather than idle.
            1.0
        };
        let load_after = load + fraction(want.cpu_millis, node.capacity.cpu_millis);
        (pow(mem_after) - pow(mem_now)) + (pow(load_after) - pow(load))
    }

    fn place(&self, demand: &Demand, nodes: &[NodeView], _commit: bool) -> Decision {
        decide(&self.for_cluster(nodes.len()), demand, nodes)
    }

    fn place_fast(&self, demand: &Demand, nodes: &[NodeView], _commit: bool) -> Decision {
        decide_fast(&self.for_cluster(nodes.len()), demand, nodes)
    }
}
