//! `cubectl completion`: print a shell completion script generated from the command tree.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, Outcome};

/// Arguments of `cubectl completion`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    source <(cubectl completion bash)\n  \
    cubectl completion zsh > \"${fpath[1]}/_cubectl\"\n  \
    cubectl completion fish > ~/.config/fish/completions/cubectl.fish")]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Runs `cubectl completion`: the script goes to stdout.
pub fn run(args: &CompletionArgs) -> Outcome {
    super::print_out(&script(args.shell));
    Ok(())
}

/// The script for `shell`: clap's verbs and flags; for bash also task ids, task names and
/// node names from `cubectl __complete`.
fn script(shell: Shell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "cubectl", &mut script);
    let mut script = String::from_utf8_lossy(&script).into_owned();
    if shell == Shell::Bash {
        script.push_str(BASH_DYNAMIC);
    }
    script
}

/// Wraps clap's bash function: where a task or a node goes, the candidates come from the
/// manager (`cubectl __complete`, which gives up after two seconds; its errors are dropped,
/// and then clap's completion runs as before). The --manager of the line being completed is
/// passed on.
const BASH_DYNAMIC: &str = r#"
_cubectl_dynamic() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local verb="" kind="" manager=() i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            --manager) manager=(--manager "${COMP_WORDS[i+1]}"); ((i++)) ;;
            -*) ;;
            *) [[ -z "$verb" ]] && verb="${COMP_WORDS[i]}" ;;
        esac
    done
    if [[ "$prev" == "--node" ]]; then
        kind=nodes
    elif [[ "$cur" != -* && "$prev" != -* ]]; then
        case "$verb" in
            stop|rm|status|watch|logs|events|explain) kind=tasks ;;
            drain|undrain) kind=nodes ;;
        esac
    fi
    if [[ -n "$kind" ]]; then
        local words
        words="$(cubectl "${manager[@]}" __complete "$kind" "$cur" 2>/dev/null)"
        if [[ -n "$words" ]]; then
            COMPREPLY=($(compgen -W "$words" -- "$cur"))
            return 0
        fi
    fi
    _cubectl "$@"
}
complete -F _cubectl_dynamic -o bashdefault -o default cubectl
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_name_the_verbs() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cubectl", &mut script);
            let script = String::from_utf8(script).unwrap();
            for verb in ["run", "status", "logs", "explain", "undrain"] {
                assert!(script.contains(verb), "{shell:?} script lacks {verb}");
            }
        }
    }
}
