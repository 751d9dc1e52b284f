//! Services on a real manager with Exec workers (real processes, no Docker needed): the
//! reconciler fills every slot, replaces a task stopped by hand, scales by slot, updates one
//! slot at a time, survives a SIGKILL of the manager, grpcurl and the metrics see it, and
//! every bad request gets a clear status naming its field.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    services::{create, exec_cluster, three_running, update_sleep, wait_running},
    unique, wait_for, Cluster, Runtime,
};
use cube::pb;
use serde_json::Value;
use tonic::Code;

/// Three replicas run, one per slot; a task stopped by hand is replaced in its slot; scaling
/// to 6 and back to 2 stops the highest slots; an update replaces every slot with the new
/// version; `rm` stops them all.
#[test]
fn replicas_are_kept_scaled_by_slot_updated_and_removed() {
    let (cluster, name, before) = three_running("web");
    let ctl = cluster.ctl();

    // Stopped by hand: slot 2 gets a new task, the others keep theirs.
    let stopped = before[&2].1.clone();
    ctl.ok(&["stop", &stopped]);
    let after = wait_running(&ctl, &name, 3, "1", Duration::from_secs(5));
    assert_ne!(after[&2].1, stopped, "slot 2 has a new task");
    assert_eq!(after[&1].1, before[&1].1);
    assert_eq!(after[&3].1, before[&3].1);

    ctl.ok(&["service", "scale", &format!("{name}=6")]);
    let six = wait_running(&ctl, &name, 6, "1", Duration::from_secs(10));
    ctl.ok(&["service", "scale", &format!("{name}=2")]);
    let two = wait_running(&ctl, &name, 2, "1", Duration::from_secs(10));
    assert_eq!(two[&1].1, six[&1].1, "slot 1 kept its task");
    assert_eq!(two[&2].1, six[&2].1, "slot 2 kept its task");
    for slot in 3..=6 {
        let id = &six[&slot].1;
        ctl.wait_state(id, "TASK_STATE_COMPLETED", Duration::from_secs(10));
    }

    // An update of the args: both slots move to version 2, one at a time.
    let out = update_sleep(&ctl, &name, "301");
    assert!(out.contains("version 4"), "{out}");
    let updated = wait_running(&ctl, &name, 2, "2", Duration::from_secs(15));
    for (_, id, _) in updated.values() {
        let task = ctl.status(id);
        assert_eq!(task["task"]["spec"]["args"][1], "301", "{task}");
    }
    let inspect: Value = common::json(&ctl.ok(&["service", "inspect", &name]));
    assert_eq!(inspect["service"]["taskVersion"], "2", "{inspect}");

    ctl.ok(&["service", "rm", &name]);
    for (_, id, _) in updated.values() {
        ctl.wait_state(id, "TASK_STATE_COMPLETED", Duration::from_secs(10));
    }
    let (code, _, err) = ctl.call(&["service", "ps", &name]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
}

/// A service acknowledged is durable: the manager SIGKILLed right after the answer knows it on
/// restart, and its reconciler fills the slots.
#[test]
fn a_service_survives_a_sigkill_of_the_manager() {
    let mut cluster = exec_cluster();
    let ctl = cluster.ctl();
    let name = unique("db");
    create(&ctl, &name, "2");
    cluster.kill_manager();
    cluster.start_manager();
    let ctl = cluster.ctl();
    let running = wait_running(&ctl, &name, 2, "1", Duration::from_secs(15));
    // Once more, mid-way through an update: it completes after the restart, one task a slot.
    update_sleep(&ctl, &name, "302");
    cluster.kill_manager();
    cluster.start_manager();
    let ctl = cluster.ctl();
    let updated = wait_running(&ctl, &name, 2, "2", Duration::from_secs(20));
    assert!(updated
        .values()
        .all(|(_, id, _)| running.values().all(|(_, old, _)| old != id)));
}

/// grpcurl, with JSON and reflection alone, creates, scales and deletes a service; the
/// manager's metrics count its replicas (desired, running, updated).
#[test]
fn grpcurl_drives_a_service_and_metrics_count_its_replicas() {
    let Some(grpcurl) = common::grpcurl() else {
        assert!(!common::docker_required(), "grpcurl is missing");
        eprintln!("SKIPPED: grpcurl not installed");
        return;
    };
    let cluster = Cluster::builder()
        .workers(2)
        .runtime(Runtime::Exec)
        .update_interval("200ms")
        .manager_args(&["--metrics-listen", "127.0.0.1:0"])
        .manager_env("CUBE_LOG_FORMAT", "json")
        .wait_ready(Duration::from_secs(15))
        .start();
    let metrics = common::metrics_address(cluster.manager());
    let addr = &cluster.manager().addr;
    let auth = cluster.grpcurl_auth(Some(&cluster.tokens().admin));
    let call = |method: &str, body: String| {
        let auth: Vec<&str> = auth.iter().map(String::as_str).collect();
        let method = format!("cube.v1.ManagerService/{method}");
        let args = [auth.as_slice(), &["-d", &body, addr, &method]].concat();
        let (ok, stdout, stderr) = common::grpcurl_run(&grpcurl, &args);
        assert!(ok, "grpcurl {method}: {stderr}");
        common::json(&stdout)
    };
    let name = unique("curl");
    let created = call(
        "CreateService",
        format!(
            r#"{{"spec":{{"name":"{name}","replicas":2,"task":{{"args":["sleep","300"]}},
                "updateConfig":{{"parallelism":2,"delay":"1s","order":"UPDATE_ORDER_START_FIRST"}}}}}}"#
        ),
    );
    assert_eq!(created["service"]["version"], "1", "{created}");
    let ctl = cluster.ctl();
    wait_running(&ctl, &name, 2, "1", Duration::from_secs(10));
    let line = |kind: &str, n: u32| {
        format!("cube_manager_service_replicas{{kind=\"{kind}\",service=\"{name}\"}} {n}")
    };
    wait_for(
        Duration::from_secs(5),
        "the replicas in the metrics",
        || {
            let text = common::scrape(&metrics);
            ["desired", "running", "updated"]
                .iter()
                .all(|kind| text.contains(&line(kind, 2)))
                .then_some(())
        },
    );

    let scaled = call(
        "ScaleService",
        format!(r#"{{"name":"{name}","replicas":3}}"#),
    );
    assert_eq!(scaled["service"]["spec"]["replicas"], 3, "{scaled}");
    wait_running(&ctl, &name, 3, "1", Duration::from_secs(10));
    let deleted = call("DeleteService", format!(r#"{{"name":"{name}"}}"#));
    assert_eq!(
        deleted["service"]["spec"]["name"],
        name.as_str(),
        "{deleted}"
    );
    wait_for(
        Duration::from_secs(10),
        "every task of the service stopped",
        || {
            let tasks = ctl.tasks();
            tasks
                .iter()
                .all(|t| t["state"] == "TASK_STATE_COMPLETED")
                .then_some(())
        },
    );
    let text = common::scrape(&metrics);
    assert!(!text.contains(&format!("service=\"{name}\"")), "{text}");
}

/// The call was refused with `code`, and the message says `word`.
fn expect_refusal<T: std::fmt::Debug>(answer: Result<T, tonic::Status>, code: Code, word: &str) {
    let status = answer.unwrap_err();
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(word), "{word}: {status:?}");
}

/// The refusals: each a clear status naming the field or the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_service_requests_are_refused_naming_the_cause() {
    let cluster = Cluster::builder().start();
    let mut c = cluster.client().await;
    let spec = |name: &str, replicas: u32| pb::ServiceSpec {
        name: name.into(),
        task: Some(pb::TaskSpec {
            command: vec!["sleep".into(), "300".into()],
            ..Default::default()
        }),
        replicas,
        ..Default::default()
    };
    let create = |spec: pb::ServiceSpec| pb::CreateServiceRequest { spec: Some(spec) };
    expect_refusal(
        c.create_service(create(spec("Bad_Name", 1))).await,
        Code::InvalidArgument,
        "spec.name",
    );
    expect_refusal(
        c.create_service(create(spec("web", 1001))).await,
        Code::InvalidArgument,
        "spec.replicas",
    );
    let mut bad_ratio = spec("web", 1);
    bad_ratio.update_config = Some(pb::UpdateConfig {
        max_failure_ratio: 2.0,
        ..Default::default()
    });
    expect_refusal(
        c.create_service(create(bad_ratio)).await,
        Code::InvalidArgument,
        "spec.update_config.max_failure_ratio",
    );
    let mut no_task = spec("web", 1);
    no_task.task = None;
    expect_refusal(
        c.create_service(create(no_task)).await,
        Code::InvalidArgument,
        "spec.task",
    );
    expect_refusal(
        c.create_service(pb::CreateServiceRequest { spec: None })
            .await,
        Code::InvalidArgument,
        "spec",
    );

    let name = unique("api");
    let created = c
        .create_service(create(spec(&name, 0)))
        .await
        .unwrap()
        .into_inner()
        .service
        .unwrap();
    assert_eq!(created.version, 1);
    expect_refusal(
        c.create_service(create(spec(&name, 0))).await,
        Code::AlreadyExists,
        &name,
    );

    let get = |name: &str| pb::GetServiceRequest { name: name.into() };
    expect_refusal(
        c.get_service(get("nope")).await,
        Code::NotFound,
        "service \"nope\"",
    );

    let update = |spec: pb::ServiceSpec, version: u64| pb::UpdateServiceRequest {
        spec: Some(spec),
        version,
    };
    expect_refusal(
        c.update_service(update(spec(&name, 0), 1)).await,
        Code::FailedPrecondition,
        "changes nothing",
    );
    expect_refusal(
        c.update_service(update(spec(&name, 1), 7)).await,
        Code::Aborted,
        "version",
    );
    let updated = c
        .update_service(update(spec(&name, 1), 1))
        .await
        .unwrap()
        .into_inner()
        .service
        .unwrap();
    assert_eq!(updated.version, 2);
    // The version just read is stale after another change.
    expect_refusal(
        c.update_service(update(spec(&name, 2), 1)).await,
        Code::Aborted,
        "is at version 2, not 1",
    );

    let scale = |name: &str, replicas: u32| pb::ScaleServiceRequest {
        name: name.into(),
        replicas,
    };
    expect_refusal(
        c.scale_service(scale(&name, 1001)).await,
        Code::InvalidArgument,
        "replicas",
    );
    expect_refusal(
        c.scale_service(scale("nope", 1)).await,
        Code::NotFound,
        "service \"nope\"",
    );

    let other = unique("solo");
    c.create_service(create(spec(&other, 0))).await.unwrap();
    expect_refusal(
        c.rollback_service(pb::RollbackServiceRequest {
            name: other.clone(),
        })
        .await,
        Code::FailedPrecondition,
        "previous spec",
    );

    let list = pb::ListTasksRequest {
        service: "nope".into(),
        ..Default::default()
    };
    expect_refusal(c.list_tasks(list).await, Code::NotFound, "service \"nope\"");
    let delete = pb::DeleteServiceRequest {
        name: "nope".into(),
    };
    expect_refusal(
        c.delete_service(delete).await,
        Code::NotFound,
        "service \"nope\"",
    );

    // A page of one, then the next.
    let first = c
        .list_services(pb::ListServicesRequest {
            page_size: 1,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.services.len(), 1);
    assert!(!first.next_page_token.is_empty());
    let second = c
        .list_services(pb::ListServicesRequest {
            page_size: 1,
            page_token: first.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.services.len(), 1);
    assert_ne!(first.services[0].id, second.services[0].id);

    // No worker: `explain` says why the one replica of `name` does not run.
    let ctl = cluster.ctl();
    let explained = wait_for(Duration::from_secs(5), "slot 1 explained", || {
        let text = ctl.ok(&["service", "explain", &name]);
        text.contains("pending: ").then_some(text)
    });
    assert!(explained.contains("1 replicas"), "{explained}");
}
