//! A real `cube-worker` on the Docker runtime, driven over gRPC: start, stop, exits, a
//! container removed behind its back, a missing image, bad input, stats, logs, health and
//! reflection through the real grpcurl. One worker process serves all the checks.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{process::Command, time::Duration};

use common::{
    containers_of, docker_inspect, grpcurl_run, need_docker, new_id, spec, temp_dir, unique,
    Cluster, WorkerClient,
};
use cube::pb::{self, TaskState};
use tonic::Code;

/// One Docker worker with `extra` flags, and no manager.
fn docker_worker(extra: &[&str]) -> Cluster {
    Cluster::builder()
        .without_manager()
        .worker("w", extra)
        .start()
}

#[test]
fn docker_worker_runs_stops_and_reports_tasks() {
    if !need_docker("docker_worker_runs_stops_and_reports_tasks") {
        return;
    }
    let mut cluster = docker_worker(&["--label", "zone=a"]);
    let name = cluster.name(0).to_string();
    let addr = cluster.worker(0).addr.clone();
    let mut w = WorkerClient::connect(&addr);

    // sleep 300 with limits and a published port: RUNNING with a container id within 5 s.
    let sleeper = new_id();
    let mut sleep_spec = spec("sleeper", &["sleep", "300"]);
    sleep_spec.resources = Some(pb::Resources {
        cpu_millis: 500,
        memory_bytes: 64 << 20,
        disk_bytes: 0,
    });
    sleep_spec.ports = vec![pb::PortMapping {
        container_port: 8080,
        host_port: 0,
        protocol: 0,
    }];
    let accepted = w.start(&sleeper, sleep_spec.clone(), 0).unwrap();
    assert_eq!(accepted.state(), TaskState::Scheduled);
    assert_eq!(accepted.node, name);
    let exits3 = new_id();
    w.start(&exits3, spec("three", &["sh", "-c", "exit 3"]), 0)
        .unwrap();
    let exits0 = new_id();
    w.start(&exits0, spec("zero", &["sh", "-c", "exit 0"]), 0)
        .unwrap();
    let ghost = new_id();
    let mut ghost_spec = spec("ghost", &["sleep", "1"]);
    ghost_spec.image = "cube-test/does-not-exist:1".into();
    w.start(&ghost, ghost_spec, 0).unwrap();

    let running = w.wait_state(&sleeper, TaskState::Running, Duration::from_secs(5));
    assert!(!running.container_id.is_empty());
    assert!(running.started_at.is_some());
    assert_eq!(running.ports.len(), 1);
    assert_ne!(
        running.ports[0].host_port, 0,
        "the real host port is reported"
    );
    let cid = running.container_id.clone();
    assert_eq!(
        docker_inspect("{{index .Config.Labels \"cube.task-id\"}}", &cid),
        sleeper
    );
    assert_eq!(
        docker_inspect("{{index .Config.Labels \"cube.worker\"}}", &cid),
        name
    );
    assert_eq!(
        docker_inspect("{{.HostConfig.NanoCpus}}", &cid),
        "500000000"
    );
    assert_eq!(
        docker_inspect("{{.HostConfig.Memory}}", &cid),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        docker_inspect("{{.Name}}", &cid),
        format!("/cube-sleeper-{}", &sleeper.replace('-', "")[..8])
    );

    // Exit codes decide the end state.
    let three = w.wait_state(&exits3, TaskState::Failed, Duration::from_secs(10));
    assert_eq!(three.exit_code, Some(3));
    assert!(three.finished_at.is_some());
    let zero = w.wait_state(&exits0, TaskState::Completed, Duration::from_secs(10));
    assert_eq!(zero.exit_code, Some(0));

    // A missing image fails the task with Docker's reason; the worker goes on.
    let ghost = w.wait_state(&ghost, TaskState::Failed, Duration::from_secs(30));
    assert!(
        ghost
            .message
            .contains("image cube-test/does-not-exist:1 not found locally and could not be pulled"),
        "{}",
        ghost.message
    );

    // Stats answer at once with real totals and the count of unfinished tasks.
    let stats = w.stats();
    assert_eq!(stats.node, name);
    assert_eq!(stats.labels.get("zone").map(String::as_str), Some("a"));
    let s = stats.stats.unwrap();
    assert!(s.memory_total_bytes > 0 && s.disk_total_bytes > 0 && s.cpu_count > 0);
    assert_eq!(s.task_count, 1, "only the sleeper is unfinished");
    assert!(s.runtime_ready, "{}", s.runtime_message);
    assert_eq!(
        s.capacity.unwrap().cpu_millis,
        i64::from(s.cpu_count) * 1000
    );

    // Logs of an exited container still exist.
    let talker = new_id();
    w.start(
        &talker,
        spec("talker", &["sh", "-c", "echo out-line; echo err-line >&2"]),
        0,
    )
    .unwrap();
    w.wait_state(&talker, TaskState::Completed, Duration::from_secs(10));
    let logs = w
        .logs(
            pb::WorkerServiceStreamLogsRequest {
                task_id: talker.clone(),
                ..Default::default()
            },
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(logs
        .iter()
        .any(|(s, d, _)| *s == pb::LogStream::Stdout && d.contains("out-line")));
    assert!(logs
        .iter()
        .any(|(s, d, _)| *s == pb::LogStream::Stderr && d.contains("err-line")));
    let only_err = w
        .logs(
            pb::WorkerServiceStreamLogsRequest {
                task_id: talker.clone(),
                stderr: true,
                ..Default::default()
            },
            Duration::from_secs(5),
        )
        .unwrap();
    assert!(only_err.iter().all(|(s, _, _)| *s == pb::LogStream::Stderr));

    // Followed logs arrive as they are written, and the stream ends with the task.
    let ticker = new_id();
    w.start(
        &ticker,
        spec(
            "ticker",
            &[
                "sh",
                "-c",
                "for i in 1 2 3; do echo tick $i; sleep 0.6; done",
            ],
        ),
        0,
    )
    .unwrap();
    w.wait_state(&ticker, TaskState::Running, Duration::from_secs(5));
    let followed = w.follow_logs(&ticker, Duration::from_secs(15));
    let text: String = followed.iter().map(|(_, d, _)| d.as_str()).collect();
    assert!(text.contains("tick 3"), "{text}");
    let first = followed.first().unwrap().2;
    let last = followed.last().unwrap().2;
    assert!(
        last.duration_since(first) >= Duration::from_millis(500),
        "lines came as written, not at once"
    );

    // A container removed behind the worker's back is noticed.
    let victim = new_id();
    w.start(&victim, spec("victim", &["sleep", "300"]), 0)
        .unwrap();
    let v = w.wait_state(&victim, TaskState::Running, Duration::from_secs(5));
    common::run_ok("docker", &["rm", "-f", &v.container_id]);
    w.wait_state(&victim, TaskState::Failed, Duration::from_secs(5));
    common::wait_for(Duration::from_secs(5), "the removal in the message", || {
        w.task(&victim)
            .filter(|t| t.message.contains("removed outside Cube"))
    });

    // Bad input is refused with the field named.
    let err = w.start("not-a-uuid", spec("x", &["true"]), 0).unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("task_id"), "{}", err.message());
    let mut no_image = spec("x", &["true"]);
    no_image.image.clear();
    let err = w.start(&new_id(), no_image, 0).unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("spec.image"), "{}", err.message());
    let mut bad_name = spec("x", &["true"]);
    bad_name.name = "no spaces".into();
    let err = w.start(&new_id(), bad_name, 0).unwrap_err();
    assert!(err.message().contains("spec.name"), "{}", err.message());
    let mut negative = spec("x", &["true"]);
    negative.resources = Some(pb::Resources {
        memory_bytes: -1,
        ..Default::default()
    });
    let err = w.start(&new_id(), negative, 0).unwrap_err();
    assert!(
        err.message().contains("spec.resources.memory_bytes"),
        "{}",
        err.message()
    );
    let err = w.start(&sleeper, sleep_spec.clone(), 0).unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "a duplicate start");
    let err = w.stop(&new_id()).unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Only what changed since a revision is listed.
    let all = w.list_since(0, "");
    assert!(all.complete);
    assert_eq!(all.node, name);
    let delta = w.list_since(all.revision, &all.instance_id);
    assert!(!delta.complete);
    assert!(delta.tasks.is_empty(), "{:?}", delta.tasks);

    // Stop: SIGTERM, grace, kill, remove; the task is COMPLETED.
    w.stop(&sleeper).unwrap();
    let stopped = w.wait_state(&sleeper, TaskState::Completed, Duration::from_secs(15));
    assert_eq!(stopped.desired_state(), pb::DesiredState::Stopped);
    common::wait_for(
        Duration::from_secs(5),
        "the container to be removed",
        || (!containers_of(&name).contains(&cid[..12].to_string())).then_some(()),
    );
    let delta = w.list_since(all.revision, &all.instance_id);
    assert_eq!(
        delta
            .tasks
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        vec![sleeper.as_str()]
    );
    // Stopping again changes nothing.
    let again = w.stop(&sleeper).unwrap();
    assert_eq!(again.state(), TaskState::Completed);

    // A higher attempt of a finished task starts it again.
    let rerun = w
        .start(&exits3, spec("three", &["sleep", "300"]), 1)
        .unwrap();
    assert_eq!(rerun.restart_count, 1);
    let rerun = w.wait_state(&exits3, TaskState::Running, Duration::from_secs(5));
    assert_ne!(rerun.container_id, three.container_id);
    assert_eq!(rerun.exit_code, None);
    assert_eq!(
        docker_inspect("{{.Id}}", &three.container_id),
        "",
        "the old run's container is removed"
    );

    // grpcurl lists the service through reflection; health says SERVING.
    if let Some(grpcurl) = common::grpcurl() {
        let (_, listed, _) = grpcurl_run(&grpcurl, &["-plaintext", &addr, "list"]);
        assert!(listed.contains("cube.v1.WorkerService"), "{listed}");
        let (_, health, _) = grpcurl_run(
            &grpcurl,
            &[
                "-plaintext",
                "-d",
                r#"{"service":"cube.v1.WorkerService"}"#,
                &addr,
                "grpc.health.v1.Health/Check",
            ],
        );
        assert!(health.contains("SERVING"), "{health}");
    } else if common::docker_required() {
        panic!("grpcurl is not installed");
    }

    assert!(cluster.terminate_worker(0), "a clean exit on SIGTERM");
    // Containers keep running after the worker stops.
    assert!(!common::running_containers_of(&name).is_empty());
}

#[test]
fn docker_down_is_a_clear_error() {
    let dir = temp_dir();
    let out = Command::new(common::bin("cube-worker"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--name",
            &unique("w"),
            "--data-dir",
        ])
        .arg(dir.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the Docker engine does not answer") && stderr.contains("--runtime exec"),
        "{stderr}"
    );
}

#[test]
fn failing_http_health_check_fails_the_task() {
    if !need_docker("failing_http_health_check_fails_the_task") {
        return;
    }
    let mut cluster = docker_worker(&[]);
    let name = cluster.name(0).to_string();
    let mut w = WorkerClient::connect(&cluster.worker(0).addr);
    let id = new_id();
    let mut web = spec("web", &["httpd", "-f", "-p", "8080", "-h", "/www"]);
    let second = |seconds| Some(prost_types::Duration { seconds, nanos: 0 });
    web.health_check = Some(pb::HealthCheck {
        probe: Some(pb::health_check::Probe::Http(pb::HttpProbe {
            port: 8080,
            path: "/health".into(),
        })),
        interval: second(1),
        timeout: second(1),
        retries: 2,
        start_period: None,
    });
    w.start(&id, web, 0).unwrap();
    let running = w.wait_state(&id, TaskState::Running, Duration::from_secs(5));
    common::wait_for(Duration::from_secs(5), "the task to be healthy", || {
        w.task(&id).filter(|t| t.healthy == Some(true))
    });
    common::run_ok(
        "docker",
        &["exec", &running.container_id, "rm", "/www/health"],
    );
    let removed = std::time::Instant::now();
    // interval x retries, plus 2 s.
    let failed = w.wait_state(&id, TaskState::Failed, Duration::from_secs(4));
    assert!(
        failed
            .message
            .starts_with("health check failed: http GET :8080/health returned 404"),
        "{}",
        failed.message
    );
    assert_eq!(failed.healthy, Some(false));
    eprintln!(
        "unhealthy noticed {:?} after the file went",
        removed.elapsed()
    );
    common::wait_for(Duration::from_secs(5), "the container to stop", || {
        common::running_containers_of(&name)
            .is_empty()
            .then_some(())
    });
    assert!(cluster.terminate_worker(0));
}
