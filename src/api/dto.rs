//! Request and response bodies. Requests reject unknown fields (a typo must not be silently
//! ignored); responses never carry a password.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::{DesiredState, Flavor, RawTaskSpec, StartMode, StartSpec, Task, TaskError, TaskState, TlsMode};
use crate::meta::{FileRecord, FileState, UploadState};
use crate::queries::TaskView;
use crate::secret::Secret;

/// What every response shows in place of a password.
pub const REDACTED: &str = "***";

/// A task definition (create, or replace with PUT). Every field is checked and all problems
/// are reported at once; the schema says what is valid.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskBody {
    /// Not blank, no control characters.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255,
             pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$")]
    pub name: Option<String>,
    /// Unique; `[A-Za-z0-9._-]{1,128}`.
    #[schema(value_type = String, required = true, pattern = r"^[A-Za-z0-9._-]{1,128}$")]
    pub cluster_key: Option<String>,
    #[schema(value_type = SourceBody, required = true)]
    pub source: Option<SourceBody>,
    #[schema(value_type = StartSchema, required = true)]
    pub start: Option<StartBody>,
    /// Null or absent: the defaults.
    #[schema(value_type = Option<StorageBody>)]
    pub storage: Option<StorageBody>,
}

impl TaskBody {
    /// Parses a request body. serde's derive would also take a JSON array for a struct
    /// (`"storage": [0]`); the API only accepts objects.
    pub fn from_json(v: serde_json::Value) -> Result<TaskBody, String> {
        fn object(v: &serde_json::Value, what: &str) -> Result<(), String> {
            if v.is_object() { Ok(()) } else { Err(format!("{what} must be a JSON object")) }
        }
        object(&v, "the body")?;
        for key in ["source", "start", "storage"] {
            match v.get(key) {
                None | Some(serde_json::Value::Null) => {}
                Some(inner) => object(inner, key)?,
            }
        }
        serde_json::from_value(v).map_err(|e| e.to_string())
    }
}

/// The source server and how to reach it.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceBody {
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255, pattern = r"^[^\s/\x00-\x1f\x7f-\x9f]+$")]
    pub host: Option<String>,
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 65535)]
    pub port: Option<i64>,
    #[schema(value_type = String, required = true, min_length = 1, max_length = 255, pattern = r"\S")]
    pub user: Option<String>,
    /// Write-only. On PUT, leave it out (or send `***`) to keep the stored one; that is refused
    /// when host, port, user, TLS settings or the pinned key change (send it again then).
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<Secret>,
    #[schema(value_type = Flavor, required = true)]
    pub flavor: Option<String>,
    /// The replica server_id to register with (default: `replication.server_id_base` + task id).
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 4294967295_i64)]
    pub server_id: Option<i64>,
    #[schema(value_type = Option<TlsMode>)]
    pub tls_mode: Option<String>,
    /// A PEM file with the CA (required for `verify_ca`): its name in the server's
    /// `replication.tls_ca_dir` (no file outside that directory is read).
    pub tls_ca_file: Option<String>,
    /// The source's RSA public key (PEM, at least 2048 bits), pinned for
    /// `caching_sha2_password` without TLS: the password is then encrypted under this key, never
    /// under one the server sends. MySQL shows it with `SHOW STATUS LIKE
    /// 'Caching_sha2_password_rsa_public_key'`. Changing it requires the password again.
    #[schema(max_length = 8192)]
    pub server_public_key: Option<String>,
    /// Replicate semi-synchronously (default false): the source's commits then wait until
    /// binlog-server has fsynced them (RPO 0; see docs/guide/semi-sync.md). A source without
    /// semi-sync enabled is streamed asynchronously, with a warning event.
    pub semi_sync: Option<bool>,
}

/// Where a new task starts: LATEST; FILE_POS with `file` and `pos` (>= 4); GTID with
/// `gtid_set` (MySQL `uuid:1-5,...`, MariaDB `domain-server-seq,...`; may be empty);
/// ARCHIVE_ONLY: never connects to the source, holds imported files only
/// (`POST /api/tasks/{id}/import`).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    #[schema(value_type = StartMode, required = true)]
    pub mode: Option<String>,
    #[schema(pattern = r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}$")]
    pub file: Option<String>,
    #[schema(value_type = Option<i64>, minimum = 4, maximum = 4294967295_i64)]
    pub pos: Option<i64>,
    pub gtid_set: Option<String>,
}

/// The start position as the schema describes it: one shape per mode. (Requests are parsed
/// into `StartBody`, so that every problem can be reported by field.)
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum StartSchema {
    Latest(StartLatest),
    FilePos(StartFilePos),
    Gtid(StartGtid),
    ArchiveOnly(StartArchiveOnly),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct StartArchiveOnly {
    #[schema(pattern = "^ARCHIVE_ONLY$")]
    mode: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct StartLatest {
    #[schema(pattern = "^LATEST$")]
    mode: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct StartFilePos {
    #[schema(pattern = "^FILE_POS$")]
    mode: String,
    #[schema(pattern = r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]{0,254}$")]
    file: String,
    #[schema(minimum = 4, maximum = 4294967295_i64)]
    pos: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct StartGtid {
    #[schema(pattern = "^GTID$")]
    mode: String,
    /// MySQL `uuid[:tag]:1-5,...` or MariaDB `domain-server-seq,...` (matching `source.flavor`);
    /// may be empty.
    gtid_set: String,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageBody {
    /// Local retention in days (also accepted as `local_retention_days`). Default 7.
    #[serde(alias = "local_retention_days")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 3650)]
    pub retention_days: Option<i64>,
    /// Bucket retention in days, at least the local retention. Default: 30, or the local
    /// retention when that is longer.
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 3650)]
    pub bucket_retention_days: Option<i64>,
}

impl TaskBody {
    /// Whether the body leaves the password out (or echoes the redaction): keep the stored one.
    pub fn keeps_password(&self) -> bool {
        match self.source.as_ref().and_then(|s| s.password.as_ref()) {
            None => true,
            Some(p) => p.expose() == REDACTED,
        }
    }

    pub fn into_raw(self) -> RawTaskSpec {
        let s = self.source.unwrap_or_default();
        let st = self.start.unwrap_or_default();
        RawTaskSpec {
            name: self.name,
            cluster_key: self.cluster_key,
            host: s.host,
            port: s.port,
            user: s.user,
            password: s.password,
            flavor: s.flavor,
            server_id: s.server_id,
            tls_mode: s.tls_mode,
            tls_ca_file: s.tls_ca_file,
            server_public_key: s.server_public_key,
            semi_sync: s.semi_sync,
            start_mode: st.mode,
            start_file: st.file,
            start_pos: st.pos,
            start_gtid_set: st.gtid_set,
            retention_days: self.storage.as_ref().and_then(|s| s.retention_days),
            bucket_retention_days: self.storage.and_then(|s| s.bucket_retention_days),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SourceDto {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Always `***`: passwords are write-only.
    #[schema(example = "***")]
    pub password: String,
    pub flavor: Flavor,
    pub server_id: Option<u32>,
    /// The server_id this task registers with (its own or the documented default).
    pub effective_server_id: u32,
    pub tls_mode: TlsMode,
    pub tls_ca_file: Option<String>,
    /// The pinned RSA public key (PEM), if any: public, shown as stored.
    pub server_public_key: Option<String>,
    /// Whether the task asks to replicate semi-synchronously.
    pub semi_sync: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StartDto {
    pub mode: StartMode,
    pub file: Option<String>,
    pub pos: Option<u64>,
    pub gtid_set: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StorageDto {
    /// Local retention in days.
    pub retention_days: u32,
    /// The same value under its explicit name.
    pub local_retention_days: u32,
    pub bucket_retention_days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskDto {
    pub id: i64,
    pub name: String,
    pub cluster_key: String,
    pub source: SourceDto,
    pub start: StartDto,
    pub storage: StorageDto,
    pub state: TaskState,
    /// Whether replication actors exist for the task in this state (STARTING, RUNNING,
    /// RETRY_BACKOFF, STOPPING, LEASE_DEGRADED): the UI's one source for "active".
    pub active: bool,
    pub desired_state: DesiredState,
    /// The error of the last failed attempt, with since when the task has been failing and how
    /// many attempts failed; null once the task streams again.
    pub last_error: Option<TaskError>,
    /// Retrying (RETRY_BACKOFF) for longer than `retry.alert_after_sec`: needs a look.
    pub stuck: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What shaping a `TaskDto` needs besides the task.
#[derive(Debug, Clone, Copy)]
pub struct DtoContext {
    pub server_id_base: u32,
    pub alert_after: chrono::Duration,
    pub now: DateTime<Utc>,
}

impl TaskDto {
    pub fn from_task(t: &Task, ctx: &DtoContext) -> Self {
        let server_id_base = ctx.server_id_base;
        let (file, pos, gtid_set) = match &t.spec.start {
            StartSpec::Latest | StartSpec::ArchiveOnly => (None, None, None),
            StartSpec::FilePos { file, pos } => (Some(file.to_string()), Some(*pos), None),
            StartSpec::Gtid { gtid_set } => (None, None, Some(gtid_set.to_string())),
        };
        let src = &t.spec.source;
        TaskDto {
            id: t.id.0,
            name: t.spec.name.clone(),
            cluster_key: t.spec.cluster_key.clone(),
            source: SourceDto {
                host: src.host.clone(),
                port: src.port,
                user: src.user.clone(),
                password: REDACTED.to_string(),
                flavor: src.flavor,
                server_id: src.server_id,
                effective_server_id: crate::domain::effective_server_id(t, server_id_base),
                tls_mode: src.tls_mode,
                tls_ca_file: src.tls_ca_file.clone(),
                server_public_key: src.server_public_key.clone(),
                semi_sync: src.semi_sync,
            },
            start: StartDto { mode: t.spec.start.mode(), file, pos, gtid_set },
            storage: StorageDto {
                retention_days: t.spec.retention_days,
                local_retention_days: t.spec.retention_days,
                bucket_retention_days: t.spec.bucket_retention_days,
            },
            state: t.state,
            active: t.state.is_active(),
            desired_state: t.desired_state,
            last_error: t.last_error.clone(),
            stuck: crate::retry::is_stuck(t.state, t.last_error.as_ref(), ctx.now, ctx.alert_after),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskPage {
    pub items: Vec<TaskDto>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointDto {
    pub task_id: i64,
    pub source_identity: Option<String>,
    pub file: Option<String>,
    pub pos: Option<u64>,
    pub gtid_set: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
    /// Cluster mode: the node that wrote it (null standalone).
    pub node_id: Option<String>,
    /// Cluster mode: the lease epoch it was written under (null standalone).
    pub epoch: Option<i64>,
}

/// `GET /api/tasks/{id}/lease`. A task that was never leased (or any task in standalone mode)
/// has nulls and `live: false`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaseDto {
    pub task_id: i64,
    /// The node holding (or that last held) the lease.
    pub owner: Option<String>,
    /// Grows each time another node takes the task over.
    pub epoch: Option<i64>,
    /// By the metadata database's clock.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether it had not expired when read.
    pub live: bool,
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerDto {
    pub node_id: String,
    /// Heartbeat within the lease TTL and not left.
    pub alive: bool,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Set when the node stopped gracefully.
    pub left_at: Option<DateTime<Utc>>,
    /// Live leases held.
    pub leases: i64,
    /// `cluster.max_tasks_per_node` (null = no limit).
    pub max_tasks: Option<i64>,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkerList {
    pub workers: Vec<WorkerDto>,
}

/// `GET /api/cluster/overview`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClusterOverviewDto {
    /// `standalone` or `cluster`.
    pub mode: String,
    /// The node that answered.
    pub node_id: String,
    pub lease_ttl_sec: u64,
    pub workers: i64,
    pub workers_alive: i64,
    /// Tasks whose operator wants them running and that have not failed.
    pub tasks_wanted_running: i64,
    /// Of those, held by a live lease.
    pub tasks_leased: i64,
    /// Wanted running, but no node holds them (capacity, or a takeover in progress).
    pub tasks_unplaced: i64,
    pub leases_by_node: std::collections::BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(value_type = Option<TaskState>)]
    pub state: Option<String>,
    /// Exact source host.
    pub host: Option<String>,
    #[param(minimum = 1, maximum = 65535)]
    pub port: Option<i64>,
    /// Substring of the name or cluster_key.
    pub q: Option<String>,
    /// Default 50.
    #[param(minimum = 0, maximum = 1000)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// Default 100.
    #[param(minimum = 0, maximum = 1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Remove the task's local files instead of moving them to `{data_dir}/.deleted/`.
    pub purge_files: Option<bool>,
}

/// One local binlog file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileDto {
    pub name: String,
    pub source_identity: String,
    /// OPEN while appended to, SEALED once complete (never changes again).
    pub state: FileState,
    pub size: u64,
    /// Source position of the first event after the header (4 for a complete file).
    pub start_pos: u64,
    /// Source position of the end of the file (sealed files).
    pub end_pos: Option<u64>,
    /// Of the sealed file's bytes (computed shortly after sealing).
    pub sha256: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sealed_at: Option<DateTime<Utc>>,
    pub upload: FileUploadDto,
}

/// Where a file stands with the bucket, and what retention did to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FileUploadDto {
    /// LOCAL_ONLY until uploaded; UPLOAD_FAILED retries with backoff.
    pub state: UploadState,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// When a failed upload is tried again.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub object_key: Option<String>,
    pub uploaded_at: Option<DateTime<Utc>>,
    /// Size, sha256 metadata and ETag checked against the bucket after the upload.
    pub verified: bool,
    /// Set when local retention removed the local copy.
    pub local_deleted_at: Option<DateTime<Utc>>,
    /// Set when bucket retention removed the object.
    pub remote_deleted_at: Option<DateTime<Utc>>,
}

/// Failed uploads of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UploadFailurePage {
    pub items: Vec<FileDto>,
}

/// Result of a retry-upload request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RetryUploadDto {
    /// How many failed uploads were made due now.
    pub retried: usize,
}

impl FileDto {
    pub fn from_record(r: &FileRecord) -> Self {
        FileDto {
            name: r.file_name.to_string(),
            source_identity: r.source_identity.clone(),
            state: r.state,
            size: r.size,
            start_pos: r.start_pos,
            end_pos: r.end_pos,
            sha256: r.sha256.clone(),
            created_at: r.created_at,
            sealed_at: r.sealed_at,
            upload: FileUploadDto {
                state: r.upload.state,
                attempts: r.upload.attempts,
                last_error: r.upload.last_error.clone(),
                next_attempt_at: r.upload.next_attempt_at,
                object_key: r.upload.object_key.clone(),
                uploaded_at: r.upload.uploaded_at,
                verified: r.upload.verified,
                local_deleted_at: r.upload.local_deleted_at,
                remote_deleted_at: r.upload.remote_deleted_at,
            },
        }
    }
}

/// Live replication status of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReplicationDto {
    pub task_id: i64,
    pub state: TaskState,
    pub source_identity: Option<String>,
    pub source_version: Option<String>,
    pub tls: bool,
    pub streaming_from: Option<String>,
    pub connected_since: Option<DateTime<Utc>>,
    pub lag_seconds: Option<f64>,
    pub caught_up: bool,
    pub last_event_time: Option<DateTime<Utc>>,
    pub last_event_file: Option<String>,
    pub last_event_pos: Option<u64>,
    pub checkpoint_file: Option<String>,
    pub checkpoint_pos: Option<u64>,
    pub checkpoint_gtid_set: Option<String>,
    pub events_written: u64,
    pub bytes_written: u64,
    pub last_fsync_us: Option<u64>,
    pub reconnects: u64,
    pub crc_errors: u64,
    pub retry_in_ms: Option<u64>,
    pub last_error: Option<TaskError>,
    pub semi_sync: SemiSyncDto,
    /// Set while the writer's batch (write-out and fsync, or the checkpoint's store) has not
    /// returned for `writer.stall_after_sec` (10 s) or more, or its start (crash recovery and
    /// reconciling the local files, before streaming) for `writer.start_stall_after_sec` (60 s):
    /// since when it runs. The disk (or the metadata store) is hanging; nothing becomes durable
    /// meanwhile. Null otherwise.
    pub writer_stalled_since: Option<DateTime<Utc>>,
    /// What has stalled, with `writer_stalled_since`: `BATCH` or `START`. Null otherwise.
    pub writer_stalled_in: Option<crate::actors::file_writer::Work>,
}

/// Semi-synchronous replication of a task (`source.semi_sync`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SemiSyncDto {
    /// The task asks for it.
    pub requested: bool,
    /// The current connection is a semi-sync replica: the source's commits wait for our acks.
    pub active: bool,
    /// Why it was requested but is not active (the source has it off or lacks it); the task
    /// then streams asynchronously.
    pub unavailable_reason: Option<String>,
    /// Acks sent since the task started, each after the fsync covering it.
    pub acks_sent: u64,
    /// The last acknowledged source position, `file:pos`.
    pub last_ack_pos: Option<String>,
}

impl ReplicationDto {
    pub fn from_view(v: &TaskView) -> Self {
        let r = v.runtime.clone().unwrap_or_default();
        ReplicationDto {
            task_id: v.task.id.0,
            state: r.state.unwrap_or(v.task.state),
            source_identity: r.source_identity,
            source_version: r.source_version,
            tls: r.tls,
            streaming_from: r.streaming_from,
            connected_since: r.connected_since,
            lag_seconds: r.lag_seconds,
            caught_up: r.caught_up,
            last_event_time: r.last_event_time,
            last_event_file: r.current_file,
            last_event_pos: r.current_pos,
            checkpoint_file: r.checkpoint.as_ref().map(|c| c.file.to_string()),
            checkpoint_pos: r.checkpoint.as_ref().map(|c| c.pos),
            checkpoint_gtid_set: r.checkpoint.as_ref().and_then(|c| c.gtid_set.clone()),
            events_written: r.events_written,
            bytes_written: r.bytes_written,
            last_fsync_us: r.last_fsync_us,
            reconnects: r.reconnects,
            crc_errors: r.crc_errors,
            retry_in_ms: r.retry_in_ms,
            last_error: r.last_error.or_else(|| v.task.last_error.clone()),
            semi_sync: SemiSyncDto {
                requested: v.task.spec.source.semi_sync,
                active: r.semi_sync.active,
                unavailable_reason: r.semi_sync.unavailable.clone(),
                acks_sent: r.semi_sync.acks_sent,
                last_ack_pos: r.semi_sync.last_ack_pos.clone(),
            },
            writer_stalled_since: r.writer_stalled_since,
            writer_stalled_in: r.writer_stalled_in,
        }
    }
}

/// `{items}` of task events, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<crate::meta::TaskEvent>,
}

/// `{items}` of local files, in stream order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FilePage {
    pub items: Vec<FileDto>,
}

/// The range of `GET /api/tasks/{id}/replay` (and `/replay/archive`): one start (`start_file` +
/// `start_pos`, `start_gtid_set`, or `start_datetime`) and one stop (`stop_datetime`,
/// `stop_gtid`, or `stop_file` + `stop_pos`). Times are RFC 3339 or `YYYY-MM-DD HH:MM:SS`
/// (UTC), whole seconds. Stops are exclusive.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReplayQuery {
    /// A source binlog file name, as a `--master-data` dump records it (with `start_pos`).
    pub start_file: Option<String>,
    #[param(minimum = 4)]
    pub start_pos: Option<u64>,
    /// The GTID state the snapshot holds (MySQL set, MariaDB `domain-server-seq,...`).
    pub start_gtid_set: Option<String>,
    pub start_datetime: Option<String>,
    /// Events at or after this time are not replayed.
    pub stop_datetime: Option<String>,
    /// The first transaction not to replay.
    pub stop_gtid: Option<String>,
    pub stop_file: Option<String>,
    /// The event at this source position is the first not replayed.
    pub stop_pos: Option<u64>,
    /// The source whose files `start_file` and `stop_file` name, when a name exists under
    /// several sources (after a switchover).
    pub source_identity: Option<String>,
    /// The same for `start_file` only (overrides `source_identity`).
    pub start_source_identity: Option<String>,
    /// The same for `stop_file` only (overrides `source_identity`).
    pub stop_source_identity: Option<String>,
}

/// `?source_identity=` of a file download.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// Only needed when the name exists under two sources (after a switchover).
    pub source_identity: Option<String>,
}
