//! Messages as proto3 JSON (the shape grpcurl prints) and back, through Cube's descriptor pool.
// expect: messages printed here were decoded by prost from Cube's own descriptor set; they always convert.
#![allow(clippy::expect_used)]

use prost::Message;
use prost_reflect::{DynamicMessage, Kind, MessageDescriptor, ReflectMessage as _};

use crate::{
    proto::{descriptor_pool, pb},
    units::parse_duration,
};

/// The proto type of durations.
const DURATION: &str = "google.protobuf.Duration";

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
    TaskEvent,
    ExplainTaskResponse,
    DrainNodeResponse,
    UndrainNodeResponse,
    Service,
    ServiceSpec,
    GetServiceResponse,
    ListServicesResponse,
    GetVersionResponse,
    TopNodesResponse,
    TopTasksResponse,
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
/// Durations are read by Cube's one duration parser ([`parse_duration`]), so a task file takes
/// `1m30s` as `cubectl run --stop-grace` does.
pub fn from_json_value<M: ProtoMessage + Default>(
    mut value: serde_json::Value,
) -> Result<M, FieldError> {
    let descriptor = descriptor_pool()
        .get_message_by_name(M::FULL_NAME)
        .unwrap_or_else(|| panic!("{} is in Cube's descriptor set", M::FULL_NAME));
    read_durations(&mut value, &descriptor, "")?;
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

/// Rewrites every duration in `value` (a message of type `descriptor` at `path`) from the text
/// people write to the mapping's own `<seconds>.<nanos>s`. Whatever is not a duration is left
/// for the deserializer to judge.
fn read_durations(
    value: &mut serde_json::Value,
    descriptor: &MessageDescriptor,
    path: &str,
) -> Result<(), FieldError> {
    let serde_json::Value::Object(fields) = value else {
        return Ok(());
    };
    for (key, value) in fields.iter_mut() {
        let Some(field) = descriptor
            .get_field_by_json_name(key)
            .or_else(|| descriptor.get_field_by_name(key))
        else {
            continue;
        };
        let Kind::Message(message) = field.kind() else {
            continue;
        };
        let path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match value {
            serde_json::Value::Array(items) if field.is_list() => {
                for (i, item) in items.iter_mut().enumerate() {
                    read_message(item, &message, &format!("{path}[{i}]"))?;
                }
            }
            value if !field.is_map() => read_message(value, &message, &path)?,
            _ => {}
        }
    }
    Ok(())
}

/// [`read_durations`] for one value of message type `descriptor`, a duration or not.
fn read_message(
    value: &mut serde_json::Value,
    descriptor: &MessageDescriptor,
    path: &str,
) -> Result<(), FieldError> {
    if descriptor.full_name() != DURATION {
        return read_durations(value, descriptor, path);
    }
    let text = match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Number(number) => number.to_string(),
        _ => return Ok(()),
    };
    let duration = parse_duration(&text).map_err(|error| FieldError {
        path: path.to_string(),
        message: error.to_string(),
    })?;
    let (seconds, nanos) = (duration.as_secs(), duration.subsec_nanos());
    *value = serde_json::Value::String(if nanos == 0 {
        format!("{seconds}s")
    } else {
        format!("{seconds}.{nanos:09}s")
    });
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
    fn durations_read_as_flags_read_them() {
        let spec: pb::TaskSpec = from_json_value(serde_json::json!({
            "image": "busybox",
            "stopGracePeriod": "1m30s",
            "healthCheck": {"tcp": {"port": 80}, "interval": "500ms", "timeout": "1.5s",
                            "start_period": 0},
        }))
        .unwrap();
        let seconds = |d: Option<prost_types::Duration>| d.map(|d| (d.seconds, d.nanos));
        assert_eq!(seconds(spec.stop_grace_period), Some((90, 0)));
        let check = spec.health_check.unwrap();
        assert_eq!(seconds(check.interval), Some((0, 500_000_000)));
        assert_eq!(seconds(check.timeout), Some((1, 500_000_000)));
        assert_eq!(seconds(check.start_period), Some((0, 0)));

        let err = from_json_value::<pb::TaskSpec>(serde_json::json!({
            "image": "busybox", "healthCheck": {"interval": 5},
        }))
        .unwrap_err();
        assert_eq!(err.path, "healthCheck.interval");
        assert!(err.message.contains("needs a unit, e.g. 5s"), "{err}");
        let err = from_json_value::<pb::TaskSpec>(serde_json::json!({
            "image": "busybox", "stopGracePeriod": "soon",
        }))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "stopGracePeriod: \"soon\" is not a duration (e.g. 500ms, 10s, 2m or 1m30s)"
        );
    }
}
