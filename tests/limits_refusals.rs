//! Every documented input limit, one test each, from a raw gRPC client: the request is
//! refused with INVALID_ARGUMENT naming the field and the limit, the status carries a
//! `google.rpc.BadRequest` field violation for that field, nothing is stored, and the server
//! still answers SERVING afterwards.
// A test fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::*;
use cube::{
    limits::{node::*, spec::*, streams::MAX_WATCHED_IDS},
    pb::{self, manager_service_client::ManagerServiceClient},
    tls::AuthChannel,
};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A valid spec to spoil one field of (Exec: no image needed).
fn base() -> pb::TaskSpec {
    pb::TaskSpec {
        name: "limits".into(),
        command: vec!["true".into()],
        ..Default::default()
    }
}

/// Checks that `status` is INVALID_ARGUMENT whose message names `field` and `limit`, with a
/// BadRequest violation on a field that starts with `field`.
fn assert_refused(status: &Status, field: &str, limit: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let message = status.message();
    assert!(
        message.starts_with(field),
        "the message names the field {field}: {message}"
    );
    assert!(
        message.contains(limit),
        "the message names the limit {limit}: {message}"
    );
    assert!(message.len() < 600, "the message is short: {message}");
    let details = status.get_error_details();
    let bad = details
        .bad_request()
        .unwrap_or_else(|| panic!("no BadRequest in the details of {status:?}"));
    assert_eq!(bad.field_violations.len(), 1, "{bad:?}");
    assert!(
        bad.field_violations[0].field.starts_with(field),
        "{:?} names {field}",
        bad.field_violations[0]
    );
    assert!(bad.field_violations[0].description.contains(limit));
}

/// The server answers SERVING for its service and holds no task.
async fn assert_still_serving(cluster: &Cluster, client: &mut ManagerServiceClient<AuthChannel>) {
    let status = cluster.health(None, "cube.v1.ManagerService").await;
    assert_eq!(status, ServingStatus::Serving);
    let tasks = client
        .list_tasks(pb::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert!(tasks.is_empty(), "a refused spec was stored: {tasks:?}");
}

/// Submits `spec` to a fresh manager and checks the refusal.
fn refused(spec: pb::TaskSpec, field: &str, limit: &str) {
    let cluster = Cluster::builder().start();
    runtime().block_on(async {
        let mut client = cluster.client().await;
        let status = client
            .submit_task(pb::SubmitTaskRequest {
                spec: Some(spec),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_refused(&status, field, limit);
        assert_still_serving(&cluster, &mut client).await;
    });
}

fn pairs(n: usize, value: &str) -> HashMap<String, String> {
    (0..n)
        .map(|i| (format!("k{i}"), value.to_string()))
        .collect()
}

fn seconds(s: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: s,
        nanos: 0,
    })
}

#[test]
fn spec_over_64_kib() {
    // 30 variables of 2.5 KB: under every count, over the encoded size.
    let spec = pb::TaskSpec {
        env: pairs(30, &"v".repeat(2500)),
        ..base()
    };
    refused(spec, "spec", &MAX_SPEC_BYTES.to_string());
}

#[test]
fn name_over_63_characters() {
    let spec = pb::TaskSpec {
        name: "n".repeat(64),
        ..base()
    };
    refused(spec, "spec.name", "63");
}

#[test]
fn image_over_255_characters() {
    // A megabyte of image name once was accepted and failed forever after.
    let spec = pb::TaskSpec {
        image: "a".repeat(1 << 20),
        ..base()
    };
    refused(spec, "spec.image", &MAX_IMAGE_LEN.to_string());
}

#[test]
fn image_that_is_not_a_reference() {
    let spec = pb::TaskSpec {
        image: "../../etc/passwd".into(),
        ..base()
    };
    refused(spec, "spec.image", "not an image reference");
}

#[test]
fn over_1024_args() {
    let spec = pb::TaskSpec {
        args: vec!["x".into(); 100_000],
        ..base()
    };
    refused(spec, "spec.args", &MAX_ARGS.to_string());
}

#[test]
fn args_over_128_kib() {
    let spec = pb::TaskSpec {
        args: vec!["y".repeat(2000); 100],
        ..base()
    };
    refused(spec, "spec.args", &MAX_ARGS_BYTES.to_string());
}

#[test]
fn over_256_env_vars() {
    let spec = pb::TaskSpec {
        env: pairs(100_000, "v"),
        ..base()
    };
    refused(spec, "spec.env", &MAX_ENV.to_string());
}

#[test]
fn over_256_labels() {
    let spec = pb::TaskSpec {
        labels: pairs(MAX_LABELS + 1, "v"),
        ..base()
    };
    refused(spec, "spec.labels", &MAX_LABELS.to_string());
}

#[test]
fn empty_label_key() {
    let spec = pb::TaskSpec {
        labels: HashMap::from([(String::new(), "v".into())]),
        ..base()
    };
    refused(spec, "spec.labels[\"\"]", "it is empty");
}

#[test]
fn label_key_with_equals() {
    let spec = pb::TaskSpec {
        labels: HashMap::from([("a=b".into(), "v".into())]),
        ..base()
    };
    refused(spec, "spec.labels[\"a=b\"]", "1 to 63 letters");
}

#[test]
fn label_value_over_4_kib() {
    let spec = pb::TaskSpec {
        labels: HashMap::from([("big".into(), "v".repeat(MAX_LABEL_VALUE_LEN + 1))]),
        ..base()
    };
    refused(spec, "spec.labels[big]", &MAX_LABEL_VALUE_LEN.to_string());
}

#[test]
fn constraint_key_with_equals() {
    let spec = pb::TaskSpec {
        constraints: HashMap::from([("x=y".into(), "v".into())]),
        ..base()
    };
    refused(spec, "spec.constraints[\"x=y\"]", "is not a label key");
}

#[test]
fn over_64_ports() {
    // 10,000 published ports once took the Docker engine down for minutes.
    let ports = (1..=10_000)
        .map(|p| pb::PortMapping {
            container_port: p,
            host_port: 0,
            protocol: 0,
        })
        .collect();
    let spec = pb::TaskSpec { ports, ..base() };
    refused(spec, "spec.ports", &MAX_PORTS.to_string());
}

#[test]
fn cpu_over_1024_cores() {
    let spec = pb::TaskSpec {
        resources: Some(pb::Resources {
            cpu_millis: i64::MAX,
            ..Default::default()
        }),
        ..base()
    };
    refused(
        spec,
        "spec.resources.cpu_millis",
        &MAX_CPU_MILLIS.to_string(),
    );
}

#[test]
fn memory_under_4_mib() {
    let spec = pb::TaskSpec {
        resources: Some(pb::Resources {
            memory_bytes: 1024 * 1024,
            ..Default::default()
        }),
        ..base()
    };
    refused(
        spec,
        "spec.resources.memory_bytes",
        &MIN_MEMORY_BYTES.to_string(),
    );
}

#[test]
fn stop_grace_over_1_hour() {
    // Two billion seconds: a stop that would wait 63 years.
    let spec = pb::TaskSpec {
        stop_grace_period: seconds(2_000_000_000),
        ..base()
    };
    refused(spec, "spec.stop_grace_period", "3600");
}

#[test]
fn health_interval_over_1_hour() {
    let spec = pb::TaskSpec {
        health_check: Some(pb::HealthCheck {
            probe: Some(pb::health_check::Probe::Tcp(pb::TcpProbe { port: 80 })),
            interval: seconds(3601),
            ..Default::default()
        }),
        ..base()
    };
    refused(spec, "spec.health_check.interval", "3600");
}

#[test]
fn health_timeout_over_1_hour() {
    let spec = pb::TaskSpec {
        health_check: Some(pb::HealthCheck {
            probe: Some(pb::health_check::Probe::Tcp(pb::TcpProbe { port: 80 })),
            timeout: seconds(7200),
            ..Default::default()
        }),
        ..base()
    };
    refused(spec, "spec.health_check.timeout", "3600");
}

#[test]
fn health_path_over_4_kib() {
    let spec = pb::TaskSpec {
        health_check: Some(pb::HealthCheck {
            probe: Some(pb::health_check::Probe::Http(pb::HttpProbe {
                port: 80,
                path: format!("/{}", "p".repeat(MAX_PROBE_BYTES)),
            })),
            ..Default::default()
        }),
        ..base()
    };
    refused(
        spec,
        "spec.health_check.http.path",
        &MAX_PROBE_BYTES.to_string(),
    );
}

/// A `RegisterWorker` refused, and the node not kept. The manager is plaintext
/// (`--plaintext`): over TLS only a node certificate may register, and the bounds are checked
/// the same either way.
fn registration_refused(request: pb::RegisterWorkerRequest, field: &str, limit: &str) {
    let cluster = Cluster::builder().plaintext().start();
    runtime().block_on(async {
        let mut client = cluster.client().await;
        let status = client.register_worker(request).await.unwrap_err();
        assert_refused(&status, field, limit);
        assert_still_serving(&cluster, &mut client).await;
        let nodes = client
            .list_nodes(pb::ListNodesRequest {})
            .await
            .unwrap()
            .into_inner()
            .nodes;
        assert!(nodes.is_empty(), "a refused node was kept: {nodes:?}");
    });
}

fn registration() -> pb::RegisterWorkerRequest {
    pb::RegisterWorkerRequest {
        name: "w1".into(),
        address: "127.0.0.1:1".into(),
        instance_id: "i1".into(),
        ..Default::default()
    }
}

#[test]
fn node_name_over_253_characters() {
    // A megabyte node name was once kept forever and padded `cubectl nodes` to 8 MB.
    let request = pb::RegisterWorkerRequest {
        name: "n".repeat(1 << 20),
        ..registration()
    };
    registration_refused(request, "name", &MAX_NODE_NAME_LEN.to_string());
}

#[test]
fn node_name_with_a_slash() {
    let request = pb::RegisterWorkerRequest {
        name: "../w".into(),
        ..registration()
    };
    registration_refused(request, "name", "only letters, digits");
}

#[test]
fn node_address_over_512_characters() {
    let request = pb::RegisterWorkerRequest {
        address: format!("{}:1", "h".repeat(MAX_ADDRESS_LEN)),
        ..registration()
    };
    registration_refused(request, "address", &MAX_ADDRESS_LEN.to_string());
}

#[test]
fn node_address_with_spaces() {
    let request = pb::RegisterWorkerRequest {
        address: "host 1:80".into(),
        ..registration()
    };
    registration_refused(request, "address", "without spaces");
}

#[test]
fn node_label_key_with_equals() {
    let request = pb::RegisterWorkerRequest {
        labels: HashMap::from([("a=b".into(), "v".into())]),
        ..registration()
    };
    registration_refused(request, "labels[\"a=b\"]", "is not a label key");
}

#[test]
fn node_labels_over_16_kib() {
    let request = pb::RegisterWorkerRequest {
        labels: pairs(10, &"v".repeat(2000)),
        ..registration()
    };
    registration_refused(request, "labels", &MAX_NODE_LABELS_BYTES.to_string());
}

#[test]
fn watch_of_over_1000_ids() {
    let cluster = Cluster::builder().start();
    runtime().block_on(async {
        let mut client = cluster.client().await;
        let task_ids = (0..=MAX_WATCHED_IDS).map(|_| new_id()).collect();
        let status = client
            .watch_tasks(pb::WatchTasksRequest {
                task_ids,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_refused(&status, "task_ids", &MAX_WATCHED_IDS.to_string());
        assert_still_serving(&cluster, &mut client).await;
    });
}

/// A request over the 4 MiB message limit is refused whole, before it is decoded, and the
/// server goes on.
#[test]
fn request_over_4_mib() {
    let cluster = Cluster::builder().start();
    runtime().block_on(async {
        let mut client = cluster.client().await;
        let spec = pb::TaskSpec {
            env: pairs(10, &"v".repeat(6000)),
            ..base()
        };
        let tasks = (0..100)
            .map(|_| pb::SubmitTaskRequest {
                spec: Some(spec.clone()),
                request_id: String::new(),
            })
            .collect();
        let status = client
            .submit_tasks(pb::SubmitTasksRequest { tasks })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
        assert!(status.message().contains("too large"), "{status:?}");
        assert_still_serving(&cluster, &mut client).await;
    });
}

/// In a batch the field path names the request: `tasks[1].spec.ports`.
#[test]
fn batch_refusal_names_the_request() {
    let cluster = Cluster::builder().start();
    runtime().block_on(async {
        let mut client = cluster.client().await;
        let ports = vec![
            pb::PortMapping {
                container_port: 80,
                ..Default::default()
            };
            MAX_PORTS + 1
        ];
        let tasks = vec![
            pb::SubmitTaskRequest {
                spec: Some(base()),
                request_id: String::new(),
            },
            pb::SubmitTaskRequest {
                spec: Some(pb::TaskSpec { ports, ..base() }),
                request_id: String::new(),
            },
        ];
        let status = client
            .submit_tasks(pb::SubmitTasksRequest { tasks })
            .await
            .unwrap_err();
        assert_refused(&status, "tasks[1].spec.ports", "64");
        assert_still_serving(&cluster, &mut client).await;
    });
}

/// AIP-155: a retry with the same `request_id` and spec answers the first task; the same
/// `request_id` with another spec is ALREADY_EXISTS naming the task it belongs to, and
/// creates nothing.
#[test]
fn request_id_reused_with_another_spec() {
    let cluster = Cluster::builder().start();
    runtime().block_on(async {
        let mut client = cluster.client().await;
        let submit = |spec: pb::TaskSpec| pb::SubmitTaskRequest {
            spec: Some(spec),
            request_id: "retry-key-1".into(),
        };
        let first = client
            .submit_task(submit(base()))
            .await
            .unwrap()
            .into_inner();
        assert!(first.created);
        let first = first.task.unwrap();
        let again = client
            .submit_task(submit(base()))
            .await
            .unwrap()
            .into_inner();
        assert!(!again.created, "a retry creates nothing");
        assert_eq!(again.task.unwrap().id, first.id);

        let other = pb::TaskSpec {
            command: vec!["false".into()],
            ..base()
        };
        let status = client.submit_task(submit(other)).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        assert!(
            status
                .message()
                .starts_with("request_id: \"retry-key-1\" belongs to task ")
                && status.message().contains(&first.id),
            "{status:?}"
        );
        let tasks = client
            .list_tasks(pb::ListTasksRequest::default())
            .await
            .unwrap()
            .into_inner()
            .tasks;
        assert_eq!(tasks.len(), 1, "{tasks:?}");
        assert_eq!(tasks[0].spec.as_ref().unwrap().command, vec!["true"]);
    });
}
