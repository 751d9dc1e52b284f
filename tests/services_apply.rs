//! `cubectl apply -f FILE` on a real manager with Exec workers: a file declares a service and
//! a task; applied twice it changes nothing; a changed template becomes an update; a bad file
//! is refused naming the field, and nothing of it is sent.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::services::{exec_cluster, wait_running};

/// The file: service `name` with 2 replicas sleeping `seconds`, and one task sleeping 300.
fn file(name: &str, seconds: &str) -> String {
    format!(
        "- service:\n    name: {name}\n    replicas: 2\n    \
         task: {{args: [sleep, '{seconds}']}}\n    updateConfig: {{monitor: 300ms}}\n\
         - name: {name}-once\n  args: [sleep, '300']\n"
    )
}

/// An Exec cluster, a temporary folder for the file, and a service name from `prefix`.
fn setup(prefix: &str) -> (common::Cluster, tempfile::TempDir, String) {
    (exec_cluster(), common::temp_dir(), common::unique(prefix))
}

#[test]
fn applying_a_file_twice_changes_nothing_and_a_changed_template_updates() {
    let (cluster, dir, name) = setup("apply");
    let ctl = cluster.ctl();
    let path = dir.path().join("cube.yaml");
    let path_text = path.to_str().unwrap();

    std::fs::write(&path, file(&name, "300")).unwrap();
    let first = ctl.ok(&["apply", "-f", path_text]);
    assert!(
        first.contains(&format!("service {name}: created (version 1)")),
        "{first}"
    );
    let task_line = first.lines().find(|l| l.starts_with("task ")).unwrap();
    assert!(task_line.ends_with(": created"), "{first}");
    wait_running(&ctl, &name, 2, "1", Duration::from_secs(10));
    let tasks_before = ctl.tasks().len();
    assert_eq!(tasks_before, 3, "2 replicas and the task");

    let again = ctl.ok(&["apply", "-f", path_text]);
    assert!(
        again.contains(&format!("service {name}: unchanged (version 1)")),
        "{again}"
    );
    let same_task = task_line.replace(": created", ": unchanged");
    assert!(
        again.contains(&same_task),
        "the same task, not a new one: {again}"
    );
    let service = common::json(&ctl.ok(&["service", "inspect", &name]))["service"].clone();
    assert_eq!(service["version"], "1", "no new version: {service}");
    assert_eq!(ctl.tasks().len(), tasks_before, "no new task");

    std::fs::write(&path, file(&name, "301")).unwrap();
    let changed = ctl.ok(&["apply", "-f", path_text]);
    assert!(
        changed.contains(&format!("service {name}: updated to version 2")),
        "{changed}"
    );
    assert!(
        changed.contains(&same_task),
        "the task did not change: {changed}"
    );
    let slots = wait_running(&ctl, &name, 2, "2", Duration::from_secs(15));
    assert_eq!(slots.len(), 2);
    let service = common::json(&ctl.ok(&["service", "inspect", &name]))["service"].clone();
    assert_eq!(service["spec"]["task"]["args"][1], "301", "{service}");
}

#[test]
fn a_bad_apply_file_is_refused_naming_the_field_and_sends_nothing() {
    let (cluster, dir, name) = setup("applybad");
    let ctl = cluster.ctl();
    let path = dir.path().join("bad.yaml");
    let text = format!(
        "- service: {{name: {name}, replicas: 1, task: {{args: [sleep, '9']}}}}\n\
         - service: {{name: {name}-2, replicas: many}}\n"
    );
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = ctl.call(&["apply", "-f", path.to_str().unwrap()]);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("[1].service.replicas"), "{err}");
    let (code, _, err) = ctl.call(&["service", "inspect", &name]);
    assert_ne!(code, 0, "the first service was not sent either");
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );

    std::fs::write(&path, "- service: {name: x, replicas: 1}\n  image: a\n").unwrap();
    let (code, _, err) = ctl.call(&["apply", "-f", path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("service"), "{err}");
}
