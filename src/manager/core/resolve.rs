//! Task references as people type them: a full id, a unique id prefix of at least
//! [`MIN_PREFIX`] hex digits, or the name of exactly one unfinished task. Resolved here, on the
//! manager, so every client (cubectl, grpcurl) gets the same convenience and the same errors.

use std::ops::RangeInclusive;

use super::{committed::Committed, Core};
use crate::{
    error::{Error, Result},
    proto::{pb, state_name},
    task::{is_finished, TaskId, MAX_NAME_LEN},
};

/// The fewest hex digits an id prefix has: shorter prefixes match too much to be useful,
/// as in Docker, which asks for a unique prefix but finds 1 to 3 digits rarely unique.
pub const MIN_PREFIX: usize = 4;

/// The most candidates an ambiguity error lists.
pub const MAX_CANDIDATES: usize = 10;

/// The digits of an id in its hyphenated form (8-4-4-4-12) and its simple form.
const ID_DIGITS: usize = 32;

/// Where the hyphens of a hyphenated id are.
const HYPHENS: [usize; 4] = [8, 13, 18, 23];

impl Core {
    /// The task `reference` names (a full id, an id prefix or an unfinished task's name); the
    /// errors name `field`. A full id is taken as it is: whether the task exists is the
    /// caller's next question, which also tells a task removed by retention.
    pub fn resolve(&self, field: &str, reference: &str) -> Result<TaskId> {
        check_reference(field, reference)?;
        if let Ok(id) = reference.parse::<TaskId>() {
            return Ok(id);
        }
        let view = self.shared.view();
        let matches = candidates(&view, reference);
        match matches.as_slice() {
            [id] => Ok(*id),
            [] => Err(Error::NotFound {
                what: "task",
                id: reference.to_string(),
            }),
            many => Err(ambiguous(&view, field, reference, many)),
        }
    }
}

/// Refuses a reference that can name nothing: empty, too long, or with characters no id or
/// name holds.
fn check_reference(field: &str, reference: &str) -> Result<()> {
    if reference.is_empty() {
        return Err(Error::invalid(field.to_string(), "is required"));
    }
    let longest = MAX_NAME_LEN.max(36);
    if reference.len() > longest {
        return Err(Error::invalid(
            field.to_string(),
            format!(
                "is {} characters; a task id, id prefix or name is at most {longest}",
                reference.len()
            ),
        ));
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !reference.chars().all(ok) {
        let shown = crate::limits::summary(reference, 64);
        return Err(Error::invalid(
            field.to_string(),
            format!("{shown:?} is neither a task id, an id prefix nor a task name"),
        ));
    }
    Ok(())
}

/// The tasks `reference` may name: those whose id starts with it, and the unfinished tasks
/// it is the name of; each once, in id order.
fn candidates(view: &Committed, reference: &str) -> Vec<TaskId> {
    let mut found = std::collections::BTreeSet::new();
    if let Some(range) = prefix_range(reference) {
        let (lo, hi) = range.into_inner();
        let ids = TaskId::from_u128(lo)..=TaskId::from_u128(hi);
        found.extend(view.ids.range(ids).map(|(id, _)| *id));
    }
    if let Some(named) = view.names.get(reference) {
        found.extend(
            named
                .iter()
                .filter(|id| view.task(**id).is_some_and(|t| !is_finished(t.state()))),
        );
    }
    found.into_iter().collect()
}

/// INVALID_ARGUMENT listing (at most [`MAX_CANDIDATES`] of) the tasks a reference matches.
fn ambiguous(view: &Committed, field: &str, reference: &str, ids: &[TaskId]) -> Error {
    let mut lines: Vec<String> = ids
        .iter()
        .take(MAX_CANDIDATES)
        .filter_map(|id| view.task(*id))
        .map(|task| candidate_line(task))
        .collect();
    if ids.len() > MAX_CANDIDATES {
        lines.push(format!("  and {} more", ids.len() - MAX_CANDIDATES));
    }
    Error::invalid(
        field.to_string(),
        format!(
            "{reference:?} matches {} tasks; give more of the id, or the full id:\n{}",
            ids.len(),
            lines.join("\n")
        ),
    )
}

/// One candidate: its full id, name and state.
fn candidate_line(task: &pb::Task) -> String {
    let name = task.spec.as_ref().map(|s| s.name.as_str()).unwrap_or("");
    format!("  {}  {name}  {}", task.id, state_name(task.state()))
}

/// The ids (as numbers) that start with `text`, if it is an id prefix: at least
/// [`MIN_PREFIX`] hex digits, either without hyphens or with them where a full id has them.
fn prefix_range(text: &str) -> Option<RangeInclusive<u128>> {
    let hyphenated = text.contains('-');
    let hyphens_in_place = text
        .char_indices()
        .all(|(i, c)| !hyphenated || (c == '-') == HYPHENS.contains(&i));
    if !hyphens_in_place {
        return None;
    }
    let digits: String = text.chars().filter(|c| *c != '-').collect();
    if digits.len() < MIN_PREFIX
        || digits.len() > ID_DIGITS
        || !digits.chars().all(|c| c.is_ascii_hexdigit())
    {
        return None;
    }
    let value = u128::from_str_radix(&digits, 16).ok()?;
    let free_bits = 4 * (ID_DIGITS - digits.len()) as u32;
    let lo = value.checked_shl(free_bits).unwrap_or(0);
    let free = if free_bits == 0 {
        0
    } else {
        u128::MAX >> (128 - free_bits)
    };
    Some(lo..=lo | free)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_ranges_of_ids() {
        let id = TaskId::from_u128(0xea00e39a_1234_4abc_8def_0123456789ab);
        let value = id.as_u128();
        for prefix in [
            "ea00",
            "ea00e39a",
            "ea00e39a-12",
            "EA00E39A12",
            "ea00e39a-1234-4abc",
        ] {
            let range = prefix_range(prefix).unwrap_or_else(|| panic!("{prefix} is a prefix"));
            assert!(range.contains(&value), "{prefix}");
        }
        assert!(!prefix_range("ea01").unwrap().contains(&value));
        let full = prefix_range(&id.to_string()).unwrap();
        assert_eq!(full, value..=value);
    }

    #[test]
    fn what_is_not_a_prefix() {
        for text in [
            "ea0",
            "web",
            "ea00-e39a",
            "xyzw",
            "ea00e39a_1",
            "ea00e39a1-",
        ] {
            assert_eq!(prefix_range(text), None, "{text}");
        }
    }

    #[test]
    fn references_are_bounded() {
        assert!(check_reference("task_id", "").is_err());
        assert!(check_reference("task_id", &"a".repeat(64)).is_err());
        assert!(check_reference("task_id", "web server").is_err());
        assert!(check_reference("task_id", "web-1.a_b").is_ok());
    }
}
