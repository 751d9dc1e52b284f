//! `cubectl run --on-disconnect keep|stop DURATION`: the words of the flag and the
//! OnDisconnect they make. A combination that is not a policy (`stop` alone, `keep 2s`) is
//! sent as typed and refused by the manager, which names the field and the cause.

use std::time::Duration;

use crate::{cli::output::to_proto_duration, proto::pb, units::parse_duration};

/// One word of `--on-disconnect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Word {
    Keep,
    Stop,
    After(Duration),
}

/// Parses one word: `keep`, `stop` or a duration.
pub fn parse_word(text: &str) -> Result<Word, String> {
    match text {
        "keep" => Ok(Word::Keep),
        "stop" => Ok(Word::Stop),
        other => parse_duration(other).map(Word::After).map_err(|e| {
            format!("{e}; expected `keep`, or `stop` followed by a duration such as 30s")
        }),
    }
}

/// The policy the words make; None when the flag was not given.
pub fn on_disconnect(words: &[Word]) -> Option<pb::OnDisconnect> {
    if words.is_empty() {
        return None;
    }
    let mut policy = pb::OnDisconnect::default();
    for word in words {
        match word {
            Word::Keep => policy.action = pb::DisconnectAction::Keep.into(),
            Word::Stop => policy.action = pb::DisconnectAction::Stop.into(),
            Word::After(after) => policy.after = Some(to_proto_duration(*after)),
        }
    }
    Some(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_make_the_policy() {
        assert_eq!(on_disconnect(&[]), None);
        let keep = on_disconnect(&[Word::Keep]).unwrap();
        assert_eq!(keep.action(), pb::DisconnectAction::Keep);
        assert_eq!(keep.after, None);
        let words = [parse_word("stop").unwrap(), parse_word("2s").unwrap()];
        let stop = on_disconnect(&words).unwrap();
        assert_eq!(stop.action(), pb::DisconnectAction::Stop);
        assert_eq!(stop.after.unwrap().seconds, 2);
        assert!(parse_word("later").unwrap_err().contains("expected `keep`"));
    }
}
