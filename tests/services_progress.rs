//! `cubectl service create` and `service update` follow their rollout, here in the plain form
//! (stdout is not a terminal): one line per change of the rollout or a slot, no cursor moves,
//! exit 0 once every replica is up, non-zero when the rollout is rolled back.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::services::{exec_cluster, slots};

/// A create without --detach returns once both replicas run, having printed the id and then
/// plain progress lines per slot; an update of the args follows the rollout to its end.
#[test]
fn create_and_update_follow_the_rollout_in_plain_lines() {
    let cluster = exec_cluster();
    let ctl = cluster.ctl();
    let name = common::unique("prog");
    let create = ["service", "create", "--name", &name, "--replicas", "2"];
    let out = ctl.ok(&[&create[..], &["--", "sleep", "300"]].concat());
    let id = out.lines().next().unwrap();
    assert_eq!(id.len(), 36, "the id comes first: {out}");
    assert!(
        !out.contains('\x1b'),
        "no cursor moves when not a terminal: {out}"
    );
    assert!(
        out.contains(&format!("{name}: task version 1: no rollout")),
        "{out}"
    );
    assert!(out.contains("1/2: version 1 RUNNING"), "{out}");
    assert!(out.contains("2/2: version 1 RUNNING"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let mut unique = lines.clone();
    unique.dedup();
    assert_eq!(
        unique, lines,
        "a line is printed only when it changes: {out}"
    );
    let now = slots(&ctl, &name);
    assert!(
        now.values()
            .all(|(state, _, v)| state == "TASK_STATE_RUNNING" && v == "1")
            && now.len() == 2,
        "converged when cubectl returned: {now:?}"
    );

    let update = ["service", "update", &name, "--update-monitor", "300ms"];
    let out = ctl.ok(&[&update[..], &["--", "sleep", "301"]].concat());
    assert!(out.contains("rollout UPDATING"), "{out}");
    let done = slots(&ctl, &name);
    assert!(
        done.values()
            .all(|(state, _, v)| state == "TASK_STATE_RUNNING" && v == "2"),
        "every slot on version 2 when cubectl returned: {done:?}\n{out}"
    );
}

/// An update whose command exits 1 at once: cubectl follows it until it is rolled back and
/// exits non-zero, saying why, once the rollback has ended.
#[test]
fn an_update_rolled_back_exits_non_zero() {
    let cluster = exec_cluster();
    let ctl = cluster.ctl();
    let name = common::unique("progbad");
    ctl.ok(&[
        "service",
        "create",
        "--name",
        &name,
        "--replicas",
        "2",
        "--",
        "sleep",
        "300",
    ]);
    let update = ["service", "update", &name, "--update-monitor", "2s"];
    let (code, out, err) = ctl.call(&[&update[..], &["--", "sh", "-c", "exit 1"]].concat());
    assert_eq!(code, 1, "a rolled-back rollout fails: {out}\n{err}");
    assert!(out.contains("rollout ROLLING_BACK"), "{out}");
    assert!(
        err.contains("failed") && err.contains("version 2 failed"),
        "{err}"
    );
    let service = common::json(&ctl.ok(&["service", "inspect", &name]))["service"].clone();
    assert_eq!(
        service["rollout"]["state"], "ROLLOUT_STATE_ROLLED_BACK",
        "cubectl returned once the rollback ended: {service}"
    );
}
