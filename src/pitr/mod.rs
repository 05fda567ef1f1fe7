//! Point-in-time recovery: the recovery window of a task, replay plans ("everything from this
//! dump's position up to 14:03:07, as one `mariadb-binlog` command"), and safe access to the
//! files they name.
//!
//! Everything here reads the catalog (`binlog_files` and its summary columns, written by the
//! `FileWriterActor`) and, only to find the exact position of a GTID inside one file, that file.
//! It never writes a binlog file and never changes a checkpoint. Its only write is a missing
//! summary rebuilt from the file (`load_catalog`). Blocking: callers run it off the executors.

pub mod client;
pub mod command;
pub mod continuity;
pub mod files;
#[cfg(test)]
mod mysql_fixtures;
pub mod plan;
pub mod window;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::binlog::summary;
use crate::domain::TaskId;
use crate::meta::{FileRecord, FileState, Store, StoreError};

/// Reads the GTID transaction starts of a file up to its held size (`summary::transaction_starts`).
pub trait TxnReader {
    fn starts(&self, f: &CatalogFile) -> std::io::Result<Vec<summary::TxnStart>>;
}

/// Where a file's bytes can be read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Location {
    /// Under the task's data directory.
    Local {
        #[schema(value_type = String)]
        path: PathBuf,
    },
    /// Only in the bucket (the local copy went with retention); `files::open_object` fetches it.
    Object { key: String },
}

/// A catalog row and where its bytes are, if anywhere.
#[derive(Debug, Clone)]
pub struct CatalogFile {
    pub record: FileRecord,
    pub location: Option<Location>,
}

impl CatalogFile {
    /// Source position up to which we hold the file: its end when sealed, else the durable
    /// checkpoint's (what the summary describes).
    pub fn held_end(&self) -> u64 {
        match (self.record.state, self.record.end_pos) {
            (FileState::Sealed, Some(end)) => end,
            _ => self.record.summary.summary_pos.max(self.record.start_pos),
        }
    }
}

fn locate(data_dir: &Path, rec: &FileRecord) -> Option<Location> {
    let path = rec.local_path(data_dir);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_file() && m.len() >= rec.size => return Some(Location::Local { path }),
        _ => {}
    }
    match &rec.upload.object_key {
        Some(key) if rec.held_in_bucket() => Some(Location::Object { key: key.clone() }),
        _ => None,
    }
}

/// The task's catalog in stream order with each file's location. A sealed file whose summary
/// is missing (a row from before the catalog, or a crash between seal and summary) is
/// summarised from its bytes now and the row updated, so later calls need no read.
pub fn load_catalog(store: &Store, data_dir: &Path, task: TaskId) -> Result<Vec<CatalogFile>, StoreError> {
    let mut out = Vec::new();
    let mut gtid_before: Option<String> = None;
    for mut rec in store.list_files(task)? {
        let location = locate(data_dir, &rec);
        if rec.state == FileState::Sealed
            && rec.end_pos.is_some_and(|end| rec.summary.summary_pos != end)
            && let Some(Location::Local { path }) = &location
        {
            let rebuilt = std::fs::File::open(path).and_then(|f| {
                summary::summarize(
                    std::io::BufReader::new(f),
                    rec.start_pos,
                    rec.header_len,
                    rec.size,
                    rec.summary.gtid_start.clone().or_else(|| gtid_before.clone()),
                )
            });
            // An unreadable file keeps its row as it is; it is not an error of the catalog.
            if let Ok(s) = rebuilt {
                store.set_file_summary(task, &rec.source_identity, rec.file_name.as_str(), &s)?;
                rec.summary = s;
            }
        }
        gtid_before = rec.summary.gtid_end.clone();
        out.push(CatalogFile { record: rec, location });
    }
    Ok(out)
}
