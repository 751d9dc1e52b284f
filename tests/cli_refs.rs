//! Task references against a real cube-manager with no workers (no Docker needed): every verb
//! that names a task takes a unique id prefix or the name of one unfinished task, resolved on
//! the manager; ambiguous references list their candidates; `watch` of an unknown task says so;
//! `events` shows the last 50 unless told otherwise.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::{Cluster, Cubectl};

/// `cubectl run --count N --name NAME` on an image no node will run: N pending tasks; their ids.
fn pending(ctl: &Cubectl, name: &str, count: usize) -> Vec<String> {
    let count = count.to_string();
    let stdout = ctl.ok(&[
        "run",
        "--image",
        "cube-test/none",
        "--name",
        name,
        "--count",
        &count,
    ]);
    stdout.lines().map(str::to_string).collect()
}

/// Proves that status, events, explain, watch and stop take an 8-digit prefix (as `status`
/// prints it), a hyphenated prefix and a name, that each resolves to the task's full id, and
/// that a finished task is no longer named by its name while its prefix still finds it.
#[test]
fn prefixes_and_names_name_one_task() {
    let cluster = Cluster::builder().start();
    let ctl = cluster.ctl();
    let id = pending(&ctl, "alpha", 1).remove(0);
    pending(&ctl, "beta", 1);
    for reference in [&id[..8], &id[..13], &id[..4], "alpha", &id] {
        let shown = ctl.json(&["status", reference]);
        assert_eq!(shown["task"]["id"], id.as_str(), "status {reference}");
        let explained = ctl.json(&["explain", reference]);
        assert_eq!(explained["task"]["id"], id.as_str(), "explain {reference}");
        let events = ctl.json(&["events", reference]);
        let events = events["events"].as_array().unwrap();
        assert!(!events.is_empty(), "events {reference}");
        assert!(
            events.iter().all(|e| e["taskId"] == id.as_str()),
            "{events:?}"
        );
    }
    ctl.ok(&["stop", "alpha"]);
    let stopped = ctl.wait_state(
        &id[..8],
        "TASK_STATE_COMPLETED",
        std::time::Duration::from_secs(10),
    );
    assert_eq!(stopped["id"], id.as_str());
    // Finished: its name no longer names it, its prefix still does.
    let (code, stdout, stderr) = ctl.call(&["status", "alpha"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stderr.starts_with("error: task \"alpha\" not found\n"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");
    // Too short to be a prefix, and no task's name.
    let (code, _, stderr) = ctl.call(&["status", &id[..3]]);
    assert_eq!(code, 1);
    assert!(stderr.contains("not found"), "{stderr}");
}

/// Proves that a name several unfinished tasks share is refused with exit code 1, the field,
/// the count and at most 10 candidates; and that an id prefix shared by two tasks is too.
#[test]
fn ambiguous_references_list_candidates() {
    let cluster = Cluster::builder().start();
    let ctl = cluster.ctl();
    let twins = pending(&ctl, "twin", 12);
    for verb in ["status", "stop", "logs", "events", "explain"] {
        let (code, stdout, stderr) = ctl.call(&[verb, "twin"]);
        assert_eq!(code, 1, "{verb}: {stdout}");
        assert!(
            stderr.starts_with("error: task_id: \"twin\" matches 12 tasks; give more of the id"),
            "{verb}: {stderr}"
        );
        let listed = twins
            .iter()
            .filter(|id| stderr.contains(id.as_str()))
            .count();
        assert_eq!(listed, 10, "{verb}: at most 10 candidates: {stderr}");
        assert!(stderr.contains("  and 2 more\n"), "{stderr}");
    }
    // Nothing was stopped by the refused stop.
    for id in &twins {
        assert_eq!(ctl.task(id)["desiredState"], "DESIRED_STATE_RUNNING");
    }

    // 1000 random ids share a 4-digit prefix with a probability of 1 - 5e-4.
    let many = pending(&ctl, "many", 1000);
    let mut by_prefix: HashMap<&str, Vec<&String>> = HashMap::new();
    for id in &many {
        by_prefix.entry(&id[..4]).or_default().push(id);
    }
    let (prefix, shared) = by_prefix
        .iter()
        .find(|(_, ids)| ids.len() > 1)
        .expect("two of 1000 ids share 4 digits");
    let (code, _, stderr) = ctl.call(&["status", prefix]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("\"{prefix}\" matches {} tasks", shared.len())),
        "{stderr}"
    );
    assert!(
        shared.iter().all(|id| stderr.contains(id.as_str())),
        "{stderr}"
    );
    // One more digit tells them apart where they differ.
    let one = shared[0];
    let unique = (5..=36)
        .map(|n| &one[..n])
        .find(|p| shared.iter().filter(|id| id.starts_with(p)).count() == 1)
        .unwrap();
    assert_eq!(ctl.task(unique)["id"], one.as_str());

    // `events` of all 1012 tasks shows the last 50 unless told otherwise.
    let rows = |args: &[&str]| ctl.json(args)["events"].as_array().unwrap().len();
    assert_eq!(rows(&["events"]), 50);
    assert_eq!(rows(&["events", "--tail", "5"]), 5);
    assert!(rows(&["events", "--tail", "0"]) >= 1012);
    let last = ctl.json(&["events", "--tail", "1"])["events"][0].clone();
    assert_eq!(
        last["taskId"],
        many.last().unwrap().as_str(),
        "the newest event"
    );
}

/// Proves that `watch` of a task that does not exist answers NOT_FOUND at once (exit 1)
/// instead of waiting, by full id and by name, and that a malformed reference names its field.
#[test]
fn watch_of_an_unknown_task_is_not_found() {
    let cluster = Cluster::builder().start();
    let ctl = cluster.ctl();
    for reference in ["0b5c3a52-1f0e-4d51-9a8e-2f1c7f0e9b11", "nobody"] {
        let started = std::time::Instant::now();
        let (code, _, stderr) = ctl.call(&["watch", reference]);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("not found"), "{stderr}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
    let (code, _, stderr) = ctl.call(&["watch", "two words"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("error: task_ids[0]: "), "{stderr}");
}
