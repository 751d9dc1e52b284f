//! `cubectl apply -f FILE`: make the cluster hold what a file declares. The file is a task file
//! (`cubectl run -f`) whose items may also be services, written `service: {ServiceSpec}`.
//! Applying the same file again changes nothing: a service whose spec is the same is left at
//! its version, and a task is submitted with a request id made from its spec, so the manager
//! answers the task it created the first time. A service whose spec changed is updated (a
//! changed template rolls out as `service update` does).

use std::path::PathBuf;

use clap::Args;
use sha2::{Digest, Sha256};
use tonic::Code;

use crate::{
    cli::{
        output, print_err, print_out,
        run::{file_items, read_file_text, read_quantities},
        Failure, Outcome,
    },
    client::{Client, ClientError},
    proto::pb,
    task::MAX_SUBMIT_BATCH,
};

/// Arguments of `cubectl apply`.
#[derive(Debug, Args)]
#[command(after_help = "Example file:\n  \
    - service:\n      name: web\n      replicas: 3\n      \
    task: {image: cube-test/busybox:latest, args: [httpd, -f, -p, \"8080\"]}\n  \
    - name: once\n    image: cube-test/busybox:latest\n    args: [echo, hello]")]
pub struct ApplyArgs {
    /// The file (`-`: standard input): a TaskSpec or `service: ServiceSpec`, or a list of them,
    /// in the proto3 JSON mapping, as YAML or JSON (`.json`).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
}

/// One item of the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Declared {
    /// A task, as `cubectl run -f` takes it.
    Task(pb::TaskSpec),
    /// A service, as `service: {...}` declares it.
    Service(pb::ServiceSpec),
}

const HINT: &str = "an apply file holds TaskSpecs and `service: ServiceSpec` items (or one of \
                    them) in the proto3 JSON mapping; `cubectl apply --help` shows an example";

/// Reads an apply file's text: every item checked before anything is sent. Errors start with
/// `source` and name the field.
pub fn parse_apply_file(source: &str, text: &str, json: bool) -> Result<Vec<Declared>, String> {
    let items = file_items(source, text, json)?;
    if items.len() > MAX_SUBMIT_BATCH {
        return Err(format!(
            "{source}: holds {} items; an apply file holds at most {MAX_SUBMIT_BATCH}",
            items.len()
        ));
    }
    items
        .into_iter()
        .map(|(prefix, mut item)| {
            let mut service = match &item {
                serde_json::Value::Object(fields) if fields.len() == 1 => {
                    fields.get("service").cloned()
                }
                _ => None,
            };
            // Quantities and words as the flags take them (`500m`, `64Mi`, `always`), in a
            // task and in a service's task template.
            let quantities = match service.as_mut() {
                Some(spec) => match spec.get_mut("task") {
                    Some(task) => read_quantities(task, &format!("{prefix}.service.task")),
                    None => Ok(()),
                },
                None => read_quantities(&mut item, &prefix),
            };
            quantities.map_err(|e| format!("{source}: {e}"))?;
            let declared = match service {
                Some(spec) => output::from_json_value::<pb::ServiceSpec>(spec)
                    .map(Declared::Service)
                    .map_err(|e| e.within("service").within(&prefix)),
                None => output::from_json_value::<pb::TaskSpec>(item.clone())
                    .map(Declared::Task)
                    .map_err(|e| e.within(&prefix)),
            };
            declared.map_err(|e| format!("{source}: {e}"))
        })
        .collect()
}

/// The request id of the `nth` task (from 0) of a file with the same spec as `spec`: the same
/// for the same spec in every apply of the file, another for a changed spec.
pub fn task_request_id(spec: &pb::TaskSpec, nth: usize) -> String {
    let text = output::to_json_value(spec).to_string();
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("apply-{hex}-{nth}")
}

/// Runs `cubectl apply`: one line per item saying what changed.
pub async fn run(client: &Client, args: ApplyArgs) -> Outcome {
    let (source, text, json) = read_file_text(&args.file, HINT)?;
    let declared =
        parse_apply_file(&source, &text, json).map_err(|message| Failure::new(message, HINT))?;
    let mut tasks: Vec<(pb::TaskSpec, String)> = Vec::new();
    for item in declared {
        match item {
            Declared::Service(spec) => {
                print_out(&format!("{}\n", apply_service(client, spec).await?))
            }
            Declared::Task(spec) => {
                let nth = tasks.iter().filter(|(s, _)| *s == spec).count();
                let request_id = task_request_id(&spec, nth);
                tasks.push((spec, request_id));
            }
        }
    }
    let mut warned = false;
    let mut on_retry = |error: &ClientError| {
        if !warned {
            print_err(&format!("cubectl: {error}; retrying\n"));
            warned = true;
        }
    };
    for chunk in tasks.chunks(MAX_SUBMIT_BATCH) {
        let response = client
            .submit_tasks(chunk, &mut on_retry)
            .await
            .map_err(Failure::from)?;
        for answer in response.tasks {
            let what = if answer.created {
                "created"
            } else {
                "unchanged"
            };
            print_out(&format!(
                "task {}: {what}\n",
                answer.task.unwrap_or_default().id
            ));
        }
    }
    Ok(())
}

/// Creates the service, updates it when its spec differs, or leaves it; what was done.
async fn apply_service(client: &Client, spec: pb::ServiceSpec) -> Result<String, Failure> {
    let name = spec.name.clone();
    let current = match client.get_service(&name).await {
        Ok(response) => response.service.unwrap_or_default(),
        Err(error) if error.code() == Code::NotFound => {
            let created = client
                .create_service(spec)
                .await
                .map_err(crate::cli::service::service_failure)?;
            let version = created.service.unwrap_or_default().version;
            return Ok(format!("service {name}: created (version {version})"));
        }
        Err(error) => return Err(crate::cli::service::service_failure(error)),
    };
    match client.update_service(spec, current.version).await {
        Ok(updated) => {
            let version = updated.service.unwrap_or_default().version;
            Ok(format!("service {name}: updated to version {version}"))
        }
        // UpdateService refuses an update that changes nothing, and only that, with
        // FAILED_PRECONDITION: the manager, which fills the spec's defaults, is the judge.
        Err(error) if error.code() == Code::FailedPrecondition => Ok(format!(
            "service {name}: unchanged (version {})",
            current.version
        )),
        Err(error) => Err(crate::cli::service::service_failure(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_files_hold_tasks_and_services() {
        let yaml = "- service:\n    name: web\n    replicas: 3\n    \
                    task: {image: a, args: [sleep, '60']}\n    \
                    updateConfig: {parallelism: 2, delay: 1s}\n\
                    - image: b\n  name: once\n";
        let items = parse_apply_file("f.yaml", yaml, false).unwrap();
        let Declared::Service(web) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(web.replicas, 3);
        assert_eq!(web.task.as_ref().unwrap().args, ["sleep", "60"]);
        assert_eq!(
            web.update_config.as_ref().unwrap().delay.unwrap().seconds,
            1
        );
        assert!(matches!(&items[1], Declared::Task(t) if t.name == "once"));
    }

    #[test]
    fn apply_files_take_the_flags_quantities() {
        let yaml = "- service:\n    name: web\n    replicas: 2\n    \
                    task: {image: a, resources: {cpu: 500m, memory: 64Mi}}\n\
                    - {image: b, resources: {cpu: '2'}}\n";
        let declared = parse_apply_file("f.yaml", yaml, false).unwrap();
        let Declared::Service(service) = &declared[0] else {
            panic!("{:?}", declared[0]);
        };
        let resources = service.task.as_ref().unwrap().resources.unwrap();
        assert_eq!(resources.cpu_millis, 500);
        assert_eq!(resources.memory_bytes, 64 << 20);
        let Declared::Task(task) = &declared[1] else {
            panic!("{:?}", declared[1]);
        };
        assert_eq!(task.resources.unwrap().cpu_millis, 2000);
        let err = parse_apply_file(
            "f.yaml",
            "- service: {name: web, task: {resources: {memory: lots}}}\n",
            false,
        )
        .unwrap_err();
        assert!(err.contains("[0].service.task.resources.memory"), "{err}");
    }

    #[test]
    fn apply_file_errors_name_the_field() {
        let err = parse_apply_file(
            "f.yaml",
            "- image: a\n- service: {name: w, replicas: x}\n",
            false,
        )
        .unwrap_err();
        assert!(err.starts_with("f.yaml: [1].service.replicas: "), "{err}");
        let many = "- image: a\n".repeat(MAX_SUBMIT_BATCH + 1);
        let err = parse_apply_file("f.yaml", &many, false).unwrap_err();
        assert!(err.contains("at most 1000"), "{err}");
        let err = parse_apply_file("f.yaml", "service: {nmae: w}\n", false).unwrap_err();
        assert!(
            err.starts_with("f.yaml: service") && err.contains("nmae"),
            "{err}"
        );
    }

    #[test]
    fn request_ids_follow_the_spec() {
        let a = pb::TaskSpec {
            image: "a".into(),
            ..Default::default()
        };
        let b = pb::TaskSpec {
            image: "b".into(),
            ..Default::default()
        };
        assert_eq!(task_request_id(&a, 0), task_request_id(&a.clone(), 0));
        assert_ne!(task_request_id(&a, 0), task_request_id(&a, 1));
        assert_ne!(task_request_id(&a, 0), task_request_id(&b, 0));
        assert!(task_request_id(&a, 999).len() <= 128);
        let env = |keys: &[&str]| pb::TaskSpec {
            env: keys
                .iter()
                .map(|k| (k.to_string(), "v".to_string()))
                .collect(),
            ..a.clone()
        };
        let keys = ["A", "B", "C", "D", "E", "F", "G", "H"];
        let mut reversed = keys;
        reversed.reverse();
        assert_eq!(
            task_request_id(&env(&keys), 0),
            task_request_id(&env(&reversed), 0)
        );
    }
}
