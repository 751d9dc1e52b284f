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
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "cubectl", &mut script);
    super::print_out(&String::from_utf8_lossy(&script));
    Ok(())
}

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
