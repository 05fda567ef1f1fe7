//! `Writer`: the only code that writes binlog files, and `FileWriterActor` (see [`actor`]), the
//! actor that carries each message to it, one at a time, on the writers' shared thread pool
//! (`WriterPool`), so blocking file I/O and fsync never touch the async executors.
//!
//! Invariants enforced here, and only here:
//! - the checkpoint is never ahead of fsynced bytes: a batch's checkpoint becomes durable after
//!   the `sync_data` covering its bytes returns, and only durable checkpoints are persisted;
//! - a sealed file never changes again, and is SEALED in the catalog in the same transaction that
//!   moves the checkpoint past it;
//! - an fsync error is never retried: the writer refuses every later write until it is prepared
//!   again from the last persisted checkpoint (reconciliation);
//! - after a crash, what was fsynced past the persisted checkpoint (and may have been acked to a
//!   semi-sync source) is kept as far as it holds complete, verified transactions, fsynced again
//!   and checkpointed before anything else happens (`Recover`, `reconcile::plan`).
//!
//! Layout: `{data_dir}/{task_id}/{source_identity}/{file}`. A source identity gets its own
//! folder because after a GTID switchover the new server's file names can repeat the old ones.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{Logger, debug, info, warn};

use crate::binlog::Flavor;
use crate::binlog::event::{FileEvents, MAGIC, is_header_event};
use crate::binlog::gtid::StartGtid;
use crate::binlog::name::BinlogFileName;
use crate::binlog::stream::{GtidTracker, LocalFiles, OpenFile, WriteOp};
use crate::binlog::summary::{self, SummaryBuilder};
use crate::config::DirectIo;
use crate::domain::{TaskEventType, TaskId};
use crate::meta::{Checkpoint, FileRecord, FileState, Store, StoreError};
use crate::reconcile::{self, Aside, Facts, Removal};
use crate::source::dump::SourceIdentity;
use crate::telemetry::tracing::span;
use opentelemetry::KeyValue;
use sha2::{Digest, Sha256};

/// A batch persists the checkpoint itself only when the timer's last persist is this many
/// intervals old.
const PERSIST_OVERDUE: u32 = 5;

struct OpenLocal {
    name: BinlogFileName,
    path: PathBuf,
    file: File,
    start_pos: u64,
    header_len: u64,
    size: u64,
    dirty: bool,
    /// Up to where the kernel has been asked to start writing the file back (see
    /// [`start_writeback`]).
    kicked: u64,
    /// The catalog summary of what is durable in the file (see `binlog::summary`).
    summary: SummaryBuilder,
    /// `Some` when the file is written with O_DIRECT: its aligned tail (see [`direct`]).
    direct: Option<DirectTail>,
    /// The sha256 of every byte written into the file so far, when the writer created it (the
    /// digest recorded at sealing without reading the file back); `None` for a resumed file.
    hasher: Option<Sha256>,
}

impl OpenLocal {
    /// Appends `data` at the end (`size` grows; `dirty` until the next `sync`).
    fn append(&mut self, data: &[u8]) -> Result<(), WriterError> {
        if let Some(h) = self.hasher.as_mut() {
            h.update(data);
        }
        if let Some(t) = self.direct.as_mut() {
            t.append(&self.file, data).map_err(|e| WriterError::io("write", &self.path, e))?;
            self.size += data.len() as u64;
            debug_assert_eq!(t.size(), self.size, "the aligned tail ends where the file does");
            self.dirty = true;
            return Ok(());
        }
        // In slices, so that the disk writes the first while the next are copied.
        for slice in data.chunks(WRITEBACK_CHUNK as usize) {
            self.file.write_all(slice).map_err(|e| WriterError::io("write", &self.path, e))?;
            self.size += slice.len() as u64;
            self.dirty = true;
            if self.size - self.kicked >= WRITEBACK_CHUNK {
                start_writeback(&self.file, self.kicked, self.size - self.kicked);
                self.kicked = self.size;
            }
        }
        Ok(())
    }

    /// Direct IO: writes what the aligned tail holds and cuts the zero padding of its last block,
    /// so that the file is exactly `size` bytes long again. Before the `sync_data` that makes the
    /// bytes (and the length) durable, hence before any checkpoint covering them is published.
    fn write_out(&mut self) -> Result<(), WriterError> {
        let Some(t) = self.direct.as_mut() else { return Ok(()) };
        let end = t.flush(&self.file).map_err(|e| WriterError::io("write", &self.path, e))?;
        if end != self.size {
            self.file.set_len(self.size).map_err(|e| WriterError::io("truncate", &self.path, e))?;
            self.dirty = true;
        }
        Ok(())
    }

    /// Our file's offset of a source position in it (see `FileRecord::local_offset`).
    fn local_offset(&self, source_pos: u64) -> u64 {
        crate::binlog::local_offset(self.start_pos, self.header_len, source_pos)
    }
}

pub struct Writer {
    task_id: TaskId,
    layout: crate::layout::DataLayout,
    store: Store,
    log: Logger,
    report: Recipient<WriterEvent>,
    checkpoint_interval: Duration,
    identity: Option<SourceIdentity>,
    open: Option<OpenLocal>,
    durable: Option<Checkpoint>,
    persisted: Option<Checkpoint>,
    last_persist: Instant,
    loaded: bool,
    fsync: Fsync,
    /// Which slow fsyncs are said in the log ([`fsync::SLOW_FSYNC`]).
    slow_fsyncs: SlowFsyncs,
    /// When the batch (or checkpoint store) in progress began, for the task's stall watch ([`stall`]).
    busy: Busy,
    /// Cluster mode: checked before every write; `None` standalone.
    lease: Option<WriterLease>,
    /// While a takeover re-fetches files, the stored checkpoint (ahead of what is rewritten) is
    /// not moved back: checkpoints before this one are durable locally but not persisted.
    floor: Option<Checkpoint>,
    rebuild: Option<RefetchFrom>,
    /// The last error of a timer-driven persist, logged once.
    persist_error: Option<String>,
    /// That error, until the next `WriteBatch` returns it.
    persist_failure: Option<WriterError>,
    /// The relay's view of the durable checkpoint (`relay::hub`), told after each fsync.
    relay: Option<crate::relay::hub::DurablePublisher>,
    /// `writer.direct_io`, and what it came to for this data directory (decided at the first
    /// `Prepare`, see [`direct::choose`]).
    direct_io: DirectIo,
    io: Option<IoChoice>,
    /// A batch appending at least this many bytes is not hashed inline
    /// ([`hashing::HASH_APART_MIN`]; tests lower it).
    hash_apart_min: usize,
    /// Whether such a batch is hashed on a thread of its own rather than read back after
    /// sealing: set from the I/O choice (O_DIRECT: on); tests set it.
    hash_large_on_write: bool,
    /// While a batch is written: where the digests of the files it seals come from.
    digests: hashing::BatchDigests,
}

/// Bytes appended before the kernel is asked to start writing them back (see [`start_writeback`]).
const WRITEBACK_CHUNK: u64 = 1 << 20;

mod actor;
mod direct;
mod fsync;
mod hashing;
mod messages;
mod recovery;
mod stall;
#[cfg(test)]
mod tests;
mod write;

pub use actor::{FileWriterActor, WriterPool};
pub use messages::*;
pub use stall::{Busy, Mark, StallNote, StallWatch, Work, busy_seconds};

use direct::{DirectTail, IoChoice};
use fsync::{Fsync, Scope, SlowFsyncNote, SlowFsyncs, start_writeback};

impl Writer {
    pub fn new(
        task_id: TaskId,
        data_dir: &Path,
        store: Store,
        log: Logger,
        report: Recipient<WriterEvent>,
        checkpoint_interval: Duration,
    ) -> Self {
        let layout = crate::layout::DataLayout::new(data_dir);
        Writer {
            task_id,
            layout,
            store,
            log,
            report,
            checkpoint_interval,
            identity: None,
            open: None,
            durable: None,
            persisted: None,
            last_persist: Instant::now(),
            loaded: false,
            fsync: Fsync::default(),
            slow_fsyncs: SlowFsyncs::new(),
            busy: Busy::default(),
            lease: None,
            floor: None,
            rebuild: None,
            persist_error: None,
            persist_failure: None,
            relay: None,
            direct_io: DirectIo::Off,
            io: None,
            hash_apart_min: hashing::HASH_APART_MIN,
            hash_large_on_write: false,
            digests: hashing::BatchDigests::Inline,
        }
    }

    /// `writer.direct_io` (the default here is `off`: through the page cache).
    pub fn with_direct_io(mut self, setting: DirectIo) -> Self {
        self.direct_io = setting;
        self
    }

    /// Decides, once, whether files are written with O_DIRECT, from the setting and what the
    /// filesystem of `dir` does with it; a fallback of `auto` is logged (loudly the first time in
    /// this process, then at debug level: every task probes the same data directory).
    fn decide_io(&mut self, dir: &Path) -> Result<(), WriterError> {
        if self.io.is_some() {
            return Ok(());
        }
        let facts = if self.direct_io == DirectIo::Off {
            direct::DirFacts { memory_fs: false, odirect: Ok(()) }
        } else {
            direct::probe(dir).map_err(|e| WriterError::io("probe O_DIRECT in", dir, e))?
        };
        let choice = direct::choose(self.direct_io, &facts).map_err(WriterError::Invariant)?;
        match &choice {
            IoChoice::Buffered { why: Some(why) } => {
                static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
                if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    warn!(self.log, "writer.direct_io is auto: writing through the page cache"; "why" => why.as_str(),
                        "dir" => %dir.display());
                } else {
                    debug!(self.log, "writer.direct_io is auto: writing through the page cache"; "why" => why.as_str());
                }
            }
            IoChoice::Direct => debug!(self.log, "writing binlog files with O_DIRECT"; "dir" => %dir.display()),
            IoChoice::Buffered { why: None } => {}
        }
        self.hash_large_on_write = choice == IoChoice::Direct;
        self.io = Some(choice);
        Ok(())
    }

    fn direct(&self) -> bool {
        self.io == Some(IoChoice::Direct)
    }

    /// Marks each batch, the timer's checkpoint store and the final flush in `busy` while it
    /// runs, and `Recover` and `Prepare` as a start, for the task's [`StallWatch`].
    pub fn with_busy(mut self, busy: Busy) -> Self {
        self.busy = busy;
        self
    }

    /// Publishes each durable checkpoint to the relay (`relay::hub`).
    pub fn with_relay(mut self, publisher: crate::relay::hub::DurablePublisher) -> Self {
        self.relay = Some(publisher);
        self
    }

    /// Tells the relay what is durable now. Not while a takeover re-fetches (the checkpoint is
    /// then ahead of the local bytes): the relay keeps the last value until the copy is whole.
    fn publish_durable(&self) {
        if let (Some(p), None) = (&self.relay, &self.floor) {
            p.publish(self.durable.as_ref());
        }
    }

    /// Cluster mode: every write first checks `lease`, and files missing here are re-fetched.
    pub fn with_lease(mut self, lease: WriterLease) -> Self {
        self.lease = Some(lease);
        self
    }

    fn check_lease(&self) -> Result<(), WriterError> {
        match &self.lease {
            Some(l) if !l.guard.is_valid() => Err(WriterError::LeaseExpired),
            _ => Ok(()),
        }
    }

    /// Whether `cp` is behind the floor (a takeover still re-fetching what the store has).
    fn below_floor(&self, cp: &Checkpoint) -> bool {
        match &self.floor {
            Some(f) if f.source_identity == cp.source_identity => (&cp.file, cp.pos) < (&f.file, f.pos),
            _ => false,
        }
    }

    fn ident(&self) -> Result<&SourceIdentity, WriterError> {
        self.identity.as_ref().ok_or_else(|| WriterError::Invariant("writer used before Prepare".into()))
    }
}

/// After a failed fsync of the open file: cuts it back to the last durable checkpoint (to nothing
/// when that is in an earlier file), so that crash recovery at the next start never reads back
/// bytes the kernel may have failed to write while they still sit in its cache. Best effort: the
/// task fails anyway, and a failed cut is logged.
fn cut_unsynced(o: &OpenLocal, durable: Option<&Checkpoint>, log: &Logger) {
    let keep = match durable {
        Some(cp) if cp.file == o.name => o.local_offset(cp.pos),
        _ => 0,
    };
    match o.file.set_len(keep) {
        Ok(()) => warn!(log, "cut the file back to the last durable checkpoint after a failed fsync";
            "file" => %o.name, "to" => keep),
        Err(e) => warn!(log, "could not cut the file back after a failed fsync"; "file" => %o.name, "error" => %e),
    }
}

/// The regular files in `dir` and their sizes.
fn files_in(dir: &Path) -> Result<BTreeMap<String, u64>, WriterError> {
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(|e| WriterError::io("list", dir, e))? {
        let entry = entry.map_err(|e| WriterError::io("list", dir, e))?;
        let meta = entry.metadata().map_err(|e| WriterError::io("stat", &entry.path(), e))?;
        if meta.is_file() {
            files.insert(entry.file_name().to_string_lossy().into_owned(), meta.len());
        }
    }
    Ok(files)
}

/// The first event of the file at `path` (its format description) and its bytes from `offset`
/// to the end.
///
/// A file cut inside its format description (a power cut right after its creation keeps part of
/// the unsynced header) is no error: the format description comes back as short as it is, and
/// the scan finds nothing complete in it.
fn read_tail(path: &Path, offset: u64) -> io::Result<(Vec<u8>, Vec<u8>)> {
    use crate::binlog::event::HEADER_LEN;
    let mut f = File::open(path)?;
    let mut head = Vec::with_capacity(4 + HEADER_LEN);
    (&mut f).take((4 + HEADER_LEN) as u64).read_to_end(&mut head)?;
    let mut fde = head.get(4..).unwrap_or_default().to_vec();
    if head.len() == 4 + HEADER_LEN {
        let size = u32::from_le_bytes([head[13], head[14], head[15], head[16]]) as usize;
        if size > HEADER_LEN && size <= 1 << 20 {
            (&mut f).take((size - HEADER_LEN) as u64).read_to_end(&mut fde)?;
        }
    }
    f.seek(SeekFrom::Start(offset))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    Ok((fde, tail))
}

/// Whether a file holds anything but header events (FDE, previous GTIDs, GTID list, binlog
/// checkpoint) in its first `len` bytes: reads only as far as the first other event.
fn has_transactions(f: &mut File, len: u64) -> io::Result<bool> {
    f.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; len.min(64 * 1024) as usize];
    f.read_exact(&mut buf)?;
    let Ok(events) = FileEvents::new(&buf) else { return Ok(false) };
    let mut seen = 0u64;
    for (off, ev) in events {
        seen = (off + ev.len()) as u64;
        if !is_header_event(ev[4]) {
            return Ok(true);
        }
    }
    // Only header events in the part we read: more bytes beyond it mean more events.
    Ok(seen < len)
}

impl Writer {
    /// `Recover`: loads the local state and answers the durable checkpoint.
    fn recover(&mut self, msg: Recover) -> Result<Option<Checkpoint>, WriterError> {
        let _busy = self.busy.begin(Work::Start);
        self.load(msg.flavor)?;
        Ok(self.durable.clone())
    }

    /// `PersistCheckpoint` with nothing to do: the durable checkpoint is the stored one (or
    /// there is none) and no failure of an earlier persist waits to be reported or cleared (or
    /// the writer is poisoned and persists nothing). Notes the tick as `persist` does and says
    /// true; false when the timer's job has work ([`Writer::persist_on_timer`]).
    pub(super) fn persist_idle(&mut self) -> bool {
        self.tell_held_back_slow_fsyncs();
        if self.fsync.poisoned {
            return true;
        }
        if self.persist_error.is_some() || self.persist_failure.is_some() || self.durable != self.persisted {
            return false;
        }
        self.last_persist = Instant::now();
        true
    }

    /// On each timer tick (from `persist_idle`, which every tick calls first): slow fsyncs held
    /// back in a quiet period that is over are said now (`SlowFsyncs::tick`), not only when the
    /// next fsync returns.
    fn tell_held_back_slow_fsyncs(&mut self) {
        if let Some(note) = self.slow_fsyncs.tick(Instant::now()) {
            self.tell_slow_fsyncs(note, 0);
        }
    }

    /// `PersistCheckpoint`: nobody waits for the answer, so a failure is said here (once per
    /// distinct error; a checkpoint that stops moving is never silent) and fails the next batch.
    fn persist_on_timer(&mut self) {
        if self.fsync.poisoned {
            return;
        }
        // A store write that hangs (SQLite on a hung disk) holds every batch behind it.
        let _busy = self.busy.begin(Work::Batch);
        match self.persist() {
            Err(e) => {
                let msg = e.to_string();
                if self.persist_error.as_deref() != Some(msg.as_str()) {
                    warn!(self.log, "cannot persist the durable checkpoint (will retry)"; "error" => &msg);
                    self.persist_error = Some(msg);
                }
                self.persist_failure = Some(e);
            }
            Ok(()) => {
                self.persist_failure = None;
                if self.persist_error.take().is_some() {
                    info!(self.log, "the durable checkpoint is persisted again");
                }
            }
        }
    }

    /// `CloseFiles`: writes out and fsyncs what is open, persists the durable checkpoint, closes.
    fn close_files(&mut self) -> Result<Option<Checkpoint>, WriterError> {
        let _busy = self.busy.begin(Work::Batch);
        if self.check_lease().is_err() {
            // The lease is gone: nothing more is written or persisted under it.
            self.open = None;
            return Err(WriterError::LeaseExpired);
        }
        if let Some(o) = self.open.as_mut()
            && !self.fsync.poisoned
        {
            o.write_out()?;
        }
        if let Some(o) = self.open.as_mut()
            && o.dirty
        {
            self.fsync.check()?;
            if let Err(e) = self.fsync.file(&o.file, &o.path, Scope::Data) {
                cut_unsynced(o, self.durable.as_ref(), &self.log);
                return Err(e);
            }
            o.dirty = false;
        }
        if !self.fsync.poisoned {
            self.persist()?;
        }
        self.open = None;
        Ok(self.durable.clone())
    }
}
