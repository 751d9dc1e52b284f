//! Values as people read them in cubectl's tables: ids, states, ages, times, ports, commands
//! and resources.

use std::time::{Duration, SystemTime};

use crate::{
    proto::pb,
    task::state_name,
    units::{format_bytes, format_cpu, format_duration},
};

/// A std duration on the wire.
pub fn to_proto_duration(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: duration.as_secs() as i64,
        nanos: duration.subsec_nanos() as i32,
    }
}

/// A wire duration as people read it: `10s`, `1.5s`, `2m`, `1h30m` (a negative one, which no
/// valid spec holds, as its seconds).
pub fn format_proto_duration(duration: &prost_types::Duration) -> String {
    match Duration::try_from(*duration) {
        Ok(duration) => format_duration(duration),
        Err(_) => format!("{}s", duration.seconds),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
