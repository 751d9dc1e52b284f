//! cubectl: the command line of Cube. Parses, runs the verb, and exits 0 (success), 1 (the
//! request failed) or 2 (usage error, clap's own).

use std::process::ExitCode;

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = cube::cli::Cli::parse();
    cube::cli::main(cli).await
}
