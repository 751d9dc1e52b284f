//! `cubectl status`: the tasks as a table, one task in detail with its events, or (with
//! `--watch`) every change as it happens.

use std::time::SystemTime;

use clap::{Args, ValueEnum};

use crate::{client::Client, proto::pb, task::restart_policy};

use super::{
    output::{
        self, age, format_proto_duration, format_time, pairs, ports, resources_text, shell_words,
        task_state,
    },
    print_out, Format, Outcome, TaskFilterArgs,
};

/// Arguments of `cubectl status`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    cubectl status\n  \
    cubectl status -a --state failed\n  \
    cubectl status -l app=web -o wide\n  \
    cubectl status web          (a name, an id prefix such as 0b5c3a52, or an id)\n  \
    cubectl status --watch\n  \
    cubectl status -q | xargs cubectl stop")]
pub struct StatusArgs {
    /// Show this task in detail, with its events: an id, a unique id prefix (4 or more
    /// characters) or the name of one unfinished task.
    #[arg(value_name = "TASK")]
    pub id: Option<String>,
    /// Which tasks.
    #[command(flatten)]
    pub filter: TaskFilterArgs,
    /// List finished tasks too (by default only unfinished ones are listed).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Keep printing a line for every change (Ctrl-C to stop).
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = TasksFormat::Table)]
    pub format: TasksFormat,
    /// Print only the tasks' ids (the same as `-o name`).
    #[arg(short = 'q', long, conflicts_with = "format")]
    pub quiet: bool,
}

/// How `status` prints tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TasksFormat {
    /// Aligned columns that fit the terminal (long names and images cut with `…`).
    Table,
    /// Every column uncut, with full ids, ports, labels and the message.
    Wide,
    /// The response message in the proto3 JSON mapping.
    Json,
    /// The same as json, in YAML.
    Yaml,
    /// The full ids only, one a line.
    Name,
}

/// Runs `cubectl status`.
pub async fn run(client: &Client, args: StatusArgs) -> Outcome {
    let format = if args.quiet {
        TasksFormat::Name
    } else {
        args.format
    };
    if args.watch {
        let filter = super::watch::Filter {
            ids: args.id.into_iter().collect(),
            state: args.filter.state,
            node: args.filter.node,
            labels: args.filter.labels,
        };
        let format = match format {
            TasksFormat::Json => Format::Json,
            _ => Format::Table,
        };
        return super::watch::follow(client, filter, format).await;
    }
    let now = SystemTime::now();
    if let Some(id) = &args.id {
        let response = client.get_task(id).await.map_err(super::task_failure)?;
        let text = match format {
            TasksFormat::Table | TasksFormat::Wide => detail(&response, now),
            TasksFormat::Json => output::to_json(&response),
            TasksFormat::Yaml => output::to_yaml(&response),
            TasksFormat::Name => ids(response.task.as_slice()),
        };
        print_out(&text);
        return Ok(());
    }
    // A state asked for is shown whether finished or not.
    let request = args
        .filter
        .list_request(!args.all && args.filter.state.is_none());
    let response = client.list_all_tasks(request).await?;
    let text = match format {
        TasksFormat::Table => output::table(&response.tasks, now, output::terminal_width()),
        TasksFormat::Wide => output::wide_table(&response.tasks, now),
        TasksFormat::Json => output::to_json(&response),
        TasksFormat::Yaml => output::to_yaml(&response),
        TasksFormat::Name => ids(&response.tasks),
    };
    print_out(&text);
    Ok(())
}

/// The tasks' full ids, one a line.
fn ids(tasks: &[pb::Task]) -> String {
    tasks.iter().map(|t| format!("{}\n", t.id)).collect()
}

/// One task in detail: what was asked, what is observed, and its events.
pub fn detail(response: &pb::GetTaskResponse, now: SystemTime) -> String {
    let task = response.task.clone().unwrap_or_default();
    let spec = task.spec.clone().unwrap_or_default();
    let mut lines: Vec<(&str, String)> = vec![
        ("ID", task.id.clone()),
        ("Name", spec.name.clone()),
        ("Image", spec.image.clone()),
    ];
    let desired = pb::DesiredState::try_from(task.desired_state)
        .map(|d| output::enum_name(d.as_str_name(), "DESIRED_STATE_"))
        .unwrap_or_default();
    let mut state = task_state(task.state);
    if !desired.is_empty() && desired != "UNSPECIFIED" {
        state.push_str(&format!(" (desired: {desired})"));
    }
    lines.push(("State", state));
    if let Some(healthy) = task.healthy {
        lines.push(("Healthy", if healthy { "yes" } else { "no" }.to_string()));
    }
    lines.push(("Node", task.node.clone()));
    lines.push(("Container", task.container_id.clone()));
    lines.push(("Ports", ports(&task.ports)));
    lines.push(("Restarts", task.restart_count.to_string()));
    if let Some(code) = task.exit_code {
        lines.push(("Exit code", code.to_string()));
    }
    let when = |t: Option<&prost_types::Timestamp>| match t {
        Some(_) => format!("{} ({} ago)", format_time(t), age(t, now)),
        None => String::new(),
    };
    lines.push(("Created", when(task.created_at.as_ref())));
    lines.push(("Started", when(task.started_at.as_ref())));
    lines.push(("Finished", when(task.finished_at.as_ref())));
    lines.push(("Message", task.message.clone()));
    lines.push(("Command", shell_words(&spec.command)));
    lines.push(("Args", shell_words(&spec.args)));
    lines.push(("Env", pairs(&spec.env)));
    lines.push(("Resources", resources_text(spec.resources.as_ref())));
    lines.push(("Labels", pairs(&spec.labels)));
    lines.push(("Constraints", pairs(&spec.constraints)));
    let mut restart = output::enum_name(restart_policy(&spec).as_str_name(), "RESTART_POLICY_")
        .to_lowercase()
        .replace('_', "-");
    if let Some(max) = spec.restart.as_ref().and_then(|r| r.max_restarts) {
        restart.push_str(&format!(" (at most {max})"));
    }
    lines.push(("Restart", restart));
    lines.push(("Health check", health_text(spec.health_check.as_ref())));
    lines.push((
        "Stop grace",
        spec.stop_grace_period
            .as_ref()
            .map(format_proto_duration)
            .unwrap_or_default(),
    ));
    // The widest key, its colon and two spaces.
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 3;
    let mut out = String::new();
    for (key, value) in lines.into_iter().filter(|(_, v)| !v.is_empty()) {
        out.push_str(&format!("{:width$}{value}\n", format!("{key}:")));
    }
    out.push_str("\nEvents:\n");
    if response.events.is_empty() {
        out.push_str("  (none)\n");
    } else {
        for line in super::events::render(&response.events).lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

/// A health check as people read it: `http :8080/health every 10s, timeout 5s, 3 retries`.
fn health_text(check: Option<&pb::HealthCheck>) -> String {
    use pb::health_check::Probe;
    let Some(check) = check else {
        return String::new();
    };
    let mut text = match &check.probe {
        Some(Probe::Http(http)) => format!("http :{}{}", http.port, http.path),
        Some(Probe::Tcp(tcp)) => format!("tcp :{}", tcp.port),
        Some(Probe::Exec(exec)) => format!("exec {}", shell_words(&exec.command)),
        None => "none".to_string(),
    };
    if let Some(interval) = &check.interval {
        text.push_str(&format!(" every {}", format_proto_duration(interval)));
    }
    if let Some(timeout) = &check.timeout {
        text.push_str(&format!(", timeout {}", format_proto_duration(timeout)));
    }
    if check.retries != 0 {
        text.push_str(&format!(", {} retries", check.retries));
    }
    if let Some(start) = &check.start_period {
        text.push_str(&format!(", start period {}", format_proto_duration(start)));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    fn task(id: &str, name: &str, state: pb::TaskState) -> pb::Task {
        pb::Task {
            id: id.into(),
            spec: Some(pb::TaskSpec {
                name: name.into(),
                image: "cube-test/busybox:latest".into(),
                ..Default::default()
            }),
            state: state.into(),
            desired_state: pb::DesiredState::Running.into(),
            created_at: ts(40),
            ..Default::default()
        }
    }

    #[test]
    fn table_lists_tasks() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let mut failed = task("99999999-aaaa", "sh", pb::TaskState::Failed);
        failed.exit_code = Some(3);
        failed.node = "w2".into();
        failed.restart_count = 1;
        let text = output::table(
            &[
                task("0123456789ab", "sleepy", pb::TaskState::Pending),
                failed,
            ],
            now,
            None,
        );
        assert_eq!(
            text,
            "ID         NAME     STATE     HEALTH   NODE   IMAGE                      AGE   RESTARTS   EXIT\n\
             01234567   sleepy   PENDING                   cube-test/busybox:latest   60s   0\n\
             99999999   sh       FAILED             w2     cube-test/busybox:latest   60s   1          3\n"
        );
    }

    #[test]
    fn detail_shows_spec_state_and_events() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let mut t = task("0123456789ab", "web", pb::TaskState::Failed);
        t.exit_code = Some(3);
        t.node = "w1".into();
        t.message = "exited with code 3".into();
        t.finished_at = ts(90);
        if let Some(spec) = t.spec.as_mut() {
            spec.args = vec!["sh".into(), "-c".into(), "exit 3".into()];
            spec.restart = Some(pb::Restart {
                policy: pb::RestartPolicy::Never.into(),
                max_restarts: None,
            });
            spec.health_check = Some(pb::HealthCheck {
                probe: Some(pb::health_check::Probe::Http(pb::HttpProbe {
                    port: 80,
                    path: "/health".into(),
                })),
                interval: Some(prost_types::Duration {
                    seconds: 2,
                    nanos: 0,
                }),
                ..Default::default()
            });
        }
        let text = detail(
            &pb::GetTaskResponse {
                task: Some(t),
                events: vec![pb::TaskEvent {
                    seq: 1,
                    task_id: "0123456789ab".into(),
                    r#type: pb::EventType::Submitted.into(),
                    state: pb::TaskState::Pending.into(),
                    ..Default::default()
                }],
            },
            now,
        );
        for expected in [
            "ID:            0123456789ab\n",
            "State:         FAILED (desired: RUNNING)\n",
            "Node:          w1\n",
            "Exit code:     3\n",
            "Finished:      1970-01-01T00:01:30.000Z (10s ago)\n",
            "Message:       exited with code 3\n",
            "Args:          sh -c 'exit 3'\n",
            "Restart:       never\n",
            "Health check:  http :80/health every 2s\n",
            "\nEvents:\n  TIME   TASK       TYPE        STATE     NODE   MESSAGE\n",
            "   01234567   SUBMITTED   PENDING\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("Container:"), "empty fields are left out");
    }
}
