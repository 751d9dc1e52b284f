//! Tasks without I/O: ids, spec validation and the state machine.
//!
//! Everything here is pure and works on the generated proto types, so the manager, the worker,
//! cubectl and the tests share one definition of what a valid task is and how it may move.

use std::{fmt, str::FromStr, time::Duration};

use uuid::Uuid;

use crate::{
    error::{Error, Result, TransitionError},
    proto::pb::{self, TaskState},
};

/// A task's id: a UUID, assigned by the manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(Uuid);

impl TaskId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses an id sent by a client; the error names `field`.
    pub fn parse(field: &'static str, text: &str) -> Result<Self> {
        if text.is_empty() {
            return Err(Error::invalid(field, "is required"));
        }
        Uuid::parse_str(text)
            .map(Self)
            .map_err(|_| Error::invalid(field, format!("{text:?} is not a task id (a UUID)")))
    }

    /// The first eight hex digits, as people and container names use them.
    pub fn short(&self) -> String {
        self.0.simple().to_string()[..8].to_string()
    }

    /// The id's 16 bytes (the store's key).
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The id as one number (the store's key for a task's events).
    pub fn as_u128(&self) -> u128 {
        self.0.as_u128()
    }

    /// The id [`TaskId::as_u128`] gave.
    pub fn from_u128(value: u128) -> Self {
        TaskId(Uuid::from_u128(value))
    }

    /// An id from the store's 16-byte key.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }
}

impl Default for TaskId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TaskId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse("task_id", s)
    }
}

/// The one place the legal moves of a task are written down (DESIGN.md §3).
///
/// Staying in the same state is not a move and is always allowed, so that applying the same
/// observation twice is harmless.
pub fn check_transition(
    from: TaskState,
    to: TaskState,
) -> std::result::Result<(), TransitionError> {
    use TaskState::*;
    if from == to && from != Unspecified {
        return Ok(());
    }
    let legal = match from {
        // PENDING -> COMPLETED: the user stopped a task that was never placed.
        Pending => matches!(to, Scheduled | Failed | Completed),
        Scheduled => matches!(to, Running | Failed | Pending | Completed),
        Running => matches!(to, Completed | Failed | Pending),
        Failed => matches!(to, Scheduled),
        Completed => false,
        Unspecified => false,
    };
    if legal {
        Ok(())
    } else {
        Err(TransitionError { from, to })
    }
}

/// Which side of Cube moves a task's state: the label of the refused-move metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The manager's copy (desired and placed state).
    Manager,
    /// A worker's copy (observed state).
    Worker,
}

impl Component {
    /// The name in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Component::Manager => "manager",
            Component::Worker => "worker",
        }
    }
}

/// The one way a task's state changes, on either side (DESIGN.md §3): the move is checked
/// against [`check_transition`]; a legal one is made, an illegal one is refused (the task is
/// left as it was), logged with both states and counted in `cube_illegal_transitions_total`.
/// No other code assigns `Task::state`.
pub fn move_state(
    component: Component,
    task: &mut pb::Task,
    to: TaskState,
) -> std::result::Result<(), TransitionError> {
    let from = task.state();
    if let Err(e) = check_transition(from, to) {
        tracing::error!(
            component = component.name(),
            task_id = %task.id,
            from = state_name(from),
            to = state_name(to),
            "illegal state change refused"
        );
        crate::metrics::metrics()
            .illegal_transitions
            .with_label_values(&[component.name(), state_name(from), state_name(to)])
            .inc();
        return Err(e);
    }
    task.state = to as i32;
    Ok(())
}

/// Whether a task in this state will not change again by itself.
pub fn is_finished(state: TaskState) -> bool {
    matches!(state, TaskState::Completed | TaskState::Failed)
}

pub use crate::proto::state_name;

/// Parses `KEY=VALUE` (a label, an env var, a constraint), as flags of cubectl and the worker
/// take them.
pub fn parse_pair(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

/// The longest task name Cube accepts (a DNS label, so names fit in container names).
pub const MAX_NAME_LEN: usize = 63;

/// The most tasks one `ManagerService.SubmitTasks` call may carry.
pub const MAX_SUBMIT_BATCH: usize = 1000;

/// The most tasks one `WorkerService.StartTasks` call may carry.
pub const MAX_START_BATCH: usize = 1000;

/// Checks that a batch call's `tasks` holds 1 to `max` requests.
pub fn check_batch_len(len: usize, max: usize) -> Result<()> {
    if len == 0 || len > max {
        return Err(Error::invalid(
            "tasks",
            format!("holds {len} requests; send 1 to {max}"),
        ));
    }
    Ok(())
}

/// The grace period of a stop when the spec sets none: Docker's own default.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// Checks a spec sent by a client and fills its defaults. Errors name the field.
///
/// `require_image` is false for workers on the Exec runtime, which run the command alone.
pub fn validate_spec(mut spec: pb::TaskSpec, require_image: bool) -> Result<pb::TaskSpec> {
    if require_image && spec.image.trim().is_empty() {
        return Err(Error::invalid("spec.image", "is required"));
    }
    if spec.image.chars().any(char::is_whitespace) {
        return Err(Error::invalid("spec.image", "must not contain spaces"));
    }
    if spec.name.is_empty() {
        // From the image, or for a task without one (Exec) from its command.
        let from = if spec.image.is_empty() {
            spec.command
                .first()
                .or(spec.args.first())
                .map(String::as_str)
        } else {
            Some(spec.image.as_str())
        };
        spec.name = name_from_image(from.unwrap_or_default());
    }
    validate_name(&spec.name)?;
    if spec.image.is_empty() && spec.command.is_empty() && spec.args.is_empty() {
        return Err(Error::invalid(
            "spec.command",
            "is required when no image is given",
        ));
    }
    for key in spec.env.keys() {
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(Error::invalid(
                "spec.env",
                format!("{key:?} is not a valid variable name"),
            ));
        }
    }
    if let Some(resources) = &spec.resources {
        validate_resources("spec.resources", resources)?;
    }
    let mut seen = std::collections::HashSet::new();
    for (i, port) in spec.ports.iter().enumerate() {
        if port.container_port == 0 || port.container_port > 65535 {
            return Err(Error::invalid(
                format!("spec.ports[{i}].container_port"),
                format!("{} is not a port (1-65535)", port.container_port),
            ));
        }
        if port.host_port > 65535 {
            return Err(Error::invalid(
                format!("spec.ports[{i}].host_port"),
                format!("{} is not a port (0-65535)", port.host_port),
            ));
        }
        if pb::Protocol::try_from(port.protocol).is_err() {
            return Err(Error::invalid(
                format!("spec.ports[{i}].protocol"),
                format!("{} is not a protocol", port.protocol),
            ));
        }
        if port.host_port != 0 && !seen.insert((port.host_port, protocol_of(port))) {
            return Err(Error::invalid(
                format!("spec.ports[{i}].host_port"),
                format!("{} is published twice", port.host_port),
            ));
        }
    }
    if let Some(restart) = &spec.restart {
        if pb::RestartPolicy::try_from(restart.policy).is_err() {
            return Err(Error::invalid(
                "spec.restart.policy",
                format!("{} is not a restart policy", restart.policy),
            ));
        }
    }
    if let Some(check) = &spec.health_check {
        validate_health_check(check)?;
    }
    if let Some(grace) = &spec.stop_grace_period {
        duration("spec.stop_grace_period", grace)?;
    }
    crate::disconnect::validate(&spec)?;
    Ok(spec)
}

fn validate_name(name: &str) -> Result<()> {
    if name.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            "spec.name",
            format!("is longer than {MAX_NAME_LEN} characters"),
        ));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !name.chars().all(ok_char) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(Error::invalid(
            "spec.name",
            format!("{name:?} must start with a letter or digit and hold only letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

/// Checks that no resource is negative; the error names `field`.
pub fn validate_resources(field: &str, resources: &pb::Resources) -> Result<()> {
    for (name, value) in [
        ("cpu_millis", resources.cpu_millis),
        ("memory_bytes", resources.memory_bytes),
        ("disk_bytes", resources.disk_bytes),
    ] {
        if value < 0 {
            return Err(Error::invalid(
                format!("{field}.{name}"),
                format!("{value} is negative"),
            ));
        }
    }
    Ok(())
}

fn validate_health_check(check: &pb::HealthCheck) -> Result<()> {
    use pb::health_check::Probe;
    match &check.probe {
        None => {
            return Err(Error::invalid(
                "spec.health_check.probe",
                "is required (http, tcp or exec)",
            ))
        }
        Some(Probe::Http(http)) => {
            if http.port == 0 || http.port > 65535 {
                return Err(Error::invalid(
                    "spec.health_check.http.port",
                    format!("{} is not a port", http.port),
                ));
            }
            if !http.path.starts_with('/') {
                return Err(Error::invalid(
                    "spec.health_check.http.path",
                    "must start with '/'",
                ));
            }
        }
        Some(Probe::Tcp(tcp)) => {
            if tcp.port == 0 || tcp.port > 65535 {
                return Err(Error::invalid(
                    "spec.health_check.tcp.port",
                    format!("{} is not a port", tcp.port),
                ));
            }
        }
        Some(Probe::Exec(exec)) => {
            if exec.command.is_empty() {
                return Err(Error::invalid(
                    "spec.health_check.exec.command",
                    "is required",
                ));
            }
        }
    }
    for (field, value) in [
        ("spec.health_check.interval", &check.interval),
        ("spec.health_check.timeout", &check.timeout),
        ("spec.health_check.start_period", &check.start_period),
    ] {
        if let Some(value) = value {
            duration(field, value)?;
        }
    }
    Ok(())
}

/// Converts a wire `Duration` to std, rejecting negative ones; the error names `field`.
pub fn duration(field: &str, value: &prost_types::Duration) -> Result<Duration> {
    Duration::try_from(*value)
        .map_err(|_| Error::invalid(field.to_string(), "must not be negative"))
}

/// The protocol of a port, with UNSPECIFIED read as TCP.
pub fn protocol_of(port: &pb::PortMapping) -> pb::Protocol {
    match pb::Protocol::try_from(port.protocol) {
        Ok(pb::Protocol::Udp) => pb::Protocol::Udp,
        _ => pb::Protocol::Tcp,
    }
}

/// A default task name from an image: `cube-test/busybox:latest` becomes `busybox`.
pub fn name_from_image(image: &str) -> String {
    let base = image.rsplit('/').next().unwrap_or(image);
    let base = base.split([':', '@']).next().unwrap_or(base);
    let name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME_LEN)
        .collect();
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        "task".to_string()
    } else {
        name
    }
}

/// The restart policy of a spec, with UNSPECIFIED read as ON_FAILURE.
pub fn restart_policy(spec: &pb::TaskSpec) -> pb::RestartPolicy {
    match spec
        .restart
        .as_ref()
        .map(|r| pb::RestartPolicy::try_from(r.policy))
    {
        Some(Ok(pb::RestartPolicy::Never)) => pb::RestartPolicy::Never,
        Some(Ok(pb::RestartPolicy::Always)) => pb::RestartPolicy::Always,
        _ => pb::RestartPolicy::OnFailure,
    }
}

#[cfg(test)]
mod tests {
    /// No code but [`move_state`] assigns a task's state: every other change goes through it.
    /// (A new task's first state is set where it is built, in a struct literal.)
    #[test]
    fn only_move_state_assigns_a_state() {
        fn visit(dir: &std::path::Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    visit(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("task.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (i, line) in text.lines().enumerate() {
                        if line.contains(".state = ") || line.contains(".state=") {
                            found.push(format!("{}:{}: {}", path.display(), i + 1, line.trim()));
                        }
                    }
                }
            }
        }
        let mut found = Vec::new();
        visit(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(
            found.is_empty(),
            "state assigned outside move_state:\n{}",
            found.join("\n")
        );
    }

    /// An illegal move leaves the task as it was and is counted under its component.
    #[test]
    fn move_state_refuses_and_counts_an_illegal_move() {
        use super::*;
        let counter = || {
            crate::metrics::metrics()
                .illegal_transitions
                .with_label_values(&["worker", "COMPLETED", "RUNNING"])
                .get()
        };
        let before = counter();
        let mut task = pb::Task {
            state: TaskState::Completed as i32,
            ..Default::default()
        };
        let err = move_state(Component::Worker, &mut task, TaskState::Running).unwrap_err();
        assert_eq!(
            (err.from, err.to),
            (TaskState::Completed, TaskState::Running)
        );
        assert_eq!(task.state(), TaskState::Completed, "refused: unchanged");
        assert_eq!(counter(), before + 1);
        task.state = TaskState::Scheduled as i32;
        move_state(Component::Worker, &mut task, TaskState::Running).unwrap();
        assert_eq!(task.state(), TaskState::Running);
    }

    use super::*;
    use TaskState::*;

    const ALL: [TaskState; 6] = [Unspecified, Pending, Scheduled, Running, Completed, Failed];

    /// Every (from, to) pair against the table in DESIGN.md §3.
    #[test]
    fn transition_table_covers_every_pair() {
        let legal: &[(TaskState, TaskState)] = &[
            (Pending, Scheduled),
            (Pending, Failed),
            // Stopped by the user before it was placed: done, not failed.
            (Pending, Completed),
            (Scheduled, Running),
            (Scheduled, Failed),
            (Scheduled, Pending),
            // A task that exits before the first observation goes straight to COMPLETED.
            (Scheduled, Completed),
            (Running, Completed),
            (Running, Failed),
            (Running, Pending),
            (Failed, Scheduled),
        ];
        for from in ALL {
            for to in ALL {
                let expected = legal.contains(&(from, to)) || (from == to && from != Unspecified);
                assert_eq!(
                    check_transition(from, to).is_ok(),
                    expected,
                    "{} -> {}",
                    state_name(from),
                    state_name(to)
                );
            }
        }
    }

    #[test]
    fn illegal_move_names_both_states() {
        let err = check_transition(Completed, Running).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a task cannot move from COMPLETED to RUNNING"
        );
    }

    #[test]
    fn spec_validation_names_the_field() {
        let spec = pb::TaskSpec {
            image: "busybox".into(),
            ..Default::default()
        };
        let filled = validate_spec(spec.clone(), true).unwrap();
        assert_eq!(filled.name, "busybox");

        let err = validate_spec(pb::TaskSpec::default(), true).unwrap_err();
        assert!(err.to_string().contains("spec.image"), "{err}");

        let bad = pb::TaskSpec {
            resources: Some(pb::Resources {
                cpu_millis: -1,
                ..Default::default()
            }),
            ..spec.clone()
        };
        let err = validate_spec(bad, true).unwrap_err();
        assert!(
            err.to_string().contains("spec.resources.cpu_millis"),
            "{err}"
        );

        let bad = pb::TaskSpec {
            name: "no spaces".into(),
            ..spec.clone()
        };
        assert!(validate_spec(bad, true)
            .unwrap_err()
            .to_string()
            .contains("spec.name"));

        let bad = pb::TaskSpec {
            ports: vec![pb::PortMapping {
                container_port: 70000,
                ..Default::default()
            }],
            ..spec
        };
        assert!(validate_spec(bad, true)
            .unwrap_err()
            .to_string()
            .contains("spec.ports[0].container_port"));
    }

    #[test]
    fn ids_parse_and_shorten() {
        let id = TaskId::new();
        assert_eq!(TaskId::parse("task_id", &id.to_string()).unwrap(), id);
        assert_eq!(id.short().len(), 8);
        let err = TaskId::parse("task_id", "nope").unwrap_err();
        assert!(err.to_string().contains("task_id"));
        assert_eq!(name_from_image("cube-test/busybox:latest"), "busybox");
    }
}
