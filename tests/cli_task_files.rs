//! Task files read like the flags against a real cube-manager with no workers: quantities with
//! units and restart words are accepted, and a wrong one is refused saying what was expected.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Cluster;

/// Proves that `cpu: 500m`, `memory: 64Mi` and `policy: always` in a task file submit the
/// same spec as the flags, and that `memory: lots` is refused (exit 1, nothing submitted) with
/// the field and the expected form named.
#[test]
fn task_files_take_the_flags_quantities_and_words() {
    let cluster = Cluster::builder().start();
    let ctl = cluster.ctl();
    let file = cluster.dir().join("web.yaml");
    std::fs::write(
        &file,
        "image: cube-test/none\nname: web\nresources: {cpu: 500m, memory: 64Mi}\n\
         restart: {policy: always}\n",
    )
    .unwrap();
    let id = ctl.run(&["-f", file.to_str().unwrap()]);
    let spec = ctl.task(&id)["spec"].clone();
    assert_eq!(spec["resources"]["cpuMillis"], "500", "{spec}");
    assert_eq!(spec["resources"]["memoryBytes"], "67108864", "{spec}");
    assert_eq!(spec["restart"]["policy"], "RESTART_POLICY_ALWAYS", "{spec}");

    std::fs::write(
        &file,
        "- image: cube-test/none\n  resources: {memory: lots}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = ctl.call(&["run", "-f", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stderr.contains("[0].resources.memory: \"lots\" is not a quantity"),
        "{stderr}"
    );
    assert!(stderr.contains("expected bytes like 64Mi"), "{stderr}");
    assert_eq!(ctl.tasks().len(), 1, "nothing more submitted");
}
