//! A real network (issue 18): each worker in its own network namespace, the manager in a hub
//! namespace, and faults made on the links, not by stopping processes. A partitioned worker is
//! DOWN within the default grace and its tasks run elsewhere, and once healed exactly one run
//! of each task lives (counted from the processes, not from Cube's view); a slow, lossy link
//! is no reason for DOWN. Skipped loudly without root; CI sets `CUBE_REQUIRE_NETNS=1`.
// A test fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{list_all, netns::Net, submit, NetCluster};
use cube::pb::{NodeState, TaskState};

/// Three tasks, as the issue asks.
const TASKS: [&str; 3] = ["part-a", "part-b", "part-c"];

/// How often the tests look.
const SAMPLE: Duration = Duration::from_millis(50);

/// A node is DOWN within this of losing its link: the default grace (3 heartbeats of 1 s)
/// counts from its last heartbeat, which came before the cut, plus one liveness tick (a
/// tenth of the grace).
const DOWN_WITHIN: Duration = Duration::from_millis(3300);

/// Its tasks run elsewhere within this of the cut.
const MOVED_WITHIN: Duration = Duration::from_secs(5);

/// How long the worker stays cut off.
const PARTITION: Duration = Duration::from_secs(20);

/// A cluster with one worker holding the three tasks, RUNNING, and a second, empty worker.
async fn three_tasks_on_one_worker(net: Net) -> (NetCluster, usize, usize) {
    let mut cluster = NetCluster::start(net, &[]);
    let held = cluster.add_worker("held");
    let mut client = cluster.client().await;
    cluster.wait_ready(1).await;
    for name in TASKS {
        submit(&mut client, cluster.counted(name)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = list_all(&mut client).await;
        let running = tasks
            .iter()
            .filter(|t| t.state() == TaskState::Running && t.node == cluster.name(held))
            .count();
        if running == TASKS.len() && TASKS.iter().all(|n| cluster.live_runs(n).len() == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "the tasks never ran: {tasks:?}");
        tokio::time::sleep(SAMPLE).await;
    }
    let other = cluster.add_worker("other");
    cluster.wait_ready(2).await;
    (cluster, held, other)
}

/// A worker partitioned for 20 s with three `keep` tasks: DOWN within 3.3 s, the tasks
/// RUNNING on the other worker within 5 s, the cut-off worker's copies still running while it
/// is cut off, and after healing exactly one live run of each task, for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_worker_is_down_in_3s_its_tasks_run_elsewhere_in_5s_and_one_copy_remains() {
    let Some(net) = Net::new("network_partition::a_partitioned_worker") else {
        return;
    };
    let (cluster, held, other) = three_tasks_on_one_worker(net).await;
    let mut client = cluster.client().await;
    let cut = Instant::now();
    cluster.net.partition(held);
    let (mut down, mut moved) = (None, None);
    while down.is_none() || moved.is_none() {
        assert!(
            cut.elapsed() < Duration::from_secs(15),
            "after {:?}: DOWN at {down:?}, moved at {moved:?}",
            cut.elapsed()
        );
        if down.is_none() && cluster.node_state(held).await == NodeState::Down {
            down = Some(cut.elapsed());
        }
        let tasks = list_all(&mut client).await;
        let elsewhere = tasks
            .iter()
            .filter(|t| t.state() == TaskState::Running && t.node == cluster.name(other))
            .count();
        if moved.is_none() && elsewhere == TASKS.len() {
            moved = Some(cut.elapsed());
        }
        tokio::time::sleep(SAMPLE).await;
    }
    let (down, moved) = (down.unwrap(), moved.unwrap());
    eprintln!("partition: DOWN after {down:?}, the tasks RUNNING elsewhere after {moved:?}");
    assert!(down <= DOWN_WITHIN, "DOWN only after {down:?}");
    assert!(
        moved <= MOVED_WITHIN,
        "RUNNING elsewhere only after {moved:?}"
    );

    // Cut off, the worker keeps its copies (`keep`, the default): two runs of each live.
    tokio::time::sleep(PARTITION.saturating_sub(cut.elapsed())).await;
    for name in TASKS {
        assert_eq!(
            cluster.live_runs(name).len(),
            2,
            "{name}: the cut-off copy and its replacement"
        );
    }
    cluster.net.heal(held);
    let healed = Instant::now();
    loop {
        if TASKS.iter().all(|n| cluster.live_runs(n).len() == 1) {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(15),
            "stale copies still run 15 s after healing: {:?}",
            TASKS.map(|n| cluster.live_runs(n))
        );
        tokio::time::sleep(SAMPLE).await;
    }
    eprintln!("healed: stale copies gone after {:?}", healed.elapsed());
    // And it stays so: one run each, Cube shows them RUNNING on the other worker, and the
    // healed worker READY again.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for name in TASKS {
            assert_eq!(cluster.live_runs(name).len(), 1, "{name} after healing");
        }
        tokio::time::sleep(SAMPLE).await;
    }
    cluster.assert_all_running_on(other).await;
    assert_eq!(cluster.node_state(held).await, NodeState::Ready);
}

/// A worker whose link loses 10 % of its packets and is delayed 200 ms each way (by netem, or
/// where the kernel has none by nftables and the node's link relays) for 20 s is never DOWN,
/// and its tasks keep their one run each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_lossy_link_is_no_reason_for_down() {
    let Some(net) = Net::new("network_partition::a_slow_lossy_link") else {
        return;
    };
    let (mut cluster, held, _other) = three_tasks_on_one_worker(net).await;
    let runs: Vec<Vec<u32>> = TASKS.iter().map(|n| cluster.live_runs(n)).collect();
    let applied = cluster.net.slow(held, 200, 10);
    eprintln!("slow link: {applied}");
    // The link is slow indeed: a round trip to the worker takes the delay twice.
    let round_trip = cluster.net.round_trip(cluster.worker_address(held));
    eprintln!("slow link: a round trip to the worker takes {round_trip:?}");
    assert!(round_trip >= Duration::from_millis(400), "{round_trip:?}");
    let started = Instant::now();
    let mut samples = 0;
    while started.elapsed() < PARTITION {
        let state = cluster.node_state(held).await;
        assert_eq!(
            state,
            NodeState::Ready,
            "after {:?} on the slow link",
            started.elapsed()
        );
        samples += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.net.unslow(held);
    let now: Vec<Vec<u32>> = TASKS.iter().map(|n| cluster.live_runs(n)).collect();
    assert_eq!(now, runs, "the same single run of each task throughout");
    cluster.assert_all_running_on(held).await;
    eprintln!("slow link: READY at all {samples} samples over {PARTITION:?}");
}
