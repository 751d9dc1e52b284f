//! How cubectl prints: aligned tables, proto3 JSON, durations, ages and times.

use std::time::{Duration, SystemTime};

use prost::Message;
use prost_reflect::{DynamicMessage, ReflectMessage as _};

use crate::{
    proto::{descriptor_pool, pb},
    task::state_name,
};

use super::Failure;

/// Spaces between two table columns (as kubectl and docker print them).
const COLUMN_GAP: usize = 3;

/// A table of text cells with a header, printed with aligned columns.
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have as many cells as the header.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len(), "row width");
        self.rows.push(cells);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines: each column as wide as its widest cell, the last one unpadded.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths = vec![0; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i + 1 < columns {
                    let pad = widths[i] - cell.chars().count() + COLUMN_GAP;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A generated message that knows its full proto name (prost writes no `Name` impls for Cube's
/// build), so it can be rendered and read as proto3 JSON through the descriptor pool.
pub trait ProtoMessage: Message {
    /// The message's full name, e.g. `cube.v1.Task`.
    const FULL_NAME: &'static str;
}

macro_rules! proto_messages {
    ($($ty:ident),* $(,)?) => {
        $(impl ProtoMessage for pb::$ty {
            const FULL_NAME: &'static str = concat!("cube.v1.", stringify!($ty));
        })*
        /// Every message cubectl renders or reads, for the test that finds each in the pool.
        #[cfg(test)]
        const PROTO_MESSAGES: &[&str] = &[$(concat!("cube.v1.", stringify!($ty))),*];
    };
}

proto_messages!(
    TaskSpec,
    Task,
    SubmitTaskResponse,
    StopTaskResponse,
    GetTaskResponse,
    ListTasksResponse,
    WatchTasksResponse,
    ListNodesResponse,
    ListEventsResponse,
    ExplainTaskResponse,
    DrainNodeResponse,
    UndrainNodeResponse,
);

/// A message in the proto3 JSON mapping, as grpcurl prints it: lowerCamelCase names, enums by
/// name, 64-bit integers as strings, default values left out.
pub fn to_json_value<M: ProtoMessage>(message: &M) -> serde_json::Value {
    let dynamic = dynamic(message);
    serde_json::to_value(&dynamic).expect("a decoded message serializes to JSON")
}

/// [`to_json_value`] pretty-printed in field-number order (as grpcurl prints), with a final
/// newline.
pub fn to_json<M: ProtoMessage>(message: &M) -> String {
    let mut text =
        serde_json::to_string_pretty(&dynamic(message)).expect("a decoded message prints");
    text.push('\n');
    text
}

/// [`to_json`] on one line (for streams: one message a line).
pub fn to_json_line<M: ProtoMessage>(message: &M) -> String {
    let mut text = serde_json::to_string(&dynamic(message)).expect("a decoded message prints");
    text.push('\n');
    text
}

fn dynamic<M: ProtoMessage>(message: &M) -> DynamicMessage {
    let descriptor = descriptor_pool()
        .get_message_by_name(M::FULL_NAME)
        .unwrap_or_else(|| panic!("{} is in Cube's descriptor set", M::FULL_NAME));
    DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .expect("a message prost encoded decodes")
}

/// A proto3 JSON value that does not fit the message: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The path of the field as written (`resources.cpu_millis`, `ports[0].protocol`); empty
    /// for the message itself.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// The same error seen from a containing value: `prefix` goes before the path.
    pub fn within(mut self, prefix: &str) -> Self {
        self.path = match (prefix.is_empty(), self.path.is_empty()) {
            (true, _) => self.path,
            (false, true) => prefix.to_string(),
            (false, false) if self.path.starts_with('[') => format!("{prefix}{}", self.path),
            (false, false) => format!("{prefix}.{}", self.path),
        };
        self
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Reads a proto3 JSON value into a message of type `M`. Unknown fields and values of the wrong
/// type are refused with the path of the field.
pub fn from_json_value<M: ProtoMessage + Default>(
    value: serde_json::Value,
) -> Result<M, FieldError> {
    let descriptor = descriptor_pool()
        .get_message_by_name(M::FULL_NAME)
        .unwrap_or_else(|| panic!("{} is in Cube's descriptor set", M::FULL_NAME));
    let mut track = serde_path_to_error::Track::new();
    let deserializer = serde_path_to_error::Deserializer::new(value, &mut track);
    let dynamic = DynamicMessage::deserialize(descriptor, deserializer).map_err(|error| {
        let path = track.path().to_string();
        FieldError {
            path: if path == "." { String::new() } else { path },
            message: error.to_string(),
        }
    })?;
    dynamic.transcode_to::<M>().map_err(|e| FieldError {
        path: String::new(),
        message: format!("{}: {e}", dynamic.descriptor().full_name()),
    })
}

/// Parses a duration as people write it: `10s`, `500ms`, `1m30s`, `2h`, or bare seconds `5`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a duration (try 10s, 500ms or 1m30s)");
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|_| bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            "d" => number * 86400.0,
            _ => return Err(bad()),
        };
        total += Duration::try_from_secs_f64(seconds).map_err(|_| bad())?;
        rest = tail;
    }
    Ok(total)
}

/// A std duration on the wire.
pub fn to_proto_duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: duration.as_secs() as i64,
        nanos: duration.subsec_nanos() as i32,
    }
}

/// A wire duration as people read it: `10s`, `1.5s`, `2m`, `1h30m`.
pub fn format_proto_duration(duration: &prost_types::Duration) -> String {
    let Ok(duration) = Duration::try_from(*duration) else {
        return format!("{}s", duration.seconds);
    };
    let seconds = duration.as_secs();
    if duration.subsec_nanos() != 0 && seconds < 60 {
        let millis = duration.as_millis();
        return if millis % 1000 == 0 {
            format!("{seconds}s")
        } else if seconds == 0 {
            format!("{millis}ms")
        } else {
            let text = format!("{:.3}", duration.as_secs_f64());
            format!("{}s", text.trim_end_matches('0'))
        };
    }
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// How long ago `then` was, in one unit as `kubectl get` shows it: `5s`, `3m`, `2h`, `4d`.
/// Empty when unknown.
pub fn age(then: Option<&prost_types::Timestamp>, now: SystemTime) -> String {
    let Some(then) = then.and_then(|t| SystemTime::try_from(*t).ok()) else {
        return String::new();
    };
    format_age(now.duration_since(then).unwrap_or_default())
}

/// A span in one unit: seconds under two minutes, minutes under two hours, hours under two
/// days, then days (so `90s` rather than `1m`, as kubectl does).
pub fn format_age(span: Duration) -> String {
    let seconds = span.as_secs();
    if seconds < 120 {
        format!("{seconds}s")
    } else if seconds < 2 * 3600 {
        format!("{}m", seconds / 60)
    } else if seconds < 48 * 3600 {
        format!("{}h", seconds / 3600)
    } else {
        format!("{}d", seconds / 86400)
    }
}

/// A timestamp in UTC as RFC 3339 with milliseconds: `2026-11-28T01:13:22.123Z`.
pub fn format_time(time: Option<&prost_types::Timestamp>) -> String {
    let Some(time) = time else {
        return String::new();
    };
    let seconds = time.seconds;
    let days = seconds.div_euclid(86400);
    let of_day = seconds.rem_euclid(86400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        time.nanos.clamp(0, 999_999_999) / 1_000_000
    )
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The first eight characters of an id, as tables show it.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// A task state from its wire value: `RUNNING`, or the number when it is unknown to cubectl.
pub fn task_state(value: i32) -> String {
    match pb::TaskState::try_from(value) {
        Ok(state) => state_name(state).to_string(),
        Err(_) => value.to_string(),
    }
}

/// An enum's proto name without its prefix: `EVENT_TYPE_STATE_CHANGED` becomes
/// `STATE_CHANGED`.
pub fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_string()
}

/// A node state from its wire value: `READY`, `DOWN`, `DRAINING`.
pub fn node_state(value: i32) -> String {
    match pb::NodeState::try_from(value) {
        Ok(state) => enum_name(state.as_str_name(), "NODE_STATE_"),
        Err(_) => value.to_string(),
    }
}

/// An event type from its wire value: `SUBMITTED`, `STATE_CHANGED`, ...
pub fn event_type(value: i32) -> String {
    match pb::EventType::try_from(value) {
        Ok(kind) => enum_name(kind.as_str_name(), "EVENT_TYPE_"),
        Err(_) => value.to_string(),
    }
}

/// Published ports as docker shows them: `8080->80/tcp, 53->53/udp`.
pub fn ports(ports: &[pb::PortMapping]) -> String {
    ports
        .iter()
        .map(|p| {
            let protocol = match crate::task::protocol_of(p) {
                pb::Protocol::Udp => "udp",
                _ => "tcp",
            };
            if p.host_port == 0 {
                format!("{}/{protocol}", p.container_port)
            } else {
                format!("{}->{}/{protocol}", p.host_port, p.container_port)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `key=value` pairs sorted by key, comma separated.
pub fn pairs(map: &std::collections::HashMap<String, String>) -> String {
    let mut pairs: Vec<_> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    pairs.join(",")
}

/// A command line as a shell would need it typed: words with spaces or quotes are quoted.
pub fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints a response: its JSON in `Json` format, or what `table` renders.
pub fn print<M: ProtoMessage>(
    format: super::Format,
    message: &M,
    table: impl FnOnce(&M) -> String,
) -> Result<(), Failure> {
    let text = match format {
        super::Format::Json => to_json(message),
        super::Format::Table => table(message),
    };
    super::print_out(&text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rendered_message_is_in_the_pool() {
        for name in PROTO_MESSAGES {
            assert!(
                descriptor_pool().get_message_by_name(name).is_some(),
                "{name}"
            );
        }
    }

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(&["ID", "NAME", "STATE"]);
        table.row(vec!["1".into(), "a-long-name".into(), "RUNNING".into()]);
        table.row(vec!["22".into(), "b".into(), "".into()]);
        assert_eq!(
            table.render(),
            "ID   NAME          STATE\n\
             1    a-long-name   RUNNING\n\
             22   b\n"
        );
    }

    #[test]
    fn json_uses_proto3_mapping() {
        let task = pb::Task {
            id: "abc".into(),
            state: pb::TaskState::Running.into(),
            restart_count: 2,
            revision: 7,
            exit_code: Some(0),
            spec: Some(pb::TaskSpec {
                image: "busybox".into(),
                resources: Some(pb::Resources {
                    cpu_millis: 500,
                    ..Default::default()
                }),
                stop_grace_period: Some(prost_types::Duration {
                    seconds: 10,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            created_at: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: 0,
            }),
            ..Default::default()
        };
        let json = to_json_value(&pb::GetTaskResponse {
            task: Some(task),
            events: vec![],
        });
        let task = &json["task"];
        assert_eq!(task["id"], "abc");
        assert_eq!(task["state"], "TASK_STATE_RUNNING");
        assert_eq!(task["restartCount"], 2);
        assert_eq!(task["revision"], "7", "64-bit integers are strings");
        assert_eq!(
            task["exitCode"], 0,
            "an optional field that is set is shown"
        );
        assert_eq!(task["spec"]["resources"]["cpuMillis"], "500");
        assert_eq!(task["spec"]["stopGracePeriod"], "10s");
        assert_eq!(task["createdAt"], "1970-01-01T00:00:00Z");
        assert!(task.get("node").is_none(), "defaults are left out");
        assert!(json.get("events").is_none());
        let pretty = to_json(&pb::Task {
            id: "a".into(),
            container_id: "c".into(),
            ..Default::default()
        });
        assert_eq!(pretty, "{\n  \"id\": \"a\",\n  \"containerId\": \"c\"\n}\n");

        let message = pb::Task {
            id: "a".into(),
            state: 1,
            container_id: "c".into(),
            ..Default::default()
        };
        assert_eq!(
            to_json_line(&message),
            "{\"id\":\"a\",\"state\":\"TASK_STATE_PENDING\",\"containerId\":\"c\"}\n",
            "fields in number order, as grpcurl prints them"
        );
    }

    #[test]
    fn json_reads_back_and_names_bad_fields() {
        let spec: pb::TaskSpec = from_json_value(serde_json::json!({
            "image": "busybox",
            "resources": {"cpu_millis": 250, "memoryBytes": "1024"},
            "restart": {"policy": "RESTART_POLICY_ALWAYS", "maxRestarts": 3},
            "healthCheck": {"http": {"port": 80, "path": "/health"}, "interval": "2s"},
        }))
        .unwrap();
        assert_eq!(spec.resources.unwrap().cpu_millis, 250);
        assert_eq!(spec.restart.unwrap().max_restarts, Some(3));
        assert_eq!(
            spec.health_check.unwrap().interval,
            Some(prost_types::Duration {
                seconds: 2,
                nanos: 0
            })
        );

        let err = from_json_value::<pb::TaskSpec>(serde_json::json!({
            "image": "busybox",
            "resources": {"cpu_millis": "lots"},
        }))
        .unwrap_err();
        assert_eq!(err.path, "resources.cpu_millis", "{err}");

        let err =
            from_json_value::<pb::TaskSpec>(serde_json::json!({"imag": "busybox"})).unwrap_err();
        assert!(err.to_string().contains("imag"), "{err}");

        let err = from_json_value::<pb::TaskSpec>(serde_json::json!({
            "image": "x", "restart": {"policy": "SOMETIMES"}
        }))
        .unwrap_err();
        assert_eq!(err.path, "restart.policy", "{err}");
    }

    #[test]
    fn durations_parse_like_docker() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "s", "10x", "-1s", "1m30", "ten"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_print_short() {
        let d = |seconds, nanos| format_proto_duration(&prost_types::Duration { seconds, nanos });
        assert_eq!(d(10, 0), "10s");
        assert_eq!(d(0, 500_000_000), "500ms");
        assert_eq!(d(1, 500_000_000), "1.5s");
        assert_eq!(d(90, 0), "1m30s");
        assert_eq!(d(3600, 0), "1h");
        assert_eq!(d(0, 0), "0s");
    }

    #[test]
    fn ages_use_one_unit() {
        assert_eq!(format_age(Duration::from_secs(5)), "5s");
        assert_eq!(format_age(Duration::from_secs(119)), "119s");
        assert_eq!(format_age(Duration::from_secs(180)), "3m");
        assert_eq!(format_age(Duration::from_secs(2 * 3600 + 5)), "2h");
        assert_eq!(format_age(Duration::from_secs(3 * 86400)), "3d");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let then = prost_types::Timestamp {
            seconds: 995,
            nanos: 0,
        };
        assert_eq!(age(Some(&then), now), "5s");
        assert_eq!(age(None, now), "");
        let future = prost_types::Timestamp {
            seconds: 2000,
            nanos: 0,
        };
        assert_eq!(age(Some(&future), now), "0s", "clock skew shows as 0s");
    }

    #[test]
    fn times_print_in_utc() {
        let t = |seconds, nanos| format_time(Some(&prost_types::Timestamp { seconds, nanos }));
        assert_eq!(t(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(t(1_795_828_402, 123_000_000), "2026-11-28T01:13:22.123Z");
        assert_eq!(t(951_782_400, 0), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_time(None), "");
    }

    #[test]
    fn small_renderers() {
        assert_eq!(short_id("0123456789abcdef"), "01234567");
        assert_eq!(short_id("abc"), "abc");
        assert_eq!(task_state(3), "RUNNING");
        assert_eq!(task_state(42), "42");
        assert_eq!(node_state(3), "DRAINING");
        assert_eq!(event_type(2), "STATE_CHANGED");
        assert_eq!(
            ports(&[
                pb::PortMapping {
                    container_port: 80,
                    host_port: 8080,
                    protocol: 0
                },
                pb::PortMapping {
                    container_port: 53,
                    host_port: 0,
                    protocol: pb::Protocol::Udp.into()
                },
            ]),
            "8080->80/tcp, 53/udp"
        );
        assert_eq!(
            shell_words(&["sh".into(), "-c".into(), "echo 'hi' there".into()]),
            r"sh -c 'echo '\''hi'\'' there'"
        );
    }
}
