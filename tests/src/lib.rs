//! Helpers for the tests that run the real `muster` binary: finding it, fresh data
//! directories, and waiting on conditions with deadlines.
