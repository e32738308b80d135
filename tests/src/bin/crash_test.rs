//! `crash-test`: the crash test of the event store, standalone, for long runs.
//!
//! ```sh
//! cargo run -p muster-e2e --bin crash-test -- --long
//! ```

use clap::Parser;

/// Kills a `muster store load` writer with SIGKILL at random moments and checks the store
/// after each restart.
#[derive(Debug, Parser)]
struct Args {
    /// 1,000 kills instead of 50.
    #[arg(long)]
    long: bool,
    /// Kills to do (overrides --long).
    #[arg(long)]
    iterations: Option<u32>,
    /// Seed of the random moments and loads.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let iterations = args.iterations.unwrap_or(if args.long { 1000 } else { 50 });
    let dir = tempfile::tempdir()?;
    let started = std::time::Instant::now();
    let report =
        muster_e2e::crash::run(&muster_e2e::muster_bin(), dir.path(), iterations, args.seed)?;
    if let Some(problem) = report.problems.first() {
        anyhow::bail!("{problem}");
    }
    println!(
        "{} kills, {} acknowledged appends of {} events, each found with its content; {} events checked at the end, all in order ({:.0} s)",
        report.kills,
        report.acknowledged_appends,
        report.acknowledged_events,
        report.events,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
