//! Benchmark (5), the nemesis soak on a real network: one manager in a hub network namespace
//! and three Exec workers each in its own, three clients submitting and stopping tasks while
//! a seeded nemesis partitions workers, SIGKILLs and restarts workers and the manager, and
//! slows links; then the checker (see `tests/common/soak.rs`). Needs root.
//!
//! `cargo bench --bench soak [-- --duration 300s]` (300 s by default; `CUBE_SOAK_SEED=N`
//! replays a run). Writes the "Faults" section of bench/RESULTS.md.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common.rs"]
mod bench_common;
#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{netns::Net, soak};

fn duration() -> Duration {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--duration")
        .and_then(|i| args.get(i + 1))
        .map(|d| cube::units::parse_duration(d).expect("--duration: a duration such as 300s"))
        .unwrap_or(Duration::from_secs(300))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let duration = duration();
    // The benchmark needs namespaces: without them it fails, it does not skip.
    std::env::set_var("CUBE_REQUIRE_NETNS", "1");
    let net = Net::new("bench soak").unwrap();
    let seed = soak::seed();
    let report = soak::run(net, duration, seed).await;
    let faults: String = report
        .faults
        .iter()
        .map(|(kind, n)| format!("| fault: {kind} | {n} |\n"))
        .collect();
    let convergence = report
        .convergence
        .map_or(format!("not within {:?}", soak::CONVERGE_WITHIN), |c| {
            format!("{c:.1?}")
        });
    let table = format!(
        "## Faults\n\n\
One manager and 3 Exec workers, each in its own network namespace, 3 clients; {machine}; {date}.\n\
Command: `cargo bench --bench soak -- --duration {secs}s` (seed {seed}: `CUBE_SOAK_SEED={seed}` replays it).\n\n\
| measurement | result |\n|---|---|\n\
{faults}\
| client calls recorded | {calls} |\n\
| acknowledged submissions | {acked} |\n\
| ... lost | **{lost}** |\n\
| acknowledged stops / not honoured | {stops} / **{unhonoured}** |\n\
| tasks with two live runs after convergence (counted from the processes) | **{dups}** |\n\
| convergence after the last fault (bound {bound:?}) | **{convergence}** |\n",
        machine = bench_common::machine(),
        date = bench_common::date(),
        secs = duration.as_secs(),
        calls = report.calls,
        acked = report.acknowledged,
        lost = report.lost,
        stops = report.stops_acknowledged,
        unhonoured = report.stops_not_honoured,
        dups = report.duplicates,
        bound = soak::CONVERGE_WITHIN,
    );
    bench_common::record("Faults", &table);
    assert!(report.passed(), "seed {seed}: {report:#?}");
}
