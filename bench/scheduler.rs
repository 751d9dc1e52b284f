//! How long one placement takes over 10 to 10,000 nodes, for every strategy: the median time
//! per decision of `place_fast` (the scheduling loop) and `place` (with every node's verdict,
//! for `ExplainTask`). Not a test: it prints a table. Run with `cargo bench --bench scheduler`.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use cube::pb;
use cube::scheduler::{by_name, Demand, NodeView, Resources, Scheduler, STRATEGIES};

/// Cluster sizes from a lab to a large fleet.
const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

/// Timed batches per measurement; odd so the median is one of them.
const BATCHES: usize = 31;

/// Node evaluations per batch: enough that a batch lasts tens of microseconds or more, far
/// above the clock's resolution, even at 10 nodes.
const WORK_PER_BATCH: usize = 20_000;

const GI: i64 = 1 << 30;

/// A small deterministic generator, so every run measures the same snapshots.
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

/// A plausible fleet: mixed sizes and allocations, a few nodes down, draining or with a host
/// port taken, labels in three zones. Most nodes fit the task, so every one is scored.
fn fleet(n: usize) -> Vec<NodeView> {
    let mut rng = Lcg(42);
    (0..n)
        .map(|i| {
            let cpu = 1000 * (2 + rng.next(31) as i64);
            let mem = GI * (4 + rng.next(60) as i64);
            let mut node = NodeView {
                name: format!("node-{i:05}"),
                alive: rng.next(50) != 0,
                draining: rng.next(100) == 0,
                runtime_ready: true,
                stats_fresh: true,
                capacity: Resources {
                    cpu_millis: cpu,
                    memory_bytes: mem,
                    disk_bytes: 100 * GI,
                },
                allocated: Resources {
                    cpu_millis: rng.next(cpu as u64) as i64,
                    memory_bytes: rng.next(mem as u64) as i64,
                    disk_bytes: 0,
                },
                cpu_load: rng.next(101) as f64 / 100.0,
                task_count: rng.next(40) as u32,
                ..Default::default()
            };
            if rng.next(20) == 0 {
                node.used_ports.insert((8080, pb::Protocol::Tcp));
            }
            let zone = ["a", "b", "c"][rng.next(3) as usize];
            node.labels.insert("zone".into(), zone.into());
            node
        })
        .collect()
}

/// The median time of one decision by `decide` over `nodes`.
fn median_per_decision(nodes: &[NodeView], decide: impl Fn(&[NodeView]) -> bool) -> Duration {
    let per_batch = (WORK_PER_BATCH / nodes.len()).max(1);
    let mut times: Vec<Duration> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_batch {
                black_box(decide(black_box(nodes)));
            }
            start.elapsed() / per_batch as u32
        })
        .collect();
    times.sort();
    times[BATCHES / 2]
}

fn micros(d: Duration) -> String {
    format!("{:.2}", d.as_nanos() as f64 / 1000.0)
}

fn main() {
    let demand = Demand {
        resources: Resources {
            cpu_millis: 500,
            memory_bytes: 256 << 20,
            disk_bytes: GI,
        },
        ..Default::default()
    };
    println!("median time per decision, microseconds (one 500m/256Mi task)");
    println!(
        "{:<11} {:>7} {:>12} {:>12}",
        "strategy", "nodes", "place_fast", "place"
    );
    for name in STRATEGIES {
        let strategy: Box<dyn Scheduler> = by_name(name).expect("listed strategies exist");
        for n in SIZES {
            let nodes = fleet(n);
            // Warm up caches and branch predictors, and check the decision is a real one.
            let fast = strategy.place_fast(&demand, &nodes, true);
            let full = strategy.place(&demand, &nodes, false);
            assert!(fast.node.is_some(), "{name} found a node among {n}");
            assert_eq!(full.verdicts.len(), n);
            let t_fast = median_per_decision(&nodes, |nodes| {
                strategy.place_fast(&demand, nodes, true).node.is_some()
            });
            let t_full = median_per_decision(&nodes, |nodes| {
                strategy.place(&demand, nodes, false).node.is_some()
            });
            println!(
                "{:<11} {:>7} {:>12} {:>12}",
                name,
                n,
                micros(t_fast),
                micros(t_full)
            );
        }
    }
}
