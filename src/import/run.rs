//! Carrying out an import: copy each offered file into a staging folder while `verify` reads
//! it, ask `lineage::decide` where the files go, then, file by file, cut the copy to its last
//! complete transaction, fsync it, rename it into the task's folder, fsync the folder, and only
//! then catalogue it with the checkpoint after it (`Store::catalog_import`, one transaction).
//!
//! A kill at any point leaves each file whole and catalogued, or not catalogued: the staging
//! folder `{data_dir}/.import/{task_id}` outlives a killed import, and while it exists the files
//! of the task's folders the catalog does not name are that import's renamed copies
//! ([`leftovers`]); [`recover_interrupted`] removes them and the staging folder, at the start of
//! the next import of the task and when the server starts. One import of a task at a time: each
//! holds `{data_dir}/.import/{task_id}.lock` (an exclusive `flock`, gone with the process).
//! Blocking: call it from a thread that may block.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::binlog::event::{FLAGS_OFFSET, HEADER_LEN, flags};
use crate::binlog::name::BinlogFileName;
use crate::domain::TaskId;
use crate::import::lineage::{self, Offered, Refusal, TaskFacts};
use crate::import::verify::{self, Verified, VerifyError};
use crate::layout::DataLayout;
use crate::meta::{Checkpoint, FileRecord, FileState, SealAt, Store, StoreError};

/// One file offered: its name in the archive, the open file, and how errors name it (never a
/// server path when the request came over the API).
#[derive(Debug)]
pub struct Offer {
    pub name: BinlogFileName,
    pub file: File,
    pub shown: String,
}

/// What an import did, file by file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Report {
    pub task_id: i64,
    /// The source identity (folder) the files were catalogued under.
    pub source_identity: String,
    pub files: Vec<ImportedFile>,
    /// Where the task's checkpoint is now: the end of the last imported file.
    pub checkpoint_file: String,
    pub checkpoint_pos: u64,
    pub checkpoint_gtid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ImportedFile {
    pub file: String,
    /// SEALED, or OPEN: the task continues it from its source.
    pub state: String,
    /// Bytes kept.
    pub size: u64,
    /// Why the tail of the file was left out (a copy taken while the source wrote it).
    pub truncated: Option<String>,
    /// The gap before this file (the recovery window shows a break there).
    pub gap: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file failed verification: refused whole, nothing imported.
    #[error("{file} refused {error}")]
    Refused { file: String, error: VerifyError },
    #[error(transparent)]
    Lineage(#[from] Refusal),
    #[error("no task {0}")]
    NoTask(TaskId),
    #[error("task {0} is running: stop it before importing (an archive-only task takes imports at any time)")]
    Active(TaskId),
    #[error("another import into task {0} is running")]
    Busy(TaskId),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: String, source: io::Error },
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ImportError {
    fn from(e: StoreError) -> Self {
        ImportError::Store(e)
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ImportError + 'a {
    move |source| ImportError::Io { what, path: path.display().to_string(), source }
}

/// The files an interrupted import left in the task's folders: while its staging folder exists
/// (an import removes it when it ends, refused or not), every file on disk (`(source folder,
/// name)`) the catalog does not name is a copy renamed in before its catalogue row was
/// written. Without a staging folder, nothing: other stray files are `doctor`'s.
pub fn leftovers<'a>(
    staging_exists: bool,
    catalogued: &[FileRecord],
    on_disk: &'a [(String, String)],
) -> Vec<&'a (String, String)> {
    if !staging_exists {
        return Vec::new();
    }
    on_disk
        .iter()
        .filter(|(dir, name)| {
            !catalogued.iter().any(|r| r.source_identity == *dir && r.file_name.as_str() == name.as_str())
        })
        .collect()
}

/// The exclusive hold on a task's imports (see the module doc); `None` when another import of
/// the task holds it.
pub fn try_lock(data_dir: &Path, id: TaskId) -> Result<Option<File>, ImportError> {
    let path = DataLayout::new(data_dir).import_lock(id);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err("create", parent))?;
    }
    let f = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err("open", &path))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(io_err("lock", &path)(e)),
    }
}

/// Undoes what a killed import of task `id` left (see [`leftovers`]): its renamed, uncatalogued
/// copies, then its staging folder. The caller holds the task's import lock. Returns the files
/// removed, as `source/name`.
pub fn recover_interrupted(store: &Store, data_dir: &Path, id: TaskId) -> Result<Vec<String>, ImportError> {
    let layout = DataLayout::new(data_dir);
    let staging = layout.import_staging(id);
    if !staging.exists() {
        return Ok(Vec::new());
    }
    let task_dir = layout.task_dir(id);
    let mut on_disk = Vec::new();
    if task_dir.is_dir() {
        for dir in fs::read_dir(&task_dir).map_err(io_err("read", &task_dir))? {
            let dir = dir.map_err(io_err("read", &task_dir))?;
            if !dir.file_type().map_err(io_err("read", &task_dir))?.is_dir() {
                continue;
            }
            let Some(identity) = dir.file_name().to_str().map(str::to_string) else { continue };
            let path = dir.path();
            for f in fs::read_dir(&path).map_err(io_err("read", &path))? {
                let f = f.map_err(io_err("read", &path))?;
                if f.file_type().map_err(io_err("read", &path))?.is_file()
                    && let Some(name) = f.file_name().to_str()
                {
                    on_disk.push((identity.clone(), name.to_string()));
                }
            }
        }
    }
    let files = store.list_files(id)?;
    let mut removed = Vec::new();
    for (identity, name) in leftovers(true, &files, &on_disk) {
        let p = layout.binlog_file(id, identity, name);
        fs::remove_file(&p).map_err(io_err("remove", &p))?;
        fsync_dir(&layout.source_dir(id, identity))?;
        removed.push(format!("{identity}/{name}"));
    }
    fs::remove_dir_all(&staging).map_err(io_err("clean", &staging))?;
    Ok(removed)
}

/// The binlog files of a folder: regular files named `base.NNNNNN` (not the `.index` or
/// MariaDB's `.state`), in name order.
pub fn binlog_files_in(dir: &Path) -> io::Result<Vec<(BinlogFileName, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().and_then(|n| BinlogFileName::parse(n).ok()) else { continue };
        if name.split().1.is_some() {
            out.push((name, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads `inner` and writes everything read to `copy`.
struct Tee<'a, R> {
    inner: R,
    copy: &'a mut File,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn fsync_dir(dir: &Path) -> Result<(), ImportError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync", dir))
}

/// Imports `offers` into task `id`.
pub fn import(store: &Store, data_dir: &Path, id: TaskId, offers: Vec<Offer>) -> Result<Report, ImportError> {
    import_from(store, data_dir, id, offers, None)
}

/// Imports `offers` into task `id`; MySQL files that do not name their server (no GTID
/// transaction of their own) are taken as `source_uuid`'s (`import --source-uuid`).
pub fn import_from(
    store: &Store,
    data_dir: &Path,
    id: TaskId,
    offers: Vec<Offer>,
    source_uuid: Option<&str>,
) -> Result<Report, ImportError> {
    let task = match store.get_task(id) {
        Ok(t) => t,
        Err(StoreError::NotFound) => return Err(ImportError::NoTask(id)),
        Err(e) => return Err(e.into()),
    };
    let archive_only = task.spec.start.is_archive_only();
    if task.state.is_active() && !archive_only {
        return Err(ImportError::Active(id));
    }
    let Some(_lock) = try_lock(data_dir, id)? else { return Err(ImportError::Busy(id)) };
    recover_interrupted(store, data_dir, id)?;
    let layout = DataLayout::new(data_dir);
    let staging = layout.import_staging(id);
    fs::create_dir_all(&staging).map_err(io_err("create", &staging))?;
    let task_facts = (archive_only, task.spec.source.flavor, source_uuid);
    let result = stage_and_place(store, &layout, id, task_facts, offers);
    let _ = fs::remove_dir_all(&staging);
    result
}

fn stage_and_place(
    store: &Store,
    layout: &DataLayout,
    id: TaskId,
    (archive_only, flavor, declared_uuid): (bool, crate::binlog::Flavor, Option<&str>),
    offers: Vec<Offer>,
) -> Result<Report, ImportError> {
    // One read of each source: verification runs on the bytes as they are copied, so what is
    // placed is exactly what was verified, even if the source file changes meanwhile.
    let mut staged: Vec<(BinlogFileName, Verified, PathBuf)> = Vec::with_capacity(offers.len());
    for offer in offers {
        let path = layout.import_staged(id, offer.name.as_str());
        let mut copy = OpenOptions::new().create_new(true).write(true).open(&path).map_err(io_err("create", &path))?;
        let tee = Tee { inner: io::BufReader::new(offer.file), copy: &mut copy };
        let verdict = verify::verify(offer.name.clone(), tee).map_err(|e| ImportError::Io {
            what: "read",
            path: offer.shown.clone(),
            source: e,
        })?;
        match verdict {
            Ok(v) => staged.push((offer.name, v, path)),
            Err(error) => return Err(ImportError::Refused { file: offer.shown, error }),
        }
    }
    let files = store.list_files(id)?;
    let checkpoint = store.get_checkpoint(id)?.map(|(c, _)| c);
    let offered: Vec<Offered<'_>> = staged.iter().map(|(name, file, _)| Offered { name, file }).collect();
    let facts = TaskFacts { flavor, archive_only, files: &files, checkpoint: checkpoint.as_ref(), declared_uuid };
    let plan = lineage::decide(facts, &offered)?;

    let task_dir = layout.task_dir(id);
    let dir = layout.source_dir(id, &plan.identity);
    fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    fsync_dir(&task_dir)?;
    fsync_dir(layout.root())?;
    let mut report = Report {
        task_id: id.0,
        source_identity: plan.identity.clone(),
        files: Vec::new(),
        checkpoint_file: plan.checkpoint.file.to_string(),
        checkpoint_pos: plan.checkpoint.pos,
        checkpoint_gtid: plan.checkpoint.gtid_set.clone(),
    };
    for (i, placed) in plan.files.iter().enumerate() {
        let from = layout.import_staged(id, placed.name.as_str());
        let sha256 = finish_copy(&from, placed.size)?;
        let to = layout.binlog_file(id, &plan.identity, placed.name.as_str());
        fs::rename(&from, &to).map_err(io_err("rename", &to))?;
        fsync_dir(&dir)?;
        #[cfg(debug_assertions)]
        test_hold_after_rename(placed.name.as_str());
        let now = store.clock().now();
        let sealed = placed.state == FileState::Sealed;
        let rec = FileRecord {
            task_id: id.0,
            source_identity: plan.identity.clone(),
            file_name: placed.name.clone(),
            state: placed.state,
            start_pos: 4,
            header_len: 4,
            end_pos: sealed.then_some(placed.size),
            size: placed.size,
            sha256: sealed.then_some(sha256),
            created_at: now,
            sealed_at: sealed.then_some(now),
            upload: Default::default(),
            summary: placed.summary.clone(),
        };
        let cp = Checkpoint {
            source_identity: plan.identity.clone(),
            file: placed.name.clone(),
            pos: placed.size,
            gtid_set: placed.summary.gtid_end.clone(),
        };
        let seal = plan.seal_open.as_ref().filter(|_| i == 0).map(|s| SealAt {
            identity: &plan.identity,
            name: s.name.as_str(),
            end_pos: s.end_pos,
            size: s.size,
        });
        if let Err(e) = store.catalog_import(id, &rec, seal, &cp, archive_only) {
            // Not catalogued: the copy must not stay (reconciliation would remove it anyway).
            let _ = fs::remove_file(&to);
            return Err(match e {
                StoreError::Conflict(_) => ImportError::Active(id),
                e => e.into(),
            });
        }
        report.files.push(ImportedFile {
            file: placed.name.to_string(),
            state: placed.state.as_str().to_string(),
            size: placed.size,
            truncated: placed.truncated.clone(),
            gap: placed.gap.clone(),
        });
    }
    Ok(report)
}

/// Debug builds only (never in a release binary): `BINLOG_TEST_IMPORT_HOLD_AFTER_RENAME=NAME`
/// stops the import for an hour once file NAME is renamed into the task's folder and before its
/// catalogue row is written, so integration tests can kill it in that window.
#[cfg(debug_assertions)]
fn test_hold_after_rename(name: &str) {
    if std::env::var("BINLOG_TEST_IMPORT_HOLD_AFTER_RENAME").is_ok_and(|n| n == name) {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Cuts a staged copy to `size` (its last complete transaction), clears the in-use flag of its
/// format description as a source does when it sends or closes a file (so the copy equals one
/// fetched from the source; the FDE's CRC32 is computed without the flag), fsyncs it, and
/// returns its sha256.
fn finish_copy(path: &Path, size: u64) -> Result<String, ImportError> {
    let mut f = OpenOptions::new().read(true).write(true).open(path).map_err(io_err("open", path))?;
    f.set_len(size).map_err(io_err("truncate", path))?;
    let at = 4 + FLAGS_OFFSET as u64;
    if size >= 4 + HEADER_LEN as u64 {
        let mut b = [0u8; 2];
        f.seek(SeekFrom::Start(at)).and_then(|_| f.read_exact(&mut b)).map_err(io_err("read", path))?;
        let v = u16::from_le_bytes(b);
        if v & flags::BINLOG_IN_USE != 0 {
            let cleared = (v & !flags::BINLOG_IN_USE).to_le_bytes();
            f.seek(SeekFrom::Start(at)).and_then(|_| f.write_all(&cleared)).map_err(io_err("write", path))?;
        }
    }
    f.sync_all().map_err(io_err("fsync", path))?;
    f.seek(SeekFrom::Start(0)).map_err(io_err("read", path))?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h).map_err(io_err("read", path))?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;
