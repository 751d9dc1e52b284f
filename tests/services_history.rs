//! The rollout history of a service on a real manager with Exec workers: every rollout is a
//! record, kept with the service across a manager SIGKILL, listed by `service rollouts`.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    services::{three_running, update_failing, update_sleep},
    wait_for,
};

/// Waits until the service's live rollout is in `state`.
fn wait_rollout(ctl: &common::Cubectl, name: &str, state: &str) {
    wait_for(Duration::from_secs(20), state, || {
        let service = common::json(&ctl.ok(&["service", "inspect", name]))["service"].clone();
        (service["rollout"]["state"] == state).then_some(())
    });
}

/// Two updates and a failing one give three records, oldest first: COMPLETED 1→2,
/// COMPLETED 2→3, ROLLED_BACK 3→5 saying which version failed; each with its times. The
/// history survives a SIGKILL of the manager and `service rollouts` shows it as a table.
#[test]
fn two_updates_and_a_failed_one_give_three_records() {
    let (mut cluster, name, _) = three_running("hist");
    let ctl = cluster.ctl();
    update_sleep(&ctl, &name, "306");
    wait_rollout(&ctl, &name, "ROLLOUT_STATE_COMPLETED");
    update_sleep(&ctl, &name, "307");
    wait_for(Duration::from_secs(20), "version 3 COMPLETED", || {
        let service = common::json(&ctl.ok(&["service", "inspect", &name]))["service"].clone();
        (service["rollout"]["state"] == "ROLLOUT_STATE_COMPLETED" && service["taskVersion"] == "3")
            .then_some(())
    });
    update_failing(&ctl, &name);
    wait_rollout(&ctl, &name, "ROLLOUT_STATE_ROLLED_BACK");

    cluster.restart_manager();
    let ctl = cluster.ctl();
    let history = wait_for(Duration::from_secs(10), "the manager back", || {
        let (code, out, _) = ctl.call(&["service", "rollouts", &name, "-o", "json"]);
        (code == 0).then(|| common::json(&out))
    });
    let records = history["rollouts"].as_array().unwrap();
    let seen: Vec<_> = records
        .iter()
        .map(|r| {
            (
                r["fromTaskVersion"].as_str().unwrap().to_string(),
                r["taskVersion"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("1", "2", "ROLLOUT_STATE_COMPLETED"),
        ("2", "3", "ROLLOUT_STATE_COMPLETED"),
        ("3", "5", "ROLLOUT_STATE_ROLLED_BACK"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(seen, want, "{history}");
    for record in records {
        let (started, ended) = (&record["startedAt"], &record["endedAt"]);
        assert!(started.is_string() && ended.is_string(), "{record}");
        assert!(started.as_str() <= ended.as_str(), "{record}");
    }
    let why = records[2]["message"].as_str().unwrap();
    assert!(
        why.starts_with("rolled back: version 4 failed in slot"),
        "{why}"
    );
    assert!(
        records[1]["startedAt"].as_str() <= records[2]["startedAt"].as_str(),
        "{history}"
    );

    let table = ctl.ok(&["service", "rollouts", &name]);
    let lines: Vec<_> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].contains("FROM") && lines[0].contains("STATE"),
        "{table}"
    );
    assert!(lines[3].contains("ROLLED_BACK"), "{table}");
    // GetService of an unknown service: a clear NOT_FOUND naming it.
    let (code, _, missing) = ctl.call(&["service", "rollouts", "no-such-service"]);
    assert_ne!(code, 0);
    assert!(missing.contains("no-such-service"), "{missing}");
}
