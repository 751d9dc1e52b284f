//! `cubectl service scale NAME=N...`: set replicas; scaling down stops the highest slots.

use clap::Args;

use crate::{
    cli::{print_out, Outcome},
    client::Client,
};

/// Arguments of `cubectl service scale`.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  cubectl service scale web=5 api=2")]
pub struct ScaleArgs {
    /// A service and its new replicas.
    #[arg(value_name = "NAME=N", required = true, value_parser = parse_scale)]
    pub targets: Vec<(String, u32)>,
}

fn parse_scale(text: &str) -> Result<(String, u32), String> {
    let (name, n) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=N (e.g. web=3)"))?;
    let n = n
        .parse()
        .map_err(|_| format!("{n:?} in {text:?} is not a number of replicas (0 or more)"))?;
    Ok((name.to_string(), n))
}

/// Runs `cubectl service scale`: prints `NAME scaled to N` for each.
pub async fn run(client: &Client, args: ScaleArgs) -> Outcome {
    for (name, replicas) in &args.targets {
        client
            .scale_service(name, *replicas)
            .await
            .map_err(super::service_failure)?;
        print_out(&format!("{name} scaled to {replicas}\n"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(parse_scale("web=3").unwrap(), ("web".into(), 3));
        assert!(parse_scale("web").is_err());
        assert!(parse_scale("web=-1").is_err());
    }
}
