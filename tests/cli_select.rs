//! Choosing tasks by selector with cubectl against a real manager and Exec workers: `stop` by
//! label, name, state or node stops exactly the tasks that match (asking first when there are
//! many), `status` lists unfinished tasks unless `-a`, filters by label and prints wide, YAML
//! and ids only, and `rm` removes finished tasks only.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::{Cluster, Cubectl};

/// `cubectl run` of a sleeping Exec task with `labels`; its id.
fn sleeper(ctl: &Cubectl, name: &str, labels: &[&str]) -> String {
    let mut args = vec!["--name", name, "--stop-grace", "1s"];
    for label in labels {
        args.extend(["-l", label]);
    }
    args.extend(["--", "sleep", "300"]);
    ctl.run(&args)
}

/// The ids a cubectl command printed, one a line.
fn id_set(stdout: &str) -> BTreeSet<String> {
    stdout.lines().map(str::to_string).collect()
}

/// Proves that `stop -l app=shop` stops exactly the three tasks with that label and leaves
/// the others running; that `status` then lists only unfinished tasks, `-a` all of them,
/// `-l` the matching ones, `-q` only ids, `-o wide` full ids and labels, `-o yaml` the same
/// tasks as JSON; and that `rm` removes a finished task and refuses a running one.
#[test]
fn stop_by_label_stops_exactly_the_matching_tasks() {
    let cluster = Cluster::exec();
    let ctl = cluster.ctl();
    let shop: BTreeSet<String> = [
        sleeper(&ctl, "cart", &["app=shop"]),
        sleeper(&ctl, "pay", &["app=shop", "tier=back"]),
        sleeper(&ctl, "shop-web", &["app=shop", "tier=front"]),
    ]
    .into();
    let blog: BTreeSet<String> = [
        sleeper(&ctl, "blog-web", &["app=blog", "tier=front"]),
        sleeper(&ctl, "blog-db", &["app=blog"]),
    ]
    .into();
    for id in shop.iter().chain(&blog) {
        ctl.wait_state(id, "TASK_STATE_RUNNING", Duration::from_secs(20));
    }
    assert_eq!(
        id_set(&ctl.ok(&["status", "-l", "tier=front", "-q"])).len(),
        2
    );

    let stopped = id_set(&ctl.ok(&["stop", "-l", "app=shop"]));
    assert_eq!(stopped, shop, "exactly the tasks labelled app=shop");
    for id in &shop {
        ctl.wait_state(id, "TASK_STATE_COMPLETED", Duration::from_secs(20));
    }
    for id in &blog {
        assert_eq!(
            ctl.task(id)["state"],
            "TASK_STATE_RUNNING",
            "{id} untouched"
        );
    }

    assert_eq!(id_set(&ctl.ok(&["status", "-q"])), blog, "unfinished only");
    let all = id_set(&ctl.ok(&["status", "-a", "-q"]));
    assert_eq!(all, shop.union(&blog).cloned().collect());
    let labelled = id_set(&ctl.ok(&["status", "-a", "-l", "app=shop", "-l", "tier=back", "-q"]));
    assert_eq!(labelled.len(), 1);
    assert!(shop.is_superset(&labelled));
    let wide = ctl.ok(&["status", "-o", "wide"]);
    assert!(wide.lines().next().unwrap().contains("LABELS"), "{wide}");
    for id in &blog {
        assert!(wide.contains(id.as_str()), "full ids in -o wide: {wide}");
    }
    assert!(wide.contains("app=blog,tier=front"), "{wide}");
    let yaml: serde_json::Value =
        serde_yaml_ng::from_str(&ctl.ok(&["status", "-o", "yaml"])).unwrap();
    let listed: BTreeSet<String> = yaml["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, blog);

    // rm: a finished task goes (with its events), a running one stays.
    let done = shop.first().unwrap();
    assert_eq!(ctl.ok(&["rm", &done[..8]]).trim(), done.as_str());
    let (code, _, stderr) = ctl.call(&["status", done]);
    assert_eq!(code, 1);
    assert!(stderr.contains("finished and was cleaned up"), "{stderr}");
    let running = blog.first().unwrap();
    let (code, stdout, stderr) = ctl.call(&["rm", running]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stderr.contains("only a finished task can be removed"),
        "{stderr}"
    );
    assert_eq!(ctl.task(running)["state"], "TASK_STATE_RUNNING");

    // Combined selectors: the name and the node.
    let node = cluster.name(0).to_string();
    let named = id_set(&ctl.ok(&["stop", "--name", "blog-db", "--node", &node]));
    assert_eq!(named.len(), 1);
    assert!(blog.is_superset(&named));
    ctl.ok(&["stop", "--all"]);
}

/// Proves that a selection of more than 10 tasks is refused without a terminal to confirm on
/// (exit 1, nothing stopped), is stopped whole with `--yes`, and that ids cannot be mixed with
/// selectors (a usage error, exit 2).
#[test]
fn many_tasks_are_stopped_only_when_confirmed() {
    let cluster = Cluster::builder().start();
    let ctl = cluster.ctl();
    let crowd = id_set(&ctl.ok(&[
        "run",
        "--image",
        "cube-test/none",
        "--name",
        "crowd",
        "--count",
        "11",
    ]));
    let (code, stdout, stderr) = ctl.call(&["stop", "--name", "crowd"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("11 tasks match"), "{stderr}");
    assert!(stderr.contains("--yes"), "{stderr}");
    assert_eq!(id_set(&ctl.ok(&["status", "-q"])), crowd, "nothing stopped");

    let (code, _, stderr) = ctl.call(&["stop", "--name", "crowd", "--state", "pending", "x1234"]);
    assert_eq!(code, 2, "{stderr}");

    let stopped = id_set(&ctl.ok(&["stop", "--name", "crowd", "--yes"]));
    assert_eq!(stopped, crowd);
    assert!(ctl.ok(&["status", "-q"]).is_empty());
    let (code, _, stderr) = ctl.call(&["stop", "--label", "app=none"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("nothing to stop"), "{stderr}");
}
