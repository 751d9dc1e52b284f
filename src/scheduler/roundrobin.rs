//! Round-robin: the seed's strategy. Each placement takes the next eligible node after the one
//! picked last, in the snapshot's (name) order; the first task goes to the first node.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{decide, decide_fast, first_failure, Decision, Demand, NodeView, Scheduler};

/// Round-robin over the eligible nodes.
#[derive(Debug, Default)]
pub struct RoundRobin {
    /// How many placements were committed; the next one starts its turn there.
    turn: AtomicUsize,
}

impl Scheduler for RoundRobin {
    fn name(&self) -> &'static str {
        "roundrobin"
    }

    /// Not used to rank (the turn decides), but reported: 0 for every eligible node.
    fn score(&self, _demand: &Demand, _node: &NodeView) -> f64 {
        0.0
    }

    fn place(&self, demand: &Demand, nodes: &[NodeView], commit: bool) -> Decision {
        let mut decision = decide(self, demand, nodes);
        if decision.node.is_none() {
            return decision;
        }
        let Some(pick) = self.take_turn(
            nodes.len(),
            |i| decision.verdicts[i].score.is_some(),
            commit,
        ) else {
            return decision; // decide found an eligible node, so this is not reached
        };
        decision.node = Some(nodes[pick].name.clone());
        decision.summary = Self::summary(&nodes[pick]);
        decision
    }

    fn place_fast(&self, demand: &Demand, nodes: &[NodeView], commit: bool) -> Decision {
        let eligible = |i: usize| first_failure(demand, &nodes[i]).is_none();
        match self.take_turn(nodes.len(), eligible, commit) {
            Some(pick) => Decision {
                node: Some(nodes[pick].name.clone()),
                verdicts: Vec::new(),
                summary: Self::summary(&nodes[pick]),
            },
            // No node fits: the generic pass counts why.
            None => decide_fast(self, demand, nodes),
        }
    }
}

impl RoundRobin {
    /// The first eligible node from this turn on, wrapping around; moves the turn past it when
    /// `commit`.
    fn take_turn(&self, n: usize, eligible: impl Fn(usize) -> bool, commit: bool) -> Option<usize> {
        let turn = self.turn.load(Ordering::Relaxed);
        let pick = (0..n).map(|k| (turn + k) % n).find(|&i| eligible(i))?;
        if commit {
            self.turn.store(pick + 1, Ordering::Relaxed);
        }
        Some(pick)
    }

    fn summary(node: &NodeView) -> String {
        format!("placed on {} (round-robin turn)", node.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeView {
        NodeView {
            name: name.into(),
            alive: true,
            runtime_ready: true,
            stats_fresh: true,
            capacity: crate::scheduler::Resources {
                cpu_millis: 4000,
                memory_bytes: 1 << 30,
                disk_bytes: 1 << 30,
            },
            ..Default::default()
        }
    }

    #[test]
    fn first_task_goes_to_first_node_then_alternates() {
        let rr = RoundRobin::default();
        let nodes = [node("a"), node("b")];
        let picks: Vec<_> = (0..4)
            .map(|_| rr.place(&Demand::default(), &nodes, true).node.unwrap())
            .collect();
        assert_eq!(picks, ["a", "b", "a", "b"]);
    }

    #[test]
    fn skips_down_nodes_and_explain_does_not_advance() {
        let rr = RoundRobin::default();
        let mut down = node("a");
        down.alive = false;
        let nodes = [down, node("b")];
        assert_eq!(
            rr.place(&Demand::default(), &nodes, false).node.as_deref(),
            Some("b")
        );
        assert_eq!(
            rr.place(&Demand::default(), &nodes, true).node.as_deref(),
            Some("b")
        );
        let all_down = [NodeView {
            alive: false,
            ..node("a")
        }];
        let d = rr.place(&Demand::default(), &all_down, true);
        assert_eq!(d.node, None);
        assert_eq!(d.summary, "0/1 nodes fit: 1 down");
    }
}
