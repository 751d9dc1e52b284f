//! cubectl as the tests run it: raw ([`cubectl`]: exit code, stdout, stderr) for tests of the
//! CLI itself, and [`Cubectl`] for tests that use it as a user would (calls that must succeed,
//! `-o json` read back, waits on what it shows).

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc::{self, Receiver},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{image::TEST_IMAGE, json, process::bin, wait::wait_for};

/// Runs cubectl against `manager` with `args`; returns (exit code, stdout, stderr).
pub fn cubectl(manager: &str, args: &[&str]) -> (i32, String, String) {
    Cubectl::new(manager).call(args)
}

/// cubectl pointed at one manager.
#[derive(Debug, Clone)]
pub struct Cubectl {
    url: String,
    /// `--token`: the admin token of a secure test cluster at `url`, unless set otherwise.
    token: Option<String>,
}

impl Cubectl {
    /// cubectl with `--manager url`, as admin when `url` is a secure test cluster's.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            token: super::cluster::admin_token(url),
        }
    }

    /// The same cubectl with `--token token`, or with no token at all.
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        self.token = token.map(str::to_string);
        self
    }

    /// The manager's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The command `cubectl --manager URL ARGS` with no stdin, for tests that read its output
    /// as it comes (`watch`, `logs -f`) or start it before the manager.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin("cubectl"));
        command
            .arg("--manager")
            .arg(&self.url)
            .env_remove("CUBE_TOKEN")
            .env_remove("CUBE_CA_CERT")
            .args(args)
            .stdin(Stdio::null());
        if let Some(token) = &self.token {
            command.env("CUBE_TOKEN", token);
        }
        command
    }

    /// `cubectl ARGS` started (stderr dropped) for a test that reads its output as it comes
    /// (`watch`, `events -w`): the child, to kill, and its stdout lines as they are written.
    pub fn follow(&self, args: &[&str]) -> (Child, Receiver<String>) {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    }

    /// `cubectl ARGS`: (exit code, stdout, stderr).
    pub fn call(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.command(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `cubectl ARGS`, which must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, stdout, stderr) = self.call(args);
        assert_eq!(code, 0, "cubectl {args:?} failed: {stderr}");
        stdout
    }

    /// `cubectl ARGS -o json`, which must succeed, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        json(&self.ok(&[args, &["-o", "json"]].concat()))
    }

    /// `cubectl run ARGS`, which must succeed; the task id it prints first.
    pub fn run(&self, args: &[&str]) -> String {
        let stdout = self.ok(&[&["run"], args].concat());
        let id = stdout.lines().next().unwrap_or_default().to_string();
        assert_eq!(id.len(), 36, "run prints the id first: {stdout}");
        id
    }

    /// `cubectl run` of a task named `name` on the test image that sleeps 300 s and is killed
    /// 1 s after a stop; its id.
    pub fn run_sleeper(&self, name: &str) -> String {
        self.run(&[
            "--image",
            TEST_IMAGE,
            "--name",
            name,
            "--stop-grace",
            "1s",
            "--",
            "sleep",
            "300",
        ])
    }

    /// `cubectl status ID -o json`: the task and its events.
    pub fn status(&self, id: &str) -> Value {
        self.json(&["status", id])
    }

    /// One task as `cubectl status ID -o json` shows it.
    pub fn task(&self, id: &str) -> Value {
        self.status(id)["task"].clone()
    }

    /// The tasks `cubectl status -o json` lists.
    pub fn tasks(&self) -> Vec<Value> {
        self.json(&["status", "-a"])["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The nodes `cubectl nodes -o json` lists.
    pub fn nodes(&self) -> Vec<Value> {
        self.json(&["nodes"])["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Each node's state (`NODE_STATE_...`) by its name.
    pub fn node_states(&self) -> HashMap<String, String> {
        self.nodes()
            .iter()
            .map(|n| {
                (
                    n["name"].as_str().unwrap_or_default().to_string(),
                    n["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// `cubectl explain ID -o json`.
    pub fn explain(&self, id: &str) -> Value {
        self.json(&["explain", id])
    }

    /// Waits up to `timeout` until `cubectl nodes -o json` shows every one of `names` READY.
    pub fn wait_ready(&self, names: &[&str], timeout: Duration) {
        wait_for(timeout, "every node READY", || {
            let nodes = self.nodes();
            names
                .iter()
                .all(|name| {
                    nodes
                        .iter()
                        .any(|n| n["name"] == *name && n["state"] == "NODE_STATE_READY")
                })
                .then_some(())
        });
    }

    /// Waits up to `timeout` until the task, as `status` shows it, passes `check`; the task.
    /// On a timeout it shows the task as last seen.
    pub fn wait_task(
        &self,
        id: &str,
        timeout: Duration,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let task = self.task(id);
            if check(&task) {
                return task;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting for {what}; the task: {task}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to `timeout` until the task is in `state` (`TASK_STATE_...`); the task.
    pub fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        self.wait_task(id, timeout, &format!("task {id} {state}"), |t| {
            t["state"] == state
        })
    }
}
