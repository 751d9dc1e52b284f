//! `cubectl logs --since` and `-t` against a real manager and worker: the Docker runtime
//! filters by time and prefixes times; the Exec runtime, which keeps no per-line times, says
//! so instead of guessing; a since that is no time is refused by the manager and by cubectl.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{need_docker, wait_for, Cluster, TEST_IMAGE};
use cube::pb;
use tonic::Code;

/// Prints `early`, then `late` eight seconds later, then idles.
const TWO_LINES: &str = "echo early; sleep 8; echo late; sleep 300";

/// Proves on Docker that `--since 4s` (asked just after `late`) shows `late` and not `early`;
/// that `--since` an RFC 3339 time long ago shows both; that `-t` prefixes each line with an
/// RFC 3339 time; and that once the container is gone (kept text only) `-t` is refused.
#[test]
fn logs_since_and_timestamps_on_docker() {
    if !need_docker("logs_since_and_timestamps_on_docker") {
        return;
    }
    let cluster = Cluster::docker();
    let ctl = cluster.ctl();
    let id = ctl.run(&[
        "--image",
        TEST_IMAGE,
        "--name",
        "talker",
        "--stop-grace",
        "1s",
        "--",
        "sh",
        "-c",
        TWO_LINES,
    ]);
    wait_for(Duration::from_secs(40), "the late line", || {
        ctl.call(&["logs", &id]).1.contains("late").then_some(())
    });
    // `late` was written under a second ago and `early` eight before it: four seconds back
    // (to the whole second) splits them with room on both sides.
    let recent = ctl.ok(&["logs", "--since", "4s", "talker"]);
    assert_eq!(recent, "late\n");
    let all = ctl.ok(&["logs", "--since", "2000-01-01T00:00:00Z", &id[..8]]);
    assert_eq!(all, "early\nlate\n");

    let timed = ctl.ok(&["logs", "-t", &id]);
    let lines: Vec<&str> = timed.lines().collect();
    assert_eq!(lines.len(), 2, "{timed}");
    for (line, text) in lines.iter().zip(["early", "late"]) {
        let (time, rest) = line.split_once(' ').unwrap();
        assert_eq!(rest, text, "{timed}");
        let time: prost_types::Timestamp = time
            .parse()
            .unwrap_or_else(|e| panic!("{time:?} is not an RFC 3339 time ({e}): {timed}"));
        let now = cube::proto::now().seconds;
        assert!((now - 120..=now).contains(&time.seconds), "{timed}");
    }

    // Once stopped, the container is removed and only the text is kept: plain logs still
    // read, times are refused rather than guessed.
    ctl.ok(&["stop", &id]);
    ctl.wait_state(&id, "TASK_STATE_COMPLETED", Duration::from_secs(30));
    assert_eq!(ctl.ok(&["logs", &id]), "early\nlate\n");
    let (code, stdout, stderr) = ctl.call(&["logs", "-t", &id]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("since/timestamps") && stderr.contains("only its text was kept"),
        "{stderr}"
    );
}

/// Proves the Exec runtime refuses `--since` and `-t` (FAILED_PRECONDITION, naming why)
/// rather than inventing times, while plain logs still work.
#[test]
fn exec_logs_have_no_line_times_and_say_so() {
    let cluster = Cluster::exec();
    let ctl = cluster.ctl();
    let id = ctl.run(&["--name", "plain", "--", "sh", "-c", "echo hi; sleep 300"]);
    wait_for(Duration::from_secs(20), "the output", || {
        (ctl.call(&["logs", &id]).1 == "hi\n").then_some(())
    });
    for flag in [&["--since", "1m"][..], &["-t"]] {
        let (code, stdout, stderr) = ctl.call(&[&["logs"], flag, &[&id]].concat());
        assert_eq!(code, 1, "{flag:?}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            stderr.contains("since/timestamps") && stderr.contains("Exec runtime"),
            "{flag:?}: {stderr}"
        );
    }
    ctl.ok(&["stop", &id]);
}

/// Proves a since that is no time is refused: by cubectl (usage error, exit 2, naming the
/// forms it takes) and by the manager (INVALID_ARGUMENT naming `since`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_since_that_is_no_time_is_refused() {
    let cluster = Cluster::builder().start();
    let (code, _, stderr) = cluster
        .ctl()
        .call(&["logs", "--since", "yesterday", "abcd"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("RFC 3339"), "{stderr}");

    let mut c = cluster.client().await;
    let task = common::submit(&mut c, common::spec("idle", &["sleep", "300"])).await;
    for (seconds, nanos) in [(-1, 0), (5, -3), (5, 1_000_000_000)] {
        let error = c
            .stream_logs(pb::StreamLogsRequest {
                task_id: task.id.clone(),
                since: Some(prost_types::Timestamp { seconds, nanos }),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
        assert!(error.message().starts_with("since"), "{}", error.message());
    }
}
