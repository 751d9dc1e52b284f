//! Spread: the least allocated node wins, so load is shared and one node's failure takes down
//! as few tasks as possible. Cube's default strategy.

use super::{fullness_after, Demand, NodeView, Scheduler};

/// Least allocated first.
#[derive(Debug, Default, Clone, Copy)]
pub struct Spread;

impl Scheduler for Spread {
    fn name(&self) -> &'static str {
        "spread"
    }

    /// The larger of the cpu and memory allocation fractions once the task is placed: the
    /// emptier the node stays in its scarcest resource, the lower (better) the score.
    fn score(&self, demand: &Demand, node: &NodeView) -> f64 {
        fullness_after(demand, node)
    }

    /// Equal fullness (tasks that request nothing): the node with the fewest tasks, as
    /// Swarm's spread counts them.
    fn tie_break(&self, node: &NodeView) -> u32 {
        node.task_count
    }
}
