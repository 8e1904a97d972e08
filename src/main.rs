//! `imageshare` binary: command-line parsing and wiring only.
use clap::{Parser, Subcommand};

/// Declarative OpenStack Glance image sharing for Kubernetes.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the ImageShare CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => print!("{}", imageshare::api::crd_yaml()?),
    }
    Ok(())
}
