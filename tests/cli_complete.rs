//! Completion of task ids, task names and node names: `cubectl __complete` asks a real
//! manager; the bash script calls it; a manager that does not answer costs a Tab two seconds
//! at most.
// A test or benchmark fails loudly with the value's error: unwrapping is its way to fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::{admin_token, bin, cubectl, Cluster, Cubectl};

/// Proves `__complete tasks` prints the short ids and names of the cluster's tasks (and
/// only those starting with a given prefix), and `__complete nodes` its node names.
#[test]
fn the_hidden_verb_prints_ids_names_and_nodes() {
    let cluster = Cluster::exec();
    let ctl = cluster.ctl();
    let web = ctl.run(&["--name", "web", "--", "sleep", "300"]);
    let db = ctl.run(&["--name", "db", "--", "sleep", "300"]);
    let done = ctl.run(&["--name", "once", "--", "true"]);
    ctl.wait_state(&done, "TASK_STATE_COMPLETED", Duration::from_secs(20));

    let words = ctl.ok(&["__complete", "tasks"]);
    let words: Vec<&str> = words.lines().collect();
    for word in [&web[..8], &db[..8], &done[..8], "web", "db"] {
        assert!(words.contains(&word), "{word} missing from {words:?}");
    }
    // A finished task's name stands for nothing (names resolve to unfinished tasks only).
    assert!(!words.contains(&"once"), "{words:?}");
    assert_eq!(ctl.ok(&["__complete", "tasks", "we"]), "web\n");

    let nodes = ctl.ok(&["__complete", "nodes"]);
    assert_eq!(nodes, format!("{}\n", cluster.name(0)));

    // The bash script asks the hidden verb where tasks and nodes go.
    let script = ctl.ok(&["completion", "bash"]);
    assert!(
        script.contains("__complete \"$kind\"") && script.contains("complete -F _cubectl_dynamic"),
        "{script}"
    );
    // Bash itself, with the script sourced, completes from the manager.
    assert_eq!(bash_completes(&ctl, &["logs", "we"]), "web\n");
    assert_eq!(
        bash_completes(&ctl, &["drain", ""]),
        format!("{}\n", cluster.name(0))
    );
    ctl.ok(&["stop", "--all"]);
}

/// What bash, with `cubectl completion bash` sourced, offers for the line
/// `cubectl --manager URL WORDS...` completed at its last word.
fn bash_completes(ctl: &Cubectl, words: &[&str]) -> String {
    let cubectl = bin("cubectl");
    let dir = cubectl.parent().unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let line: Vec<String> = [&["cubectl", "--manager", ctl.url()][..], words]
        .concat()
        .iter()
        .map(|w| format!("'{w}'"))
        .collect();
    let program = format!(
        "source <(cubectl completion bash)\n\
         COMP_WORDS=({})\n\
         COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n\
         _cubectl_dynamic cubectl \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        line.join(" ")
    );
    let mut bash = Command::new("bash");
    bash.arg("-c").arg(program).env("PATH", path);
    if let Some(token) = admin_token(ctl.url()) {
        bash.env("CUBE_TOKEN", token);
    }
    let out = bash.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Proves completion against a manager that never answers gives up within its short timeout,
/// printing no candidates, even with a long --timeout.
#[test]
fn completion_gives_up_quickly() {
    // A listener that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let started = Instant::now();
    let (code, stdout, _) = cubectl(&url, &["--timeout", "30s", "__complete", "tasks"]);
    let took = started.elapsed();
    assert_ne!(code, 0);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
}
