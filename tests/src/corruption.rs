//! Flipping bytes inside committed events, as a disk or a stray write would.

use std::path::Path;

/// Flips one bit of every occurrence of `marker` in `file` (copy-on-write pages can hold a
/// record more than once). Returns how many occurrences were damaged.
pub fn flip_inside(file: &Path, marker: &[u8]) -> std::io::Result<usize> {
    let mut bytes = std::fs::read(file)?;
    let mut hits = 0;
    let mut at = 0;
    while let Some(i) = find(&bytes[at..], marker) {
        let spot = at + i + marker.len() / 2;
        bytes[spot] ^= 0x04;
        hits += 1;
        at = at + i + marker.len();
    }
    std::fs::write(file, &bytes)?;
    Ok(hits)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
