//! cubectl: the command line of Cube. Parses, runs the verb, and exits 0 (success), 1 (the
//! request failed) or 2 (usage error, clap's own).

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = cube::cli::parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit());
    cube::cli::main(cli).await
}
