//! Helpers for the tests that run the real `muster` binary, and the crash test itself.
//!
//! # Layout
//! - this file: building the `muster` binary from this workspace's sources.
//! - [`crash`]: kill a writer process with SIGKILL at random moments and check what survived.
//! - [`corruption`]: flip bytes inside committed events and check that they are reported.
//! - [`failover`]: three nodes on a PostgreSQL primary and synchronous standby, the primary
//!   killed and the standby promoted under load, round after round.

pub mod corruption;
pub mod crash;
pub mod failover;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The `muster` binary built from this workspace's sources, in the target directory and with
/// the profile of the running test (`cargo build --bin muster`, run once per process: a no-op
/// when the binary is fresh), so a test never runs a binary older than the code it checks.
pub fn muster_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        build_muster(&exe).unwrap_or_else(|e| panic!("cannot build muster: {e}"))
    })
    .clone()
}

/// Builds `muster` beside `exe` (a test in `<target>/<profile>/deps/` or a binary in
/// `<target>/<profile>/`) and returns its path.
fn build_muster(exe: &Path) -> Result<PathBuf, String> {
    let mut dir = exe.parent().ok_or("the test has no directory")?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().ok_or("deps has no parent")?;
    }
    let target = dir.parent().ok_or("the profile directory has no parent")?;
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => return Err(format!("no profile in {}", dir.display())),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet", "-p", "muster-server", "--bin", "muster"])
        .arg("--profile")
        .arg(profile)
        .arg("--target-dir")
        .arg(target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let bin = dir.join(format!("muster{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        return Err(format!("cargo built no {}", bin.display()));
    }
    Ok(bin)
}
