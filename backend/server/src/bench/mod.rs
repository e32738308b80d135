//! `muster bench …`: measurements of Muster's components, each next to a baseline measured
//! in the same run, reported as medians over several runs.

use clap::{Args, Subcommand};

mod dispatch;
mod e2e;
mod harness;
mod stats;
mod store;
mod store_pg;

/// Arguments of `muster bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The embedded event store: append throughput and latency, $all catch-up, reopen after a
    /// crash; against a plain fdatasync'ed file and PostgreSQL.
    Store(store::StoreBenchArgs),
    /// Routing on the 30 km generated city (many-to-one, preparation, snapping) and the
    /// Helsinki import.
    Geodata(crate::geodata_cmd::GeodataBenchArgs),
    /// The dispatcher: recommendations by road among 10,000 units on the 30 km generated city,
    /// position reports applied meanwhile, straight line against road, surge against greedy.
    Dispatch(dispatch::DispatchBenchArgs),
    /// Hotline create -> delta on a connected wall-display websocket at a fixed offered rate,
    /// against a bare append -> $all subscription round trip in the same run.
    E2e(e2e::E2eArgs),
    /// Projection rebuild rate from the log, against a bare $all scan.
    Projections(e2e::ProjectionsArgs),
    /// The mobile gateway: device connections held, memory per connection, task push latency
    /// at a fixed rate, against a bare $all subscription in the same run.
    Gateway(muster_mobile::cli::BenchGatewayArgs),
    /// A 24-hour drill of the 30 km generated city, and replay of its log into the engine
    /// against a plain parse of the same log.
    Drill(muster_sim::cli::BenchDrillArgs),
}

/// Runs `muster bench …`.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Store(a) => store::run(a),
        BenchCommand::Dispatch(a) => dispatch::run(a),
        BenchCommand::E2e(a) => e2e::run_e2e(a),
        BenchCommand::Projections(a) => e2e::run_projections(a),
        BenchCommand::Geodata(a) => crate::geodata_cmd::bench(a),
        BenchCommand::Gateway(a) => muster_mobile::cli::run_bench_gateway(a),
        BenchCommand::Drill(a) => muster_sim::cli::bench(a),
    }
}
