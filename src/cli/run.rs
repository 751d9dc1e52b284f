//! `cubectl run`: build a TaskSpec from flags (or read them from a task file), submit it with
//! an idempotency key, print the new id, and with `--wait` follow it until it runs.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{ArgGroup, Args, ValueEnum};
use tokio::time::Instant;
use tonic::Code;

use crate::{
    client::{Client, ClientError},
    proto::pb,
    task::{format_bytes, format_cpu, parse_bytes, parse_cpu, MAX_SUBMIT_BATCH},
};

use super::{
    output::{self, parse_duration, short_id, task_state, to_proto_duration},
    print_err, print_out, Failure, Outcome,
};

/// How often `--wait` asks for the task when the manager cannot stream its changes.
const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Arguments of `cubectl run`.
#[derive(Debug, Args)]
#[command(
    group(ArgGroup::new("spec").multiple(true)),
    group(ArgGroup::new("probe").multiple(false)),
    after_help = "Examples:\n  \
        cubectl run --image cube-test/busybox:latest -- sleep 300\n  \
        cubectl run --image nginx:alpine --name web -p 8080:80 --cpu 500m --memory 256Mi --wait\n  \
        cubectl run --image cube-test/busybox:latest --count 20 -- sleep 300\n  \
        cubectl run -f tasks.yaml"
)]
pub struct RunArgs {
    /// The container image.
    #[arg(long, required_unless_present = "file", group = "spec")]
    pub image: Option<String>,
    /// A name for people (default: derived from the image).
    #[arg(long, group = "spec")]
    pub name: Option<String>,
    /// An environment variable (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_pair, group = "spec")]
    pub env: Vec<(String, String)>,
    /// Publish a container port on the node; without HOST the runtime picks one (repeatable).
    #[arg(short = 'p', long = "publish", value_name = "[HOST:]CONTAINER[/udp]",
          value_parser = parse_port, group = "spec")]
    pub ports: Vec<pb::PortMapping>,
    /// CPU to reserve and limit to: 500m or 0.5 (cores).
    #[arg(long, value_name = "CPU", value_parser = parse_cpu, group = "spec")]
    pub cpu: Option<i64>,
    /// Memory to reserve and limit to: 256Mi, 1Gi.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, group = "spec")]
    pub memory: Option<i64>,
    /// Disk to reserve (for scheduling): 1Gi.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes, group = "spec")]
    pub disk: Option<i64>,
    /// A label for people and tools (repeatable).
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE", value_parser = parse_pair, group = "spec")]
    pub labels: Vec<(String, String)>,
    /// Run only on nodes carrying this label (repeatable).
    #[arg(long = "constraint", value_name = "KEY=VALUE", value_parser = parse_pair, group = "spec")]
    pub constraints: Vec<(String, String)>,
    /// When to start the task again after it exits.
    #[arg(long, value_enum, group = "spec")]
    pub restart: Option<RestartArg>,
    /// At most this many restarts (default: no limit).
    #[arg(long, value_name = "N", group = "spec")]
    pub max_restarts: Option<u32>,
    /// HTTP health check: GET this container port and path; 2xx and 3xx are healthy.
    #[arg(long, value_name = "PORT/PATH", value_parser = parse_http_probe, group = "probe")]
    pub health_http: Option<pb::HttpProbe>,
    /// TCP health check: connect to this container port.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u32).range(1..=65535),
          group = "probe")]
    pub health_tcp: Option<u32>,
    /// Command health check, run with `sh -c` inside the container; exit 0 is healthy.
    #[arg(long, value_name = "CMD", group = "probe")]
    pub health_cmd: Option<String>,
    /// Time between health checks [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "probe")]
    pub health_interval: Option<Duration>,
    /// How long one health check may take [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "probe")]
    pub health_timeout: Option<Duration>,
    /// Consecutive failed checks before the task is unhealthy [default: 3].
    #[arg(long, value_name = "N", requires = "probe")]
    pub health_retries: Option<u32>,
    /// Failed checks during this time after start do not count [default: 0s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "probe")]
    pub health_start_period: Option<Duration>,
    /// How long a stop waits after SIGTERM before it kills [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, group = "spec")]
    pub stop_grace: Option<Duration>,
    /// Replace the image's entrypoint.
    #[arg(long, value_name = "CMD", group = "spec")]
    pub entrypoint: Option<String>,
    /// Read the task (or a list of tasks) from a YAML or JSON file in the proto3 JSON mapping of
    /// TaskSpec; `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with_all = ["spec", "probe"])]
    pub file: Option<PathBuf>,
    /// Run this many copies of the task (of each task, with -f), submitted together: all are
    /// accepted or none (per call of up to 1000).
    #[arg(long, visible_alias = "replicas", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub count: u32,
    /// After submitting, follow the task until it runs; exit 1 if it fails or stays pending.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits for RUNNING.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s",
          requires = "wait")]
    pub wait_timeout: Duration,
    /// The command and its arguments (replace the image's default command, as `docker run
    /// IMAGE CMD...` does).
    #[arg(
        value_name = "CMD",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        group = "spec"
    )]
    pub args: Vec<String>,
}

/// A restart policy as users type it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RestartArg {
    /// Never start the task again.
    Never,
    /// Start it again when it fails (the default).
    OnFailure,
    /// Start it again whenever it exits, unless stopped.
    Always,
}

impl From<RestartArg> for pb::RestartPolicy {
    fn from(policy: RestartArg) -> Self {
        match policy {
            RestartArg::Never => pb::RestartPolicy::Never,
            RestartArg::OnFailure => pb::RestartPolicy::OnFailure,
            RestartArg::Always => pb::RestartPolicy::Always,
        }
    }
}

/// Parses `KEY=VALUE` (the value may hold `=` and may be empty).
pub fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// Parses a published port: `80`, `8080:80`, `53:53/udp`, `80/tcp`.
pub fn parse_port(text: &str) -> Result<pb::PortMapping, String> {
    let bad = |why: &str| format!("{text:?} is not [HOST:]CONTAINER[/udp]: {why}");
    let (ports, protocol) = match text.rsplit_once('/') {
        Some((ports, "tcp")) => (ports, pb::Protocol::Tcp),
        Some((ports, "udp")) => (ports, pb::Protocol::Udp),
        Some(_) => return Err(bad("the protocol is tcp or udp")),
        None => (text, pb::Protocol::Unspecified),
    };
    let port = |p: &str, min: u32| {
        p.parse::<u32>()
            .ok()
            .filter(|n| (min..=65535).contains(n))
            .ok_or_else(|| bad(&format!("{p:?} is not a port")))
    };
    let (host_port, container_port) = match ports.split_once(':') {
        Some((host, container)) => (port(host, 0)?, port(container, 1)?),
        None => (0, port(ports, 1)?),
    };
    Ok(pb::PortMapping {
        container_port,
        host_port,
        protocol: protocol.into(),
    })
}

/// Parses an HTTP probe: `8080/health` or `8080` (path `/`).
pub fn parse_http_probe(text: &str) -> Result<pb::HttpProbe, String> {
    let (port, path) = match text.split_once('/') {
        Some((port, path)) => (port, format!("/{path}")),
        None => (text, "/".to_string()),
    };
    let port = port
        .parse::<u32>()
        .ok()
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| format!("{text:?} is not PORT/PATH (e.g. 8080/health)"))?;
    Ok(pb::HttpProbe { port, path })
}

impl RunArgs {
    /// The TaskSpec the flags describe. Defaults the flags leave open stay unset, so the
    /// manager applies its own (and says so in the task).
    pub fn spec(&self) -> pb::TaskSpec {
        let mut spec = pb::TaskSpec {
            name: self.name.clone().unwrap_or_default(),
            image: self.image.clone().unwrap_or_default(),
            command: self.entrypoint.iter().cloned().collect(),
            args: self.args.clone(),
            env: self.env.iter().cloned().collect(),
            ports: self.ports.clone(),
            labels: self.labels.iter().cloned().collect(),
            constraints: self.constraints.iter().cloned().collect(),
            stop_grace_period: self.stop_grace.map(to_proto_duration),
            ..Default::default()
        };
        if self.cpu.is_some() || self.memory.is_some() || self.disk.is_some() {
            spec.resources = Some(pb::Resources {
                cpu_millis: self.cpu.unwrap_or(0),
                memory_bytes: self.memory.unwrap_or(0),
                disk_bytes: self.disk.unwrap_or(0),
            });
        }
        if self.restart.is_some() || self.max_restarts.is_some() {
            spec.restart = Some(pb::Restart {
                policy: self
                    .restart
                    .map_or(pb::RestartPolicy::Unspecified, Into::into)
                    .into(),
                max_restarts: self.max_restarts,
            });
        }
        use pb::health_check::Probe;
        let probe = if let Some(http) = &self.health_http {
            Some(Probe::Http(http.clone()))
        } else if let Some(port) = self.health_tcp {
            Some(Probe::Tcp(pb::TcpProbe { port }))
        } else {
            self.health_cmd.as_ref().map(|cmd| {
                Probe::Exec(pb::ExecProbe {
                    command: vec!["sh".into(), "-c".into(), cmd.clone()],
                })
            })
        };
        if probe.is_some() {
            spec.health_check = Some(pb::HealthCheck {
                probe,
                interval: self.health_interval.map(to_proto_duration),
                timeout: self.health_timeout.map(to_proto_duration),
                retries: self.health_retries.unwrap_or(0),
                start_period: self.health_start_period.map(to_proto_duration),
            });
        }
        spec
    }
}

/// Reads a task file's text: one TaskSpec or a list of them, in the proto3 JSON mapping,
/// written as JSON (`.json`) or YAML (anything else, JSON included). Errors start with
/// `source` and name the field: `task.yaml: [0].resources.cpu_millis: invalid type ...`.
pub fn parse_task_file(source: &str, text: &str, json: bool) -> Result<Vec<pb::TaskSpec>, String> {
    let value: serde_json::Value = if json {
        serde_json::from_str(text).map_err(|e| format!("{source}: {e}"))?
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| format!("{source}: {e}"))?
    };
    let (items, listed) = match value {
        serde_json::Value::Array(items) => (items, true),
        serde_json::Value::Null => return Err(format!("{source}: holds no task")),
        single => (vec![single], false),
    };
    if items.is_empty() {
        return Err(format!("{source}: holds no task"));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let prefix = if listed {
                format!("[{i}]")
            } else {
                String::new()
            };
            output::from_json_value::<pb::TaskSpec>(item)
                .map_err(|e| format!("{source}: {}", e.within(&prefix)))
        })
        .collect()
}

fn read_task_file(path: &Path) -> Result<Vec<pb::TaskSpec>, Failure> {
    let hint = "a task file holds a TaskSpec (or a list of them) in the proto3 JSON mapping, \
                e.g. {\"image\": \"busybox\", \"args\": [\"sleep\", \"60\"]}";
    let (source, text) = if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Failure::new(format!("reading standard input: {e}"), hint))?;
        ("<stdin>".to_string(), text)
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::new(
                format!("cannot read {}: {e}", path.display()),
                "check the path given to -f",
            )
        })?;
        (path.display().to_string(), text)
    };
    let json = path.extension().is_some_and(|e| e == "json");
    parse_task_file(&source, &text, json).map_err(|message| Failure::new(message, hint))
}

/// Runs `cubectl run`. One task goes by SubmitTask; more (a task file's list, `--count`) go
/// by SubmitTasks, up to 1000 a call, so a bad spec in the list submits none of that call.
pub async fn run(client: &Client, args: RunArgs) -> Outcome {
    let specs = match &args.file {
        Some(path) => read_task_file(path)?,
        None => vec![args.spec()],
    };
    let count = args.count as usize;
    let tasks: Vec<(pb::TaskSpec, String)> = specs
        .iter()
        .flat_map(|spec| std::iter::repeat_n(spec, count))
        .map(|spec| (spec.clone(), uuid::Uuid::new_v4().to_string()))
        .collect();
    let mut warned = false;
    let mut on_retry = |error: &ClientError| {
        if !warned {
            print_err(&format!("cubectl: {error}; retrying\n"));
            warned = true;
        }
    };
    let mut ids = Vec::with_capacity(tasks.len());
    if let [(spec, request_id)] = tasks.as_slice() {
        let response = client
            .submit_task(spec.clone(), request_id, &mut on_retry)
            .await
            .map_err(submit_failure)?;
        let id = response.task.unwrap_or_default().id;
        print_out(&format!("{id}\n"));
        ids.push(id);
    } else {
        for chunk in tasks.chunks(MAX_SUBMIT_BATCH) {
            let response = client
                .submit_tasks(chunk, &mut on_retry)
                .await
                .map_err(submit_failure)?;
            // Printed per call: an error in a later call leaves these accepted.
            for answer in response.tasks {
                let id = answer.task.unwrap_or_default().id;
                print_out(&format!("{id}\n"));
                ids.push(id);
            }
        }
    }
    if args.wait {
        for id in &ids {
            wait_until_running(client, id, args.wait_timeout).await?;
        }
    }
    Ok(())
}

fn submit_failure(error: ClientError) -> Failure {
    let code = error.code();
    let failure = Failure::from(error);
    match code {
        Code::InvalidArgument => failure.with_hint(
            "fix the field named above; `cubectl run --help` lists the flags and their formats",
        ),
        _ => failure,
    }
}

/// Follows one task until it is RUNNING (or finished well), printing each change on stderr.
/// Uses WatchTasks, or polls GetTask when the manager does not stream.
pub async fn wait_until_running(client: &Client, id: &str, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut progress = Progress::default();
    let watch = client
        .watch_tasks(pb::WatchTasksRequest {
            task_ids: vec![id.to_string()],
            ..Default::default()
        })
        .await;
    match watch {
        Ok(mut stream) => loop {
            match tokio::time::timeout_at(deadline, stream.message()).await {
                Err(_) => return Err(not_running_in_time(id, progress.last, timeout)),
                Ok(Ok(Some(message))) => {
                    if let Some(task) = message.task {
                        if let Some(outcome) = progress.observe(task) {
                            return outcome;
                        }
                    }
                }
                // The stream ended (the manager is stopping): keep asking by polling.
                Ok(Ok(None)) => break,
                Ok(Err(status)) => {
                    let error = client.stream_error(status);
                    if error.code() != Code::Unimplemented && !error.is_retryable() {
                        return Err(error.into());
                    }
                    break;
                }
            }
        },
        Err(error) if error.code() == Code::Unimplemented => {}
        Err(error) => return Err(error.into()),
    }
    loop {
        match client.get_task(id).await {
            Ok(response) => {
                if let Some(outcome) = response.task.and_then(|task| progress.observe(task)) {
                    return outcome;
                }
            }
            Err(error) if error.is_retryable() => {}
            Err(error) => return Err(error.into()),
        }
        if Instant::now() + WAIT_POLL_INTERVAL >= deadline {
            return Err(not_running_in_time(id, progress.last, timeout));
        }
        tokio::time::sleep(WAIT_POLL_INTERVAL).await;
    }
}

/// What `--wait` has seen of a task: prints a line on stderr when its state, node or message
/// changes, and decides when the wait is over.
#[derive(Debug, Default)]
struct Progress {
    last: Option<pb::Task>,
}

impl Progress {
    fn observe(&mut self, task: pb::Task) -> Option<Outcome> {
        let changed = self.last.as_ref().is_none_or(|last| {
            (last.state, &last.node, &last.message) != (task.state, &task.node, &task.message)
        });
        if changed {
            print_err(&progress_line(&task));
        }
        let outcome = wait_verdict(&task);
        self.last = Some(task);
        outcome
    }
}

/// One progress line: `task 1234abcd: SCHEDULED on w1`.
fn progress_line(task: &pb::Task) -> String {
    let mut line = format!("task {}: {}", short_id(&task.id), task_state(task.state));
    if !task.node.is_empty() {
        line.push_str(&format!(" on {}", task.node));
    }
    if !task.message.is_empty() {
        line.push_str(&format!(" ({})", task.message));
    }
    line.push('\n');
    line
}

/// Whether waiting for `task` is over: RUNNING or COMPLETED succeed, FAILED fails.
fn wait_verdict(task: &pb::Task) -> Option<Outcome> {
    match pb::TaskState::try_from(task.state) {
        Ok(pb::TaskState::Running | pb::TaskState::Completed) => Some(Ok(())),
        Ok(pb::TaskState::Failed) => {
            let mut message = format!("task {} FAILED", task.id);
            if let Some(code) = task.exit_code {
                message.push_str(&format!(" with exit code {code}"));
            }
            if !task.message.is_empty() {
                message.push_str(&format!(": {}", task.message));
            }
            Some(Err(Failure::new(
                message,
                format!(
                    "cubectl logs {0} shows its output, cubectl events {0} its history",
                    task.id
                ),
            )))
        }
        _ => None,
    }
}

fn not_running_in_time(id: &str, last: Option<pb::Task>, timeout: Duration) -> Failure {
    let after = output::format_proto_duration(&to_proto_duration(timeout));
    let Some(task) = last else {
        return Failure::new(
            format!("task {id} was not seen within {after}"),
            format!("cubectl status {id} shows it"),
        );
    };
    let state = task_state(task.state);
    let mut message = format!("task {id} is still {state}");
    if !task.node.is_empty() {
        message.push_str(&format!(" on {}", task.node));
    }
    message.push_str(&format!(" after {after}"));
    if !task.message.is_empty() {
        message.push_str(&format!(": {}", task.message));
    }
    let hint = if task.state == i32::from(pb::TaskState::Pending) {
        format!("cubectl explain {id} shows why no node takes it")
    } else {
        format!("cubectl events {id} shows its history")
    };
    Failure::new(message, hint)
}

/// A spec's resources as people read them: `cpu 500m, memory 256Mi`.
pub fn resources_text(resources: Option<&pb::Resources>) -> String {
    let Some(r) = resources else {
        return String::new();
    };
    let mut parts = Vec::new();
    if r.cpu_millis != 0 {
        parts.push(format!("cpu {}", format_cpu(r.cpu_millis)));
    }
    if r.memory_bytes != 0 {
        parts.push(format!("memory {}", format_bytes(r.memory_bytes)));
    }
    if r.disk_bytes != 0 {
        parts.push(format!("disk {}", format_bytes(r.disk_bytes)));
    }
    parts.join(", ")
}

/// Maps as sorted `key=value` strings, for comparisons in tests and for rendering.
pub fn sorted_pairs(map: &HashMap<String, String>) -> Vec<String> {
    let mut pairs: Vec<_> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let cli = Cli::try_parse_from(["cubectl", "run"].iter().chain(args))?;
        match cli.command {
            Command::Run(args) => Ok(*args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn flags_build_the_spec() {
        let args = run_args(&[
            "--image",
            "cube-test/busybox:latest",
            "--name",
            "web",
            "-e",
            "A=1",
            "--env",
            "B=x=y",
            "-p",
            "8080:80",
            "-p",
            "53/udp",
            "--cpu",
            "500m",
            "--memory",
            "256Mi",
            "--disk",
            "1Gi",
            "--label",
            "team=a",
            "--constraint",
            "zone=b",
            "--restart",
            "on-failure",
            "--max-restarts",
            "3",
            "--health-http",
            "80/health",
            "--health-interval",
            "2s",
            "--health-retries",
            "2",
            "--stop-grace",
            "1m30s",
            "--entrypoint",
            "/bin/sh",
            "--",
            "-c",
            "httpd -f -p 80",
        ])
        .unwrap();
        let spec = args.spec();
        assert_eq!(spec.image, "cube-test/busybox:latest");
        assert_eq!(spec.name, "web");
        assert_eq!(sorted_pairs(&spec.env), ["A=1", "B=x=y"]);
        assert_eq!(spec.ports.len(), 2);
        assert_eq!(
            (spec.ports[0].host_port, spec.ports[0].container_port),
            (8080, 80)
        );
        assert_eq!(spec.ports[1].protocol, i32::from(pb::Protocol::Udp));
        let resources = spec.resources.unwrap();
        assert_eq!(resources.cpu_millis, 500);
        assert_eq!(resources.memory_bytes, 256 << 20);
        assert_eq!(resources.disk_bytes, 1 << 30);
        assert_eq!(sorted_pairs(&spec.labels), ["team=a"]);
        assert_eq!(sorted_pairs(&spec.constraints), ["zone=b"]);
        let restart = spec.restart.unwrap();
        assert_eq!(restart.policy, i32::from(pb::RestartPolicy::OnFailure));
        assert_eq!(restart.max_restarts, Some(3));
        let check = spec.health_check.unwrap();
        assert_eq!(
            check.probe,
            Some(pb::health_check::Probe::Http(pb::HttpProbe {
                port: 80,
                path: "/health".into()
            }))
        );
        assert_eq!(check.interval.unwrap().seconds, 2);
        assert_eq!(check.retries, 2);
        assert_eq!(
            check.timeout, None,
            "unset flags leave the server's default"
        );
        assert_eq!(spec.stop_grace_period.unwrap().seconds, 90);
        assert_eq!(spec.command, ["/bin/sh"]);
        assert_eq!(spec.args, ["-c", "httpd -f -p 80"]);
    }

    #[test]
    fn command_without_double_dash_and_health_cmd() {
        let args = run_args(&[
            "--image",
            "x",
            "--health-cmd",
            "test -f /tmp/ok",
            "sh",
            "-c",
            "exit 3",
        ])
        .unwrap();
        let spec = args.spec();
        assert_eq!(spec.args, ["sh", "-c", "exit 3"]);
        assert!(spec.resources.is_none() && spec.restart.is_none());
        assert_eq!(
            spec.health_check.unwrap().probe,
            Some(pb::health_check::Probe::Exec(pb::ExecProbe {
                command: vec!["sh".into(), "-c".into(), "test -f /tmp/ok".into()]
            }))
        );
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        for args in [
            &["--name", "x"][..], // no image, no file
            &["--image", "x", "--env", "NOVALUE"],
            &["--image", "x", "-p", "http"],
            &["--image", "x", "-p", "80/sctp"],
            &["--image", "x", "-p", "70000"],
            &["--image", "x", "--memory", "1Zi"],
            &["--image", "x", "--restart", "sometimes"],
            &["--image", "x", "--health-tcp", "80", "--health-cmd", "true"], // two probes
            &["--image", "x", "--health-interval", "5s"],                    // no probe
            &["--image", "x", "--stop-grace", "soon"],
            &["-f", "t.yaml", "--image", "x"], // file and flags
            &["-f", "t.yaml", "--wait-timeout", "5s"], // without --wait
        ] {
            let err = run_args(args).unwrap_err();
            assert_eq!(
                err.exit_code(),
                2,
                "{args:?} should be a usage error: {err}"
            );
        }
        assert!(run_args(&["-f", "t.yaml", "--wait"]).is_ok());
    }

    #[test]
    fn ports_and_probes_parse() {
        let p = parse_port("80").unwrap();
        assert_eq!((p.host_port, p.container_port, p.protocol), (0, 80, 0));
        let p = parse_port("5353:53/udp").unwrap();
        assert_eq!((p.host_port, p.container_port), (5353, 53));
        assert_eq!(p.protocol, i32::from(pb::Protocol::Udp));
        assert!(parse_port("0").is_err());
        assert!(parse_port(":80").is_err());
        assert_eq!(parse_http_probe("8080").unwrap().path, "/");
        assert_eq!(parse_http_probe("8080/a/b").unwrap().path, "/a/b");
        assert!(parse_http_probe("health").is_err());
        assert_eq!(parse_pair("K=").unwrap(), ("K".into(), "".into()));
        assert!(parse_pair("=v").is_err());
    }

    #[test]
    fn task_files_hold_one_or_many_specs() {
        let yaml = "image: cube-test/busybox:latest\nname: one\nargs: [sleep, '60']\n\
                    resources: {cpu_millis: 250, memoryBytes: 1048576}\n\
                    restart: {policy: RESTART_POLICY_NEVER}\nstopGracePeriod: 2s\n";
        let specs = parse_task_file("task.yaml", yaml, false).unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].name, "one");
        assert_eq!(specs[0].args, ["sleep", "60"]);
        assert_eq!(specs[0].resources.as_ref().unwrap().memory_bytes, 1 << 20);
        assert_eq!(specs[0].stop_grace_period.unwrap().seconds, 2);

        let list = "- image: a\n- image: b\n  env: {K: V}\n";
        let specs = parse_task_file("tasks.yaml", list, false).unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].env["K"], "V");

        let json =
            r#"[{"image": "a", "ports": [{"containerPort": 80, "protocol": "PROTOCOL_UDP"}]}]"#;
        let specs = parse_task_file("tasks.json", json, true).unwrap();
        assert_eq!(specs[0].ports[0].container_port, 80);
    }

    #[test]
    fn task_file_errors_name_the_field() {
        let err = parse_task_file(
            "task.yaml",
            "- image: a\n- image: b\n  resources: {cpu_millis: lots}\n",
            false,
        )
        .unwrap_err();
        assert!(
            err.starts_with("task.yaml: [1].resources.cpu_millis: "),
            "{err}"
        );

        let err = parse_task_file("task.yaml", "image: a\ncolour: red\n", false).unwrap_err();
        assert!(
            err.starts_with("task.yaml: ") && err.contains("colour"),
            "{err}"
        );

        let err = parse_task_file("t.json", "{\"image\": ", true).unwrap_err();
        assert!(err.starts_with("t.json: "), "{err}");

        let err = parse_task_file("t.yaml", "", false).unwrap_err();
        assert_eq!(err, "t.yaml: holds no task");

        let err = parse_task_file("t.yaml", "[]", false).unwrap_err();
        assert_eq!(err, "t.yaml: holds no task");

        let err = parse_task_file("t.yaml", "image: [1, 2]\n", false).unwrap_err();
        assert!(err.starts_with("t.yaml: image: "), "{err}");
    }

    #[test]
    fn wait_verdicts() {
        let task = |state: pb::TaskState| pb::Task {
            id: "0123456789".into(),
            state: state.into(),
            node: "w1".into(),
            ..Default::default()
        };
        assert!(wait_verdict(&task(pb::TaskState::Pending)).is_none());
        assert!(wait_verdict(&task(pb::TaskState::Scheduled)).is_none());
        assert_eq!(wait_verdict(&task(pb::TaskState::Running)), Some(Ok(())));
        let failed = pb::Task {
            exit_code: Some(3),
            message: "exited".into(),
            ..task(pb::TaskState::Failed)
        };
        let failure = wait_verdict(&failed).unwrap().unwrap_err();
        assert_eq!(
            failure.message,
            "task 0123456789 FAILED with exit code 3: exited"
        );
        assert_eq!(
            progress_line(&failed),
            "task 01234567: FAILED on w1 (exited)\n"
        );

        let pending = pb::Task {
            node: String::new(),
            message: "0/2 nodes fit: 2 insufficient cpu".into(),
            ..task(pb::TaskState::Pending)
        };
        let failure = not_running_in_time("x", Some(pending), Duration::from_secs(60));
        assert_eq!(
            failure.message,
            "task x is still PENDING after 1m: 0/2 nodes fit: 2 insufficient cpu"
        );
        assert_eq!(
            failure.hint.as_deref(),
            Some("cubectl explain x shows why no node takes it")
        );
    }

    #[test]
    fn resources_render() {
        let r = pb::Resources {
            cpu_millis: 1500,
            memory_bytes: 256 << 20,
            disk_bytes: 0,
        };
        assert_eq!(resources_text(Some(&r)), "cpu 1500m, memory 256Mi");
        assert_eq!(resources_text(None), "");
    }
}
