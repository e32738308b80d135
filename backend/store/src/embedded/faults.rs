//! A storage backend that fails on demand, to test what the store does when the disk fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use redb::StorageBackend;
use redb::backends::FileBackend;

/// Switches for the faults.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// `fsync` fails with an I/O error.
    pub fail_sync: AtomicBool,
    /// Writes and growth fail with "no space left on device".
    pub disk_full: AtomicBool,
}

#[derive(Debug)]
pub(crate) struct FaultyBackend {
    inner: FileBackend,
    faults: Arc<Faults>,
}

impl FaultyBackend {
    pub(crate) fn new(file: std::fs::File, faults: Arc<Faults>) -> Self {
        Self {
            inner: FileBackend::new(file).expect("file backend"),
            faults,
        }
    }

    fn full(&self) -> std::io::Result<()> {
        if self.faults.disk_full.load(Ordering::SeqCst) {
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        if len > self.inner.len()? {
            self.full()?;
        }
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.full()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> std::io::Result<()> {
        self.inner.close()
    }
}
