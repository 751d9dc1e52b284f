//! Tests of every strategy on hand-made snapshots; the filters and summaries are tested in
//! `filters.rs`.

use super::*;

mod filters;

const MI: i64 = 1 << 20;
const GI: i64 = 1 << 30;

/// A healthy node with `cpu_millis` of cpu and `memory` bytes, nothing allocated.
fn node(name: &str, cpu_millis: i64, memory: i64) -> NodeView {
    NodeView {
        name: name.into(),
        alive: true,
        runtime_ready: true,
        stats_fresh: true,
        capacity: Resources {
            cpu_millis,
            memory_bytes: memory,
            disk_bytes: 10 * GI,
        },
        ..Default::default()
    }
}

fn cpu(millis: i64) -> Demand {
    Demand {
        resources: Resources {
            cpu_millis: millis,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn strategy(name: &str) -> Box<dyn Scheduler> {
    by_name(name).unwrap_or_else(|| panic!("{name} is a strategy"))
}

/// Places `tasks` one after the other as the manager would: each pick's demand is added to the
/// node's allocation before the next decision. Returns the picks.
fn place_all(
    s: &dyn Scheduler,
    demand: &Demand,
    nodes: &mut [NodeView],
    tasks: usize,
) -> Vec<String> {
    (0..tasks)
        .map(|_| {
            let picked = s.place(demand, nodes, true).node.expect("a node fits");
            let n = nodes.iter_mut().find(|n| n.name == picked).unwrap();
            n.allocated = n.allocated + demand.resources;
            n.task_count += 1;
            if !demand.service.is_empty() {
                *n.service_tasks.entry(demand.service.clone()).or_default() += 1;
            }
            picked
        })
        .collect()
}

#[test]
fn by_name_knows_every_listed_strategy() {
    for name in STRATEGIES {
        assert_eq!(strategy(name).name(), *name);
    }
    assert!(STRATEGIES.contains(&DEFAULT_STRATEGY));
    assert!(by_name("random").is_none());
}

#[test]
fn spread_puts_two_250m_tasks_on_different_nodes() {
    let mut nodes = [node("a", 1000, GI), node("b", 1000, GI)];
    let picks = place_all(&*strategy("spread"), &cpu(250), &mut nodes, 2);
    assert_eq!(picks, ["a", "b"]);
}

#[test]
fn spread_deals_tasks_that_request_nothing_round_the_nodes_by_task_count() {
    let mut nodes = [
        node("a", 1000, GI),
        node("b", 1000, GI),
        node("c", 1000, GI),
    ];
    nodes[0].task_count = 1;
    let picks = place_all(&*strategy("spread"), &Demand::default(), &mut nodes, 5);
    assert_eq!(picks, ["b", "c", "a", "b", "c"]);
}

#[test]
fn binpack_packs_tasks_that_request_nothing_onto_the_busiest_node() {
    let mut nodes = [node("a", 1000, GI), node("b", 1000, GI)];
    nodes[1].task_count = 1;
    let picks = place_all(&*strategy("binpack"), &Demand::default(), &mut nodes, 3);
    assert_eq!(picks, ["b", "b", "b"]);
}

#[test]
fn binpack_puts_two_250m_tasks_on_the_same_node() {
    let mut nodes = [node("a", 1000, GI), node("b", 1000, GI)];
    let picks = place_all(&*strategy("binpack"), &cpu(250), &mut nodes, 2);
    assert_eq!(picks, ["a", "a"]);
}

#[test]
fn replicas_of_one_service_spread_before_the_strategy_packs() {
    let replica = Demand {
        service: "svc".into(),
        ..cpu(250)
    };
    for name in ["binpack", "spread", "epvm", "roundrobin"] {
        let mut nodes = [node("a", 1000, GI), node("b", 1000, GI)];
        let picks = place_all(&*strategy(name), &replica, &mut nodes, 4);
        let on_a = picks.iter().filter(|p| *p == "a").count();
        assert_eq!(on_a, 2, "{name}: {picks:?}");
    }
    let mut nodes = [node("a", 1000, GI), node("b", 1000, GI)];
    nodes[0].service_tasks.insert("svc".into(), 1);
    let decision = strategy("binpack").place(&replica, &nodes, false);
    assert_eq!(decision.node.as_deref(), Some("b"));
    assert_eq!(decision.verdicts[0].service_peers, Some(1));
    assert_eq!(decision.verdicts[1].service_peers, Some(0));
    assert!(
        decision.summary.contains("spread: 0 other replicas"),
        "{}",
        decision.summary
    );
    let fast = strategy("binpack").place_fast(&replica, &nodes, false);
    assert_eq!((fast.node, fast.summary), (decision.node, decision.summary));
    // Another service's tasks, or none, do not count.
    let other = Demand {
        service: "other".into(),
        ..cpu(250)
    };
    assert_eq!(
        strategy("binpack")
            .place(&other, &nodes, false)
            .node
            .as_deref(),
        Some("a")
    );
    assert_eq!(
        strategy("binpack").place(&cpu(250), &nodes, false).verdicts[0].service_peers,
        None
    );
}

#[test]
fn binpack_skips_the_fuller_node_once_it_no_longer_fits() {
    let mut nodes = [node("a", 1000, GI), node("b", 1000, GI)];
    let picks = place_all(&*strategy("binpack"), &cpu(400), &mut nodes, 4);
    assert_eq!(picks, ["a", "a", "b", "b"]);
}

#[test]
fn spread_places_four_500m_tasks_two_per_node_and_a_fifth_nowhere_naming_cpu() {
    let mut nodes = [node("a", 1000, GI), node("b", 1000, GI)];
    let s = strategy("spread");
    let mut picks = place_all(&*s, &cpu(500), &mut nodes, 4);
    picks.sort();
    assert_eq!(picks, ["a", "a", "b", "b"]);
    for n in &nodes {
        assert_eq!(n.allocated.cpu_millis, 1000, "{} is full", n.name);
    }

    let fifth = s.place(&cpu(500), &nodes, true);
    assert_eq!(fifth.node, None);
    assert_eq!(
        fifth.summary,
        "0/2 nodes fit: 2 insufficient cpu (wanted 500m, largest free 0)"
    );
    for verdict in &fifth.verdicts {
        let failed: Vec<_> = verdict.filters.iter().filter(|f| !f.passed).collect();
        assert_eq!(failed.len(), 1, "{verdict:?}");
        assert_eq!(failed[0].filter, Filter::Cpu);
        assert_eq!(failed[0].reason, "wanted 500m, free 0");
        assert_eq!(verdict.score, None);
    }
}

/// Three nodes, a task of 500m and 256Mi, a = 3 (three nodes). No cpu is allocated anywhere;
/// the loads are measured.
///
/// - a: 2 cpu, 1Gi, 512Mi allocated, load 0.10.
///   memory 0.5 -> 0.75: 3^0.75 - 3^0.5 = 2.27951 - 1.73205 = 0.54746
///   cpu 0.10 -> 0.10 + 500/2000 = 0.35: 3^0.35 - 3^0.10 = 1.46890 - 1.11612 = 0.35278
///   cost 0.90023
/// - b: 2 cpu, 2Gi, nothing allocated, load 0.80.
///   memory 0 -> 0.125: 3^0.125 - 3^0 = 1.14720 - 1 = 0.14720
///   cpu 0.80 -> 1.05: 3^1.05 - 3^0.80 = 3.16940 - 2.40822 = 0.76118
///   cost 0.90838
/// - c: 1 cpu, 4Gi, 1Gi allocated, load 0.50.
///   memory 0.25 -> 0.3125: 3^0.3125 - 3^0.25 = 1.40961 - 1.31607 = 0.09354
///   cpu 0.50 -> 1.00: 3^1 - 3^0.5 = 3 - 1.73205 = 1.26795
///   cost 1.36149
///
/// E-PVM picks a. Spread would pick b (fullness after: a 0.75, b 0.25, c 0.5): b has the most
/// room on paper but its cpu is busy.
#[test]
fn epvm_scores_three_nodes_by_memory_and_cpu_load() {
    let mut a = node("a", 2000, GI);
    a.allocated.memory_bytes = 512 * MI;
    a.cpu_load = 0.10;
    let mut b = node("b", 2000, 2 * GI);
    b.cpu_load = 0.80;
    let mut c = node("c", 1000, 4 * GI);
    c.allocated.memory_bytes = GI;
    c.cpu_load = 0.50;
    let nodes = [a, b, c];
    let mut demand = cpu(500);
    demand.resources.memory_bytes = 256 * MI;

    let decision = strategy("epvm").place(&demand, &nodes, true);
    assert_scores(&decision, &[0.90023, 0.90838, 1.36149]);
    assert_eq!(decision.node.as_deref(), Some("a"));
    assert_eq!(decision.summary, "placed on a (score 0.9002)");
    assert_eq!(
        strategy("spread")
            .place(&demand, &nodes, true)
            .node
            .as_deref(),
        Some("b")
    );
}

/// Three nodes equal in everything (2 cpu, 2Gi, 1Gi allocated) but their cpu load; the task
/// wants 500m and 256Mi; a = 3. The memory term is the same everywhere:
/// 3^0.625 - 3^0.5 = 1.98701 - 1.73205 = 0.25496. The cpu term adds 500/2000 = 0.25 to the load:
/// - x, load 0.9: 3^1.15 - 3^0.9 = 3.53744 - 2.68788 = 0.84957, cost 1.10453
/// - y, load 0.2: 3^0.45 - 3^0.2 = 1.63947 - 1.24573 = 0.39374, cost 0.64871
/// - z, load 0.6: 3^0.85 - 3^0.6 = 2.54421 - 1.93318 = 0.61103, cost 0.86599
///
/// So the cpu load alone decides: y, although it is neither first nor last.
#[test]
fn epvm_cpu_load_alone_decides_the_pick() {
    let loaded = |name: &str, load: f64| NodeView {
        allocated: Resources {
            memory_bytes: GI,
            ..Default::default()
        },
        cpu_load: load,
        ..node(name, 2000, 2 * GI)
    };
    let nodes = [loaded("x", 0.9), loaded("y", 0.2), loaded("z", 0.6)];
    let mut demand = cpu(500);
    demand.resources.memory_bytes = 256 * MI;
    let decision = strategy("epvm").place(&demand, &nodes, true);
    assert_scores(&decision, &[1.10453, 0.64871, 0.86599]);
    assert_eq!(decision.node.as_deref(), Some("y"));
    // Spread and binpack see three equal nodes and take the first.
    assert_eq!(
        strategy("spread")
            .place(&demand, &nodes, true)
            .node
            .as_deref(),
        Some("x")
    );
}

#[test]
fn epvm_base_is_the_node_count_at_least_two() {
    assert_eq!(Epvm::default().base_for(0), 2.0);
    assert_eq!(Epvm::default().base_for(1), 2.0);
    assert_eq!(Epvm::default().base_for(1000), 1000.0);
    assert_eq!(Epvm::with_base(10.0).base_for(1000), 10.0);
    assert_eq!(Epvm::with_base(0.5).base_for(3), 2.0);
}

/// Makes a node unfit to take work.
type Breaks = fn(&mut NodeView);

/// Every way a node can be unfit to take work, applied to a node that would otherwise win
/// under every strategy: first in the snapshot (round-robin's first turn) and empty, against a
/// nearly full node.
#[test]
fn an_unfit_node_is_never_picked_whatever_its_score() {
    let breakers: [(&str, Breaks); 5] = [
        ("down", |n| n.alive = false),
        ("draining", |n| n.draining = true),
        ("runtime not ready", |n| n.runtime_ready = false),
        ("store read-only", |n| n.store_read_only = true),
        ("stats unknown", |n| n.stats_fresh = false),
    ];
    for name in STRATEGIES {
        for (what, breaks) in breakers {
            let s = strategy(name);
            let mut best = node("best", 64_000, 256 * GI);
            breaks(&mut best);
            let mut busy = node("busy", 1000, GI);
            busy.allocated = Resources {
                cpu_millis: 900,
                memory_bytes: GI - MI,
                disk_bytes: 0,
            };
            busy.cpu_load = 1.0;
            let mut nodes = vec![best, busy];
            for fast in [false, true] {
                let d = if fast {
                    s.place_fast(&cpu(100), &nodes, false)
                } else {
                    s.place(&cpu(100), &nodes, false)
                };
                assert_eq!(
                    d.node.as_deref(),
                    Some("busy"),
                    "{name}, {what}, fast {fast}"
                );
            }
            nodes.truncate(1);
            for fast in [false, true] {
                let d = if fast {
                    s.place_fast(&cpu(100), &nodes, true)
                } else {
                    s.place(&cpu(100), &nodes, true)
                };
                assert_eq!(d.node, None, "{name}, {what}, fast {fast}");
                assert_eq!(d.summary, format!("0/1 nodes fit: 1 {what}"));
            }
        }
    }
}

struct NanOnFirst;

impl Scheduler for NanOnFirst {
    fn name(&self) -> &'static str {
        "nan"
    }
    fn score(&self, _demand: &Demand, node: &NodeView) -> f64 {
        if node.name == "a" {
            -f64::NAN
        } else {
            1.0
        }
    }
}

#[test]
fn a_nan_score_ranks_last() {
    let nodes = [node("a", 1000, GI), node("b", 1000, GI)];
    assert_eq!(
        NanOnFirst.place(&cpu(1), &nodes, true).node.as_deref(),
        Some("b")
    );
    assert_eq!(
        NanOnFirst.place_fast(&cpu(1), &nodes, true).node.as_deref(),
        Some("b")
    );
}

/// A small deterministic generator, so the snapshots below are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// A random snapshot of `n` nodes with every kind of unfitness now and then.
fn random_nodes(rng: &mut Lcg, n: usize) -> Vec<NodeView> {
    (0..n)
        .map(|i| {
            let mut v = node(
                &format!("n{i}"),
                1000 * (1 + rng.next(8) as i64),
                GI * (1 + rng.next(16) as i64),
            );
            v.allocated.cpu_millis = rng.next(v.capacity.cpu_millis as u64 + 1) as i64;
            v.allocated.memory_bytes = rng.next(v.capacity.memory_bytes as u64 + 1) as i64;
            v.cpu_load = rng.next(101) as f64 / 100.0;
            v.task_count = rng.next(4) as u32;
            v.alive = rng.next(20) != 0;
            v.draining = rng.next(30) == 0;
            v.runtime_ready = rng.next(30) != 0;
            v.stats_fresh = rng.next(30) != 0;
            if rng.next(10) == 0 {
                v.used_ports.insert((80, pb::Protocol::Tcp));
            }
            let zone = ["a", "b", "c"][rng.next(3) as usize];
            v.labels.insert("zone".into(), zone.into());
            v
        })
        .collect()
}

#[test]
fn place_fast_makes_the_same_choice_and_summary_as_place() {
    let mut rng = Lcg(7);
    for round in 0..300 {
        let n = rng.next(12) as usize;
        let nodes = random_nodes(&mut rng, n);
        let mut demand = cpu(250 * rng.next(16) as i64);
        demand.resources.memory_bytes = 256 * MI * rng.next(16) as i64;
        if rng.next(3) == 0 {
            demand.host_ports.push((80, pb::Protocol::Tcp));
        }
        if rng.next(3) == 0 {
            demand.constraints.insert("zone".into(), "b".into());
        }
        for node in &nodes {
            let full = filter(&demand, node);
            assert_eq!(
                first_failure(&demand, node),
                full.iter().find(|f| !f.passed).map(|f| f.filter)
            );
        }
        for name in STRATEGIES {
            let s = strategy(name);
            let full = s.place(&demand, &nodes, false);
            let fast = s.place_fast(&demand, &nodes, false);
            assert_eq!(full.node, fast.node, "round {round}, {name}");
            assert_eq!(full.summary, fast.summary, "round {round}, {name}");
            assert!(fast.verdicts.is_empty());
            assert_eq!(full.verdicts.len(), nodes.len());
        }
    }
}

/// Every node got a score, each within 1e-4 of `expected`.
fn assert_scores(decision: &Decision, expected: &[f64]) {
    let scores: Vec<f64> = decision.verdicts.iter().map(|v| v.score.unwrap()).collect();
    assert_eq!(scores.len(), expected.len(), "scores {scores:?}");
    for (got, want) in scores.iter().zip(expected) {
        assert!(
            (got - want).abs() < 1e-4,
            "scores {scores:?}, expected {expected:?}"
        );
    }
}
