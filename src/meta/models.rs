//! Row types and their conversion to domain types. Conversion is where a corrupt row (an enum
//! value this binary does not know) is caught, so the rest of the service sees only valid data.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::binlog::name::BinlogFileName;
use crate::binlog::summary::FileSummary;
use crate::domain::{
    DesiredState, RawTaskSpec, StartSpec, Task, TaskError, TaskErrorCode, TaskId, TaskSpec, TaskState,
};
use crate::meta::StoreError;
use crate::meta::schema::{binlog_files, checkpoints, task_events, tasks};
use crate::secret::Secret;

pub(crate) fn to_utc(t: NaiveDateTime) -> DateTime<Utc> {
    DateTime::from_naive_utc_and_offset(t, Utc)
}

/// Timestamps are stored as UTC with microsecond precision (what DATETIME(6) keeps), so a
/// value read back equals the value written.
pub(crate) fn now_naive(now: DateTime<Utc>) -> NaiveDateTime {
    let n = now.naive_utc();
    n.with_nanosecond_truncated()
}

trait TruncateNanos {
    fn with_nanosecond_truncated(self) -> Self;
}

impl TruncateNanos for NaiveDateTime {
    fn with_nanosecond_truncated(self) -> Self {
        use chrono::Timelike;
        let micros = self.nanosecond() / 1000;
        self.with_nanosecond(micros * 1000).unwrap_or(self)
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tasks)]
pub(crate) struct TaskRow {
    pub id: i64,
    pub name: String,
    pub cluster_key: String,
    pub source_host: String,
    pub source_port: i32,
    pub source_user: String,
    pub source_password: String,
    pub source_flavor: String,
    pub source_server_id: Option<i64>,
    pub source_tls_mode: String,
    pub source_tls_ca_file: Option<String>,
    pub start_mode: String,
    pub start_file: Option<String>,
    pub start_pos: Option<i64>,
    pub start_gtid_set: Option<String>,
    pub retention_days: i32,
    pub desired_state: String,
    pub state: String,
    pub last_error_code: Option<String>,
    pub last_error_message: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub bucket_retention_days: i32,
    pub last_error_since: Option<NaiveDateTime>,
    pub last_error_attempts: Option<i32>,
    pub source_server_public_key: Option<String>,
    pub source_semi_sync: bool,
}

/// The spec columns of `tasks`, for insert and update.
#[derive(Debug, Clone, Insertable, AsChangeset)]
#[diesel(table_name = tasks)]
#[diesel(treat_none_as_null = true)]
pub(crate) struct TaskSpecColumns {
    pub name: String,
    pub cluster_key: String,
    pub source_host: String,
    pub source_port: i32,
    pub source_user: String,
    pub source_password: String,
    pub source_flavor: String,
    pub source_server_id: Option<i64>,
    pub source_tls_mode: String,
    pub source_tls_ca_file: Option<String>,
    pub start_mode: String,
    pub start_file: Option<String>,
    pub start_pos: Option<i64>,
    pub start_gtid_set: Option<String>,
    pub retention_days: i32,
    pub bucket_retention_days: i32,
    pub source_server_public_key: Option<String>,
    pub source_semi_sync: bool,
}

impl TaskSpecColumns {
    pub fn from_spec(spec: &TaskSpec, stored_password: String) -> Self {
        let (start_file, start_pos, start_gtid_set) = match &spec.start {
            StartSpec::Latest | StartSpec::ArchiveOnly => (None, None, None),
            StartSpec::FilePos { file, pos } => (Some(file.to_string()), Some(*pos as i64), None),
            StartSpec::Gtid { gtid_set } => (None, None, Some(gtid_set.to_string())),
        };
        TaskSpecColumns {
            name: spec.name.clone(),
            cluster_key: spec.cluster_key.clone(),
            source_host: spec.source.host.clone(),
            source_port: i32::from(spec.source.port),
            source_user: spec.source.user.clone(),
            source_password: stored_password,
            source_flavor: spec.source.flavor.as_str().to_string(),
            source_server_id: spec.source.server_id.map(i64::from),
            source_tls_mode: spec.source.tls_mode.as_str().to_string(),
            source_tls_ca_file: spec.source.tls_ca_file.clone(),
            start_mode: spec.start.mode().as_str().to_string(),
            start_file,
            start_pos,
            start_gtid_set,
            retention_days: spec.retention_days as i32,
            bucket_retention_days: spec.bucket_retention_days as i32,
            source_server_public_key: spec.source.server_public_key.clone(),
            source_semi_sync: spec.source.semi_sync,
        }
    }
}

impl TaskRow {
    /// Converts to the domain type; `password` is the already-decoded clear text.
    pub fn into_task(self, password: Secret) -> Result<Task, StoreError> {
        let id = self.id;
        let corrupt = |what: String| StoreError::Corrupt(format!("task {id}: {what}"));
        let raw = RawTaskSpec {
            name: Some(self.name),
            cluster_key: Some(self.cluster_key),
            host: Some(self.source_host),
            port: Some(i64::from(self.source_port)),
            user: Some(self.source_user),
            password: Some(password),
            flavor: Some(self.source_flavor),
            server_id: self.source_server_id,
            tls_mode: Some(self.source_tls_mode),
            tls_ca_file: self.source_tls_ca_file,
            server_public_key: self.source_server_public_key,
            semi_sync: Some(self.source_semi_sync),
            start_mode: Some(self.start_mode),
            start_file: self.start_file,
            start_pos: self.start_pos,
            start_gtid_set: self.start_gtid_set,
            retention_days: Some(i64::from(self.retention_days)),
            bucket_retention_days: Some(i64::from(self.bucket_retention_days)),
        };
        let spec = raw
            .validate()
            .map_err(|errs| corrupt(errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))?;
        let last_error = match (self.last_error_code, self.last_error_message) {
            (Some(code), message) => Some(TaskError {
                code: code.parse::<TaskErrorCode>().unwrap_or(TaskErrorCode::InternalError),
                message: message.unwrap_or_default(),
                // An error recorded before these columns existed: when the row last changed.
                since: to_utc(self.last_error_since.unwrap_or(self.updated_at)),
                attempts: self.last_error_attempts.and_then(|n| u32::try_from(n).ok()).unwrap_or(1),
            }),
            (None, _) => None,
        };
        Ok(Task {
            id: TaskId(self.id),
            spec,
            desired_state: self.desired_state.parse::<DesiredState>().map_err(corrupt)?,
            state: self.state.parse::<TaskState>().map_err(corrupt)?,
            last_error,
            created_at: to_utc(self.created_at),
            updated_at: to_utc(self.updated_at),
        })
    }
}

/// Filters of `GET /api/tasks`.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    pub state: Option<TaskState>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Substring of name or cluster_key.
    pub search: Option<String>,
}

/// The durable resume point of a task. Never ahead of fsynced bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    pub source_identity: String,
    pub file: BinlogFileName,
    pub pos: u64,
    /// The GTID state at `pos` (MySQL set or MariaDB per-domain list), when known.
    pub gtid_set: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = checkpoints)]
#[diesel(treat_none_as_null = true)]
pub(crate) struct CheckpointRow {
    pub task_id: i64,
    pub source_identity: Option<String>,
    pub file_name: Option<String>,
    pub pos: Option<i64>,
    pub gtid_set: Option<String>,
    pub updated_at: NaiveDateTime,
    /// Cluster mode: the node and lease epoch that wrote it.
    pub node_id: Option<String>,
    pub epoch: Option<i64>,
}

impl CheckpointRow {
    pub fn into_checkpoint(self) -> Result<Option<(Checkpoint, DateTime<Utc>)>, StoreError> {
        match (self.source_identity, self.file_name, self.pos) {
            (Some(identity), Some(file), Some(pos)) => {
                let file = BinlogFileName::parse(&file)
                    .map_err(|e| StoreError::Corrupt(format!("checkpoint of task {}: {e}", self.task_id)))?;
                Ok(Some((
                    Checkpoint { source_identity: identity, file, pos: pos as u64, gtid_set: self.gtid_set },
                    to_utc(self.updated_at),
                )))
            }
            _ => Ok(None),
        }
    }
}

/// One row of a task's event timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskEvent {
    pub id: i64,
    pub task_id: i64,
    pub event_type: String,
    pub message: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = task_events)]
pub(crate) struct TaskEventRow {
    pub id: i64,
    pub task_id: i64,
    pub event_type: String,
    pub message: String,
    pub created_at: NaiveDateTime,
}

impl From<TaskEventRow> for TaskEvent {
    fn from(r: TaskEventRow) -> Self {
        TaskEvent {
            id: r.id,
            task_id: r.task_id,
            event_type: r.event_type,
            message: r.message,
            created_at: to_utc(r.created_at),
        }
    }
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = task_events)]
pub(crate) struct NewTaskEvent<'a> {
    pub task_id: i64,
    pub event_type: &'a str,
    pub message: &'a str,
    pub created_at: NaiveDateTime,
}

crate::domain::string_enum!(
    /// A local binlog file is OPEN while it is appended to and SEALED once the source rotated
    /// away from it; a sealed file never changes again.
    FileState {
        Open => "OPEN",
        Sealed => "SEALED",
    }
);

crate::domain::string_enum!(
    /// Where a sealed file stands with the bucket.
    UploadState {
        LocalOnly => "LOCAL_ONLY",
        Uploading => "UPLOADING",
        Uploaded => "UPLOADED",
        UploadFailed => "UPLOAD_FAILED",
    }
);

/// A local binlog file in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRecord {
    pub task_id: i64,
    pub source_identity: String,
    pub file_name: BinlogFileName,
    pub state: FileState,
    /// Source position of the first event after the header (4 when fetched from the start).
    pub start_pos: u64,
    /// Bytes before `start_pos`'s event in our file: 4 (magic) for a complete file, magic +
    /// FDE for a file joined mid-way.
    pub header_len: u64,
    /// Source position of the end of the last event (when sealed).
    pub end_pos: Option<u64>,
    pub size: u64,
    pub sha256: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sealed_at: Option<DateTime<Utc>>,
    pub upload: UploadInfo,
    /// What the file holds by time and GTID (the point-in-time recovery catalog).
    pub summary: FileSummary,
}

/// A file's upload and retention bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UploadInfo {
    pub state: UploadState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub object_key: Option<String>,
    pub uploaded_at: Option<DateTime<Utc>>,
    /// Size and checksums compared with what the bucket reports after the upload.
    pub verified: bool,
    /// The local copy was removed by retention.
    pub local_deleted_at: Option<DateTime<Utc>>,
    /// The bucket copy was removed by retention.
    pub remote_deleted_at: Option<DateTime<Utc>>,
}

// `string_enum!` defines the enum, so `#[derive(Default)]` + `#[default]` cannot be attached.
#[allow(clippy::derivable_impls)]
impl Default for UploadState {
    fn default() -> Self {
        UploadState::LocalOnly
    }
}

impl FileRecord {
    /// Where the writer keeps this file: `{data_dir}/{task_id}/{source_identity}/{file_name}`.
    pub fn local_path(&self, data_dir: &std::path::Path) -> std::path::PathBuf {
        crate::layout::DataLayout::new(data_dir).binlog_file(
            crate::domain::TaskId(self.task_id),
            &self.source_identity,
            self.file_name.as_str(),
        )
    }

    /// Local file offset of a source position inside this file.
    pub fn local_offset(&self, source_pos: u64) -> u64 {
        crate::binlog::local_offset(self.start_pos, self.header_len, source_pos)
    }

    /// Whether the bucket holds a verified copy of this file: sealed, uploaded, checked against
    /// the bucket's size and checksums, and not removed there by retention.
    pub fn held_in_bucket(&self) -> bool {
        self.state == FileState::Sealed
            && self.upload.state == UploadState::Uploaded
            && self.upload.verified
            && self.upload.remote_deleted_at.is_none()
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = binlog_files)]
pub(crate) struct FileRow {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub task_id: i64,
    pub source_identity: String,
    pub file_name: String,
    pub state: String,
    pub start_pos: i64,
    pub header_len: i64,
    pub end_pos: Option<i64>,
    pub size: i64,
    pub sha256: Option<String>,
    pub created_at: NaiveDateTime,
    pub sealed_at: Option<NaiveDateTime>,
    pub upload_state: String,
    pub upload_attempts: i32,
    pub upload_error: Option<String>,
    pub next_upload_at: Option<NaiveDateTime>,
    pub object_key: Option<String>,
    pub uploaded_at: Option<NaiveDateTime>,
    pub upload_verified: bool,
    pub local_deleted_at: Option<NaiveDateTime>,
    pub remote_deleted_at: Option<NaiveDateTime>,
    pub first_event_at: Option<NaiveDateTime>,
    pub last_event_at: Option<NaiveDateTime>,
    pub first_gtid: Option<String>,
    pub last_gtid: Option<String>,
    pub gtid_start: Option<String>,
    pub gtid_end: Option<String>,
    pub gtid_added: Option<String>,
    pub summary_pos: i64,
}

/// Event timestamps (Unix seconds) as stored.
pub(crate) fn unix_to_naive(t: u32) -> NaiveDateTime {
    DateTime::from_timestamp(i64::from(t), 0).unwrap_or_default().naive_utc()
}

fn naive_to_unix(t: NaiveDateTime) -> u32 {
    u32::try_from(t.and_utc().timestamp()).unwrap_or(0)
}

/// The catalog columns of a file, for the updates that record them.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = binlog_files)]
#[diesel(treat_none_as_null = true)]
pub(crate) struct SummaryColumns {
    pub first_event_at: Option<NaiveDateTime>,
    pub last_event_at: Option<NaiveDateTime>,
    pub first_gtid: Option<String>,
    pub last_gtid: Option<String>,
    pub gtid_start: Option<String>,
    pub gtid_end: Option<String>,
    pub gtid_added: Option<String>,
    pub summary_pos: i64,
}

impl SummaryColumns {
    pub fn from_summary(s: &FileSummary) -> Self {
        SummaryColumns {
            first_event_at: s.first_event_at.map(unix_to_naive),
            last_event_at: s.last_event_at.map(unix_to_naive),
            first_gtid: s.first_gtid.clone(),
            last_gtid: s.last_gtid.clone(),
            gtid_start: s.gtid_start.clone(),
            gtid_end: s.gtid_end.clone(),
            gtid_added: s.gtid_added.clone(),
            summary_pos: s.summary_pos as i64,
        }
    }
}

impl FileRow {
    pub fn into_record(self) -> Result<FileRecord, StoreError> {
        let corrupt = |e: String| StoreError::Corrupt(format!("binlog_files row {}: {e}", self.id));
        Ok(FileRecord {
            task_id: self.task_id,
            source_identity: self.source_identity.clone(),
            file_name: BinlogFileName::parse(&self.file_name).map_err(|e| corrupt(e.to_string()))?,
            state: self.state.parse::<FileState>().map_err(corrupt)?,
            start_pos: self.start_pos as u64,
            header_len: self.header_len as u64,
            end_pos: self.end_pos.map(|p| p as u64),
            size: self.size as u64,
            sha256: self.sha256,
            created_at: to_utc(self.created_at),
            sealed_at: self.sealed_at.map(to_utc),
            upload: UploadInfo {
                state: self.upload_state.parse::<UploadState>().map_err(corrupt)?,
                attempts: self.upload_attempts.max(0) as u32,
                last_error: self.upload_error,
                next_attempt_at: self.next_upload_at.map(to_utc),
                object_key: self.object_key,
                uploaded_at: self.uploaded_at.map(to_utc),
                verified: self.upload_verified,
                local_deleted_at: self.local_deleted_at.map(to_utc),
                remote_deleted_at: self.remote_deleted_at.map(to_utc),
            },
            summary: FileSummary {
                first_event_at: self.first_event_at.map(naive_to_unix),
                last_event_at: self.last_event_at.map(naive_to_unix),
                first_gtid: self.first_gtid,
                last_gtid: self.last_gtid,
                gtid_start: self.gtid_start,
                gtid_end: self.gtid_end,
                gtid_added: self.gtid_added,
                summary_pos: self.summary_pos.max(0) as u64,
            },
        })
    }

    pub fn from_record(r: &FileRecord) -> Self {
        FileRow {
            id: 0,
            task_id: r.task_id,
            source_identity: r.source_identity.clone(),
            file_name: r.file_name.to_string(),
            state: r.state.as_str().to_string(),
            start_pos: r.start_pos as i64,
            header_len: r.header_len as i64,
            end_pos: r.end_pos.map(|p| p as i64),
            size: r.size as i64,
            sha256: r.sha256.clone(),
            created_at: now_naive(r.created_at),
            sealed_at: r.sealed_at.map(now_naive),
            upload_state: r.upload.state.as_str().to_string(),
            upload_attempts: r.upload.attempts as i32,
            upload_error: r.upload.last_error.clone(),
            next_upload_at: r.upload.next_attempt_at.map(now_naive),
            object_key: r.upload.object_key.clone(),
            uploaded_at: r.upload.uploaded_at.map(now_naive),
            upload_verified: r.upload.verified,
            local_deleted_at: r.upload.local_deleted_at.map(now_naive),
            remote_deleted_at: r.upload.remote_deleted_at.map(now_naive),
            first_event_at: r.summary.first_event_at.map(unix_to_naive),
            last_event_at: r.summary.last_event_at.map(unix_to_naive),
            first_gtid: r.summary.first_gtid.clone(),
            last_gtid: r.summary.last_gtid.clone(),
            gtid_start: r.summary.gtid_start.clone(),
            gtid_end: r.summary.gtid_end.clone(),
            gtid_added: r.summary.gtid_added.clone(),
            summary_pos: r.summary.summary_pos as i64,
        }
    }
}
