//! `binlog-server doctor`: checks a data directory against its metadata and changes nothing;
//! `doctor --repair` ([`repair`]) changes what the findings allow, and only that.
//!
//! [`diagnose`] is the decision (catalog rows + checkpoint + what is on disk -> findings), a pure
//! function; [`gather`] only reads the catalog and the task directory (sizes, sha256 of the
//! files the catalog says are sealed) to feed it.

pub mod repair;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::TaskId;
use crate::meta::{CatalogReader, StoreError};
use crate::meta::{Checkpoint, FileRecord, FileState};

/// What the catalog says about one local file, as far as the doctor needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogFile {
    /// Path inside the task directory: `{source_identity}/{file_name}`.
    pub rel_path: String,
    pub source_identity: String,
    pub file_name: String,
    pub state: FileState,
    pub size: u64,
    pub sha256: Option<String>,
    /// Retention removed the local copy: it is expected to be absent.
    pub local_deleted: bool,
    pub start_pos: u64,
    pub header_len: u64,
    /// The bucket holds a verified copy ([`FileRecord::held_in_bucket`]).
    pub in_bucket: bool,
    /// Where the bucket copy is, once uploaded.
    pub object_key: Option<String>,
}

impl CatalogFile {
    pub fn from_record(r: &FileRecord) -> CatalogFile {
        CatalogFile {
            rel_path: format!("{}/{}", r.source_identity, r.file_name.as_str()),
            source_identity: r.source_identity.clone(),
            file_name: r.file_name.as_str().to_string(),
            state: r.state,
            size: r.size,
            sha256: r.sha256.clone(),
            local_deleted: r.upload.local_deleted_at.is_some(),
            start_pos: r.start_pos,
            header_len: r.header_len,
            in_bucket: r.held_in_bucket(),
            object_key: r.upload.object_key.clone(),
        }
    }
}

/// One entry found in a task directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFile {
    pub size: u64,
    /// A regular file (not a directory, symlink, socket, ...).
    pub regular: bool,
    /// Computed only for files the catalog says are sealed.
    pub sha256: Option<String>,
}

/// What is wrong with one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// A sealed file the catalog names (and retention did not remove) is absent.
    SealedFileMissing,
    SizeMismatch {
        catalog: u64,
        disk: u64,
    },
    Sha256Mismatch {
        catalog: String,
        disk: String,
    },
    /// The catalog names it but something else than a regular file is there.
    NotARegularFile,
    /// The open file the checkpoint points into is absent.
    OpenFileMissing,
    /// The open file is shorter than the checkpoint: fsynced bytes were lost.
    OpenFileShort {
        checkpoint_offset: u64,
        disk: u64,
    },
    /// A file in the task directory that the catalog does not name.
    Orphan {
        size: u64,
    },
    /// A directory in the data directory named like a task the catalog does not hold.
    OrphanTaskDirectory,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::SealedFileMissing => write!(f, "sealed file missing"),
            Problem::SizeMismatch { catalog, disk } => {
                write!(f, "size mismatch: catalog {catalog} bytes, disk {disk} bytes")
            }
            Problem::Sha256Mismatch { catalog, disk } => {
                write!(f, "sha256 mismatch: catalog {catalog}, disk {disk}")
            }
            Problem::NotARegularFile => write!(f, "not a regular file"),
            Problem::OpenFileMissing => write!(f, "open file missing (the checkpoint points into it)"),
            Problem::OpenFileShort { checkpoint_offset, disk } => write!(
                f,
                "open file shorter than the checkpoint: checkpoint at byte {checkpoint_offset}, disk {disk} bytes"
            ),
            Problem::Orphan { size } => write!(f, "orphan file ({size} bytes) not named by the catalog"),
            Problem::OrphanTaskDirectory => write!(f, "orphan task directory: the catalog has no such task"),
        }
    }
}

/// One problem, naming the task and the file (relative to the task directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub task_id: i64,
    pub file: String,
    #[serde(flatten)]
    pub problem: Problem,
}

/// The decision: every catalog row and every file on disk, compared. Sealed files: present,
/// regular, size and (when the catalog has one) sha256 equal. Open files: present and at least as
/// long as the checkpoint's offset in them (the catalog size when the checkpoint is elsewhere).
/// Anything on disk that no row names is an orphan. Findings come in path order.
pub fn diagnose(
    task_id: TaskId,
    catalog: &[CatalogFile],
    checkpoint: Option<&Checkpoint>,
    disk: &BTreeMap<String, DiskFile>,
) -> Vec<Finding> {
    let mut found: Vec<Finding> = Vec::new();
    let mut push = |file: &str, problem: Problem| {
        found.push(Finding { task_id: task_id.0, file: file.to_string(), problem });
    };
    let named: BTreeSet<&str> = catalog.iter().map(|c| c.rel_path.as_str()).collect();
    for c in catalog {
        let on_disk = disk.get(&c.rel_path);
        match (c.state, on_disk) {
            (_, Some(d)) if !d.regular => push(&c.rel_path, Problem::NotARegularFile),
            (FileState::Sealed, None) if c.local_deleted => {}
            (FileState::Sealed, None) => push(&c.rel_path, Problem::SealedFileMissing),
            (FileState::Sealed, Some(d)) => {
                if d.size != c.size {
                    push(&c.rel_path, Problem::SizeMismatch { catalog: c.size, disk: d.size });
                } else if let (Some(want), Some(got)) = (&c.sha256, &d.sha256)
                    && !want.eq_ignore_ascii_case(got)
                {
                    push(&c.rel_path, Problem::Sha256Mismatch { catalog: want.clone(), disk: got.clone() });
                }
            }
            (FileState::Open, d) => {
                let need = durable_len(c, checkpoint);
                match d {
                    None => push(&c.rel_path, Problem::OpenFileMissing),
                    Some(d) if d.size < need => {
                        push(&c.rel_path, Problem::OpenFileShort { checkpoint_offset: need, disk: d.size })
                    }
                    Some(_) => {}
                }
            }
        }
    }
    for (path, d) in disk {
        if !named.contains(path.as_str()) {
            push(path, Problem::Orphan { size: d.size });
        }
    }
    found.sort_by(|a, b| a.file.cmp(&b.file));
    found
}

/// How long an open file must at least be: the checkpoint's offset in it when the checkpoint is
/// there, else the catalog's size.
fn durable_len(c: &CatalogFile, checkpoint: Option<&Checkpoint>) -> u64 {
    match checkpoint {
        Some(cp) if cp.source_identity == c.source_identity && cp.file.as_str() == c.file_name => {
            crate::binlog::local_offset(c.start_pos, c.header_len, cp.pos)
        }
        _ => c.size,
    }
}

/// An open file holding bytes past its durable length (not a problem: the server cuts them
/// when it resumes). `doctor --repair` says it leaves them to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenTail {
    pub task_id: i64,
    pub file: String,
    pub durable_len: u64,
    pub disk: u64,
}

/// Every open file longer than its durable length, in path order.
pub fn open_tails(
    task_id: TaskId,
    catalog: &[CatalogFile],
    checkpoint: Option<&Checkpoint>,
    disk: &BTreeMap<String, DiskFile>,
) -> Vec<OpenTail> {
    let mut tails: Vec<OpenTail> = catalog
        .iter()
        .filter(|c| c.state == FileState::Open)
        .filter_map(|c| {
            let d = disk.get(&c.rel_path).filter(|d| d.regular)?;
            let need = durable_len(c, checkpoint);
            (d.size > need).then(|| OpenTail {
                task_id: task_id.0,
                file: c.rel_path.clone(),
                durable_len: need,
                disk: d.size,
            })
        })
        .collect();
    tails.sort_by(|a, b| a.file.cmp(&b.file));
    tails
}

/// Directories of the data directory named like a task id (digits only) that is not in the
/// catalog. Everything else there (`meta.db`, `.stale`, `.deleted`, ...) is not a task's.
pub fn orphan_task_dirs(tasks: &[TaskId], dir_names: &[String]) -> Vec<Finding> {
    let mut found: Vec<Finding> = dir_names
        .iter()
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|n| n.parse::<i64>().ok().map(|id| (n, id)))
        .filter(|(_, id)| !tasks.contains(&TaskId(*id)))
        .map(|(n, id)| Finding { task_id: id, file: format!("{n}/"), problem: Problem::OrphanTaskDirectory })
        .collect();
    found.sort_by_key(|f| f.task_id);
    found
}

/// Names of the directories directly in `data_dir` (none when it does not exist).
pub fn data_dir_subdirs(data_dir: &Path) -> Result<Vec<String>, DoctorError> {
    if !data_dir.exists() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(data_dir).map_err(io_err(data_dir))? {
        let entry = entry.map_err(io_err(data_dir))?;
        let meta = std::fs::symlink_metadata(entry.path()).map_err(io_err(&entry.path()))?;
        if meta.is_dir() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names)
}

/// The result of checking one task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    pub task_id: i64,
    /// Files the catalog names for this task.
    pub files_checked: usize,
    pub findings: Vec<Finding>,
}

#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DoctorError + '_ {
    move |source| DoctorError::Io { path: path.to_path_buf(), source }
}

/// What one task's check starts from: its catalog rows, its checkpoint, its directory.
#[derive(Debug, Clone)]
pub struct TaskFacts {
    pub task_id: TaskId,
    pub catalog: Vec<CatalogFile>,
    pub checkpoint: Option<Checkpoint>,
    pub disk: BTreeMap<String, DiskFile>,
}

impl TaskFacts {
    pub fn report(&self) -> TaskReport {
        TaskReport {
            task_id: self.task_id.0,
            files_checked: self.catalog.len(),
            findings: diagnose(self.task_id, &self.catalog, self.checkpoint.as_ref(), &self.disk),
        }
    }
}

/// Reads the facts for one task (read-only): the catalog first, the directory after.
pub fn gather(catalog: &mut CatalogReader, data_dir: &Path, id: TaskId) -> Result<TaskFacts, DoctorError> {
    let records = catalog.list_files(id)?;
    let checkpoint = catalog.get_checkpoint(id)?;
    let catalog: Vec<CatalogFile> = records.iter().map(CatalogFile::from_record).collect();
    let sealed: BTreeSet<&str> =
        catalog.iter().filter(|c| c.state == FileState::Sealed).map(|c| c.rel_path.as_str()).collect();
    let task_dir = crate::layout::DataLayout::new(data_dir).task_dir(id);
    let mut disk = BTreeMap::new();
    if task_dir.exists() {
        walk(&task_dir, "", &sealed, &mut disk)?;
    }
    Ok(TaskFacts { task_id: id, catalog, checkpoint, disk })
}

/// Gathers the facts for one task (read-only) and diagnoses them.
pub fn check_task(catalog: &mut CatalogReader, data_dir: &Path, id: TaskId) -> Result<TaskReport, DoctorError> {
    Ok(gather(catalog, data_dir, id)?.report())
}

fn walk(
    dir: &Path,
    prefix: &str,
    sealed: &BTreeSet<&str>,
    out: &mut BTreeMap<String, DiskFile>,
) -> Result<(), DoctorError> {
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // The cluster's lease marker is the server's own bookkeeping, never the catalog's.
        if prefix.is_empty() && name == crate::cluster::LEASE_MARKER {
            continue;
        }
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        // symlink_metadata: a link is reported as what it is, never followed.
        let meta = std::fs::symlink_metadata(&path).map_err(io_err(&path))?;
        if meta.is_dir() {
            walk(&path, &rel, sealed, out)?;
            continue;
        }
        let regular = meta.is_file();
        let sha256 = if regular && sealed.contains(rel.as_str()) { Some(sha256_of(&path)?) } else { None };
        out.insert(rel, DiskFile { size: meta.len(), regular, sha256 });
    }
    Ok(())
}

pub(crate) fn sha256_of(path: &Path) -> Result<String, DoctorError> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::name::BinlogFileName;

    fn row(name: &str, state: FileState, size: u64, sha: Option<&str>) -> CatalogFile {
        CatalogFile {
            rel_path: format!("src-1/{name}"),
            source_identity: "src-1".into(),
            file_name: name.into(),
            state,
            size,
            sha256: sha.map(str::to_string),
            local_deleted: false,
            start_pos: 4,
            header_len: 4,
            in_bucket: false,
            object_key: None,
        }
    }

    fn disk(entries: &[(&str, u64, Option<&str>)]) -> BTreeMap<String, DiskFile> {
        entries
            .iter()
            .map(|(p, size, sha)| {
                (p.to_string(), DiskFile { size: *size, regular: true, sha256: sha.map(str::to_string) })
            })
            .collect()
    }

    fn cp(name: &str, pos: u64) -> Checkpoint {
        Checkpoint { source_identity: "src-1".into(), file: BinlogFileName::parse(name).unwrap(), pos, gtid_set: None }
    }

    #[test]
    fn diagnose_table() {
        let sealed = row("bin.000001", FileState::Sealed, 100, Some("aa"));
        let open = row("bin.000002", FileState::Open, 50, None);
        let mut gone = row("bin.000000", FileState::Sealed, 10, Some("bb"));
        gone.local_deleted = true;
        let mut joined = row("bin.000002", FileState::Open, 50, None);
        joined.start_pos = 1000;
        joined.header_len = 300;
        let f = |file: &str, problem: Problem| Finding { task_id: 7, file: file.into(), problem };
        type Case<'a> = (&'a str, Vec<CatalogFile>, Option<Checkpoint>, BTreeMap<String, DiskFile>, Vec<Finding>);
        let cases: Vec<Case> = vec![
            (
                "all well",
                vec![sealed.clone(), open.clone()],
                Some(cp("bin.000002", 40)),
                disk(&[("src-1/bin.000001", 100, Some("aa")), ("src-1/bin.000002", 60, None)]),
                vec![],
            ),
            ("empty", vec![], None, disk(&[]), vec![]),
            (
                "sha256 compared case-insensitively",
                vec![sealed.clone()],
                None,
                disk(&[("src-1/bin.000001", 100, Some("AA"))]),
                vec![],
            ),
            (
                "sha256 mismatch",
                vec![sealed.clone()],
                None,
                disk(&[("src-1/bin.000001", 100, Some("ab"))]),
                vec![f("src-1/bin.000001", Problem::Sha256Mismatch { catalog: "aa".into(), disk: "ab".into() })],
            ),
            (
                "size mismatch wins over sha256",
                vec![sealed.clone()],
                None,
                disk(&[("src-1/bin.000001", 99, Some("ab"))]),
                vec![f("src-1/bin.000001", Problem::SizeMismatch { catalog: 100, disk: 99 })],
            ),
            (
                "no sha256 in the catalog: size only",
                vec![row("bin.000001", FileState::Sealed, 100, None)],
                None,
                disk(&[("src-1/bin.000001", 100, Some("zz"))]),
                vec![],
            ),
            (
                "sealed file missing",
                vec![sealed.clone()],
                None,
                disk(&[]),
                vec![f("src-1/bin.000001", Problem::SealedFileMissing)],
            ),
            ("removed by retention: absence is fine", vec![gone.clone()], None, disk(&[]), vec![]),
            (
                "open file missing",
                vec![open.clone()],
                Some(cp("bin.000002", 40)),
                disk(&[]),
                vec![f("src-1/bin.000002", Problem::OpenFileMissing)],
            ),
            (
                "open file shorter than the checkpoint",
                vec![open.clone()],
                Some(cp("bin.000002", 40)),
                disk(&[("src-1/bin.000002", 39, None)]),
                vec![f("src-1/bin.000002", Problem::OpenFileShort { checkpoint_offset: 40, disk: 39 })],
            ),
            (
                "open file exactly at the checkpoint",
                vec![open.clone()],
                Some(cp("bin.000002", 40)),
                disk(&[("src-1/bin.000002", 40, None)]),
                vec![],
            ),
            (
                "joined mid-way: the checkpoint maps to a local offset",
                vec![joined.clone()],
                Some(cp("bin.000002", 1100)),
                disk(&[("src-1/bin.000002", 399, None)]),
                vec![f("src-1/bin.000002", Problem::OpenFileShort { checkpoint_offset: 400, disk: 399 })],
            ),
            (
                "checkpoint elsewhere: the catalog size is the floor",
                vec![open.clone()],
                Some(cp("bin.000001", 4000)),
                disk(&[("src-1/bin.000002", 49, None)]),
                vec![f("src-1/bin.000002", Problem::OpenFileShort { checkpoint_offset: 50, disk: 49 })],
            ),
            (
                "orphans, in path order",
                vec![sealed.clone()],
                None,
                disk(&[("src-1/bin.000001", 100, Some("aa")), ("src-1/zz", 3, None), ("other/bin.000001", 5, None)]),
                vec![f("other/bin.000001", Problem::Orphan { size: 5 }), f("src-1/zz", Problem::Orphan { size: 3 })],
            ),
        ];
        for (what, catalog, checkpoint, on_disk, want) in cases {
            assert_eq!(diagnose(TaskId(7), &catalog, checkpoint.as_ref(), &on_disk), want, "{what}");
        }
        let mut odd = disk(&[("src-1/bin.000001", 0, None)]);
        odd.get_mut("src-1/bin.000001").unwrap().regular = false;
        assert_eq!(
            diagnose(TaskId(7), &[sealed], None, &odd),
            vec![f("src-1/bin.000001", Problem::NotARegularFile)],
            "a symlink or directory where a file should be"
        );
    }

    #[test]
    fn open_tails_table() {
        let open = row("bin.000002", FileState::Open, 50, None);
        let sealed = row("bin.000001", FileState::Sealed, 100, Some("aa"));
        let tail =
            |durable_len, disk| vec![OpenTail { task_id: 7, file: "src-1/bin.000002".into(), durable_len, disk }];
        type Case<'a> = (&'a str, Option<Checkpoint>, BTreeMap<String, DiskFile>, Vec<OpenTail>);
        let cases: Vec<Case> = vec![
            (
                "bytes past the checkpoint",
                Some(cp("bin.000002", 40)),
                disk(&[("src-1/bin.000002", 60, None)]),
                tail(40, 60),
            ),
            ("exactly at the checkpoint", Some(cp("bin.000002", 40)), disk(&[("src-1/bin.000002", 40, None)]), vec![]),
            (
                "shorter: a finding, not a tail",
                Some(cp("bin.000002", 40)),
                disk(&[("src-1/bin.000002", 30, None)]),
                vec![],
            ),
            (
                "checkpoint elsewhere: the catalog size",
                Some(cp("bin.000001", 90)),
                disk(&[("src-1/bin.000002", 51, None)]),
                tail(50, 51),
            ),
            ("missing: no tail", None, disk(&[]), vec![]),
            ("sealed files never have one", None, disk(&[("src-1/bin.000001", 120, Some("aa"))]), vec![]),
        ];
        for (what, checkpoint, on_disk, want) in cases {
            assert_eq!(
                open_tails(TaskId(7), &[sealed.clone(), open.clone()], checkpoint.as_ref(), &on_disk),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn orphan_task_dirs_table() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let orphan = |id: i64| Finding { task_id: id, file: format!("{id}/"), problem: Problem::OrphanTaskDirectory };
        type Case<'a> = (&'a str, Vec<TaskId>, Vec<String>, Vec<Finding>);
        let cases: Vec<Case> = vec![
            ("every dir is a task", vec![TaskId(1), TaskId(2)], names(&["1", "2"]), vec![]),
            ("not task-like names are ignored", vec![], names(&[".stale", ".deleted", "x1", "-1", "+1", ""]), vec![]),
            ("unknown ids, in id order", vec![TaskId(1)], names(&["10", "1", "9"]), vec![orphan(9), orphan(10)]),
            ("a task without a directory is fine", vec![TaskId(5)], names(&[]), vec![]),
        ];
        for (what, tasks, dirs, want) in cases {
            assert_eq!(orphan_task_dirs(&tasks, &dirs), want, "{what}");
        }
    }

    #[test]
    fn gather_reads_sizes_and_hashes_and_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("src-1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("bin.000001"), b"abc").unwrap();
        std::fs::write(dir.join("stray"), b"12345").unwrap();
        std::fs::write(tmp.path().join(crate::cluster::LEASE_MARKER), b"node-1 3\n").unwrap();
        let mut out = BTreeMap::new();
        let sealed: BTreeSet<&str> = ["src-1/bin.000001"].into_iter().collect();
        walk(tmp.path(), "", &sealed, &mut out).unwrap();
        assert_eq!(
            out["src-1/bin.000001"].sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!((out["src-1/stray"].size, out["src-1/stray"].sha256.clone()), (5, None));
        assert_eq!(out.len(), 2, "the cluster's lease marker is not an orphan: {out:?}");
    }
}
