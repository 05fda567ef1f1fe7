//! `DataLayout`: every path under `data_dir`, spelled once.
//!
//! ```text
//! {data_dir}/meta.db                        embedded SQLite metadata (when meta_dsn is empty)
//! {data_dir}/secrets.key                    generated secrets key (meta::cipher)
//! {data_dir}/node_id                        generated cluster node id (cluster::resolve_node_id)
//! {data_dir}/{task}/                        a task's files
//! {data_dir}/{task}/.lease                  cluster mode: the lease its files were written under
//! {data_dir}/{task}/{source}/               the files of one source of a task
//! {data_dir}/{task}/{source}/{file}         one binlog file (FileRecord::local_path)
//! {data_dir}/.stale/{task}-{time}           what a takeover or a task's start set aside (kept, never read)
//! {data_dir}/.stale/doctor-{time}/          what `doctor --repair` set aside
//! {data_dir}/.deleted/{task}-{time}         a deleted task's files, unless purged
//! {data_dir}/.import/{task}                 staging of `binlog-server import`
//! {data_dir}/.import/{task}/{file}          one staged (copied, being verified) file
//! {data_dir}/.import/{task}.lock            held (flock) by the task's one running import
//! {data_dir}/.relay-fetch/                  the relay's downloads from the bucket (unlinked once open)
//! ```
//!
//! It only computes paths: it never touches the file system.

use std::path::{Path, PathBuf};

use crate::domain::TaskId;

/// The embedded SQLite file.
pub const META_DB: &str = "meta.db";
/// The file in `data_dir` that keeps a generated secrets key (`meta::cipher`).
pub const GENERATED_KEY_FILE: &str = "secrets.key";
/// The file in `data_dir` that keeps a generated node id.
pub const NODE_ID_FILE: &str = "node_id";
/// The file in a task's directory naming the lease (`node epoch`) its files were written under.
pub const LEASE_MARKER: &str = ".lease";
/// Where a takeover sets aside the copies it does not trust.
pub const STALE_DIR: &str = ".stale";
/// Where a deleted task's files go (unless purged).
pub const DELETED_DIR: &str = ".deleted";
/// Where `binlog-server import` stages files.
pub const IMPORT_DIR: &str = ".import";

/// The paths under one `data_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataLayout {
    root: PathBuf,
}

impl DataLayout {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        DataLayout { root: data_dir.into() }
    }

    /// `data_dir` itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn meta_db(&self) -> PathBuf {
        self.root.join(META_DB)
    }

    pub fn secrets_key(&self) -> PathBuf {
        self.root.join(GENERATED_KEY_FILE)
    }

    pub fn node_id_file(&self) -> PathBuf {
        self.root.join(NODE_ID_FILE)
    }

    /// A task's directory: `{data_dir}/{task}`.
    pub fn task_dir(&self, id: TaskId) -> PathBuf {
        self.root.join(id.0.to_string())
    }

    /// A task's lease marker: `{data_dir}/{task}/.lease`.
    pub fn lease_marker(&self, id: TaskId) -> PathBuf {
        self.task_dir(id).join(LEASE_MARKER)
    }

    /// Where a new lease marker is written before it is renamed over the old one:
    /// `{data_dir}/{task}/.lease.tmp`.
    pub fn lease_marker_tmp(&self, id: TaskId) -> PathBuf {
        self.task_dir(id).join(format!("{LEASE_MARKER}.tmp"))
    }

    /// The folder of one source's files: `{data_dir}/{task}/{source_identity}`.
    pub fn source_dir(&self, id: TaskId, source_identity: &str) -> PathBuf {
        Self::source_dir_in(&self.task_dir(id), source_identity)
    }

    /// [`source_dir`](Self::source_dir) for code that holds a task's directory only (the
    /// writer, a relay dump): `{task_dir}/{source_identity}`.
    pub fn source_dir_in(task_dir: &Path, source_identity: &str) -> PathBuf {
        task_dir.join(source_identity)
    }

    /// [`binlog_file`](Self::binlog_file) for code that holds a task's directory only:
    /// `{task_dir}/{source_identity}/{file_name}`.
    pub fn binlog_file_in(task_dir: &Path, source_identity: &str, file_name: &str) -> PathBuf {
        Self::source_dir_in(task_dir, source_identity).join(file_name)
    }

    /// A path inside a task's directory given relative to it (`{source}/{file}`, as `doctor`
    /// reports findings): `{data_dir}/{task}/{rel}`.
    pub fn task_path(&self, id: TaskId, rel: &str) -> PathBuf {
        self.task_dir(id).join(rel)
    }

    /// A top-level entry of `data_dir` by the name it was found under (`doctor`'s orphan task
    /// directories, whose names need not be a task id's canonical spelling, e.g. `007`).
    pub fn entry(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// One binlog file: `{data_dir}/{task}/{source_identity}/{file_name}`.
    pub fn binlog_file(&self, id: TaskId, source_identity: &str, file_name: &str) -> PathBuf {
        Self::binlog_file_in(&self.task_dir(id), source_identity, file_name)
    }

    pub fn stale_dir(&self) -> PathBuf {
        self.root.join(STALE_DIR)
    }

    /// Where a task's untrusted copies go, stamped `stamp`: `{data_dir}/.stale/{task}-{stamp}`.
    pub fn stale_copy(&self, id: TaskId, stamp: &str) -> PathBuf {
        self.stale_dir().join(format!("{}-{stamp}", id.0))
    }

    /// [`stale_copy`](Self::stale_copy) stamped with the time now, to the microsecond
    /// (`20261206T081500.123456`).
    pub fn stale_copy_now(&self, id: TaskId) -> PathBuf {
        self.stale_copy(id, &chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f").to_string())
    }

    /// The folder one `doctor --repair` run moves things into, stamped `stamp`:
    /// `{data_dir}/.stale/doctor-{stamp}`.
    pub fn doctor_stale(&self, stamp: &str) -> PathBuf {
        self.stale_dir().join(format!("doctor-{stamp}"))
    }

    pub fn deleted_dir(&self) -> PathBuf {
        self.root.join(DELETED_DIR)
    }

    /// Where a deleted task's files go, stamped `stamp`: `{data_dir}/.deleted/{task}-{stamp}`.
    pub fn deleted_copy(&self, id: TaskId, stamp: &str) -> PathBuf {
        self.deleted_dir().join(format!("{}-{stamp}", id.0))
    }

    /// Where the relay downloads a file that only the bucket still holds (each unlinked as soon
    /// as it is open): `{data_dir}/.relay-fetch`.
    pub fn relay_fetch_dir(&self) -> PathBuf {
        self.root.join(".relay-fetch")
    }

    /// Import staging for a task: `{data_dir}/.import/{task}`.
    pub fn import_staging(&self, id: TaskId) -> PathBuf {
        self.root.join(IMPORT_DIR).join(id.0.to_string())
    }

    /// One staged file of a task's import: `{data_dir}/.import/{task}/{file_name}`.
    pub fn import_staged(&self, id: TaskId, file_name: &str) -> PathBuf {
        self.import_staging(id).join(file_name)
    }

    /// The lock of a task's imports: `{data_dir}/.import/{task}.lock`.
    pub fn import_lock(&self, id: TaskId) -> PathBuf {
        self.root.join(IMPORT_DIR).join(format!("{}.lock", id.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_under_data_dir_where_the_docs_say() {
        let l = DataLayout::new("/srv/data");
        let t = TaskId(7);
        let table: &[(PathBuf, &str)] = &[
            (l.meta_db(), "/srv/data/meta.db"),
            (l.secrets_key(), "/srv/data/secrets.key"),
            (l.node_id_file(), "/srv/data/node_id"),
            (l.task_dir(t), "/srv/data/7"),
            (l.lease_marker(t), "/srv/data/7/.lease"),
            (l.source_dir(t, "srv-1"), "/srv/data/7/srv-1"),
            (l.binlog_file(t, "srv-1", "mysql-bin.000003"), "/srv/data/7/srv-1/mysql-bin.000003"),
            (l.task_path(t, "srv-1/mysql-bin.000003"), "/srv/data/7/srv-1/mysql-bin.000003"),
            (l.entry("007"), "/srv/data/007"),
            (l.stale_copy(t, "20261204T120000"), "/srv/data/.stale/7-20261204T120000"),
            (l.doctor_stale("20261204T120000.000001Z"), "/srv/data/.stale/doctor-20261204T120000.000001Z"),
            (l.deleted_copy(t, "20261204T120000"), "/srv/data/.deleted/7-20261204T120000"),
            (l.import_staging(t), "/srv/data/.import/7"),
            (l.import_staged(t, "mysql-bin.000003"), "/srv/data/.import/7/mysql-bin.000003"),
            (l.import_lock(t), "/srv/data/.import/7.lock"),
        ];
        for (got, want) in table {
            assert_eq!(got, Path::new(want));
        }
        assert_eq!(l.root(), Path::new("/srv/data"));
    }
}
