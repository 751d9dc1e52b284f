//! The Prometheus endpoints of real cube-manager and cube-worker processes (`--metrics-listen`),
//! scraped with a plain HTTP GET over TCP: the text parses as the exposition format, and the
//! values move as a task is submitted, runs, fails its health probe and stops. Both servers run
//! with `--log-format json` here, and every line they log must be a JSON object.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::{cubectl, http_get, metrics_address, scrape, wait_for, Cluster, Runtime, TEST_IMAGE};

/// One sample line of the exposition format.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("{text:?} is not a number")),
    }
}

/// `{a="x",b="y"}` (the braces already removed) into pairs; values may hold escaped quotes.
fn parse_labels(mut text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (name, rest) = text
            .split_once("=\"")
            .ok_or_else(|| format!("label without =\" in {text:?}"))?;
        if !is_metric_name(name) || name.contains(':') {
            return Err(format!("bad label name {name:?}"));
        }
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value in {text:?}")),
            }
        };
        labels.insert(name.to_string(), value);
        text = &rest[end + 1..];
        text = text.strip_prefix(',').unwrap_or(text);
    }
    Ok(labels)
}

/// Checks the Prometheus text format line by line and returns the samples: `# HELP name text`,
/// `# TYPE name kind`, and `name{labels} value` lines whose family was typed before them.
fn parse_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !is_metric_name(name) {
                return Err(at("bad HELP name".into()));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a kind".into()))?;
            if !is_metric_name(name) {
                return Err(at("bad TYPE name".into()));
            }
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind}")));
            }
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue; // a comment
        }
        let (series, rest) = match line.find('{') {
            Some(_) => {
                let close = line.rfind('}').ok_or_else(|| at("unclosed {".into()))?;
                (&line[..close + 1], line[close + 1..].trim_start())
            }
            None => line.split_once(' ').ok_or_else(|| at("no value".into()))?,
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, parse_labels(&labels[..labels.len() - 1]).map_err(at)?),
            None => (series, BTreeMap::new()),
        };
        if !is_metric_name(name) {
            return Err(at("bad metric name".into()));
        }
        let mut fields = rest.split_whitespace();
        let value = parse_value(fields.next().ok_or_else(|| at("no value".into()))?).map_err(at)?;
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<i64>()
                .map_err(|_| at("bad timestamp".into()))?;
        }
        let family = ["_bucket", "_sum", "_count", "_total"]
            .iter()
            .filter_map(|s| name.strip_suffix(s))
            .find(|base| types.contains_key(*base))
            .unwrap_or(name);
        if !types.contains_key(family) && !types.contains_key(name) {
            return Err(at("sample before its # TYPE".into()));
        }
        if types.get(family).is_some_and(|t| t == "histogram")
            && name.ends_with("_bucket")
            && !labels.contains_key("le")
        {
            return Err(at("histogram bucket without le".into()));
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(samples)
}

/// The scraped samples of `address`, checked as the exposition format.
fn samples(address: &str) -> Vec<Sample> {
    let text = scrape(address);
    parse_exposition(&text).unwrap_or_else(|e| panic!("not the exposition format: {e}\n{text}"))
}

/// The value of the sample `name` whose labels include `labels` (0 when there is none: a
/// labelled series appears once it is first touched).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .find(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .unwrap_or(0.0)
}

/// Every line of `logs` is a JSON object with a level and a message.
fn assert_json_logs(logs: &str, what: &str) {
    assert!(!logs.is_empty(), "{what} logged nothing");
    for line in logs.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{what} logged a line that is not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{what}: {line}"
        );
    }
}

/// A manager and a worker, both with `--metrics-listen 127.0.0.1:0` and JSON logs: their
/// endpoints parse as Prometheus text, and tasks by state, the pending queue, node states,
/// scheduling and submit-to-running latency, rpc counts and errors, runtime call latency and
/// failed health checks move as tasks run.
#[test]
fn endpoints_parse_and_move_when_tasks_run() {
    if !common::need_docker("endpoints_parse_and_move_when_tasks_run") {
        return;
    }
    let mut cluster = Cluster::builder()
        .worker(
            "metrics",
            &["--metrics-listen", "127.0.0.1:0", "--log-format", "json"],
        )
        .update_interval("300ms")
        .manager_args(&["--metrics-listen", "127.0.0.1:0"])
        // The flag's env var, as a deployment would set it.
        .manager_env("CUBE_LOG_FORMAT", "json")
        .start();
    let m_addr = metrics_address(cluster.manager());
    let w_addr = metrics_address(cluster.worker(0));
    let ctl = cluster.ctl();
    let url = cluster.url();

    wait_for(
        Duration::from_secs(10),
        "the node READY in the metrics",
        || {
            let s = samples(&m_addr);
            (value(&s, "cube_manager_nodes", &[("state", "READY")]) == 1.0).then_some(())
        },
    );
    let before = samples(&m_addr);
    assert_eq!(
        value(&before, "cube_manager_tasks", &[("state", "RUNNING")]),
        0.0
    );
    assert_eq!(
        value(&before, "cube_manager_nodes", &[("state", "DOWN")]),
        0.0
    );
    let submit = [
        ("method", "/cube.v1.ManagerService/SubmitTask"),
        ("code", "Ok"),
    ];
    let submits_before = value(&before, "cube_rpc_duration_seconds_count", &submit);
    let polls = [
        ("method", "/cube.v1.WorkerService/ListTasks"),
        ("code", "Ok"),
    ];
    let worker_before = samples(&w_addr);
    assert_eq!(
        value(&worker_before, "cube_worker_tasks", &[("state", "RUNNING")]),
        0.0
    );
    assert!(
        value(&worker_before, "cube_rpc_duration_seconds_count", &polls) >= 1.0,
        "the manager's polls are counted by the worker"
    );

    // A task that runs, with a health probe that always fails (many retries: it stays RUNNING).
    let id = ctl.run(&[
        "--image",
        TEST_IMAGE,
        "--stop-grace",
        "1s",
        "--health-cmd",
        "exit 1",
        "--health-interval",
        "300ms",
        "--health-retries",
        "1000",
        "--",
        "sh",
        "-c",
        "trap 'exit 0' TERM; sleep 300 & wait",
    ]);
    ctl.wait_state(&id, "TASK_STATE_RUNNING", Duration::from_secs(20));
    let after = wait_for(Duration::from_secs(5), "RUNNING 1 in the metrics", || {
        let s = samples(&m_addr);
        (value(&s, "cube_manager_tasks", &[("state", "RUNNING")]) == 1.0).then_some(s)
    });
    assert_eq!(
        value(&after, "cube_rpc_duration_seconds_count", &submit),
        submits_before + 1.0
    );
    assert_eq!(
        value(&after, "cube_manager_submit_to_running_seconds_count", &[]),
        1.0
    );
    let to_running = value(&after, "cube_manager_submit_to_running_seconds_sum", &[]);
    assert!(to_running > 0.0 && to_running < 20.0, "{to_running}");
    assert!(
        value(
            &after,
            "cube_manager_scheduling_seconds_count",
            &[("strategy", "spread")]
        ) >= 1.0
    );
    assert_eq!(value(&after, "cube_manager_pending_tasks", &[]), 0.0);

    let worker_after = wait_for(
        Duration::from_secs(10),
        "a failed health probe counted",
        || {
            let s = samples(&w_addr);
            (value(
                &s,
                "cube_worker_health_check_failures_total",
                &[("probe", "exec")],
            ) >= 1.0)
                .then_some(s)
        },
    );
    assert_eq!(
        value(&worker_after, "cube_worker_tasks", &[("state", "RUNNING")]),
        1.0
    );
    assert!(
        value(
            &worker_after,
            "cube_worker_runtime_call_seconds_count",
            &[("call", "start"), ("outcome", "ok")]
        ) >= 1.0
    );
    assert!(
        value(
            &worker_after,
            "cube_rpc_duration_seconds_count",
            &[
                ("method", "/cube.v1.WorkerService/StartTasks"),
                ("code", "Ok")
            ]
        ) >= 1.0
    );

    // An rpc that fails is counted by method and code.
    let missing = "00000000-0000-4000-8000-000000000000";
    let (code, _, _) = cubectl(&url, &["status", missing]);
    assert_eq!(code, 1);
    let errors = [
        ("method", "/cube.v1.ManagerService/GetTask"),
        ("code", "NotFound"),
    ];
    assert_eq!(
        value(&samples(&m_addr), "cube_rpc_errors_total", &errors),
        1.0
    );

    // A task no node can take is pending.
    let big = ctl.run(&["--image", TEST_IMAGE, "--cpu", "1000", "--", "sleep", "1"]);
    wait_for(Duration::from_secs(5), "the pending gauge at 1", || {
        let s = samples(&m_addr);
        (value(&s, "cube_manager_pending_tasks", &[]) == 1.0
            && value(&s, "cube_manager_tasks", &[("state", "PENDING")]) == 1.0)
            .then_some(())
    });
    assert_eq!(cubectl(&url, &["stop", &big]).0, 0);

    // Stopped: RUNNING goes back to 0 on both sides, and the stop call is timed.
    assert_eq!(cubectl(&url, &["stop", &id]).0, 0);
    ctl.wait_state(&id, "TASK_STATE_COMPLETED", Duration::from_secs(20));
    let end = samples(&m_addr);
    assert_eq!(
        value(&end, "cube_manager_tasks", &[("state", "RUNNING")]),
        0.0
    );
    // Both stopped tasks are COMPLETED: the running one, and the pending one that never ran.
    assert_eq!(
        value(&end, "cube_manager_tasks", &[("state", "COMPLETED")]),
        2.0
    );
    assert_eq!(value(&end, "cube_manager_pending_tasks", &[]), 0.0);
    let worker_end = samples(&w_addr);
    assert_eq!(
        value(&worker_end, "cube_worker_tasks", &[("state", "RUNNING")]),
        0.0
    );
    assert!(
        value(
            &worker_end,
            "cube_worker_runtime_call_seconds_count",
            &[("call", "stop"), ("outcome", "ok")]
        ) >= 1.0
    );

    // Only /metrics is served.
    let (status, _) = http_get(&m_addr, "/other");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");

    let (manager_log, worker_log) = (cluster.manager().log.clone(), cluster.worker(0).log.clone());
    assert!(cluster.terminate_manager(), "the manager exits cleanly");
    assert!(cluster.terminate_worker(0), "the worker exits cleanly");
    assert_json_logs(
        &manager_log.lock().unwrap(),
        "cube-manager --log-format json",
    );
    assert_json_logs(&worker_log.lock().unwrap(), "cube-worker --log-format json");
    assert!(worker_log.lock().unwrap().contains("worker starting"));
}

/// `cube-manager --dev --metrics-listen`: one endpoint serves the manager's and the embedded
/// worker's metrics. Without the flag no endpoint is served.
#[test]
fn dev_endpoint_serves_manager_and_worker() {
    if !common::need_docker("dev_endpoint_serves_manager_and_worker") {
        return;
    }
    let mut cluster = Cluster::builder()
        .dev()
        .manager_args(&["--log-format", "json"])
        .manager_env("CUBE_METRICS_LISTEN", "127.0.0.1:0")
        .start();
    let address = metrics_address(cluster.manager());
    let s = wait_for(Duration::from_secs(10), "the dev worker polled", || {
        let s = samples(&address);
        (value(&s, "cube_manager_nodes", &[("state", "READY")]) == 1.0).then_some(s)
    });
    for family in [
        "cube_manager_tasks",
        "cube_worker_tasks",
        "cube_manager_pending_tasks",
    ] {
        assert!(s.iter().any(|x| x.name == family), "{family} missing");
    }
    assert!(
        value(
            &s,
            "cube_rpc_duration_seconds_count",
            &[
                ("method", "/cube.v1.WorkerService/GetStats"),
                ("code", "Ok")
            ]
        ) >= 1.0,
        "the embedded worker's rpcs are counted"
    );
    assert!(cluster.terminate_manager());

    // RUST_LOG is respected: the metrics module may log at info, the rest only warnings.
    let plain = Cluster::builder()
        .without_manager()
        .runtime(Runtime::Exec)
        .worker("metrics-off", &[])
        .worker_env("RUST_LOG", "warn,cube::metrics=info")
        .start();
    // Both would be logged by now: the endpoint before the address is announced, `worker
    // starting` (logged at info in the test above) right after.
    std::thread::sleep(Duration::from_millis(300));
    let logs = plain.worker(0).logs();
    assert!(
        !logs.contains("metrics endpoint"),
        "no endpoint without --metrics-listen: {logs}"
    );
    assert!(
        !logs.contains("worker starting"),
        "RUST_LOG=warn hides info lines: {logs}"
    );
}

/// The validator itself: it accepts the format and refuses what is not.
#[test]
fn the_exposition_validator_refuses_bad_text() {
    let good =
        "# HELP a_total Things.\n# TYPE a_total counter\na_total{k=\"v \\\"q\\\"\",m=\"2\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n";
    let s = parse_exposition(good).unwrap();
    assert_eq!(s.len(), 4);
    assert_eq!(s[0].labels["k"], "v \"q\"");
    for bad in [
        "a 1\n",                                     // no TYPE
        "# TYPE a gauge\na one\n",                   // not a number
        "# TYPE a gauge\na{k=\"v} 1\n",              // unterminated label
        "# TYPE a thing\na 1\n",                     // unknown type
        "# TYPE h histogram\nh_bucket{x=\"1\"} 1\n", // bucket without le
        "# TYPE 1a gauge\n",                         // bad name
    ] {
        assert!(parse_exposition(bad).is_err(), "accepted {bad:?}");
    }
}
