//! cubectl's answers to everyday mistakes and crashes: docker flags before `--` are usage
//! errors that submit nothing, `--wait` reports a task that exits instead of calling it
//! running, `stop` of several ids stops all it can, durations need their unit and refuse a
//! zero that means nothing, and usage lines show `--manager` as optional.
// A test fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::Cluster;

/// Proves that docker's `--rm`, `-d`, `-it` and `--detach` before `--` are usage errors
/// (exit 2) with a tip about `--` and about what Cube does instead, and that nothing is
/// submitted.
#[test]
fn docker_flags_before_the_command_are_usage_errors() {
    let cluster = Cluster::builder().start();
    let ctl = cluster.ctl();
    // clap names the first unknown letter of a cluster: `-i` of `-it`.
    for (flag, named, tip) in [
        ("--rm", "--rm", "keeps finished tasks"),
        ("-d", "-d", "never attaches"),
        ("-it", "-i", "no interactive tasks"),
        ("--detach", "--detach", "never attaches"),
    ] {
        let (code, stdout, stderr) = ctl.call(&["run", flag, "--", "true"]);
        assert_eq!(code, 2, "run {flag}: {stderr}");
        assert!(stdout.is_empty(), "run {flag} printed an id: {stdout}");
        assert!(stderr.contains(&format!("'{named}'")), "{flag}: {stderr}");
        assert!(stderr.contains("after `--`"), "{flag}: {stderr}");
        assert!(stderr.contains(tip), "{flag}: {stderr}");
    }
    assert!(
        ctl.tasks().is_empty(),
        "nothing was submitted: {:?}",
        ctl.tasks()
    );
    let id = ctl.run(&["--", "sh", "-c", "exit 0"]);
    assert_eq!(
        ctl.task(&id)["spec"]["args"],
        serde_json::json!(["sh", "-c", "exit 0"])
    );
}

/// Proves that `--wait` on a task that exits soon after it starts reports its exit code and fails, and
/// that `--wait` on a task that keeps running succeeds after the settle time.
#[test]
fn wait_reports_a_crash_and_accepts_a_task_that_keeps_running() {
    let cluster = Cluster::exec();
    let ctl = cluster.ctl();
    let (code, stdout, stderr) = ctl.call(&[
        "run",
        "--restart",
        "never",
        "--wait",
        "--",
        "sh",
        "-c",
        "sleep 0.3; exit 7",
    ]);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "the id is printed: {stdout}");
    assert!(stderr.contains("exit code 7"), "{stderr}");

    let (code, stdout, stderr) = ctl.call(&[
        "run",
        "--wait",
        "--settle",
        "1s",
        "--stop-grace",
        "1s",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let id = stdout.trim();
    assert_eq!(ctl.task(id)["state"], "TASK_STATE_RUNNING");
}

/// Proves that Ctrl-C during `--wait` says that the task goes on, and leaves it submitted.
#[test]
fn interrupting_wait_leaves_the_task_running() {
    // No workers: the task stays PENDING, so the wait lasts until it is interrupted.
    let cluster = Cluster::builder().start();
    let ctl = cluster.ctl();
    let child = ctl
        .command(&["run", "--wait", "--", "sleep", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_for(Duration::from_secs(10), "the task submitted", || {
        (!ctl.tasks().is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("goes on"), "{stderr}");
    let tasks = ctl.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        tasks[0]["desiredState"], "DESIRED_STATE_RUNNING",
        "{tasks:?}"
    );
}

/// Proves that `stop A BAD B` stops A and B, names the bad id and exits 1.
#[test]
fn stop_of_several_ids_stops_all_it_can() {
    let cluster = Cluster::exec();
    let ctl = cluster.ctl();
    let run = || ctl.run(&["--stop-grace", "1s", "--", "sleep", "300"]);
    let (a, b) = (run(), run());
    let unknown = uuid::Uuid::new_v4().to_string();
    let (code, stdout, stderr) = ctl.call(&["stop", &a, "not-an-id", &unknown, &b]);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    let stopped: Vec<&str> = stdout.lines().collect();
    assert_eq!(stopped, [a.as_str(), b.as_str()], "{stderr}");
    assert!(stderr.contains("not-an-id"), "{stderr}");
    assert!(stderr.contains(&unknown), "{stderr}");
    assert!(stderr.contains("2 of 4"), "{stderr}");
    for id in [&a, &b] {
        ctl.wait_state(id, "TASK_STATE_COMPLETED", Duration::from_secs(20));
    }
}

/// Proves that a zero `--timeout` and a duration without its unit are usage errors that
/// name the flag and the cause.
#[test]
fn durations_need_a_unit_and_a_timeout_more_than_zero() {
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let (code, _, stderr) = common::cubectl(&url, &["--timeout", "0", "status"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--timeout"), "{stderr}");
    assert!(stderr.contains("more than zero"), "{stderr}");

    let (code, _, stderr) = common::cubectl(&url, &["run", "--stop-grace", "5"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--stop-grace"), "{stderr}");
    assert!(stderr.contains("needs a unit"), "{stderr}");

    let (code, _, stderr) = common::cubectl(&url, &["run", "--wait", "--wait-timeout", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--wait-timeout"), "{stderr}");
}

/// Proves that usage lines show `--manager` as optional, whether it came from the command
/// line or from CUBE_MANAGER.
#[test]
fn usage_shows_manager_as_optional() {
    let url = "http://127.0.0.1:1";
    let out = Command::new(common::bin("cubectl"))
        .args(["stop"])
        .env("CUBE_MANAGER", url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("Usage: cubectl stop [OPTIONS] [TASK]..."),
        "{stderr}"
    );
    let (code, _, stderr) = common::cubectl(url, &["stop", "--manager", url]);
    assert_eq!(code, 2, "{stderr}");
    assert!(!stderr.contains("stop --manager <"), "{stderr}");
}
