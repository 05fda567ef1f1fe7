//! `FileWriterActor`: the only code that writes binlog files. Runs on its own thread (a
//! `SyncArbiter`), so blocking file I/O and fsync never touch the async executors.
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
use crate::domain::{TaskErrorCode, TaskId};
use crate::meta::{Checkpoint, FileRecord, FileState, Store, StoreError};
use crate::reconcile::{self, Facts, Refusal, Removal};
use crate::retry::FailureClass;
use crate::source::dump::SourceIdentity;
use crate::telemetry::tracing::span;
use opentelemetry::KeyValue;

/// A write failure, classified for the task's failure policy.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("fsync of {path} failed: {source}; the task stops (an fsync is never retried)")]
    Fsync {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("metadata: {0}")]
    Store(#[from] StoreError),
    #[error("the source changed from {old} to {new} while the task resumes by file position")]
    Switchover { old: String, new: String },
    #[error("{0}")]
    Invariant(String),
    /// The local copy disagrees with the checkpoint in a way only lost data explains.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("the writer stopped after an earlier fsync failure")]
    Poisoned,
    /// Cluster mode: this node's lease could not be renewed in time (or was lost); writing stops
    /// before another node may take the task over.
    #[error("this node's lease on the task is no longer valid; writing stopped")]
    LeaseExpired,
}

impl WriterError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        WriterError::Io { op, path: path.display().to_string(), source }
    }

    /// The task error code and whether it is retryable. A full disk may clear (retention, an
    /// operator); an fsync or media error may not.
    pub fn classify(&self) -> FailureClass {
        match self {
            WriterError::Io { source, .. } => {
                let full = matches!(source.raw_os_error(), Some(28) | Some(122)); // ENOSPC, EDQUOT
                FailureClass::retryable_if(TaskErrorCode::LocalStorageError, full)
            }
            WriterError::Fsync { .. } | WriterError::Invariant(_) | WriterError::Refused(_) | WriterError::Poisoned => {
                FailureClass::permanent(TaskErrorCode::LocalStorageError)
            }
            WriterError::LeaseExpired | WriterError::Store(StoreError::Fenced(_)) => {
                FailureClass::permanent(TaskErrorCode::LeaseLost)
            }
            WriterError::Store(e) => FailureClass::retryable_if(TaskErrorCode::MetadataError, e.is_retryable()),
            WriterError::Switchover { .. } => FailureClass::permanent(TaskErrorCode::SourceSwitchover),
        }
    }
}

/// Tells the task about durable progress and finished files.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum WriterEvent {
    Checkpointed { checkpoint: Checkpoint, fsync: Duration, bytes: u64 },
    FileCreated { identity: String, name: BinlogFileName },
    FileSealed { identity: String, name: BinlogFileName, path: PathBuf, size: u64 },
}

/// Reconcile the local copy of `identity` with the checkpoint; answer what we hold.
#[derive(Message)]
#[rtype(result = "Result<Prepared, WriterError>")]
pub struct Prepare {
    pub identity: SourceIdentity,
    /// Whether the task resumes by GTID (a new source identity is then a switchover to follow).
    pub gtid_mode: bool,
    /// The source's flavor (how the checkpoint's GTID state reads), for crash recovery.
    pub flavor: Flavor,
}

/// Crash recovery, before the source is even reached: on the first message after a start, keep
/// the complete transactions fsynced past the stored checkpoint and persist the checkpoint rebuilt
/// from them (see `reconcile::tail_to_scan`). Later ones answer at once. Answers the checkpoint.
#[derive(Message)]
#[rtype(result = "Result<Option<Checkpoint>, WriterError>")]
pub struct Recover {
    pub flavor: Flavor,
}

#[derive(Debug, Clone)]
pub struct Prepared {
    pub checkpoint: Option<Checkpoint>,
    pub local: LocalFiles,
    /// Set when the checkpoint was taken on another source (GTID-mode switchover).
    pub switched_from: Option<String>,
    /// Cluster takeover: files up to the checkpoint are missing here and not in the bucket;
    /// fetch again from the start of this one (see `reconcile::plan`).
    pub refetch_from: Option<RefetchFrom>,
}

pub use crate::reconcile::RefetchFrom;

/// Cluster mode: the lease this writer works under.
#[derive(Debug, Clone)]
pub struct WriterLease {
    pub guard: crate::cluster::LeaseGuard,
}

/// A group of write ops, fsynced together; `checkpoint` (the last transaction boundary in the
/// batch, if any) becomes durable once the fsync returns.
#[derive(Message, Debug)]
#[rtype(result = "Result<Option<Checkpoint>, WriterError>")]
pub struct WriteBatch {
    pub ops: Vec<WriteOp>,
    pub checkpoint: Option<Checkpoint>,
}

/// Persist the durable checkpoint now if it is newer than the stored one.
#[derive(Message)]
#[rtype(result = "Result<(), WriterError>")]
pub struct PersistCheckpoint;

/// Flush, persist and close the open file (task stop). The writer can be prepared again.
#[derive(Message)]
#[rtype(result = "Result<Option<Checkpoint>, WriterError>")]
pub struct CloseFiles;

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
}

impl OpenLocal {
    /// Our file's offset of a source position in it (see `FileRecord::local_offset`).
    fn local_offset(&self, source_pos: u64) -> u64 {
        crate::binlog::local_offset(self.start_pos, self.header_len, source_pos)
    }
}

pub struct FileWriterActor {
    task_id: TaskId,
    task_dir: PathBuf,
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
    /// Cluster mode: checked before every write; `None` standalone.
    lease: Option<WriterLease>,
    /// While a takeover re-fetches files, the stored checkpoint (ahead of what is rewritten) is
    /// not moved back: checkpoints before this one are durable locally but not persisted.
    floor: Option<Checkpoint>,
    rebuild: Option<RefetchFrom>,
    /// The last error of a timer-driven persist, logged once.
    persist_error: Option<String>,
    /// The relay's view of the durable checkpoint (`relay::hub`), told after each fsync.
    relay: Option<crate::relay::hub::DurablePublisher>,
}

impl Actor for FileWriterActor {
    type Context = SyncContext<Self>;
}

/// Bytes appended before the kernel is asked to start writing them back (see [`start_writeback`]).
const WRITEBACK_CHUNK: u64 = 1 << 20;

/// Asks the kernel to start writing `len` bytes at `offset` back to the disk now, without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`): the disk then writes the first megabytes of a large
/// batch while the next ones are still being copied in, and the `sync_data` that ends the batch
/// only waits for the tail. A hint only: it makes nothing durable and its errors are left to that
/// `sync_data`, which alone moves the checkpoint.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
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
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// What an fsync makes durable: the data (and the size), or all metadata as well.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Data,
    All,
}

/// The writer's one way to fsync. A failed fsync poisons the writer: the kernel may have dropped
/// the pages it could not write and a second fsync would report success over lost bytes, so
/// nothing more is written until `Prepare` starts again from the stored checkpoint.
#[derive(Debug, Default)]
struct Fsync {
    poisoned: bool,
}

impl Fsync {
    fn file(&mut self, file: &File, path: &Path, scope: Scope) -> Result<(), WriterError> {
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
    fn dir(&mut self, dir: &Path) -> Result<(), WriterError> {
        let d = File::open(dir).map_err(|e| WriterError::io("open", dir, e))?;
        self.file(&d, dir, Scope::All)
    }

    fn check(&self) -> Result<(), WriterError> {
        if self.poisoned { Err(WriterError::Poisoned) } else { Ok(()) }
    }
}

/// Debug builds only (never in a release binary): `BINLOG_TEST_FSYNC_DELAY_MS` makes every
/// data fsync take at least that long, so integration tests can show that nothing waiting for
/// the fsync (a semi-sync ack, the source's commit behind it) gets ahead of it.
#[cfg(debug_assertions)]
fn test_fsync_delay() {
    static DELAY: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        std::env::var("BINLOG_TEST_FSYNC_DELAY_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis)
    });
    if let Some(d) = delay {
        std::thread::sleep(*d);
    }
}

impl FileWriterActor {
    pub fn new(
        task_id: TaskId,
        data_dir: &Path,
        store: Store,
        log: Logger,
        report: Recipient<WriterEvent>,
        checkpoint_interval: Duration,
    ) -> Self {
        FileWriterActor {
            task_id,
            task_dir: crate::layout::DataLayout::new(data_dir).task_dir(task_id),
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
            lease: None,
            floor: None,
            rebuild: None,
            persist_error: None,
            relay: None,
        }
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

    /// The folder of one source's files.
    pub fn identity_dir(task_dir: &Path, identity: &str) -> PathBuf {
        task_dir.join(identity)
    }

    fn ident(&self) -> Result<&SourceIdentity, WriterError> {
        self.identity.as_ref().ok_or_else(|| WriterError::Invariant("writer used before Prepare".into()))
    }

    fn prepare(&mut self, msg: Prepare) -> Result<Prepared, WriterError> {
        // Whatever happened before (a dropped connection mid-transaction, a full disk), start
        // again from the last durable boundary: close the file without syncing it (everything
        // past the checkpoint is truncated below; everything before it is already durable).
        self.open = None;
        if let Some(floor) = &self.floor {
            // Interrupted while re-fetching for a takeover: reconcile against the stored
            // checkpoint again (the partial file is fetched anew).
            self.durable = Some(floor.clone());
        }
        self.load(msg.flavor)?;
        let checkpoint = self.durable.clone();
        let mut switched_from = None;
        if let Some(cp) = &checkpoint
            && cp.source_identity != msg.identity.as_str()
        {
            if !msg.gtid_mode {
                return Err(WriterError::Switchover { old: cp.source_identity.clone(), new: msg.identity.to_string() });
            }
            // GTID mode follows the new server. The old server's open file is kept as far as it
            // is durable, and sealed: it is complete as far as that server goes for us.
            self.seal_partial(cp)?;
            switched_from = Some(cp.source_identity.clone());
        }
        self.identity = Some(msg.identity.clone());
        let dir = Self::identity_dir(&self.task_dir, msg.identity.as_str());
        fs::create_dir_all(&dir).map_err(|e| WriterError::io("create directory", &dir, e))?;
        self.fsync.dir(&self.task_dir)?;

        // The checkpoint speaks for this folder only when it was taken on this source.
        let here = checkpoint.as_ref().filter(|c| c.source_identity == msg.identity.as_str());
        self.check_lease()?;
        self.rebuild = None;
        let local = self.reconcile(&dir, here)?;
        self.publish_durable();
        Ok(Prepared { checkpoint, local, switched_from, refetch_from: self.rebuild.clone() })
    }

    /// Makes `dir` agree with the checkpoint, as `reconcile::plan` decides (files after it
    /// removed, the checkpoint's file cut back to it, leftovers removed, a takeover's missing files
    /// set aside to be fetched again). Returns what we hold.
    fn reconcile(&mut self, dir: &Path, cp: Option<&Checkpoint>) -> Result<LocalFiles, WriterError> {
        let identity = self.ident()?.to_string();
        let rows: Vec<FileRecord> =
            self.store.list_files(self.task_id)?.into_iter().filter(|r| r.source_identity == identity).collect();
        let on_disk = files_in(dir)?;
        let facts = Facts {
            rows: &rows,
            checkpoint: cp,
            on_disk: &on_disk,
            refetch: self.lease.is_some(),
            recovering: false,
            tail: None,
        };
        let plan = reconcile::plan(facts)?;

        for (name, why) in &plan.remove {
            let p = dir.join(name);
            match fs::remove_file(&p) {
                Ok(()) => match why {
                    Removal::BeyondCheckpoint => {
                        info!(self.log, "removed file beyond the checkpoint"; "file" => %p.display())
                    }
                    Removal::Unknown => {
                        warn!(self.log, "removed a file the catalog does not know"; "file" => %p.display())
                    }
                    Removal::ShortCopyOfBucketFile => {
                        warn!(self.log, "removed a short local copy of a file the bucket holds"; "file" => %p.display())
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(WriterError::io("remove", &p, e)),
            }
        }
        self.store.delete_file_rows(self.task_id, &identity, &plan.forget)?;
        if !plan.set_aside.is_empty() {
            let aside = self.layout_stale_dir();
            fs::create_dir_all(&aside).map_err(|e| WriterError::io("create", &aside, e))?;
            for name in &plan.set_aside {
                let (from, to) = (dir.join(name), aside.join(name));
                fs::rename(&from, &to).map_err(|e| WriterError::io("rename", &from, e))?;
                info!(self.log, "set a copy aside to fetch the file again"; "file" => %from.display(), "to" => %to.display());
            }
        }

        let mut local = LocalFiles { open: None, sealed: plan.sealed };
        match (cp, plan.refetch_from, plan.open) {
            (Some(cp), Some(from), _) => {
                warn!(self.log, "files up to the checkpoint are not on this node nor in the bucket; fetching them again \
                                 from the source";
                    "from_file" => %from.name, "checkpoint_file" => %cp.file, "checkpoint_pos" => cp.pos);
                self.floor = Some(cp.clone());
                self.rebuild = Some(from);
            }
            (Some(cp), None, Some(resume)) => {
                let rec = rows.iter().find(|r| r.file_name == resume.name).expect("the plan resumes a catalogued file");
                let path = dir.join(resume.name.as_str());
                let mut f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| WriterError::io("open", &path, e))?;
                if let Some(len) = plan.truncate_to {
                    info!(self.log, "truncating to the checkpoint";
                        "file" => %resume.name, "from" => on_disk.get(resume.name.as_str()).copied(), "to" => len);
                    f.set_len(len).map_err(|e| WriterError::io("truncate", &path, e))?;
                }
                self.fsync.file(&f, &path, Scope::All)?;
                let has_transactions =
                    has_transactions(&mut f, resume.len).map_err(|e| WriterError::io("read", &path, e))?;
                let summary = self
                    .resume_summary(&mut f, rec, cp.pos, resume.len)
                    .map_err(|e| WriterError::io("read", &path, e))?;
                f.seek(SeekFrom::End(0)).map_err(|e| WriterError::io("seek", &path, e))?;
                local.open = Some(OpenFile {
                    name: resume.name.clone(),
                    start_pos: resume.start_pos,
                    end_pos: cp.pos,
                    has_transactions,
                });
                self.open = Some(OpenLocal {
                    name: resume.name,
                    path,
                    file: f,
                    start_pos: resume.start_pos,
                    header_len: resume.header_len,
                    size: resume.len,
                    dirty: false,
                    kicked: resume.len,
                    summary,
                });
            }
            _ => {}
        }
        self.fsync.dir(dir)?;
        Ok(local)
    }

    /// Reads the stored checkpoint on the first use after a start, or again after an fsync
    /// failure, and, after a start only, recovers the tail past it ([`Self::recover_tail`]). After
    /// an fsync failure nothing past the stored checkpoint is trusted: the kernel may have dropped
    /// pages that still read back from its cache.
    fn load(&mut self, flavor: Flavor) -> Result<(), WriterError> {
        if self.loaded && !self.fsync.poisoned {
            return Ok(());
        }
        let after_fsync_failure = self.fsync.poisoned;
        self.durable = self.store.get_checkpoint(self.task_id)?.map(|(c, _)| c);
        self.persisted = self.durable.clone();
        self.loaded = true;
        self.fsync.poisoned = false;
        if !after_fsync_failure && self.floor.is_none() {
            self.recover_tail(flavor)?;
        }
        Ok(())
    }

    /// Crash recovery: keeps the complete, verified transactions past the stored checkpoint in
    /// its source's folder (the checkpoint's open file, or the file a rotate created after it),
    /// cuts only the incomplete rest, fsyncs the file and persists the checkpoint rebuilt from the
    /// tail. The rest of the folder is left to `Prepare`'s reconciliation, which then starts from
    /// this checkpoint. `reconcile::plan` decides; this carries it out.
    fn recover_tail(&mut self, flavor: Flavor) -> Result<(), WriterError> {
        let Some(cp) = self.durable.clone() else { return Ok(()) };
        let dir = Self::identity_dir(&self.task_dir, &cp.source_identity);
        if !dir.is_dir() {
            return Ok(());
        }
        let rows: Vec<FileRecord> = self
            .store
            .list_files(self.task_id)?
            .into_iter()
            .filter(|r| r.source_identity == cp.source_identity)
            .collect();
        let on_disk = files_in(&dir)?;
        let facts = Facts {
            rows: &rows,
            checkpoint: Some(&cp),
            on_disk: &on_disk,
            refetch: self.lease.is_some(),
            recovering: true,
            tail: None,
        };
        let Some(scan) = reconcile::tail_to_scan(facts) else { return Ok(()) };
        let gtid = match cp.gtid_set.as_deref().map(|g| StartGtid::parse(flavor, g)).transpose() {
            Ok(g) => g,
            Err(e) => {
                warn!(self.log, "the checkpoint's GTID state does not read; the tail past it is not recovered";
                    "error" => %e, "gtid" => cp.gtid_set.as_deref().unwrap_or(""));
                return Ok(());
            }
        };
        let path = dir.join(scan.name.as_str());
        let (fde, bytes) = read_tail(&path, scan.offset).map_err(|e| WriterError::io("read", &path, e))?;
        let tail = crate::binlog::tail::scan(
            &fde,
            &bytes,
            crate::binlog::tail::TailStart {
                name: scan.name.clone(),
                whole_file: scan.whole_file,
                offset: scan.offset,
                pos: scan.pos,
                gtid: GtidTracker::new(flavor, gtid.as_ref()),
            },
        );
        let plan = reconcile::plan(Facts { tail: Some(&tail), ..facts })?;
        let (Some(recovered), Some(resume)) = (plan.recovered, plan.open) else {
            debug!(self.log, "nothing complete past the checkpoint";
                "file" => %scan.name, "from" => scan.offset, "stopped" => tail.stopped.as_deref().unwrap_or(""));
            return Ok(());
        };
        self.check_lease()?;
        let mut f =
            OpenOptions::new().read(true).write(true).open(&path).map_err(|e| WriterError::io("open", &path, e))?;
        let had = on_disk.get(scan.name.as_str()).copied();
        if let Some(len) = plan.truncate_to {
            f.set_len(len).map_err(|e| WriterError::io("truncate", &path, e))?;
        }
        // The kept bytes were fsynced before the crash, or not: either way they are now, before
        // the checkpoint that covers them is stored.
        self.fsync.file(&f, &path, Scope::All)?;
        let mut rec =
            rows.iter().find(|r| r.file_name == resume.name).expect("the plan resumes a catalogued file").clone();
        if rec.summary.gtid_start.is_none() && resume.name != cp.file {
            // A file created after the checkpoint's: it begins where that one ended.
            rec.summary.gtid_start = cp.gtid_set.clone();
        }
        let summary = self
            .resume_summary(&mut f, &rec, recovered.pos, resume.len)
            .map_err(|e| WriterError::io("read", &path, e))?;
        self.store.save_checkpoint_in_open_file(self.task_id, &recovered, resume.len, summary.summary())?;
        warn!(self.log, "recovered transactions fsynced past the stored checkpoint";
            "file" => %recovered.file, "from_file" => %cp.file, "from_pos" => cp.pos, "to_pos" => recovered.pos,
            "transactions" => tail.boundaries, "cut_from" => had, "cut_to" => plan.truncate_to,
            "gtid" => recovered.gtid_set.as_deref().unwrap_or(""), "stopped" => tail.stopped.as_deref().unwrap_or(""));
        self.durable = Some(recovered.clone());
        self.persisted = Some(recovered.clone());
        self.last_persist = Instant::now();
        let _ =
            self.report.try_send(WriterEvent::Checkpointed { checkpoint: recovered, fsync: Duration::ZERO, bytes: 0 });
        Ok(())
    }

    /// Where a takeover sets aside the copies it fetches again: `{data_dir}/.stale/{task}-{time}`.
    fn layout_stale_dir(&self) -> PathBuf {
        self.task_dir.parent().unwrap_or(&self.task_dir).join(crate::layout::STALE_DIR).join(format!(
            "{}-{}",
            self.task_id.0,
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f")
        ))
    }

    /// GTID switchover: the old source's open file is kept up to the checkpoint and sealed.
    fn seal_partial(&mut self, cp: &Checkpoint) -> Result<(), WriterError> {
        let dir = Self::identity_dir(&self.task_dir, &cp.source_identity);
        let rows = self.store.list_files(self.task_id)?;
        if let Some(rec) = rows
            .iter()
            .find(|r| r.source_identity == cp.source_identity && r.file_name == cp.file && r.state == FileState::Open)
        {
            let path = dir.join(rec.file_name.as_str());
            let want = rec.local_offset(cp.pos);
            let f = OpenOptions::new().write(true).open(&path).map_err(|e| WriterError::io("open", &path, e))?;
            f.set_len(want).map_err(|e| WriterError::io("truncate", &path, e))?;
            self.fsync.file(&f, &path, Scope::All)?;
            let read = File::open(&path).map_err(|e| WriterError::io("open", &path, e))?;
            let summary = summary::summarize(
                io::BufReader::new(read),
                rec.start_pos,
                rec.header_len,
                want,
                rec.summary.gtid_start.clone(),
            )
            .map_err(|e| WriterError::io("read", &path, e))?;
            self.store.seal_file(
                self.task_id,
                &cp.source_identity,
                cp.file.as_str(),
                cp.pos,
                want,
                &summary,
                Some(cp),
            )?;
            // Never dropped (unlike progress reports): a sealed file enters the upload queue
            // only once the task hashes it.
            self.report.do_send(WriterEvent::FileSealed {
                identity: cp.source_identity.clone(),
                name: cp.file.clone(),
                path,
                size: want,
            });
        }
        Ok(())
    }

    fn write_batch(&mut self, batch: WriteBatch) -> Result<Option<Checkpoint>, WriterError> {
        self.fsync.check()?;
        self.check_lease()?;
        let mut bytes = 0u64;
        for op in batch.ops {
            match op {
                WriteOp::Create { name, start_pos, header } => self.create(name, start_pos, &header)?,
                WriteOp::Append { bytes: data, end_pos } => {
                    let o = self
                        .open
                        .as_mut()
                        .ok_or_else(|| WriterError::Invariant("append without an open file".into()))?;
                    // In slices, so that the disk writes the first while the next are copied.
                    for slice in data.chunks(WRITEBACK_CHUNK as usize) {
                        o.file.write_all(slice).map_err(|e| WriterError::io("write", &o.path, e))?;
                        o.size += slice.len() as u64;
                        o.dirty = true;
                        if o.size - o.kicked >= WRITEBACK_CHUNK {
                            start_writeback(&o.file, o.kicked, o.size - o.kicked);
                            o.kicked = o.size;
                        }
                    }
                    o.summary.on_events(&data, end_pos);
                    bytes += data.len() as u64;
                }
                WriteOp::Rebase { start_pos, gtid } => {
                    let identity = self.ident()?.to_string();
                    let o = self
                        .open
                        .as_mut()
                        .ok_or_else(|| WriterError::Invariant("rebase without an open file".into()))?;
                    o.start_pos = start_pos;
                    o.header_len = o.size;
                    o.summary.rebase(gtid);
                    self.store.update_file_layout(self.task_id, &identity, o.name.as_str(), start_pos, o.size)?;
                }
                WriteOp::Seal { end_pos, gtid } => self.seal(end_pos, gtid)?,
            }
        }
        let started = Instant::now();
        let mut synced = false;
        if let Some(o) = self.open.as_mut()
            && o.dirty
        {
            synced = true;
            if let Err(e) = self.fsync.file(&o.file, &o.path, Scope::Data) {
                cut_unsynced(o, self.durable.as_ref(), &self.log);
                return Err(e);
            }
            o.dirty = false;
        }
        let fsync = started.elapsed();
        if synced {
            crate::telemetry::metrics::metrics().fsync.observe(fsync.as_secs_f64());
        }
        if let Some(cp) = batch.checkpoint {
            // Only now, with the fsync returned, is the checkpoint durable.
            debug!(self.log, "checkpoint durable";
                "file" => %cp.file, "pos" => cp.pos, "gtid" => cp.gtid_set.as_deref().unwrap_or(""),
                "bytes" => bytes, "fsync_us" => fsync.as_micros() as u64);
            if let Some(o) = self.open.as_mut()
                && o.name == cp.file
            {
                o.summary.commit(cp.pos, cp.gtid_set.as_deref());
            }
            if !self.below_floor(&cp) {
                // The re-fetch has caught up with the stored checkpoint: back to normal.
                self.floor = None;
            }
            self.durable = Some(cp.clone());
            self.publish_durable();
            // The first checkpoint on a source is stored at once: recovery reads the tail past the
            // stored checkpoint, and without one it has no file to start from.
            let first_here = self.persisted.as_ref().is_none_or(|p| p.source_identity != cp.source_identity);
            if first_here || self.last_persist.elapsed() >= self.checkpoint_interval {
                self.persist()?;
            }
            let _ = self.report.try_send(WriterEvent::Checkpointed { checkpoint: cp, fsync, bytes });
        }
        Ok(self.durable.clone())
    }

    fn create(&mut self, name: BinlogFileName, start_pos: u64, header: &[u8]) -> Result<(), WriterError> {
        // Checked again here, not only per batch: a holding that ended while this batch ran
        // must not create a file in the directory of the holding that follows it.
        self.check_lease()?;
        if let Some(o) = &self.open {
            return Err(WriterError::Invariant(format!("creating {name} while {} is still open", o.name)));
        }
        let identity = self.ident()?.to_string();
        let dir = Self::identity_dir(&self.task_dir, &identity);
        let path = dir.join(name.as_str());
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600) // row data: the owner's only (the umask is 077 as well, see fsmode)
            .open(&path)
            .map_err(|e| WriterError::io("create", &path, e))?;
        file.write_all(&MAGIC).map_err(|e| WriterError::io("write", &path, e))?;
        file.write_all(header).map_err(|e| WriterError::io("write", &path, e))?;
        let header_len = (MAGIC.len() + header.len()) as u64;
        let inserted = self.store.insert_file(&FileRecord {
            task_id: self.task_id.0,
            source_identity: identity.clone(),
            file_name: name.clone(),
            state: FileState::Open,
            start_pos,
            header_len,
            end_pos: None,
            size: header_len,
            sha256: None,
            created_at: chrono::Utc::now(),
            sealed_at: None,
            upload: Default::default(),
            summary: Default::default(),
        });
        match inserted {
            Ok(()) => {}
            // A takeover re-fetching a catalogued file: its row stays as it is (it tells what
            // the file must hold, should this node crash before the file is whole again).
            Err(StoreError::Duplicate(_)) if self.floor.is_some() => {
                self.store.update_file_layout(self.task_id, &identity, name.as_str(), start_pos, header_len)?;
            }
            Err(e) => return Err(e.into()),
        }
        // The new name must survive a crash before any checkpoint points into the file.
        self.fsync.dir(&dir)?;
        info!(self.log, "file created"; "file" => %name, "start_pos" => start_pos);
        let _ = self.report.try_send(WriterEvent::FileCreated { identity, name: name.clone() });
        // Where the previous file ended is where this one begins, GTID-wise (for the first file a
        // takeover re-fetches, the catalog knows; the durable checkpoint is still the floor).
        let gtid_start = match self.rebuild.take() {
            Some(r) if r.name == name => r.gtid_start,
            _ => self.durable.as_ref().and_then(|c| c.gtid_set.clone()),
        };
        let summary = SummaryBuilder::new(header, gtid_start);
        self.open = Some(OpenLocal {
            name,
            path,
            file,
            start_pos,
            header_len,
            size: header_len,
            dirty: true,
            kicked: 0,
            summary,
        });
        Ok(())
    }

    fn seal(&mut self, end_pos: u64, gtid: Option<String>) -> Result<(), WriterError> {
        self.check_lease()?;
        let identity = self.ident()?.to_string();
        let _span = span(
            "file.seal",
            vec![KeyValue::new("task.id", self.task_id.0), KeyValue::new("binlog.end_pos", end_pos as i64)],
        );
        let mut o = self.open.take().ok_or_else(|| WriterError::Invariant("seal without an open file".into()))?;
        if let Err(e) = self.fsync.file(&o.file, &o.path, Scope::Data) {
            cut_unsynced(&o, self.durable.as_ref(), &self.log);
            return Err(e);
        }
        o.dirty = false;
        o.summary.commit(end_pos, gtid.as_deref());
        let cp = Checkpoint { source_identity: identity.clone(), file: o.name.clone(), pos: end_pos, gtid_set: gtid };
        // A takeover re-fetching files behind the stored checkpoint seals them without moving it.
        let behind = self.below_floor(&cp);
        let stored = (!behind).then_some(&cp);
        self.store.seal_file(self.task_id, &identity, o.name.as_str(), end_pos, o.size, o.summary.summary(), stored)?;
        self.durable = Some(cp.clone());
        if !behind {
            self.floor = None;
            self.persisted = Some(cp);
        }
        self.publish_durable();
        self.last_persist = Instant::now();
        info!(self.log, "file sealed"; "file" => %o.name, "size" => o.size, "end_pos" => end_pos);
        // Never dropped (unlike progress reports): a sealed file enters the upload queue
        // only once the task hashes it.
        self.report.do_send(WriterEvent::FileSealed {
            identity,
            name: o.name.clone(),
            path: o.path.clone(),
            size: o.size,
        });
        Ok(())
    }

    /// The summary builder of an open file resumed at checkpoint `pos` (`len` local bytes):
    /// from its catalog row when that was saved with this checkpoint, else read from the file.
    fn resume_summary(&self, f: &mut File, rec: &FileRecord, pos: u64, len: u64) -> io::Result<SummaryBuilder> {
        f.seek(SeekFrom::Start(0))?;
        let reader = io::BufReader::new(Read::by_ref(f).take(len));
        if rec.summary.summary_pos == pos {
            let mut has_crc = true;
            summary::for_each_event(reader, |_, ev| {
                if let Ok(fde) = crate::binlog::event::Fde::parse(ev) {
                    has_crc = fde.checksum.has_crc();
                }
                false
            })?;
            return Ok(SummaryBuilder::resume(rec.summary.clone(), has_crc));
        }
        summary::rebuild(reader, rec.start_pos, rec.header_len, len, rec.summary.gtid_start.clone())
    }

    fn persist(&mut self) -> Result<(), WriterError> {
        if let Some(cp) = &self.durable
            && self.below_floor(cp)
        {
            // A takeover still re-fetching: the stored checkpoint is ahead; leave it.
            self.last_persist = Instant::now();
            return Ok(());
        }
        if self.durable.is_some() && self.durable != self.persisted {
            self.check_lease()?;
            let cp = self.durable.clone().expect("checked");
            let _span = span(
                "checkpoint.persist",
                vec![
                    KeyValue::new("task.id", self.task_id.0),
                    KeyValue::new("binlog.file", cp.file.to_string()),
                    KeyValue::new("binlog.pos", cp.pos as i64),
                ],
            );
            match &self.open {
                Some(o) if o.name == cp.file => {
                    let size = o.local_offset(cp.pos);
                    self.store.save_checkpoint_in_open_file(self.task_id, &cp, size, o.summary.summary())?;
                }
                _ => self.store.save_checkpoint(self.task_id, &cp)?,
            }
            self.persisted = Some(cp);
        }
        self.last_persist = Instant::now();
        Ok(())
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
fn read_tail(path: &Path, offset: u64) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let mut f = File::open(path)?;
    let mut head = [0u8; 4 + crate::binlog::event::HEADER_LEN];
    f.read_exact(&mut head)?;
    let size = u32::from_le_bytes([head[13], head[14], head[15], head[16]]) as usize;
    let mut fde = head[4..].to_vec();
    if size > fde.len() && size <= 1 << 20 {
        fde.resize(size, 0);
        f.read_exact(&mut fde[crate::binlog::event::HEADER_LEN..])?;
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

impl Handler<Prepare> for FileWriterActor {
    type Result = Result<Prepared, WriterError>;

    fn handle(&mut self, msg: Prepare, _: &mut SyncContext<Self>) -> Self::Result {
        self.prepare(msg)
    }
}

impl Handler<Recover> for FileWriterActor {
    type Result = Result<Option<Checkpoint>, WriterError>;

    fn handle(&mut self, msg: Recover, _: &mut SyncContext<Self>) -> Self::Result {
        self.load(msg.flavor)?;
        Ok(self.durable.clone())
    }
}

impl Handler<WriteBatch> for FileWriterActor {
    type Result = Result<Option<Checkpoint>, WriterError>;

    fn handle(&mut self, msg: WriteBatch, _: &mut SyncContext<Self>) -> Self::Result {
        self.write_batch(msg)
    }
}

impl Handler<PersistCheckpoint> for FileWriterActor {
    type Result = Result<(), WriterError>;

    fn handle(&mut self, _: PersistCheckpoint, _: &mut SyncContext<Self>) -> Self::Result {
        self.fsync.check()?;
        // The timer that sends this ignores the answer: say here when persisting fails (once per
        // distinct error), so a checkpoint that stops moving is never silent.
        let res = self.persist();
        match &res {
            Err(e) => {
                let msg = e.to_string();
                if self.persist_error.as_deref() != Some(msg.as_str()) {
                    warn!(self.log, "cannot persist the durable checkpoint (will retry)"; "error" => &msg);
                    self.persist_error = Some(msg);
                }
            }
            Ok(()) => {
                if self.persist_error.take().is_some() {
                    info!(self.log, "the durable checkpoint is persisted again");
                }
            }
        }
        res
    }
}

impl Handler<CloseFiles> for FileWriterActor {
    type Result = Result<Option<Checkpoint>, WriterError>;

    fn handle(&mut self, _: CloseFiles, _: &mut SyncContext<Self>) -> Self::Result {
        if self.check_lease().is_err() {
            // The lease is gone: nothing more is written or persisted under it.
            self.open = None;
            return Err(WriterError::LeaseExpired);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::UploadInfo;

    fn record(name: &str, size: u64, sealed: bool, upload: UploadInfo) -> FileRecord {
        FileRecord {
            task_id: 1,
            source_identity: "srv-1".into(),
            file_name: BinlogFileName::parse(name).expect("name"),
            state: if sealed { FileState::Sealed } else { FileState::Open },
            start_pos: 4,
            header_len: 4,
            end_pos: sealed.then_some(size),
            size,
            sha256: None,
            created_at: chrono::Utc::now(),
            sealed_at: None,
            upload,
            summary: Default::default(),
        }
    }

    /// Takes the writer's reports and drops them (the tests here look at the disk and the store).
    struct Probe;

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    impl Handler<WriterEvent> for Probe {
        type Result = ();

        fn handle(&mut self, _: WriterEvent, _: &mut Context<Self>) {}
    }

    #[test]
    fn a_checkpoint_inside_a_sealed_file_is_refused_and_the_file_is_left_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let dsn = crate::meta::MetaDsn::Sqlite(tmp.path().join("meta.db"));
        let store = Store::open(&dsn, 2, crate::clock::system()).unwrap();
        let task = store.create_task(&crate::domain::test_spec("sealed", "sealed")).unwrap();
        let sealed = FileRecord { task_id: task.id.0, ..record("bin.000001", 1000, true, UploadInfo::default()) };
        store.insert_file(&sealed).unwrap();
        // A damaged catalog: the checkpoint points into the middle of a sealed file.
        let cp = Checkpoint {
            source_identity: "srv-1".into(),
            file: BinlogFileName::parse("bin.000001").unwrap(),
            pos: 500,
            gtid_set: None,
        };
        store.save_checkpoint(task.id, &cp).unwrap();
        let dir = data_dir.join(task.id.0.to_string()).join("srv-1");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("bin.000001"), vec![7u8; 1000]).unwrap();

        actix::System::new().block_on(async {
            let log = Logger::root(slog::Discard, slog::o!());
            let report = Probe.start().recipient();
            let mut writer = FileWriterActor::new(task.id, &data_dir, store, log, report, Duration::from_secs(1));
            let err = writer
                .prepare(Prepare {
                    identity: SourceIdentity::from_stored("srv-1"),
                    gtid_mode: false,
                    flavor: Flavor::Mariadb,
                })
                .expect_err("a checkpoint inside a sealed file is refused");
            assert!(err.to_string().contains("is sealed at"), "{err}");
            assert_eq!(
                err.classify(),
                FailureClass::permanent(TaskErrorCode::LocalStorageError),
                "the task fails, loudly"
            );
        });
        assert_eq!(fs::metadata(dir.join("bin.000001")).unwrap().len(), 1000, "the sealed file is left whole");
    }
}
