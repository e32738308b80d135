//! `failover-test`: the failover test, standalone, for long runs.
//!
//! ```sh
//! cargo run -p muster-e2e --bin failover-test -- --long
//! ```

use clap::Parser;

/// Three muster nodes on a PostgreSQL primary with a synchronous standby under load; the
/// primary is SIGKILLed and the standby promoted, round after round; then one muster node is
/// SIGKILLed. Checks the log and every node's views at the end.
#[derive(Debug, Parser)]
struct Args {
    /// 100 primary kills instead of 5.
    #[arg(long)]
    long: bool,
    /// Primary kills to do (overrides --long).
    #[arg(long)]
    kills: Option<u32>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let kills = args.kills.unwrap_or(if args.long { 100 } else { 5 });
    let work = tempfile::tempdir()?;
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let started = std::time::Instant::now();
    let report = muster_e2e::failover::run(&muster_e2e::muster_bin(), &repo, work.path(), kills)?;
    for problem in &report.problems {
        eprintln!("problem: {problem}");
    }
    println!("{}", muster_e2e::failover::summary(&report));
    println!("({:.0} s)", started.elapsed().as_secs_f64());
    anyhow::ensure!(
        report.problems.is_empty(),
        "{} problems",
        report.problems.len()
    );
    Ok(())
}
