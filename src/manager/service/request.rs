//! The request checks the handlers share: a submission's spec, page sizes and tokens, and
//! the filters of task listings (state, node, labels, name).

use std::collections::{BTreeMap, HashMap};

use super::MAX_REQUEST_ID;
use crate::{
    error::{Error, Result},
    limits::spec::{check_labels, check_spec},
    proto::pb,
    task::{validate_spec, MAX_NAME_LEN},
};

/// The page size when a request sets none.
const DEFAULT_PAGE: usize = 100;
/// The largest page a request may ask for: bounds one answer's size and the time it holds the
/// state lock.
const MAX_PAGE: usize = 1000;

/// A submission's spec checked and its defaults filled, with its request id.
pub(super) fn checked_submission(request: pb::SubmitTaskRequest) -> Result<(pb::TaskSpec, String)> {
    let spec = request
        .spec
        .ok_or_else(|| Error::invalid("spec", "is required"))?;
    // Bounds first: a 1 MB field is refused before anything else reads it.
    check_spec(&spec)?;
    // The manager does not know which runtime will run the task; a worker on Docker
    // rejects a spec without an image when it is sent.
    let spec = validate_spec(spec, false)?;
    if request.request_id.chars().count() > MAX_REQUEST_ID {
        return Err(Error::invalid(
            "request_id",
            format!("is longer than {MAX_REQUEST_ID} characters"),
        ));
    }
    Ok((spec, request.request_id))
}

pub(super) fn page_size(field: &'static str, size: i32) -> Result<usize> {
    match size {
        n if n < 0 => Err(Error::invalid(field, format!("{n} is negative"))),
        0 => Ok(DEFAULT_PAGE),
        n => Ok((n as usize).min(MAX_PAGE)),
    }
}

/// Page tokens are the last key of the previous page in hex: opaque to clients, checked here.
pub(super) fn page_token(field: &'static str, token: &str) -> Result<u64> {
    if token.is_empty() {
        return Ok(0);
    }
    (token.len() == 16)
        .then(|| u64::from_str_radix(token, 16).ok())
        .flatten()
        .ok_or_else(|| Error::invalid(field, "is not a token this server gave out"))
}

pub(super) fn next_token(last: Option<u64>) -> String {
    last.map(|seq| format!("{seq:016x}")).unwrap_or_default()
}

pub(super) fn state_filter(field: &'static str, value: i32) -> Result<Option<pb::TaskState>> {
    match pb::TaskState::try_from(value) {
        Ok(pb::TaskState::Unspecified) => Ok(None),
        Ok(state) => Ok(Some(state)),
        Err(_) => Err(Error::invalid(
            field,
            format!("{value} is not a task state"),
        )),
    }
}

pub(super) fn node_filter(node: String) -> Option<String> {
    (!node.is_empty()).then_some(node)
}

/// A label selector, bounded as a spec's labels are.
pub(super) fn label_filter(labels: HashMap<String, String>) -> Result<BTreeMap<String, String>> {
    check_labels("labels", &labels)?;
    Ok(labels.into_iter().collect())
}

/// A name filter, bounded as a spec's name is.
pub(super) fn name_filter(name: String) -> Result<Option<String>> {
    if name.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            "name",
            format!("is longer than {MAX_NAME_LEN} characters"),
        ));
    }
    Ok((!name.is_empty()).then_some(name))
}

/// A logs `since`: a real time from 1970 on (seconds >= 0, nanos a fraction of one).
pub(super) fn log_since(field: &'static str, since: Option<&prost_types::Timestamp>) -> Result<()> {
    match since {
        Some(t) if t.seconds < 0 || !(0..1_000_000_000).contains(&t.nanos) => Err(Error::invalid(
            field,
            format!(
                "{}s {}ns is not a time from 1970 on (seconds >= 0, nanos 0 to 999999999)",
                t.seconds, t.nanos
            ),
        )),
        _ => Ok(()),
    }
}

/// A ListEvents `tail`: `None` when not asked (0), else at most a page, and never together
/// with a page token (the last N has no pages).
pub(super) fn event_tail(
    field: &'static str,
    tail: u32,
    page_token: &str,
) -> Result<Option<usize>> {
    match tail as usize {
        0 => Ok(None),
        n if n > MAX_PAGE => Err(Error::invalid(
            field,
            format!("{n} is more than {MAX_PAGE} events"),
        )),
        _ if !page_token.is_empty() => Err(Error::invalid(
            field,
            "cannot be combined with page_token (the last N events come in one answer)",
        )),
        n => Ok(Some(n)),
    }
}
