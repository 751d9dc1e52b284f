//! `cubectl run`'s flags and the TaskSpec they describe: parsers for ports, probes and pairs,
//! and the flag-to-spec conversion.

pub use crate::task::parse_pair;

use std::{path::PathBuf, time::Duration};

use clap::{ArgGroup, Args, ValueEnum};

use crate::{
    cli::{output::to_proto_duration, parse_positive_duration},
    proto::pb,
    units::{parse_bytes, parse_cpu, parse_duration},
};

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
    /// The container image, for a Docker worker. Without one the task is a command run on the
    /// host by an Exec worker (and placed only on such a worker).
    #[arg(long, required_unless_present_any = ["file", "args"], group = "spec")]
    pub image: Option<String>,
    /// A name for people (default: derived from the image, or from the command).
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
    /// What the worker does with the task while it cannot reach the manager: `keep` (the
    /// default: it keeps running, a replacement starts after the node grace and the stale copy
    /// is stopped on reconnect) or `stop DURATION` (the worker stops it after DURATION without
    /// the manager; the replacement starts only after that).
    #[arg(long, value_names = ["keep|stop", "DURATION"], num_args = 1..=2,
          value_parser = super::disconnect::parse_word, group = "spec")]
    pub on_disconnect: Vec<super::disconnect::Word>,
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
    /// After submitting, follow the task until it is RUNNING (and healthy, with a health
    /// check) and still running after --settle. Exit 0 then; exit 1 if it fails, exits (the
    /// message shows its exit code) or restarts meanwhile, or is not running within
    /// --wait-timeout. Ctrl-C ends the wait, not the task.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits for RUNNING (and healthy); more than zero.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration,
          default_value = "60s", requires = "wait")]
    pub wait_timeout: Duration,
    /// How long a task must keep running, once it is up, for --wait to call it running;
    /// 0s: no settle time.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s",
          requires = "wait")]
    pub settle: Duration,
    /// The command and its arguments (replace the image's default command, as `docker run
    /// IMAGE CMD...` does). Put them after `--`: a word that starts with `-` before the
    /// command is taken as a flag of cubectl run, and an unknown one is a usage error.
    #[arg(value_name = "CMD", trailing_var_arg = true, group = "spec")]
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
            on_disconnect: super::disconnect::on_disconnect(&self.on_disconnect),
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cli::Command;

    fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let cli = crate::cli::parse_from(["cubectl", "run"].iter().chain(args))?;
        match cli.command {
            Command::Run(args) => Ok(*args),
            other => panic!("parsed as {other:?}"),
        }
    }

    /// A map as sorted `key=value` strings, to compare with a list.
    fn sorted_pairs(map: &HashMap<String, String>) -> Vec<String> {
        let mut pairs: Vec<_> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        pairs
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
    fn on_disconnect_takes_a_policy_and_its_duration() {
        let args = [
            "--image",
            "x",
            "--on-disconnect",
            "stop",
            "2s",
            "--",
            "sleep",
            "1",
        ];
        let spec = run_args(&args).unwrap().spec();
        let on = spec.on_disconnect.unwrap();
        assert_eq!(on.action(), pb::DisconnectAction::Stop);
        assert_eq!(on.after.unwrap().seconds, 2);
        assert_eq!(spec.args, ["sleep", "1"]);
        let keep = run_args(&["--image", "x", "--on-disconnect", "keep"]).unwrap();
        assert_eq!(
            keep.spec().on_disconnect.unwrap().action(),
            pb::DisconnectAction::Keep
        );
        assert!(run_args(&["--image", "x", "--on-disconnect", "soon"]).is_err());
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        for args in [
            &["--name", "x"][..], // no image, no command, no file
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
}
