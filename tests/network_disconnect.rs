//! Disconnect policy (issue 18): `--on-disconnect stop DURATION` on a real network. The
//! isolated worker stops its copies DURATION after losing the manager, by itself; the manager
//! starts the replacements only after that, so at no sampled moment do two runs of a task
//! live (counted from the processes). And every policy that is not one is refused, naming the
//! field. The network test skips loudly without root; CI sets `CUBE_REQUIRE_NETNS=1`.
// A test fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{list_all, netns::Net, submit, try_submit, Cluster, NetCluster};
use cube::pb::{self, DisconnectAction};
use tonic::Code;

const TASKS: [&str; 3] = ["stop-a", "stop-b", "stop-c"];

const SAMPLE: Duration = Duration::from_millis(50);

fn seconds(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

/// `stop 2s` with a 1 s stop grace period.
fn stop_after_2s(mut spec: pb::TaskSpec) -> pb::TaskSpec {
    spec.on_disconnect = Some(pb::OnDisconnect {
        action: DisconnectAction::Stop.into(),
        after: seconds(2),
    });
    spec.stop_grace_period = seconds(1);
    spec
}

/// Three `stop 2s` tasks on a worker cut off for 20 s: its copies stop 1 to 3 s after the cut
/// (2 s after its last contact, which came up to 1 s before), the replacements start only
/// after that, never two live runs of a task at any sample, and one each after healing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_2s_stops_the_cut_off_copies_before_the_replacements_start() {
    let Some(net) = Net::new("network_disconnect::stop_2s") else {
        return;
    };
    let mut cluster = NetCluster::start(net, &[]);
    let held = cluster.add_worker("held");
    let mut client = cluster.client().await;
    cluster.wait_ready(1).await;
    for name in TASKS {
        submit(&mut client, stop_after_2s(cluster.counted(name))).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !TASKS.iter().all(|n| cluster.live_runs(n).len() == 1) {
        assert!(Instant::now() < deadline, "the tasks never ran");
        tokio::time::sleep(SAMPLE).await;
    }
    let first: Vec<Vec<u32>> = TASKS.iter().map(|n| cluster.live_runs(n)).collect();
    let other = cluster.add_worker("other");
    cluster.wait_ready(2).await;

    let cut = Instant::now();
    cluster.net.partition(held);
    let (mut stopped, mut replaced) = (None, None);
    let mut samples = 0;
    while cut.elapsed() < Duration::from_secs(20) {
        let live: Vec<Vec<u32>> = TASKS.iter().map(|n| cluster.live_runs(n)).collect();
        for (name, runs) in TASKS.iter().zip(&live) {
            assert!(
                runs.len() <= 1,
                "{name}: two live runs {runs:?} {:?} after the cut",
                cut.elapsed()
            );
        }
        let old_gone = live
            .iter()
            .zip(&first)
            .all(|(now, old)| !now.contains(&old[0]));
        if stopped.is_none() && old_gone {
            stopped = Some(cut.elapsed());
        }
        let new_live = live
            .iter()
            .zip(&first)
            .all(|(now, old)| now.len() == 1 && now != old);
        if replaced.is_none() && new_live {
            replaced = Some(cut.elapsed());
        }
        samples += 1;
        tokio::time::sleep(SAMPLE).await;
    }
    let stopped = stopped.expect("the cut-off copies never stopped");
    let replaced = replaced.expect("no replacements ran");
    eprintln!(
        "stop 2s: copies stopped {stopped:?} after the cut, replacements live {replaced:?} after ({samples} samples, never two)"
    );
    assert!(
        stopped >= Duration::from_secs(1) && stopped <= Duration::from_millis(3200),
        "the copies stopped {stopped:?} after the cut"
    );
    assert!(replaced > stopped);

    cluster.net.heal(held);
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        for name in TASKS {
            assert_eq!(cluster.live_runs(name).len(), 1, "{name} after healing");
        }
        tokio::time::sleep(SAMPLE).await;
    }
    cluster.assert_all_running_on(other).await;
}

/// Each policy that is not one is refused with INVALID_ARGUMENT naming the field and why,
/// and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_policy_that_is_not_one_is_refused() {
    let cluster = Cluster::builder().start();
    let mut client = cluster.client().await;
    let policy = |action: i32, after: Option<prost_types::Duration>| pb::TaskSpec {
        name: "policy".into(),
        command: vec!["true".into()],
        on_disconnect: Some(pb::OnDisconnect { action, after }),
        ..Default::default()
    };
    let stop = DisconnectAction::Stop.into();
    let keep = DisconnectAction::Keep.into();
    let cases = [
        (
            policy(stop, None),
            "spec.on_disconnect.after",
            "required with STOP",
        ),
        (
            policy(stop, seconds(0)),
            "spec.on_disconnect.after",
            "more than zero",
        ),
        (
            policy(stop, seconds(-2)),
            "spec.on_disconnect.after",
            "negative",
        ),
        (
            policy(stop, seconds(3601)),
            "spec.on_disconnect.after",
            "1 h",
        ),
        (
            policy(keep, seconds(2)),
            "spec.on_disconnect.after",
            "only for STOP",
        ),
        (
            policy(9, None),
            "spec.on_disconnect.action",
            "not a disconnect action",
        ),
    ];
    for (spec, field, cause) in cases {
        let status = try_submit(&mut client, spec).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().starts_with(field) && status.message().contains(cause),
            "{field} / {cause}: {}",
            status.message()
        );
    }
    assert!(
        list_all(&mut client).await.is_empty(),
        "a refused spec was stored"
    );
    // A good one is taken.
    submit(&mut client, stop_after_2s(policy(stop, seconds(2)))).await;
}
