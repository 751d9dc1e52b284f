//! Containers found and removed by the labels Cube puts on them (`cube.worker`,
//! `cube.task-id`), so a test cleans up after itself even when it fails.

use std::process::Command;

use super::{docker::docker_answers, run_ok};

/// A label Cube puts on every container it creates.
#[derive(Debug, Clone)]
pub enum Label {
    /// `cube.worker=NAME`: every container of one worker.
    Worker(String),
    /// `cube.task-id=ID`: every container of one task.
    Task(String),
}

impl Label {
    fn filter(&self) -> String {
        match self {
            Label::Worker(name) => format!("label=cube.worker={name}"),
            Label::Task(id) => format!("label=cube.task-id={id}"),
        }
    }
}

/// Ids of the containers with `label`: every one with `all`, else the running ones.
fn ps(label: &Label, all: bool) -> Vec<String> {
    let filter = label.filter();
    let flags = if all { "-aq" } else { "-q" };
    run_ok("docker", &["ps", flags, "--filter", &filter])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Removes (forcibly) every container with `label`; quietly, as it runs in `drop` too.
fn remove(label: &Label) {
    let Ok(out) = Command::new("docker")
        .args(["ps", "-aq", "--filter", &label.filter()])
        .output()
    else {
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
}

/// Ids of the containers (running or not) whose `cube.worker` label is `worker`.
pub fn containers_of(worker: &str) -> Vec<String> {
    ps(&Label::Worker(worker.into()), true)
}

/// Ids of the running containers whose `cube.worker` label is `worker`.
pub fn running_containers_of(worker: &str) -> Vec<String> {
    ps(&Label::Worker(worker.into()), false)
}

/// Ids of the containers (running or not) of the task `id`, on any worker.
pub fn containers_of_task(id: &str) -> Vec<String> {
    ps(&Label::Task(id.into()), true)
}

/// Ids of the running containers of the task `id`, on any worker.
pub fn running_containers_of_task(id: &str) -> Vec<String> {
    ps(&Label::Task(id.into()), false)
}

/// Removes every container a worker of that name created.
pub fn remove_containers_of(worker: &str) {
    remove(&Label::Worker(worker.into()));
}

/// Removes the containers with its labels when dropped, so a failing test cleans up too.
#[derive(Debug, Default)]
pub struct ContainerGuard(Vec<Label>);

impl ContainerGuard {
    /// Guards one more worker's containers too.
    pub fn add_worker(&mut self, name: &str) {
        self.0.push(Label::Worker(name.to_string()));
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if !self.0.is_empty() && docker_answers() {
            for label in &self.0 {
                remove(label);
            }
        }
    }
}
