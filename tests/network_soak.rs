//! The nemesis soak's test form (issue 18): 60 s of submissions and stops from three clients
//! while a seeded nemesis partitions workers, SIGKILLs and restarts workers and the manager,
//! and slows links, all on a real network (a namespace per node); then the checker: nothing
//! acknowledged lost, acknowledged stops honoured, no duplicate live runs once converged,
//! convergence within 30 s of the last fault. `CUBE_SOAK_SEED` replays a run; `cargo bench
//! --bench soak` is the 300 s form. Skipped loudly without root; CI sets `CUBE_REQUIRE_NETNS=1`.
// A test fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{netns::Net, soak};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_60s_nemesis_soak_loses_nothing_and_converges() {
    let Some(net) = Net::new("network_soak::a_60s_nemesis_soak") else {
        return;
    };
    let seed = soak::seed();
    let report = soak::run(net, Duration::from_secs(60), seed).await;
    assert!(
        report.faults.values().sum::<usize>() > 0,
        "no fault injected: {report:?}"
    );
    assert!(
        report.acknowledged > 0,
        "no submission acknowledged: {report:?}"
    );
    assert!(report.passed(), "seed {seed}: {report:#?}");
}
