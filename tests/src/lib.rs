//! Helpers for the tests that run the real `muster` binary, and the crash test itself.
//!
//! # Layout
//! - this file: finding the `muster` binary.
//! - [`crash`]: kill a writer process with SIGKILL at random moments and check what survived.
//! - [`corruption`]: flip bytes inside committed events and check that they are reported.

pub mod corruption;
pub mod crash;

use std::path::PathBuf;

/// The `muster` binary to test: `$MUSTER_BIN`, else the one cargo built in this workspace's
/// target directory (`cargo build --bin muster`, which `ops/test.sh` runs first).
pub fn muster_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("MUSTER_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    for profile in ["debug", "release"] {
        let bin = target.join(profile).join("muster");
        if bin.exists() {
            return bin;
        }
    }
    panic!(
        "no muster binary under {}: run `cargo build --bin muster` first, or set MUSTER_BIN",
        target.display()
    );
}
