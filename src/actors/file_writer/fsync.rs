//! The one fsync helper (an fsync error poisons the writer) and the write-back hint.

use super::*;

/// Asks the kernel to start writing `len` bytes at `offset` back to the disk now, without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`): the disk then writes the first megabytes of a large
/// batch while the next ones are still being copied in, and the `sync_data` that ends the batch
/// only waits for the tail. A hint only: it makes nothing durable and its errors are left to that
/// `sync_data`, which alone moves the checkpoint.
#[cfg(target_os = "linux")]
pub(super) fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor `file` keeps open; no memory is passed.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// What an fsync makes durable: the data (and the size), or all metadata as well.
#[derive(Debug, Clone, Copy)]
pub(super) enum Scope {
    Data,
    All,
}

/// The writer's one way to fsync. A failed fsync poisons the writer: the kernel may have dropped
/// the pages it could not write and a second fsync would report success over lost bytes, so
/// nothing more is written until `Prepare` starts again from the stored checkpoint.
#[derive(Debug, Default)]
pub(super) struct Fsync {
    pub(super) poisoned: bool,
}

impl Fsync {
    pub(super) fn file(&mut self, file: &File, path: &Path, scope: Scope) -> Result<(), WriterError> {
        #[cfg(debug_assertions)]
        if matches!(scope, Scope::Data) {
            test_fsync_delay();
        }
        let synced = match scope {
            Scope::Data => file.sync_data(),
            Scope::All => file.sync_all(),
        };
        synced.map_err(|source| {
            self.poisoned = true;
            WriterError::Fsync { path: path.display().to_string(), source }
        })
    }

    /// A directory, so that the names created or removed in it survive a crash.
    pub(super) fn dir(&mut self, dir: &Path) -> Result<(), WriterError> {
        let d = File::open(dir).map_err(|e| WriterError::io("open", dir, e))?;
        self.file(&d, dir, Scope::All)
    }

    pub(super) fn check(&self) -> Result<(), WriterError> {
        if self.poisoned { Err(WriterError::Poisoned) } else { Ok(()) }
    }
}

/// Debug builds only (never in a release binary): `BINLOG_TEST_FSYNC_DELAY_MS` makes every
/// data fsync take at least that long, so integration tests can show that nothing waiting for
/// the fsync (a semi-sync ack, the source's commit behind it) gets ahead of it.
#[cfg(debug_assertions)]
pub(super) fn test_fsync_delay() {
    static DELAY: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        std::env::var("BINLOG_TEST_FSYNC_DELAY_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis)
    });
    if let Some(d) = delay {
        std::thread::sleep(*d);
    }
}
