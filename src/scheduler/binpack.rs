//! Binpack: the most allocated node that still fits wins, so tasks fill nodes one after the
//! other and whole nodes stay free for large tasks (or can be turned off).

use super::{fullness_after, Demand, NodeView, Scheduler};

/// Most allocated first, among the nodes that fit.
#[derive(Debug, Default, Clone, Copy)]
pub struct Binpack;

impl Scheduler for Binpack {
    fn name(&self) -> &'static str {
        "binpack"
    }

    /// One minus the fullness spread uses (the larger of the cpu and memory allocation
    /// fractions once the task is placed): the fuller the node ends up, the lower (better) the
    /// score. 0 means the task fills the node exactly.
    fn score(&self, demand: &Demand, node: &NodeView) -> f64 {
        1.0 - fullness_after(demand, node)
    }

    /// Equal fullness (tasks that request nothing): the node with the most tasks, so they
    /// are packed too.
    fn tie_break(&self, node: &NodeView) -> u32 {
        u32::MAX - node.task_count
    }
}
