//! The `muster` command: parses arguments and hands over to the library code of each area.

use clap::{Parser, Subcommand};

mod bench;
mod geodata_cmd;
mod load;
mod store_cmd;

/// Muster: emergency response coordination, event-sourced.
#[derive(Debug, Parser)]
#[command(name = "muster", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect, verify, export and back up an embedded event store.
    Store(store_cmd::StoreArgs),
    /// Import, generate and inspect city files; route and geocode on them.
    Geodata(geodata_cmd::GeodataArgs),
    /// Measure Muster's components against baselines measured in the same run.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Store(args) => store_cmd::run(args),
        Command::Geodata(args) => geodata_cmd::run(args),
        Command::Bench(args) => bench::run(args),
    }
}
