//! The words and quantities of `cubectl run`'s flags, also in task files: `cpu: 500m`,
//! `memory: 64Mi`, `disk: 1Gi` under `resources` (or units in `cpuMillis`, `memoryBytes`,
//! `diskBytes`), and `policy: always` (or `on-failure`, `never`) under `restart`. Rewritten to
//! the proto3 JSON mapping before it is read; an error names the field and what was expected.

use serde_json::Value;

use crate::units::{parse_bytes, parse_cpu};

/// The resources fields that take a quantity: the names people write, the mapping's name,
/// and the parser.
type Parser = fn(&str) -> Result<i64, crate::units::ParseError>;
const RESOURCES: [(&str, &str, &str, Parser, &str); 3] = [
    (
        "cpu",
        "cpu_millis",
        "cpuMillis",
        parse_cpu,
        "cores like 1.5 or millicores like 500m",
    ),
    (
        "memory",
        "memory_bytes",
        "memoryBytes",
        parse_bytes,
        "bytes like 64Mi, 1Gi or 1048576",
    ),
    (
        "disk",
        "disk_bytes",
        "diskBytes",
        parse_bytes,
        "bytes like 512Mi, 10Gi or 1048576",
    ),
];

/// Rewrites the quantities and words of one spec (at `path`, e.g. `[2]`) in place.
pub(crate) fn read_quantities(spec: &mut Value, path: &str) -> Result<(), String> {
    let Value::Object(spec) = spec else {
        return Ok(());
    };
    if let Some(Value::Object(resources)) = spec.get_mut("resources") {
        for (short, snake, camel, parse, expected) in RESOURCES {
            let present: Vec<&str> = [short, snake, camel]
                .into_iter()
                .filter(|k| resources.contains_key(*k))
                .collect();
            for key in present {
                let Some(value) = resources.remove(key) else {
                    continue;
                };
                let field = format!("{path}{}resources.{key}", dot(path));
                let text = match &value {
                    // The mapping's own fields keep plain numbers (an int64 is a string there).
                    Value::String(t) if key != short && t.bytes().all(|b| b.is_ascii_digit()) => {
                        resources.insert(key.to_string(), value);
                        continue;
                    }
                    Value::Number(_) if key != short => {
                        resources.insert(key.to_string(), value);
                        continue;
                    }
                    Value::String(text) => text.clone(),
                    // `cpu: 2` means cores, as on the command line.
                    Value::Number(n) => n.to_string(),
                    other => {
                        return Err(format!(
                            "{field}: {other} is not a quantity; expected {expected}"
                        ))
                    }
                };
                let number = parse(&text).map_err(|e| {
                    format!("{field}: {text:?} is not a quantity ({e}); expected {expected}")
                })?;
                resources.insert(camel.to_string(), Value::from(number.to_string()));
            }
        }
    }
    if let Some(Value::Object(restart)) = spec.get_mut("restart") {
        if let Some(Value::String(policy)) = restart.get_mut("policy") {
            let word = policy.to_ascii_lowercase().replace('_', "-");
            let named = match word.as_str() {
                "always" => Some("RESTART_POLICY_ALWAYS"),
                "on-failure" => Some("RESTART_POLICY_ON_FAILURE"),
                "never" => Some("RESTART_POLICY_NEVER"),
                _ if word.starts_with("restart-policy-") => None,
                _ => {
                    return Err(format!(
                        "{path}{}restart.policy: {policy:?} is not a restart policy; expected \
                         always, on-failure or never",
                        dot(path)
                    ))
                }
            };
            if let Some(named) = named {
                *policy = named.to_string();
            }
        }
    }
    Ok(())
}

/// The dot between a list index and a field: `[2].resources`, but `resources` alone.
fn dot(path: &str) -> &'static str {
    if path.is_empty() {
        ""
    } else {
        "."
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_quantities_become_the_mapping() {
        let mut spec = serde_json::json!({
            "resources": {"cpu": "500m", "memory": "64Mi", "diskBytes": "1Gi"},
            "restart": {"policy": "always"},
        });
        read_quantities(&mut spec, "").unwrap();
        assert_eq!(spec["resources"]["cpuMillis"], "500");
        assert_eq!(spec["resources"]["memoryBytes"], "67108864");
        assert_eq!(spec["resources"]["diskBytes"], "1073741824");
        assert_eq!(spec["restart"]["policy"], "RESTART_POLICY_ALWAYS");
        let mut cores = serde_json::json!({"resources": {"cpu": 2, "memory_bytes": 1024}});
        read_quantities(&mut cores, "").unwrap();
        assert_eq!(cores["resources"]["cpuMillis"], "2000");
        assert_eq!(
            cores["resources"]["memory_bytes"], 1024,
            "a number is left as it is"
        );
    }

    #[test]
    fn errors_say_what_was_expected() {
        let mut spec = serde_json::json!({"resources": {"memory": "lots"}});
        let err = read_quantities(&mut spec, "[1]").unwrap_err();
        assert!(
            err.starts_with("[1].resources.memory: \"lots\" is not a quantity"),
            "{err}"
        );
        assert!(
            err.ends_with("expected bytes like 64Mi, 1Gi or 1048576"),
            "{err}"
        );
        let mut spec = serde_json::json!({"restart": {"policy": "sometimes"}});
        let err = read_quantities(&mut spec, "").unwrap_err();
        assert_eq!(
            err,
            "restart.policy: \"sometimes\" is not a restart policy; expected always, on-failure or never"
        );
    }
}
