//! `cubectl events --tail N` (picked by the manager: ListEventsRequest.tail) and
//! `cubectl events -w` (new events as they are written) against a real manager; the
//! refusals of a tail past the cap or beside a page token.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{json, Cluster};
use cube::pb;
use tonic::Code;

/// The (task id, type) of each event of an `events -o json` answer.
fn listed(answer: &serde_json::Value) -> Vec<(String, String)> {
    let events = answer["events"].as_array().cloned().unwrap_or_default();
    events
        .iter()
        .map(|e| {
            (
                e["taskId"].as_str().unwrap().to_string(),
                e["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Proves `--tail N` shows exactly the last N events of all tasks and of one task, as the
/// manager picked them (one answer, no pages), the same as cutting the full log.
#[test]
fn events_tail_is_the_last_n() {
    let cluster = Cluster::builder().start();
    let ctl = cluster.ctl();
    let ids: Vec<String> = (0..4)
        .map(|i| ctl.run(&["--image", "x", "--name", &format!("t{i}")]))
        .collect();
    ctl.ok(&["stop", &ids[0]]);
    let all = listed(&ctl.json(&["events", "--tail", "0"]));
    assert!(all.len() >= 5, "{all:?}");
    let last3 = listed(&ctl.json(&["events", "--tail", "3"]));
    assert_eq!(last3, all[all.len() - 3..].to_vec());
    let own: Vec<_> = all.iter().filter(|e| e.0 == ids[0]).cloned().collect();
    assert!(own.len() >= 2, "{own:?}");
    let last_own = listed(&ctl.json(&["events", &ids[0][..8], "--tail", "1"]));
    assert_eq!(last_own, own[own.len() - 1..].to_vec());
    // The table shows the tail too: a header and three rows.
    assert_eq!(ctl.ok(&["events", "--tail", "3"]).lines().count(), 4);
}

/// Proves `events -w` prints the current tail, then events written while it watches (a new
/// task's, and a stop), as table rows and as JSON lines; and that `events NAME -w` follows
/// that task only.
#[test]
fn events_watch_prints_new_events() {
    let cluster = Cluster::builder().start();
    let ctl = cluster.ctl();
    for (round, args) in [&["-w"][..], &["-w", "-o", "json"], &["-w", "watched2"]]
        .into_iter()
        .enumerate()
    {
        let watched = ctl.run(&["--image", "x", "--name", &format!("watched{round}")]);
        let (mut watch, rx) = ctl.follow(&[&["events"], args].concat());
        let next = || rx.recv_timeout(Duration::from_secs(10)).expect("a line");
        let first = loop {
            let line = next();
            if line.contains(&watched[..8]) {
                break line;
            }
        };
        if args.contains(&"json") {
            assert_eq!(json(&first)["taskId"], watched, "{first}");
        }
        // Another task's SUBMITTED event, then the stop of the watched one, while it watches.
        let other = ctl.run(&["--image", "x", "--name", &format!("other{round}")]);
        ctl.ok(&["stop", &watched[..8]]);
        let mut seen: Vec<String> = Vec::new();
        while !seen
            .iter()
            .any(|l| l.contains(&watched[..8]) && l.contains("COMPLETED"))
        {
            seen.push(next());
        }
        let saw_other = seen.iter().any(|l| l.contains(&other[..8]));
        let one_task = args.contains(&"watched2");
        assert_eq!(saw_other, !one_task, "{args:?}: {seen:?}");
        watch.kill().unwrap();
        watch.wait().unwrap();
    }
}

/// Proves a tail past 1000 events, or beside a page token, is INVALID_ARGUMENT naming `tail`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_past_the_cap_or_with_a_page_token_is_refused() {
    let cluster = Cluster::builder().start();
    let mut c = cluster.client().await;
    for request in [
        pb::ListEventsRequest {
            tail: 1001,
            ..Default::default()
        },
        pb::ListEventsRequest {
            tail: 5,
            page_token: format!("{:016x}", 1),
            ..Default::default()
        },
    ] {
        let error = c.list_events(request).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
        assert!(error.message().starts_with("tail"), "{}", error.message());
    }
}
