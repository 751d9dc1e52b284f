//! Retries of a submission (AIP-155): the same `request_id` with the same spec answers the
//! task it created; with a different spec it is a mistake the client must hear about, not a
//! silent answer about another task.

use std::collections::HashMap;

use crate::{
    error::{Error, Result},
    proto::pb,
};

/// Checks every `(spec, request_id)` of one submission against the tasks request ids created
/// (`known`) and against the earlier requests of the same call: a request id seen with a
/// different spec is `ALREADY_EXISTS` naming the task (or the request) it belongs to. Specs are
/// compared after validation filled their defaults, as they are stored.
pub(crate) fn check_retries<'a>(
    requests: &[(pb::TaskSpec, String)],
    known: impl Fn(&str) -> Option<&'a pb::Task>,
) -> Result<()> {
    let mut earlier: HashMap<&str, (usize, &pb::TaskSpec)> = HashMap::new();
    for (i, (spec, request_id)) in requests.iter().enumerate() {
        if request_id.is_empty() {
            continue;
        }
        let field = |i: usize| {
            if requests.len() == 1 {
                "request_id".to_string()
            } else {
                format!("tasks[{i}].request_id")
            }
        };
        if let Some(task) = known(request_id) {
            if task.spec.as_ref() != Some(spec) {
                return Err(Error::RequestIdReused {
                    field: field(i),
                    request_id: request_id.clone(),
                    owner: format!("task {}", task.id),
                });
            }
        } else if let Some((first, first_spec)) = earlier.get(request_id.as_str()) {
            if *first_spec != spec {
                return Err(Error::RequestIdReused {
                    field: field(i),
                    request_id: request_id.clone(),
                    owner: format!("tasks[{first}] of this call"),
                });
            }
        } else {
            earlier.insert(request_id, (i, spec));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(image: &str) -> pb::TaskSpec {
        pb::TaskSpec {
            image: image.into(),
            ..Default::default()
        }
    }

    #[test]
    fn same_spec_passes_other_spec_names_the_owner() {
        let task = pb::Task {
            id: "t1".into(),
            spec: Some(spec("a")),
            ..Default::default()
        };
        let known = |id: &str| (id == "k").then_some(&task);
        check_retries(&[(spec("a"), "k".into())], known).unwrap();
        check_retries(&[(spec("b"), "other".into())], known).unwrap();
        let status =
            tonic::Status::from(check_retries(&[(spec("b"), "k".into())], known).unwrap_err());
        assert_eq!(status.code(), tonic::Code::AlreadyExists);
        assert!(status.message().contains("task t1"), "{}", status.message());

        let batch = [(spec("a"), "n".into()), (spec("b"), "n".into())];
        let err = check_retries(&batch, known).unwrap_err().to_string();
        assert!(
            err.contains("tasks[1].request_id") && err.contains("tasks[0]"),
            "{err}"
        );
        let batch = [(spec("a"), "n".into()), (spec("a"), "n".into())];
        check_retries(&batch, known).unwrap();
    }
}
