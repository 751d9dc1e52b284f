//! cubectl against a real cube-manager with no workers (no Docker needed): exit codes, error
//! messages and hints, task files, proto3 JSON output, --wait on a task no node can take,
//! retries of a submission while the manager is not yet up, and the live watch.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{cubectl, free_port, json, Cluster, Cubectl};

/// Proves exit code 1 with the cause and the hint when no manager listens, for a read verb
/// and for `run` (which retries for a while first), and that CUBE_MANAGER is honoured.
#[test]
fn unreachable_manager_exits_1_with_a_hint() {
    let url = format!("http://127.0.0.1:{}", free_port());
    for args in [&["status"][..], &["nodes", "-o", "json"], &["events"]] {
        let (code, stdout, stderr) = cubectl(&url, args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
        assert!(
            stderr.starts_with(&format!("error: manager unreachable at {url}: ")),
            "{stderr}"
        );
        assert!(
            stderr.contains("\nhint: is cube-manager running? (cube-manager --dev starts one)\n"),
            "{stderr}"
        );
    }

    let out = Command::new(common::bin("cubectl"))
        .args(["status"])
        .env("CUBE_MANAGER", &url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!("unreachable at {url}")),
        "{stderr}"
    );

    let started = Instant::now();
    let (code, stdout, stderr) = cubectl(&url, &["run", "--image", "x"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("retrying"), "run retries: {stderr}");
    assert!(
        stderr.contains("hint: is cube-manager running?"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "run gave up after {:?}",
        started.elapsed()
    );
}

/// Proves every call has a deadline: a "manager" that accepts connections and never answers
/// makes cubectl fail with exit 1 soon after `--timeout`, instead of hanging.
#[test]
fn a_silent_manager_fails_within_the_deadline() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            sink.lock().unwrap().push(stream);
        }
    });
    let started = Instant::now();
    let (code, stdout, stderr) = cubectl(&url, &["--timeout", "1s", "status"]);
    let took = started.elapsed();
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.starts_with(&format!(
            "error: manager at {url} did not answer within 1s\n"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("\nhint: "), "{stderr}");
    assert!(took < Duration::from_secs(5), "gave up after {took:?}");
    assert!(!held.lock().unwrap().is_empty(), "cubectl did connect");
}

/// Proves usage errors exit with 2 (clap's code) before any request is made.
#[test]
fn usage_errors_exit_2() {
    let url = format!("http://127.0.0.1:{}", free_port());
    for args in [
        &["frobnicate"][..],
        &["run"],
        &["run", "--image", "x", "--cpu", "lots"],
        &["run", "--image", "x", "-p", "http"],
        &["status", "--state", "sleeping"],
        &["nodes", "-o", "yaml"],
        &["logs"],
        &["completion", "tcsh"],
    ] {
        let (code, _, stderr) = cubectl(&url, args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("error:"), "{stderr}");
        assert!(
            !stderr.contains("unreachable"),
            "no request was made: {stderr}"
        );
    }
    let (code, stdout, _) = cubectl(&url, &["completion", "bash"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("cubectl"), "{stdout}");
}

/// Proves that unknown and malformed ids give the server's message and a hint, and that an
/// invalid spec is refused with the field named.
#[test]
fn unknown_ids_and_invalid_specs_fail_with_the_cause() {
    let cluster = Cluster::builder().start();
    let url = cluster.url();
    let id = "0b5c3a52-1f0e-4d51-9a8e-2f1c7f0e9b11";
    for verb in ["status", "stop", "explain"] {
        let (code, stdout, stderr) = cubectl(&url, &[verb, id]);
        assert_eq!(code, 1, "{verb}: {stderr}");
        assert!(stdout.is_empty());
        assert!(
            stderr.starts_with(&format!("error: task \"{id}\" not found\n")),
            "{verb}: {stderr}"
        );
        assert!(
            stderr.contains("hint: cubectl status -a lists tasks"),
            "{verb}: {stderr}"
        );
    }
    let (code, _, stderr) = cubectl(&url, &["status", "no/pe"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("task_id"), "{stderr}");

    let (code, stdout, stderr) = cubectl(&url, &["run", "--image", "two words"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.starts_with("error: spec.image: must not contain spaces\n"),
        "{stderr}"
    );
    let (code, _, stderr) = cubectl(&url, &["run", "--image", "x", "--name", "no spaces"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("error: spec.name: "), "{stderr}");
}

/// Proves task files: a list is submitted as one id per line; a bad field anywhere in the
/// file is refused with its path and nothing is submitted.
#[test]
fn task_files_submit_lists_and_name_bad_fields() {
    let cluster = Cluster::builder().start();
    let url = cluster.url();

    let bad = cluster.dir().join("task.yaml");
    std::fs::write(
        &bad,
        "- image: cube-test/busybox:latest\n- image: cube-test/busybox:latest\n  resources:\n    cpu_millis: lots\n",
    )
    .unwrap();
    let (code, stdout, stderr) = cubectl(&url, &["run", "-f", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("task.yaml: [1].resources.cpu_millis: "),
        "{stderr}"
    );
    std::fs::write(&bad, "image: x\ncolour: red\n").unwrap();
    let (code, _, stderr) = cubectl(&url, &["run", "-f", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("colour"), "{stderr}");
    // A list the manager refuses (a bad name in its second task) is refused whole.
    std::fs::write(&bad, "- image: x\n- image: x\n  name: no spaces\n").unwrap();
    let (code, stdout, stderr) = cubectl(&url, &["run", "-f", bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("tasks[1].spec.name"), "{stderr}");
    let (_, stdout, _) = cubectl(&url, &["status", "-o", "json"]);
    assert!(
        json(&stdout).get("tasks").is_none(),
        "nothing was submitted: {stdout}"
    );

    let good = cluster.dir().join("tasks.json");
    std::fs::write(
        &good,
        r#"[{"name": "one", "image": "cube-test/busybox:latest", "args": ["sleep", "60"]},
            {"name": "two", "image": "cube-test/busybox:latest",
             "resources": {"cpuMillis": "250", "memory_bytes": 8388608}}]"#,
    )
    .unwrap();
    let (code, stdout, stderr) = cubectl(&url, &["run", "-f", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let ids: Vec<&str> = stdout.lines().collect();
    assert_eq!(ids.len(), 2, "{stdout}");
    let (_, stdout, _) = cubectl(&url, &["status", ids[1], "-o", "json"]);
    let task = &json(&stdout)["task"];
    assert_eq!(task["spec"]["name"], "two");
    assert_eq!(task["spec"]["resources"]["cpuMillis"], "250");
    assert_eq!(task["spec"]["resources"]["memoryBytes"], "8388608");

    // --count: that many copies, one id per line; with -f, that many of each.
    let (code, stdout, stderr) = cubectl(
        &url,
        &["run", "--image", "x", "--name", "copies", "--count", "3"],
    );
    assert_eq!(code, 0, "{stderr}");
    let copies: Vec<&str> = stdout.lines().collect();
    assert_eq!(copies.len(), 3, "{stdout}");
    for id in &copies {
        let (_, stdout, _) = cubectl(&url, &["status", id, "-o", "json"]);
        assert_eq!(json(&stdout)["task"]["spec"]["name"], "copies");
    }
    let (code, stdout, stderr) = cubectl(
        &url,
        &["run", "-f", good.to_str().unwrap(), "--replicas", "2"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    let (code, _, stderr) = cubectl(&url, &["run", "--image", "x", "--count", "0"]);
    assert_eq!(code, 2, "{stderr}");
}

/// Proves `run` prints the id alone on stdout, and that `-o json` on every read verb prints
/// the response in the proto3 JSON mapping (lowerCamelCase names, enum names) while the table
/// shows the same task.
#[test]
fn run_prints_the_id_and_read_verbs_print_proto3_json() {
    let cluster = Cluster::builder().start();
    let url = cluster.url();
    let (code, stdout, stderr) = cubectl(
        &url,
        &[
            "run",
            "--image",
            "cube-test/busybox:latest",
            "--name",
            "sleepy",
            "--env",
            "A=1",
            "--cpu",
            "250m",
            "--",
            "sleep",
            "300",
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    let id = stdout.trim();
    assert_eq!(stdout, format!("{id}\n"), "the id alone on the first line");
    assert_eq!(id.len(), 36, "a full UUID: {id}");

    let (code, stdout, _) = cubectl(&url, &["status", "-o", "json"]);
    assert_eq!(code, 0);
    let list = json(&stdout);
    let tasks = list["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["id"], id);
    assert_eq!(tasks[0]["state"], "TASK_STATE_PENDING");
    assert_eq!(tasks[0]["desiredState"], "DESIRED_STATE_RUNNING");
    assert!(tasks[0]["createdAt"].is_string());
    assert_eq!(tasks[0]["spec"]["resources"]["cpuMillis"], "250");
    assert_eq!(tasks[0]["spec"]["env"]["A"], "1");
    assert!(tasks[0].get("task_id").is_none() && tasks[0].get("created_at").is_none());

    let (_, stdout, _) = cubectl(&url, &["status", id, "-o", "json"]);
    let detail = json(&stdout);
    assert_eq!(detail["task"]["id"], id);
    assert_eq!(detail["events"][0]["taskId"], id);
    assert_eq!(detail["events"][0]["type"], "EVENT_TYPE_SUBMITTED");

    let (_, stdout, _) = cubectl(&url, &["events", "-o", "json"]);
    assert_eq!(json(&stdout)["events"][0]["taskId"], id);
    let (_, stdout, _) = cubectl(&url, &["nodes", "-o", "json"]);
    assert!(json(&stdout).is_object());
    let (_, stdout, _) = cubectl(&url, &["explain", id, "-o", "json"]);
    assert_eq!(json(&stdout)["task"]["id"], id);

    let (code, table, _) = cubectl(&url, &["status"]);
    assert_eq!(code, 0);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "NAME", "STATE", "HEALTH", "NODE", "IMAGE", "AGE", "RESTARTS", "EXIT"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], [&id[..8], "sleepy", "PENDING"]);
    let (_, filtered, _) = cubectl(&url, &["status", "--state", "running"]);
    assert_eq!(filtered.lines().count(), 1, "only the header: {filtered}");

    let (_, detail, _) = cubectl(&url, &["status", id]);
    assert!(
        detail.contains(&format!("ID:            {id}\n")),
        "{detail}"
    );
    assert!(detail.contains("Args:          sleep 300\n"), "{detail}");
    assert!(detail.contains("SUBMITTED"), "{detail}");
}

/// Proves `run --wait` on a task no node can take: exit 1, the id still printed, and the
/// pending reason with a hint to `explain`.
#[test]
fn wait_says_why_a_task_stays_pending() {
    let cluster = Cluster::builder().start();
    let url = cluster.url();
    let (code, stdout, stderr) = cubectl(
        &url,
        &["run", "--image", "x", "--wait", "--wait-timeout", "1s"],
    );
    assert_eq!(code, 1, "{stderr}");
    let id = stdout.trim();
    assert_eq!(id.len(), 36, "{stdout}");
    assert!(
        stderr.contains(&format!("task {}: PENDING", &id[..8])),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("error: task {id} is still PENDING after 1s: ")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("hint: cubectl explain {id}")),
        "{stderr}"
    );
}

/// Proves `run` keeps retrying the same request while the manager is not up yet: started
/// before the manager, it succeeds once the manager listens, and exactly one task exists.
#[test]
fn run_retries_until_the_manager_answers() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let run = Cubectl::new(&url)
        .command(&["run", "--image", "x"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let _cluster = Cluster::builder()
        .listen(&format!("127.0.0.1:{port}"))
        .plaintext()
        .start();
    let out = run.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("retrying"),
        "it did have to retry: {stderr}"
    );
    let id = stdout.trim();
    let (_, listed, _) = cubectl(&url, &["status", "-o", "json"]);
    let tasks = json(&listed)["tasks"].as_array().unwrap().clone();
    assert_eq!(tasks.len(), 1, "{listed}");
    assert_eq!(tasks[0]["id"], id);
}

/// Proves `watch` renders the stream live: the current tasks first, then a task submitted
/// while it watches, as JSON lines (one WatchTasksResponse each) and as table rows.
#[test]
fn watch_prints_changes_as_they_happen() {
    let cluster = Cluster::builder().start();
    let url = cluster.url();
    let (_, first, _) = cubectl(&url, &["run", "--image", "x", "--name", "before"]);

    let first = first.trim().to_string();
    // What marks the end of the current state: the synced message in JSON; in the table (the
    // synced note goes to stderr) the row of the task that exists.
    for (args, end_of_snapshot) in [
        (&["watch", "-o", "json"][..], "\"synced\":true"),
        (&["status", "--watch"], &first[..8]),
    ] {
        let (mut watch, rx) = Cubectl::new(&url).follow(args);
        let next = || rx.recv_timeout(Duration::from_secs(10)).expect("a line");
        let mut snapshot = Vec::new();
        loop {
            let line = next();
            let done = line.contains(end_of_snapshot);
            snapshot.push(line);
            if done {
                break;
            }
        }
        assert!(
            snapshot.iter().any(|l| l.contains(&first[..8])),
            "{args:?} shows the task that exists: {snapshot:?}"
        );
        let (_, second, _) = cubectl(&url, &["run", "--image", "x", "--name", "after"]);
        let second = second.trim().to_string();
        let line = loop {
            let line = next();
            if line.contains(&second[..8]) {
                break line;
            }
        };
        if args.contains(&"json") {
            let message = json(&line);
            assert_eq!(message["task"]["id"], second.as_str());
            assert_eq!(message["task"]["spec"]["name"], "after");
        } else {
            assert!(line.contains("after") && line.contains("PENDING"), "{line}");
        }
        let _ = watch.kill();
        let _ = watch.wait();
    }
}

/// Proves the typed client: the same request_id sent twice gives one task (the second answer
/// says it was not created), pages are joined, and statuses keep their codes.
#[tokio::test]
async fn client_submits_idempotently_and_joins_pages() {
    use cube::{client::Client, pb};
    let cluster = Cluster::builder().start();
    let credentials = cube::client::Credentials {
        token: Some(cluster.tokens().admin.clone()),
        ca_pem: None,
    };
    let client =
        Client::with_credentials(&cluster.url(), Duration::from_secs(5), &credentials).unwrap();
    let spec = pb::TaskSpec {
        image: "x".into(),
        ..Default::default()
    };
    let first = client
        .submit_task(spec.clone(), "key-1", |_| {})
        .await
        .unwrap();
    let again = client
        .submit_task(spec.clone(), "key-1", |_| {})
        .await
        .unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.task.unwrap().id, again.task.unwrap().id);
    for i in 0..3 {
        client
            .submit_task(spec.clone(), &format!("key-{}", i + 2), |_| {})
            .await
            .unwrap();
    }
    let page = client
        .list_tasks(pb::ListTasksRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.tasks.len(), 2);
    assert!(!page.next_page_token.is_empty());
    let all = client
        .clone()
        .with_page_size(3)
        .list_all_tasks(pb::ListTasksRequest::default())
        .await
        .unwrap();
    assert_eq!(all.tasks.len(), 4, "two pages of 3 and 1 joined");
    assert!(all.next_page_token.is_empty());
    let missing = client
        .get_task("0b5c3a52-1f0e-4d51-9a8e-2f1c7f0e9b11")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}
