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
    /// Unit tests only: the next data fsync fails with EIO without syncing, as a dying disk's
    /// does (an in-memory fake of the fault; see `file_writer::tests`).
    #[cfg(test)]
    pub(super) fail_next_data: bool,
}

impl Fsync {
    pub(super) fn file(&mut self, file: &File, path: &Path, scope: Scope) -> Result<(), WriterError> {
        #[cfg(debug_assertions)]
        if matches!(scope, Scope::Data) {
            test_fsync_delay();
        }
        #[cfg(test)]
        if matches!(scope, Scope::Data) && std::mem::take(&mut self.fail_next_data) {
            self.poisoned = true;
            let source = io::Error::from_raw_os_error(libc::EIO);
            return Err(WriterError::Fsync { path: path.display().to_string(), source });
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

/// A batch's write-out and data fsync that took at least this long is said in the log:
/// everything waiting for it waited as long (a semi-sync source's commits, relay clients, the
/// checkpoint). Healthy disks take well under 10 ms.
pub(super) const SLOW_FSYNC: Duration = Duration::from_secs(1);

/// At most one slow-fsync warning per task in this long; the ones held back in between are
/// counted, with the slowest, and told by the first fsync after it (slow or not).
pub(super) const SLOW_FSYNC_QUIET: Duration = Duration::from_secs(60);

/// Which slow fsyncs are said, and what the warning carries ([`SlowFsyncs::observe`]).
#[derive(Debug)]
pub(super) struct SlowFsyncs {
    /// [`SLOW_FSYNC_QUIET`] (shorter only in debug builds' tests: [`SlowFsyncs::new`]).
    pub(super) quiet: Duration,
    last_said: Option<Instant>,
    held: u64,
    held_slowest: Duration,
}

/// What to say about an fsync.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum SlowFsyncNote {
    /// This fsync was slow; `held` more were held back since the last warning (the slowest of
    /// them `held_slowest`).
    Slow { took: Duration, held: u64, held_slowest: Duration },
    /// This fsync was not slow, but the quiet period is over and `held` slow ones were held back
    /// in it: told now rather than never.
    HeldBack { held: u64, held_slowest: Duration },
}

impl SlowFsyncs {
    /// One warning per `quiet` at most.
    pub(super) fn with_quiet(quiet: Duration) -> SlowFsyncs {
        SlowFsyncs { quiet, last_said: None, held: 0, held_slowest: Duration::ZERO }
    }

    /// The writer's: [`SLOW_FSYNC_QUIET`]; debug builds only (never a release binary) take
    /// `BINLOG_TEST_SLOW_FSYNC_QUIET_MS` instead, so an integration test sees a quiet period end.
    pub(super) fn new() -> SlowFsyncs {
        #[cfg(debug_assertions)]
        if let Some(ms) = std::env::var("BINLOG_TEST_SLOW_FSYNC_QUIET_MS").ok().and_then(|v| v.parse().ok()) {
            return SlowFsyncs::with_quiet(Duration::from_millis(ms));
        }
        SlowFsyncs::with_quiet(SLOW_FSYNC_QUIET)
    }

    /// An fsync that took `took`, returning at `now`: `Some` when something is to be said now.
    pub(super) fn observe(&mut self, took: Duration, now: Instant) -> Option<SlowFsyncNote> {
        let slow = took >= SLOW_FSYNC;
        if self.last_said.is_some_and(|t| now.saturating_duration_since(t) < self.quiet) {
            if slow {
                self.held += 1;
                self.held_slowest = self.held_slowest.max(took);
            }
            return None;
        }
        let (held, held_slowest) = (self.held, self.held_slowest);
        let note = if slow {
            SlowFsyncNote::Slow { took, held, held_slowest }
        } else if held > 0 {
            SlowFsyncNote::HeldBack { held, held_slowest }
        } else {
            return None;
        };
        self.last_said = Some(now);
        self.held = 0;
        self.held_slowest = Duration::ZERO;
        Some(note)
    }

    /// The writer's timer tick at `now`, with no fsync: slow fsyncs held back in a quiet period
    /// that is over are told now, so a task that fell idle after them (or whose next fsync is
    /// stuck) does not keep them to itself until its next fsync returns.
    pub(super) fn tick(&mut self, now: Instant) -> Option<SlowFsyncNote> {
        if self.held == 0 || self.last_said.is_some_and(|t| now.saturating_duration_since(t) < self.quiet) {
            return None;
        }
        let note = SlowFsyncNote::HeldBack { held: self.held, held_slowest: self.held_slowest };
        self.last_said = Some(now);
        self.held = 0;
        self.held_slowest = Duration::ZERO;
        Some(note)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed fsync is never retried: the kernel may have dropped the pages it could not write,
    /// and a second fsync would report success over lost bytes. A real failing `fdatasync` (a
    /// pipe, which the kernel cannot sync: EINVAL) poisons the writer: the error names the file,
    /// every later check refuses to write on, a later fsync (even one that succeeds) does not
    /// clear it, and the failure is permanent (the task goes FAILED; nothing retries the batch).
    #[test]
    fn a_failed_fsync_poisons_the_writer_and_is_never_retried() {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        let pipe = File::from(std::os::fd::OwnedFd::from(writer));
        let mut fsync = Fsync::default();
        assert!(fsync.check().is_ok());
        let err = fsync.file(&pipe, Path::new("/data/t/1/mariadb-bin.000001"), Scope::Data).unwrap_err();
        match &err {
            WriterError::Fsync { path, source } => {
                assert_eq!(path, "/data/t/1/mariadb-bin.000001");
                assert_eq!(source.raw_os_error(), Some(libc::EINVAL), "{source}");
            }
            other => panic!("not an fsync error: {other:?}"),
        }
        assert!(fsync.poisoned);
        assert!(matches!(fsync.check(), Err(WriterError::Poisoned)), "nothing more is written");
        let good = tempfile::tempfile().expect("a file");
        fsync.file(&good, Path::new("other"), Scope::All).expect("another file's fsync works");
        assert!(matches!(fsync.check(), Err(WriterError::Poisoned)), "and does not clear the poison");
        let permanent = crate::retry::FailureClass::permanent(crate::domain::TaskErrorCode::LocalStorageError);
        assert_eq!(err.classify(), permanent, "the task fails; the batch is not retried");
        assert_eq!(WriterError::Poisoned.classify(), permanent);
        drop(reader);
    }

    #[test]
    fn slow_fsyncs_are_said_at_most_once_a_quiet_period_with_the_ones_held_back() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let slow = |took: u64, held: u64, slowest: u64| {
            Some(SlowFsyncNote::Slow { took: ms(took), held, held_slowest: ms(slowest) })
        };
        let held_back = |held: u64, slowest: u64| Some(SlowFsyncNote::HeldBack { held, held_slowest: ms(slowest) });
        // (seconds after t0, how long the fsync took in ms, what is said)
        let table: &[(u64, u64, Option<SlowFsyncNote>)] = &[
            (0, 5, None),                     // a healthy fsync: nothing
            (1, 999, None),                   // just under the line
            (2, 1000, slow(1000, 0, 0)),      // the first slow one is said at once
            (3, 4000, None),                  // held back: within the quiet period
            (30, 1500, None),                 // held back
            (61, 2, None),                    // healthy, and the period (from 2) is not over
            (62, 2, held_back(2, 4000)),      // the period is over: the two held back are told
            (63, 1300, None),                 // a new period began at 62
            (122, 1100, slow(1100, 1, 1300)), // slow after the period: said, with the one held
            (200, 3000, slow(3000, 0, 0)),
            (300, 5, None), // the period is over and nothing was held back: nothing
        ];
        let mut s = SlowFsyncs::with_quiet(SLOW_FSYNC_QUIET);
        for (at, took, want) in table {
            let got = s.observe(ms(*took), t0 + Duration::from_secs(*at));
            assert_eq!(&got, want, "at {at} s, took {took} ms");
        }
    }

    /// The timer's side: what was held back is told once the quiet period is over, without an
    /// fsync; an fsync and a tick never tell the same ones twice.
    #[test]
    fn held_back_slow_fsyncs_are_told_by_the_timer_once_the_quiet_period_is_over() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let held_back = |held: u64, slowest: u64| Some(SlowFsyncNote::HeldBack { held, held_slowest: ms(slowest) });
        // (seconds after t0, Some(ms): an fsync that took that long, None: a tick; what is said)
        let table: &[(u64, Option<u64>, Option<SlowFsyncNote>)] = &[
            (0, None, None), // nothing ever slow: a tick says nothing
            (1, Some(1200), Some(SlowFsyncNote::Slow { took: ms(1200), held: 0, held_slowest: ms(0) })),
            (2, None, None),                    // nothing held back
            (5, Some(2500), None),              // held back
            (9, Some(1000), None),              // held back
            (60, None, None),                   // the period (from 1) is not over: 59 s
            (61, None, held_back(2, 2500)),     // over: told by the tick
            (62, None, None),                   // told once
            (70, Some(3000), None),             // a new period began at 61: held back
            (121, Some(5), held_back(1, 3000)), // the fsync after the period tells it ...
            (200, None, None),                  // ... and the tick has nothing left to tell
        ];
        let mut s = SlowFsyncs::with_quiet(SLOW_FSYNC_QUIET);
        for (at, fsync, want) in table {
            let now = t0 + Duration::from_secs(*at);
            let got = match fsync {
                Some(took) => s.observe(ms(*took), now),
                None => s.tick(now),
            };
            assert_eq!(&got, want, "at {at} s, fsync {fsync:?}");
        }
    }
}
