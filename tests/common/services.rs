//! Services driven through cubectl on Exec workers: a cluster, a service of sleepers, and
//! its slots as the manager reports them.

use std::{collections::BTreeMap, time::Duration};

use super::{unique, wait_for, Cluster, ClusterBuilder, Cubectl, Runtime};

/// Two Exec workers polled every 200 ms.
pub fn exec_cluster() -> Cluster {
    exec_cluster_builder().start()
}

/// The builder of [`exec_cluster`], for a test that sets more.
pub fn exec_cluster_builder() -> ClusterBuilder {
    Cluster::builder()
        .workers(2)
        .runtime(Runtime::Exec)
        .update_interval("200ms")
        .wait_ready(Duration::from_secs(15))
}

/// The tasks of service `name` wanted running, by slot: (state, id, version) of each; a slot
/// with two such tasks fails the test (one task per slot is the reconciler's promise).
pub fn slots(ctl: &Cubectl, name: &str) -> Slots {
    let answer = ctl.json(&["service", "ps", name, "--running"]);
    let mut slots = BTreeMap::new();
    for task in answer["tasks"].as_array().cloned().unwrap_or_default() {
        let slot = task["slot"].as_u64().unwrap();
        let entry = (
            task["state"].as_str().unwrap_or_default().to_string(),
            task["id"].as_str().unwrap().to_string(),
            task["serviceVersion"].as_str().unwrap_or("0").to_string(),
        );
        assert!(
            slots.insert(slot, entry).is_none(),
            "two live tasks in slot {slot}: {answer}"
        );
    }
    slots
}

/// Waits until service `name` has exactly `slots 1..=n` RUNNING at `version`; the slots.
pub fn wait_running(ctl: &Cubectl, name: &str, n: u64, version: &str, timeout: Duration) -> Slots {
    wait_for(
        timeout,
        &format!("{n} replicas of {name} RUNNING at version {version}"),
        || {
            let now = slots(ctl, name);
            let done = now.keys().copied().eq(1..=n)
                && now
                    .values()
                    .all(|(state, _, v)| state == "TASK_STATE_RUNNING" && v == version);
            done.then_some(now)
        },
    )
}

/// `service create NAME --replicas N -- sleep 300`; the service's id.
pub fn create(ctl: &Cubectl, name: &str, replicas: &str) -> String {
    create_with(ctl, name, replicas, &["--", "sleep", "300"])
}

/// `service create --detach --name NAME --replicas N ARGS...`; the service's id.
pub fn create_with(ctl: &Cubectl, name: &str, replicas: &str, args: &[&str]) -> String {
    let mut all = vec!["service", "create", "--detach", "--name", name];
    all.extend_from_slice(&["--replicas", replicas]);
    all.extend_from_slice(args);
    ctl.ok(&all).trim().to_string()
}

/// Slots by number: (state, task id, service version).
pub type Slots = BTreeMap<u64, (String, String, String)>;

/// An Exec cluster running a service (named from `prefix`) of 3 replicas; its slots.
pub fn three_running(prefix: &str) -> (Cluster, String, Slots) {
    let cluster = exec_cluster();
    let ctl = cluster.ctl();
    let name = unique(prefix);
    create(&ctl, &name, "3");
    let slots = wait_running(&ctl, &name, 3, "1", Duration::from_secs(10));
    (cluster, name, slots)
}

/// `service update NAME --update-monitor 300ms -- sleep SECONDS`; what cubectl printed.
pub fn update_sleep(ctl: &Cubectl, name: &str, seconds: &str) -> String {
    let args = ["--update-monitor", "300ms", "--", "sleep", seconds];
    ctl.ok(&[&["service", "update", "--detach", name][..], &args].concat())
}

/// `service update NAME --update-monitor 2s -- sh -c "exit 1"`: an update whose command
/// fails at once; what cubectl printed.
pub fn update_failing(ctl: &Cubectl, name: &str) -> String {
    let args = ["--update-monitor", "2s", "--", "sh", "-c", "exit 1"];
    ctl.ok(&[&["service", "update", "--detach", name][..], &args].concat())
}

/// The states of a service's rollout history (`Service.rollouts`, in proto3 JSON), oldest
/// first.
pub fn rollout_states(service: &serde_json::Value) -> Vec<String> {
    service["rollouts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| r["state"].as_str().unwrap_or_default().to_string())
        .collect()
}
