//! The bounds of a task spec and of a worker's registration, checked before anything is
//! stored: a spec the manager accepts can be run, and cannot grow memory, disk or a worker's
//! engine without bound (a task with 10,000 published ports once made Docker start 4,147
//! proxies and stop answering for minutes). A worker's registration is `node`'s.

use std::time::Duration;

use prost::Message;

use crate::{
    error::{Error, Result},
    proto::pb,
};

/// The largest encoded `TaskSpec`. Every copy of a task (store, watch, worker, each answer)
/// carries its spec: at 64 KiB, 1,000 tasks fit in 64 MiB, and a page of them is cut well
/// before the 4 MiB message limit of gRPC clients.
pub const MAX_SPEC_BYTES: usize = 64 * 1024;
/// The longest image reference: Docker's own limit on a repository name is 255.
pub const MAX_IMAGE_LEN: usize = 255;
/// The most `command` plus `args` entries.
pub const MAX_ARGS: usize = 1024;
/// The most bytes of `command` and `args` together.
pub const MAX_ARGS_BYTES: usize = 128 * 1024;
/// The most environment variables.
pub const MAX_ENV: usize = 256;
/// The most labels, and the most constraints.
pub const MAX_LABELS: usize = 256;
/// The longest label key (Kubernetes: a 253-character prefix, '/', a 63-character name).
pub const MAX_LABEL_KEY_LEN: usize = 253 + 1 + 63;
/// The longest label value, and the longest env var name.
pub const MAX_LABEL_VALUE_LEN: usize = 4096;
/// The most published ports: each costs the engine a proxy process or rules.
pub const MAX_PORTS: usize = 64;
/// The most cpu a task may ask for: 1,024 cores.
pub const MAX_CPU_MILLIS: i64 = 1024 * 1000;
/// The least memory a task may be limited to when it sets one: Docker refuses less than 6 MiB
/// on some kernels and 4 MiB on all; below that no process starts.
pub const MIN_MEMORY_BYTES: i64 = 4 * 1024 * 1024;
/// The most memory or disk a task may ask for: 1 PiB, far above any node, but below the
/// overflow of the sums the scheduler makes.
pub const MAX_RESOURCE_BYTES: i64 = 1 << 50;
/// The longest stop grace period and health check interval, timeout or start period.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// The most consecutive health check failures before a task counts as unhealthy: a count,
/// which costs nothing, bounded only so that a typo is caught.
pub const MAX_HEALTH_RETRIES: u32 = 10_000;
/// The longest health check path or exec command (all entries together).
pub const MAX_PROBE_BYTES: usize = 4096;

/// Checks the bounds of a spec a client sent; the error names the field and the limit. The
/// spec's own grammar (names, ports, probes) is `task::validate_spec`'s.
pub fn check_spec(spec: &pb::TaskSpec) -> Result<()> {
    if !spec.image.is_empty() {
        check_image(&spec.image)?;
    }
    check_args(spec)?;
    check_env(&spec.env)?;
    check_labels("spec.labels", &spec.labels)?;
    check_labels("spec.constraints", &spec.constraints)?;
    if spec.ports.len() > MAX_PORTS {
        return Err(Error::invalid(
            "spec.ports",
            format!("holds {} ports; the limit is {MAX_PORTS}", spec.ports.len()),
        ));
    }
    if let Some(resources) = &spec.resources {
        check_resources(resources)?;
    }
    if let Some(grace) = &spec.stop_grace_period {
        check_duration("spec.stop_grace_period", grace)?;
    }
    if let Some(check) = &spec.health_check {
        check_health(check)?;
    }
    // The whole last: a spec over it on one field is told which.
    let encoded = spec.encoded_len();
    if encoded > MAX_SPEC_BYTES {
        return Err(Error::invalid(
            "spec",
            format!("is {encoded} bytes encoded; the limit is {MAX_SPEC_BYTES} (64 KiB)"),
        ));
    }
    Ok(())
}

/// Checks an image reference against Docker's grammar:
/// `[registry[:port]/]path[:tag][@algorithm:hex]`, path components lowercase
/// `[a-z0-9]+` joined by `.`, `_`, `__` or dashes, a tag `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_image(image: &str) -> Result<()> {
    let field = "spec.image";
    if image.len() > MAX_IMAGE_LEN {
        return Err(Error::invalid(
            field,
            format!(
                "is {} characters; the limit is {MAX_IMAGE_LEN}",
                image.len()
            ),
        ));
    }
    if image.chars().any(char::is_whitespace) {
        return Err(Error::invalid(field, "must not contain spaces"));
    }
    let bad = |why: &str| {
        Error::invalid(
            field,
            format!("{image:?} is not an image reference ([registry/]path[:tag][@digest]): {why}"),
        )
    };
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let ok = digest.split_once(':').is_some_and(|(algorithm, hex)| {
            !algorithm.is_empty()
                && algorithm
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-_".contains(c))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !ok {
            return Err(bad("the digest is not algorithm:hex"));
        }
    }
    // A tag follows the last ':' that comes after the last '/' (a registry port does not).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = (1..=128).contains(&tag.len())
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(bad("the tag is not [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
        }
    }
    let mut components: Vec<&str> = name.split('/').collect();
    // A first component with '.' or ':' or "localhost" is a registry host, not a path.
    if components.len() > 1 && (components[0].contains(['.', ':']) || components[0] == "localhost")
    {
        let registry = components.remove(0);
        let (host, port) = match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        };
        let host_ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        let port_ok = port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok());
        if !host_ok || !port_ok {
            return Err(bad("the registry is not host[:port]"));
        }
    }
    for component in components {
        if !path_component(component) {
            return Err(bad(&format!(
                "{component:?} is not a path component (lowercase letters and digits, \
                 joined by '.', '_', '__' or '-')"
            )));
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn path_component(text: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !text.starts_with(alnum) || !text.ends_with(alnum) {
        return false;
    }
    let mut separator = String::new();
    for c in text.chars() {
        if alnum(c) {
            let ok = separator.is_empty()
                || separator == "."
                || separator == "_"
                || separator == "__"
                || separator.chars().all(|c| c == '-');
            if !ok {
                return false;
            }
            separator.clear();
        } else if ".-_".contains(c) {
            separator.push(c);
        } else {
            return false;
        }
    }
    true
}

fn check_args(spec: &pb::TaskSpec) -> Result<()> {
    let count = spec.command.len() + spec.args.len();
    if count > MAX_ARGS {
        let field = if spec.command.len() > MAX_ARGS {
            "spec.command"
        } else {
            "spec.args"
        };
        return Err(Error::invalid(
            field,
            format!("command and args hold {count} entries; the limit is {MAX_ARGS} together"),
        ));
    }
    let bytes: usize = spec.command.iter().chain(&spec.args).map(String::len).sum();
    if bytes > MAX_ARGS_BYTES {
        return Err(Error::invalid(
            "spec.args",
            format!(
                "command and args hold {bytes} bytes; the limit is {MAX_ARGS_BYTES} (128 KiB) \
                 together"
            ),
        ));
    }
    Ok(())
}

fn check_env(env: &std::collections::HashMap<String, String>) -> Result<()> {
    if env.len() > MAX_ENV {
        return Err(Error::invalid(
            "spec.env",
            format!("holds {} variables; the limit is {MAX_ENV}", env.len()),
        ));
    }
    for key in env.keys() {
        if key.len() > MAX_LABEL_VALUE_LEN {
            return Err(Error::invalid(
                "spec.env",
                format!(
                    "a variable name is {} characters; the limit is {MAX_LABEL_VALUE_LEN}",
                    key.len()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks labels (or constraints): at most [`MAX_LABELS`], keys by the Kubernetes label key
/// grammar (`[prefix/]name`, a DNS-subdomain prefix and a name of at most 63 characters of
/// letters, digits, '-', '_', '.', starting and ending alphanumeric), values of at most
/// [`MAX_LABEL_VALUE_LEN`].
pub fn check_labels(field: &str, labels: &std::collections::HashMap<String, String>) -> Result<()> {
    if labels.len() > MAX_LABELS {
        return Err(Error::invalid(
            field.to_string(),
            format!("holds {} entries; the limit is {MAX_LABELS}", labels.len()),
        ));
    }
    // Sorted, so the same spec always names the same bad key.
    let mut keys: Vec<&String> = labels.keys().collect();
    keys.sort();
    for key in keys {
        if let Err(why) = label_key(key) {
            return Err(Error::invalid(
                format!("{field}[{}]", shown(key)),
                format!("is not a label key: {why}"),
            ));
        }
        let value = &labels[key];
        if value.len() > MAX_LABEL_VALUE_LEN {
            return Err(Error::invalid(
                format!("{field}[{key}]"),
                format!(
                    "the value is {} bytes; the limit is {MAX_LABEL_VALUE_LEN}",
                    value.len()
                ),
            ));
        }
    }
    Ok(())
}

/// A key shown in a field path: quoted, and cut when long (a 1 MB key is not echoed back).
pub(super) fn shown(key: &str) -> String {
    if key.len() <= 64 {
        format!("{key:?}")
    } else {
        let cut: String = key.chars().take(32).collect();
        format!("{cut:?}…")
    }
}

fn label_key(key: &str) -> std::result::Result<(), String> {
    if key.is_empty() {
        return Err("it is empty".into());
    }
    if key.len() > MAX_LABEL_KEY_LEN {
        return Err(format!(
            "it is {} characters; the limit is {MAX_LABEL_KEY_LEN}",
            key.len()
        ));
    }
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !ok {
            return Err("the prefix before '/' is not a lowercase DNS subdomain".into());
        }
    }
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        return Err(
            "the name must be 1 to 63 letters, digits, '-', '_' or '.', \
                    starting and ending with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

fn check_resources(resources: &pb::Resources) -> Result<()> {
    if resources.cpu_millis > MAX_CPU_MILLIS {
        return Err(Error::invalid(
            "spec.resources.cpu_millis",
            format!(
                "{} is more than the limit of {MAX_CPU_MILLIS} (1,024 cores)",
                resources.cpu_millis
            ),
        ));
    }
    if resources.memory_bytes != 0 && resources.memory_bytes < MIN_MEMORY_BYTES {
        return Err(Error::invalid(
            "spec.resources.memory_bytes",
            format!(
                "{} is less than the least a task can run in, {MIN_MEMORY_BYTES} (4 MiB)",
                resources.memory_bytes
            ),
        ));
    }
    for (name, value) in [
        ("memory_bytes", resources.memory_bytes),
        ("disk_bytes", resources.disk_bytes),
    ] {
        if value > MAX_RESOURCE_BYTES {
            return Err(Error::invalid(
                format!("spec.resources.{name}"),
                format!("{value} is more than the limit of {MAX_RESOURCE_BYTES} (1 PiB)"),
            ));
        }
    }
    Ok(())
}

fn check_duration(field: &str, value: &prost_types::Duration) -> Result<()> {
    let too_long = match Duration::try_from(*value) {
        Ok(duration) => duration > MAX_DURATION,
        // Negative ones are validate_spec's to refuse, with its words.
        Err(_) => value.seconds > 0,
    };
    if too_long {
        return Err(Error::invalid(
            field.to_string(),
            format!(
                "{}s is longer than the limit of {} s (1 h)",
                value.seconds,
                MAX_DURATION.as_secs()
            ),
        ));
    }
    Ok(())
}

fn check_health(check: &pb::HealthCheck) -> Result<()> {
    use pb::health_check::Probe;
    for (field, value) in [
        ("spec.health_check.interval", &check.interval),
        ("spec.health_check.timeout", &check.timeout),
        ("spec.health_check.start_period", &check.start_period),
    ] {
        if let Some(value) = value {
            check_duration(field, value)?;
        }
    }
    if check.retries > MAX_HEALTH_RETRIES {
        return Err(Error::invalid(
            "spec.health_check.retries",
            format!(
                "{} is more than the limit of {MAX_HEALTH_RETRIES}",
                check.retries
            ),
        ));
    }
    let (field, bytes) = match &check.probe {
        Some(Probe::Http(http)) => ("spec.health_check.http.path", http.path.len()),
        Some(Probe::Exec(exec)) => (
            "spec.health_check.exec.command",
            exec.command.iter().map(String::len).sum(),
        ),
        Some(Probe::Tcp(_)) | None => return Ok(()),
    };
    if bytes > MAX_PROBE_BYTES {
        return Err(Error::invalid(
            field,
            format!("is {bytes} bytes; the limit is {MAX_PROBE_BYTES}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        for good in [
            "busybox",
            "cube-test/busybox:latest",
            "docker.io/library/busybox:1.36",
            "localhost:5000/a/b__c/d-e.f:v1_2",
            "gcr.io/x/y@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            check_image(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "../../etc/passwd",
            "Busybox",
            "a//b",
            "a:",
            "a@sha256:xyz",
            "-a",
            "a b",
            "host:99999/a",
        ] {
            let err = check_image(bad).unwrap_err().to_string();
            assert!(err.starts_with("spec.image: "), "{bad}: {err}");
        }
        let long = "a".repeat(MAX_IMAGE_LEN + 1);
        assert!(check_image(&long).unwrap_err().to_string().contains("255"));
    }

    #[test]
    fn label_keys() {
        for good in ["a", "app", "cube.io/role", "a-b_c.d", "x.y-z/N_1"] {
            label_key(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["", "a=b", "-a", "a-", "/a", "A.B/c", "a/", &"a".repeat(64)] {
            assert!(label_key(bad).is_err(), "{bad:?}");
        }
    }
}
