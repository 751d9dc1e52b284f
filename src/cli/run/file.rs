//! Task files for `cubectl run -f`: one TaskSpec or a list, in the proto3 JSON mapping, written
//! as YAML or JSON, read from a path or standard input.

use std::path::Path;

use crate::{
    cli::{output, Failure},
    proto::pb,
};

/// Reads a task file's text: one TaskSpec or a list of them, in the proto3 JSON mapping,
/// written as JSON (`.json`) or YAML (anything else, JSON included). Errors start with
/// `source` and name the field: `task.yaml: [0].resources.cpu_millis: invalid type ...`.
pub fn parse_task_file(source: &str, text: &str, json: bool) -> Result<Vec<pb::TaskSpec>, String> {
    file_items(source, text, json)?
        .into_iter()
        .map(|(prefix, mut item)| {
            super::quantities::read_quantities(&mut item, &prefix)
                .map_err(|e| format!("{source}: {e}"))?;
            output::from_json_value::<pb::TaskSpec>(item)
                .map_err(|e| format!("{source}: {}", e.within(&prefix)))
        })
        .collect()
}

/// The items of a file's text (one value, or each of a list), each with the path that names
/// it in errors (`[2]`; empty for a single value). A file with none is an error.
pub fn file_items(
    source: &str,
    text: &str,
    json: bool,
) -> Result<Vec<(String, serde_json::Value)>, String> {
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
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let prefix = if listed {
                format!("[{i}]")
            } else {
                String::new()
            };
            (prefix, item)
        })
        .collect())
}

/// Reads the task file at `path` (`-`: standard input), with a hint on what a task file holds.
pub(super) fn read_task_file(path: &Path) -> Result<Vec<pb::TaskSpec>, Failure> {
    let hint = "a task file holds a TaskSpec (or a list of them) in the proto3 JSON mapping, \
                e.g. {\"image\": \"busybox\", \"args\": [\"sleep\", \"60\"]}";
    let (source, text, json) = read_file_text(path, hint)?;
    parse_task_file(&source, &text, json).map_err(|message| Failure::new(message, hint))
}

/// The text of the file at `path` (`-`: standard input): the name errors give it, the text,
/// and whether it is JSON (a `.json` name) rather than YAML.
pub fn read_file_text(path: &Path, hint: &str) -> Result<(String, String, bool), Failure> {
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
    Ok((source, text, json))
}

#[cfg(test)]
mod tests {
    use super::*;

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

        let policy = "image: a\nonDisconnect: {action: DISCONNECT_ACTION_STOP, after: 30s}\n";
        let specs = parse_task_file("task.yaml", policy, false).unwrap();
        let on = specs[0].on_disconnect.as_ref().unwrap();
        assert_eq!(on.action(), pb::DisconnectAction::Stop);
        assert_eq!(on.after.unwrap().seconds, 30);

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
}
