//! Limits on a worker: StartTask refuses a spec over a limit (from a raw client, the worker
//! still serving), open log streams are capped with RESOURCE_EXHAUSTED naming the limit, and a
//! failing health check logs a bounded summary, not its whole long path on every probe.
// A test fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use cube::{
    limits::{spec::MAX_PORTS, streams::MAX_LOG_STREAMS},
    pb,
};
use tonic::Code;

/// A worker refuses a StartTask over a limit itself (a manager is not its only client), and
/// goes on serving.
#[test]
fn start_task_over_a_limit_is_refused_by_the_worker() {
    let cluster = Cluster::builder()
        .without_manager()
        .workers(1)
        .runtime(Runtime::Exec)
        .start();
    let mut worker = WorkerClient::connect(&cluster.worker(0).url());
    let ports = (1..=(MAX_PORTS as u32 + 1))
        .map(|p| pb::PortMapping {
            container_port: p,
            ..Default::default()
        })
        .collect();
    let spec = pb::TaskSpec {
        ports,
        ..exec_spec("ports", &["true"])
    };
    let status = worker.start(&new_id(), spec, 0).unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("spec.ports: ") && status.message().contains("64"),
        "{status:?}"
    );
    assert!(worker.tasks().is_empty());
    // Still serving: a good task starts.
    let task = worker
        .start(&new_id(), exec_spec("fine", &["true"]), 0)
        .unwrap();
    assert!(!task.id.is_empty());
}

/// 128 `StreamLogs` streams that follow a running task stay open; the next one is
/// RESOURCE_EXHAUSTED naming the limit; a closed one frees its place.
#[test]
fn log_streams_past_the_cap_are_refused() {
    let cluster = Cluster::builder().workers(1).runtime(Runtime::Exec).start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = cluster.client().await;
        let task = submit(
            &mut client,
            exec_spec("chatty", &["sh", "-c", "echo up; sleep 120"]),
        )
        .await;
        let request = || pb::StreamLogsRequest {
            task_id: task.id.clone(),
            follow: true,
            ..Default::default()
        };
        // Wait until the task runs and its logs can be read.
        let ctl = cluster.ctl();
        let id = task.id.clone();
        tokio::task::spawn_blocking(move || {
            ctl.wait_state(&id, "TASK_STATE_RUNNING", Duration::from_secs(20))
        })
        .await
        .unwrap();
        let mut first = client.stream_logs(request()).await.unwrap().into_inner();
        let chunk = first.message().await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&chunk.data).contains("up"));
        let mut open = vec![first];
        while open.len() < MAX_LOG_STREAMS {
            open.push(client.stream_logs(request()).await.unwrap().into_inner());
        }
        let status = client.stream_logs(request()).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert!(
            status
                .message()
                .contains(&format!("{MAX_LOG_STREAMS} open StreamLogs streams")),
            "{status:?}"
        );
        drop(open.pop());
        let mut reopened = false;
        for _ in 0..50 {
            if client.stream_logs(request()).await.is_ok() {
                reopened = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(reopened, "a closed log stream frees its place");
    });
}

/// A health check on a 4 KB path that fails every second: the worker's log names it in a
/// bounded summary, never the whole path, and the task's message is bounded too.
#[test]
fn a_failing_health_check_logs_a_bounded_summary() {
    let cluster = Cluster::builder().workers(1).runtime(Runtime::Exec).start();
    let path = format!("/{}", "p".repeat(4000));
    let spec = pb::TaskSpec {
        health_check: Some(pb::HealthCheck {
            probe: Some(pb::health_check::Probe::Http(pb::HttpProbe {
                // Nothing listens there: every probe fails.
                port: u32::from(free_port()),
                path: path.clone(),
            })),
            interval: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            retries: 3,
            ..Default::default()
        }),
        restart: Some(pb::Restart {
            policy: pb::RestartPolicy::Never as i32,
            ..Default::default()
        }),
        ..exec_spec("unhealthy", &["sleep", "120"])
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let id = rt.block_on(async {
        let mut client = cluster.client().await;
        submit(&mut client, spec).await.id
    });
    let ctl = cluster.ctl();
    let failed = wait_for(
        Duration::from_secs(30),
        "the task failed its health",
        || {
            let task = ctl.task(&id);
            (task["state"] == "TASK_STATE_FAILED").then_some(task)
        },
    );
    let message = failed["message"].as_str().unwrap();
    assert!(message.contains("health check failed"), "{message}");
    assert!(message.len() < 600, "a bounded message: {message}");
    assert!(message.contains("bytes in all"), "{message}");
    let log = cluster.worker(0).logs();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("health check failed") || l.contains("unhealthy"))
        .collect();
    assert!(failures.len() >= 2, "the failures are logged:\n{log}");
    for line in &failures {
        assert!(line.len() < 1000, "a log line of {} bytes", line.len());
    }
    assert!(
        !log.contains(&path[..1000]),
        "the whole path reached the log"
    );
}
