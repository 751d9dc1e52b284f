//! A decision's summary for people: `placed on w1 (score 0.2500)`, or why no node fits,
//! `0/3 nodes fit: 2 insufficient cpu (wanted 500m, largest free 250m), 1 down`.

use super::{Demand, Filter, NodeView, Verdict};

/// How many nodes failed each filter first, and in which order the filters first failed (so a
/// summary reads in the order of the snapshot).
#[derive(Debug, Clone)]
pub(crate) struct Tally {
    counts: [usize; Filter::ALL.len()],
    first_seen: [usize; Filter::ALL.len()],
    seen: usize,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            counts: [0; Filter::ALL.len()],
            first_seen: [usize::MAX; Filter::ALL.len()],
            seen: 0,
        }
    }
}

impl Tally {
    /// Counts one node that failed `filter` first.
    pub(crate) fn add(&mut self, filter: Filter) {
        let i = filter.index();
        if self.counts[i] == 0 {
            self.first_seen[i] = self.seen;
            self.seen += 1;
        }
        self.counts[i] += 1;
    }

    /// (filter, nodes) in the order the filters first failed.
    fn ordered(&self) -> Vec<(Filter, usize)> {
        let mut out: Vec<(Filter, usize)> = Filter::ALL
            .into_iter()
            .map(|f| (f, self.counts[f.index()]))
            .filter(|&(_, n)| n > 0)
            .collect();
        out.sort_by_key(|&(f, _)| self.first_seen[f.index()]);
        out
    }
}

/// A human summary of a decision: `placed on w1 (score 0.2500)` or
/// `0/3 nodes fit: 2 insufficient cpu (wanted 500m, largest free 250m), 1 down`.
///
/// Each node that does not fit is counted once, by the first filter it failed; the groups are
/// listed in the order they first appear in the snapshot (see [`Filter::summary`] for each
/// group's words).
pub fn summarize(
    demand: &Demand,
    nodes: &[NodeView],
    verdicts: &[Verdict],
    picked: Option<&str>,
) -> String {
    let mut tally = Tally::default();
    for verdict in verdicts {
        if let Some(failed) = verdict.filters.iter().find(|f| !f.passed) {
            tally.add(failed.filter);
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
pub(crate) fn summary_of(
    demand: &Demand,
    nodes: &[NodeView],
    tally: &Tally,
    picked: Option<(&str, f64)>,
) -> String {
    if let Some((name, score)) = picked {
        let peers = nodes
            .iter()
            .find(|n| n.name == name)
            .and_then(|n| demand.peers_on(n));
        return match peers {
            Some(peers) => format!(
                "placed on {name} (spread: {peers} other replicas of its service there; \
                 score {score:.4})"
            ),
            None => format!("placed on {name} (score {score:.4})"),
        };
    }
    if nodes.is_empty() {
        return "0/0 nodes fit: no nodes are known".into();
    }
    let parts: Vec<String> = tally
        .ordered()
        .into_iter()
        .map(|(filter, n)| filter.summary(n, demand, nodes))
        .collect();
    format!("0/{} nodes fit: {}", nodes.len(), parts.join(", "))
}
