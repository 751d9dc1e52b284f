//! `docker run` habits in `cubectl run`: a flag cubectl does not know, given before the
//! task's command, is a usage error whose tips say to put the command after `--` and, for
//! docker's flags that Cube has no equivalent for, what Cube does instead.

use clap::{
    builder::StyledStr,
    error::{ContextKind, ContextValue, ErrorKind},
};

/// What Cube does instead of a `docker run` flag it has no equivalent for; `None` for flags
/// that are not docker's (or that cubectl spells the same way).
fn instead_of(flag: &str) -> Option<&'static str> {
    Some(match flag {
        "--rm" => {
            "Cube has no --rm: the manager keeps finished tasks, so that cubectl status, \
             logs and events can still show them"
        }
        "-d" | "--detach" => {
            "Cube has no -d/--detach: cubectl run never attaches; it prints the task's id \
             (cubectl logs -f ID follows the output)"
        }
        "-i" | "-t" | "--interactive" | "--tty" => {
            "Cube has no -i/-t: there are no interactive tasks (cubectl logs -f ID follows \
             the output)"
        }
        _ => return None,
    })
}

/// Adds Cube's tips to clap's error for an unknown argument of `cubectl run`, replacing
/// clap's own (`use '-- --rm'`), which would make the flag the task's command. Other errors
/// are returned as they are.
pub fn with_docker_tips(mut error: clap::Error) -> clap::Error {
    if error.kind() != ErrorKind::UnknownArgument {
        return error;
    }
    let Some(ContextValue::String(flag)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    let is_run = matches!(
        error.get(ContextKind::Usage),
        Some(ContextValue::StyledStr(usage)) if usage.to_string().contains("cubectl run ")
    );
    if !is_run || !flag.starts_with('-') {
        return error;
    }
    let mut tips = vec![StyledStr::from(
        "the task's command goes after `--`, flags of cubectl run before it: \
         cubectl run --image IMAGE -- CMD ARGS...",
    )];
    if let Some(instead) = instead_of(flag) {
        tips.push(StyledStr::from(instead));
    }
    error.insert(ContextKind::Suggested, ContextValue::StyledStrs(tips));
    error
}

#[cfg(test)]
mod tests {
    use crate::cli::parse_from;

    fn usage_error(args: &[&str]) -> String {
        let args = ["cubectl", "run"].iter().chain(args);
        let error = parse_from(args).unwrap_err();
        assert_eq!(error.exit_code(), 2, "{error}");
        error.to_string()
    }

    #[test]
    fn docker_flags_are_usage_errors_with_tips() {
        let text = usage_error(&["--image", "x", "--rm", "--", "true"]);
        assert!(text.contains("unexpected argument '--rm'"), "{text}");
        assert!(text.contains("after `--`"), "{text}");
        assert!(text.contains("keeps finished tasks"), "{text}");
        assert!(
            !text.contains("'-- --rm'"),
            "clap's own tip is gone: {text}"
        );
        let text = usage_error(&["--image", "x", "-it", "sh"]);
        assert!(text.contains("no interactive tasks"), "{text}");
        let text = usage_error(&["--image", "x", "--frobnicate"]);
        assert!(text.contains("after `--`"), "{text}");
        assert!(!text.contains("Cube has no"), "{text}");
    }

    #[test]
    fn dashes_after_the_command_and_after_double_dash_are_the_commands() {
        for (args, want) in [
            (&["--image", "x", "--", "-v"][..], &["-v"][..]),
            (&["--image", "x", "sh", "-c", "--rm"], &["sh", "-c", "--rm"]),
            (
                &["--image", "x", "--", "ls", "--", "-l"],
                &["ls", "--", "-l"],
            ),
        ] {
            let cli = parse_from(["cubectl", "run"].iter().chain(args)).unwrap();
            let crate::cli::Command::Run(run) = cli.command else {
                panic!("not run")
            };
            assert_eq!(run.args, want, "{args:?}");
        }
    }
}
