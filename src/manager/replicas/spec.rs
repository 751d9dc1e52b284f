//! The bounds and grammar of a service spec, checked before anything is stored. The task
//! template is checked as SubmitTask checks a spec, with its fields under `spec.task`.

use crate::{
    error::{Error, Result},
    limits::spec::check_spec,
    proto::pb,
    task::validate_spec,
};

/// The most replicas a service may declare: the most tasks one SubmitTasks call takes, so a
/// service is never larger than what a client could submit in one call, and one reconciler
/// pass creates at most this many tasks in one commit.
pub const MAX_REPLICAS: u32 = 1000;
/// The most services a manager keeps: each is one row in memory and in the store, and the
/// reconciler looks at each on every pass.
pub const MAX_SERVICES: usize = 1000;
/// The longest service name: a DNS label.
pub const MAX_NAME_LEN: usize = 63;

/// Checks a service name (`field` names it in the error): a DNS label, as Docker and
/// Kubernetes name services.
pub fn check_service_name(field: &'static str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            field,
            format!("is longer than {MAX_NAME_LEN} characters"),
        ));
    }
    let lower = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if !name.starts_with(|c: char| c.is_ascii_lowercase())
        || name.ends_with('-')
        || !name.chars().all(lower)
    {
        return Err(Error::invalid(
            field,
            format!(
                "{name:?} must be lowercase letters, digits and '-', start with a letter and \
                 not end with '-'"
            ),
        ));
    }
    Ok(())
}

/// Checks a declared service spec and fills its template's defaults (the task name is the
/// service's name when none is given). Errors name the field under `spec`.
pub fn check_service_spec(spec: pb::ServiceSpec) -> Result<pb::ServiceSpec> {
    check_service_name("spec.name", &spec.name)?;
    if spec.replicas > MAX_REPLICAS {
        return Err(Error::invalid(
            "spec.replicas",
            format!("{} is above the limit of {MAX_REPLICAS}", spec.replicas),
        ));
    }
    let mut task = spec
        .task
        .ok_or_else(|| Error::invalid("spec.task", "is required"))?;
    if task.name.is_empty() {
        task.name = spec.name.clone();
    }
    for (field, config) in [
        ("spec.update_config", &spec.update_config),
        ("spec.rollback_config", &spec.rollback_config),
    ] {
        if let Some(config) = config {
            super::check_config(field, config)?;
        }
    }
    check_spec(&task).map_err(under_task)?;
    let task = validate_spec(task, false).map_err(under_task)?;
    Ok(pb::ServiceSpec {
        task: Some(task),
        ..spec
    })
}

/// A task spec's error (`spec.image`) as the template's (`spec.task.image`).
fn under_task(error: Error) -> Error {
    match error {
        Error::InvalidArgument { field, reason } => {
            let rest = field.strip_prefix("spec").unwrap_or(&field);
            Error::invalid(format!("spec.task{rest}"), reason)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, replicas: u32) -> pb::ServiceSpec {
        pb::ServiceSpec {
            name: name.into(),
            task: Some(pb::TaskSpec {
                command: vec!["sleep".into(), "60".into()],
                ..Default::default()
            }),
            replicas,
            ..Default::default()
        }
    }

    fn field_of(error: Error) -> String {
        match error {
            Error::InvalidArgument { field, .. } => field.into_owned(),
            other => panic!("not INVALID_ARGUMENT: {other}"),
        }
    }

    #[test]
    fn a_good_spec_passes_and_names_its_task_after_the_service() {
        let checked = check_service_spec(spec("web-1", 3)).unwrap();
        assert_eq!(checked.task.unwrap().name, "web-1");
    }

    #[test]
    fn names_must_be_dns_labels() {
        for bad in ["", "Web", "1web", "web-", "we_b", &"a".repeat(64)] {
            let error = check_service_spec(spec(bad, 1)).unwrap_err();
            assert_eq!(field_of(error), "spec.name", "{bad:?}");
        }
        check_service_spec(spec(&"a".repeat(63), 1)).unwrap();
    }

    #[test]
    fn replicas_above_the_limit_are_refused() {
        check_service_spec(spec("web", MAX_REPLICAS)).unwrap();
        let error = check_service_spec(spec("web", MAX_REPLICAS + 1)).unwrap_err();
        assert!(error.to_string().contains("spec.replicas"), "{error}");
    }

    #[test]
    fn template_errors_name_the_field_under_spec_task() {
        let mut missing = spec("web", 1);
        missing.task = None;
        assert_eq!(
            field_of(check_service_spec(missing).unwrap_err()),
            "spec.task"
        );
        let mut empty = spec("web", 1);
        empty.task = Some(pb::TaskSpec::default());
        assert_eq!(
            field_of(check_service_spec(empty).unwrap_err()),
            "spec.task.command"
        );
        let mut image = spec("web", 1);
        image.task.as_mut().unwrap().image = "a b".into();
        assert_eq!(
            field_of(check_service_spec(image).unwrap_err()),
            "spec.task.image"
        );
    }
}
