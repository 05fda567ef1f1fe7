//! Task-level domain types shared by the API, the actors and the store: ids, states and their
//! allowed transitions, source and start specifications, and their validation.
//!
//! Values are parsed and validated once, here, at the edge; everything past this module can
//! trust a `TaskSpec`. Nothing in this module does I/O.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::binlog::gtid::StartGtid;
use crate::binlog::name::BinlogFileName;
use crate::secret::Secret;

/// A task's id (the metadata store's row id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskId(pub i64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

pub(crate) use crate::string_enum::string_enum;

string_enum!(
    /// Where a task is in its life. Changes follow one table, `TaskState::allows`.
    TaskState {
        Stopped => "STOPPED",
        Starting => "STARTING",
        Running => "RUNNING",
        RetryBackoff => "RETRY_BACKOFF",
        Stopping => "STOPPING",
        Failed => "FAILED",
        LeaseDegraded => "LEASE_DEGRADED",
    }
);

/// Who moves a task from one state to another: the state table's rows differ by mover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mover {
    /// The task's own actors (`TaskActor`), from the state they hold.
    Task,
    /// An operator's command (start, stop), and the end of a stop no actor will finish.
    Operator,
    /// A row whose actors are gone: left by a killed process (found at start-up), taken over with
    /// a lease, or stopping on a node that left the cluster.
    Repair,
}

impl Mover {
    pub const ALL: &'static [Mover] = &[Mover::Task, Mover::Operator, Mover::Repair];
}

impl TaskState {
    /// The states in which replication actors exist (or are being set up or torn down). The one
    /// list: the API reports it per task (`active`), the UI and the cluster's queries follow it.
    pub const ACTIVE: &'static [TaskState] = &[
        TaskState::Starting,
        TaskState::Running,
        TaskState::RetryBackoff,
        TaskState::Stopping,
        TaskState::LeaseDegraded,
    ];

    /// The one task state table: whether `mover` may move a task from `self` to `next`.
    pub fn allows(self, next: TaskState, mover: Mover) -> bool {
        use TaskState::*;
        match mover {
            Mover::Task => matches!(
                (self, next),
                (Starting, Running | RetryBackoff | Failed | Stopping)
                    | (Running, RetryBackoff | Failed | Stopping)
                    | (RetryBackoff, Starting | Running | Failed | Stopping)
                    | (Stopping, Stopped | Failed)
                    // Cluster mode: lease renewals failing; the task stops writing before the
                    // lease could expire, and comes back when renewals succeed again.
                    | (Starting | Running | RetryBackoff, LeaseDegraded)
                    | (LeaseDegraded, Starting | Running | RetryBackoff | Stopping | Failed)
            ),
            Mover::Operator => matches!(
                (self, next),
                // Start an idle task; stop one (a failed one has no actors: it stops at once).
                (Stopped | Failed, Starting)
                    | (Failed, Stopped)
                    | (Starting | Running | RetryBackoff | LeaseDegraded, Stopping)
                    // A stop no actor will finish (no actor here, no live lease anywhere).
                    | (Stopping, Stopped)
            ),
            // What the operator wants is restored: resumed (STARTING again, even from
            // STARTING) or stopped. A FAILED task waits for its operator.
            Mover::Repair => match next {
                Starting => self == Stopped || self.is_active(),
                Stopped => self.is_active(),
                _ => false,
            },
        }
    }

    /// Whether a task's own actors may move it from `self` to `next`.
    pub fn can_become(self, next: TaskState) -> bool {
        self.allows(next, Mover::Task)
    }

    /// The states from which `mover` may move a task to `next` (a conditional update's origins).
    pub fn origins(next: TaskState, mover: Mover) -> Vec<TaskState> {
        TaskState::ALL.iter().copied().filter(|s| s.allows(next, mover)).collect()
    }

    /// Whether replication actors exist (or are being set up) for a task in this state.
    pub fn is_active(self) -> bool {
        TaskState::ACTIVE.contains(&self)
    }

    /// A task's configuration may change (PUT) or the task be deleted only while it is idle.
    pub fn is_idle(self) -> bool {
        matches!(self, TaskState::Stopped | TaskState::Failed)
    }
}

string_enum!(
    /// What the operator asked for; restored on process start.
    DesiredState {
        Running => "RUNNING",
        Stopped => "STOPPED",
    }
);

/// The source server's dialect (defined with the binlog code, which reads it).
pub use crate::binlog::Flavor;

string_enum!(
    /// Where a new task starts reading.
    StartMode {
        Latest => "LATEST",
        FilePos => "FILE_POS",
        Gtid => "GTID",
        ArchiveOnly => "ARCHIVE_ONLY",
    }
);

string_enum!(
    /// TLS towards the source, with the MySQL client's names.
    TlsMode {
        Disabled => "disabled",
        Preferred => "preferred",
        Required => "required",
        VerifyCa => "verify_ca",
        VerifyIdentity => "verify_identity",
    }
);

/// Validated connection details of a task's source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub flavor: Flavor,
    pub server_id: Option<u32>,
    pub tls_mode: TlsMode,
    pub tls_ca_file: Option<String>,
    /// The source's RSA public key (PEM), pinned for caching_sha2_password without TLS.
    pub server_public_key: Option<String>,
    /// Announce a semi-synchronous replica: the source's commits wait for our fsync.
    pub semi_sync: bool,
}

impl SourceSpec {
    /// The settings that decide where the password goes and how it travels, among those that
    /// differ between `self` and `other` (API field names).
    pub fn changed_destination(&self, other: &SourceSpec) -> Vec<&'static str> {
        [
            ("source.host", self.host != other.host),
            ("source.port", self.port != other.port),
            ("source.user", self.user != other.user),
            ("source.tls_mode", self.tls_mode != other.tls_mode),
            ("source.tls_ca_file", self.tls_ca_file != other.tls_ca_file),
            ("source.server_public_key", self.server_public_key != other.server_public_key),
        ]
        .into_iter()
        .filter_map(|(field, changed)| changed.then_some(field))
        .collect()
    }
}

/// The password of an update that leaves it out: the stored one, but only while it would go to
/// the same server the same way (host, port, user, TLS settings and pinned key unchanged).
/// Otherwise whoever redirects the task must know the password: the API credential alone must
/// not be enough to have it sent to a server of one's choosing. An empty stored password has
/// nothing to disclose and is kept.
pub fn kept_password(stored: &SourceSpec, updated: &SourceSpec) -> Result<Secret, FieldError> {
    let changed = stored.changed_destination(updated);
    if changed.is_empty() || stored.password.is_empty() {
        return Ok(stored.password.clone());
    }
    Err(FieldError {
        field: "source.password",
        message: format!(
            "is required because {} changed (a stored password is kept only for the same host, port, user \
             and TLS settings)",
            changed.join(", ")
        ),
    })
}

/// Validated start position of a task.
#[derive(Debug, Clone, PartialEq)]
pub enum StartSpec {
    Latest,
    FilePos {
        file: BinlogFileName,
        pos: u64,
    },
    Gtid {
        gtid_set: StartGtid,
    },
    /// Never connects to a source: the archive holds imported files only (a server that no
    /// longer exists, or a history kept apart from the live task).
    ArchiveOnly,
}

impl StartSpec {
    pub fn mode(&self) -> StartMode {
        match self {
            StartSpec::Latest => StartMode::Latest,
            StartSpec::FilePos { .. } => StartMode::FilePos,
            StartSpec::Gtid { .. } => StartMode::Gtid,
            StartSpec::ArchiveOnly => StartMode::ArchiveOnly,
        }
    }

    /// Whether the task never connects to a source.
    pub fn is_archive_only(&self) -> bool {
        matches!(self, StartSpec::ArchiveOnly)
    }
}

/// Everything an operator specifies about a task, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    pub name: String,
    pub cluster_key: String,
    pub source: SourceSpec,
    pub start: StartSpec,
    /// Local retention: sealed files older than this may go (once uploaded, when upload is on).
    pub retention_days: u32,
    /// Bucket retention (>= local retention).
    pub bucket_retention_days: u32,
}

/// A stored task as the rest of the service sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: TaskId,
    pub spec: TaskSpec,
    pub desired_state: DesiredState,
    pub state: TaskState,
    pub last_error: Option<TaskError>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// The replica server_id a task registers with: its own, or `base + id` (documented default).
pub fn effective_server_id(task: &Task, base: u32) -> u32 {
    task.spec.source.server_id.unwrap_or_else(|| {
        // Ids beyond the u32 range wrap; 0 is not a valid replica id, so skip it.
        let id = base.wrapping_add(task.id.0 as u32);
        if id == 0 { 1 } else { id }
    })
}

string_enum!(
    /// Machine-readable cause of a task's last failure (`last_error.code`).
    TaskErrorCode {
        SourceAccessDenied => "SOURCE_ACCESS_DENIED",
        SourceLogBinOff => "SOURCE_LOG_BIN_OFF",
        SourceBinlogPurged => "SOURCE_BINLOG_PURGED",
        SourceSwitchover => "SOURCE_SWITCHOVER",
        InvalidStartPosition => "INVALID_START_POSITION",
        LocalStorageError => "LOCAL_STORAGE_ERROR",
        SourceUnreachable => "SOURCE_UNREACHABLE",
        SourceProtocolError => "SOURCE_PROTOCOL_ERROR",
        ChecksumMismatch => "CHECKSUM_MISMATCH",
        SourceEventCorrupt => "SOURCE_EVENT_CORRUPT",
        SourceStreamUnreadable => "SOURCE_STREAM_UNREADABLE",
        MetadataError => "METADATA_ERROR",
        LeaseLost => "LEASE_LOST",
        InternalError => "INTERNAL_ERROR",
    }
);

/// A task's last error: what failed, and since when the task has been failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskError {
    pub code: TaskErrorCode,
    pub message: String,
    /// When the task began failing: the first failed attempt since it last streamed.
    pub since: chrono::DateTime<chrono::Utc>,
    /// Failed attempts since then (this one included).
    pub attempts: u32,
}

impl TaskError {
    /// A first failure, at `now`.
    pub fn first(code: TaskErrorCode, message: impl Into<String>, now: chrono::DateTime<chrono::Utc>) -> Self {
        TaskError { code, message: message.into(), since: now, attempts: 1 }
    }
}

string_enum!(
    /// Kinds of rows in `task_events`.
    TaskEventType {
        TaskCreated => "TASK_CREATED",
        TaskUpdated => "TASK_UPDATED",
        TaskStarted => "TASK_STARTED",
        TaskRunning => "TASK_RUNNING",
        TaskFileRotated => "TASK_FILE_ROTATED",
        TaskRetryBackoff => "TASK_RETRY_BACKOFF",
        TaskError => "TASK_ERROR",
        TaskStopped => "TASK_STOPPED",
        SourceSwitchover => "SOURCE_SWITCHOVER",
        TaskLeaseAcquired => "TASK_LEASE_ACQUIRED",
        TaskLeaseLost => "TASK_LEASE_LOST",
        TaskLeaseDegraded => "TASK_LEASE_DEGRADED",
        SemiSyncUnavailable => "SEMI_SYNC_UNAVAILABLE",
        SourceTornTail => "SOURCE_TORN_TAIL",
        WriterStalled => "WRITER_STALLED",
        WriterStallEnded => "WRITER_STALL_ENDED",
        FilesSetAside => "FILES_SET_ASIDE",
    }
);

/// How long a writer's work may run before it is said to be stalled, by kind: a batch
/// (`writer.stall_after_sec`: write-out and fsync, the checkpoint's store, the final flush) and
/// its start (`writer.start_stall_after_sec`: crash recovery and the local files' reconciliation
/// before streaming, which may read a whole open file back). Read by the task's stall watch and
/// by the dashboard's summary alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallAfter {
    pub batch: std::time::Duration,
    pub start: std::time::Duration,
}

/// Raw (unvalidated) task input: the API's body and the store's columns both convert to this.
#[derive(Debug, Clone, Default)]
pub struct RawTaskSpec {
    pub name: Option<String>,
    pub cluster_key: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub flavor: Option<String>,
    pub server_id: Option<i64>,
    pub tls_mode: Option<String>,
    pub tls_ca_file: Option<String>,
    pub server_public_key: Option<String>,
    pub semi_sync: Option<bool>,
    pub start_mode: Option<String>,
    pub start_file: Option<String>,
    pub start_pos: Option<i64>,
    pub start_gtid_set: Option<String>,
    pub retention_days: Option<i64>,
    pub bucket_retention_days: Option<i64>,
}

/// One validation failure: the field (as the API names it) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

pub const DEFAULT_RETENTION_DAYS: u32 = 7;
/// Bucket retention when not given: at least this, and at least the local retention.
pub const DEFAULT_BUCKET_RETENTION_DAYS: u32 = 30;
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_CLUSTER_KEY_LEN: usize = 128;

fn required(v: Option<String>, field: &'static str, errs: &mut Vec<FieldError>) -> String {
    match v {
        Some(s) if !s.trim().is_empty() => s,
        Some(_) => {
            errs.push(FieldError { field, message: "must not be empty".into() });
            String::new()
        }
        None => {
            errs.push(FieldError { field, message: "is required".into() });
            String::new()
        }
    }
}

fn parse_enum<T: FromStr<Err = String>>(
    v: Option<String>,
    field: &'static str,
    default: Option<T>,
    errs: &mut Vec<FieldError>,
) -> Option<T> {
    match v {
        None => {
            if default.is_none() {
                errs.push(FieldError { field, message: "is required".into() });
            }
            default
        }
        Some(s) => match s.parse::<T>() {
            Ok(t) => Some(t),
            Err(e) => {
                errs.push(FieldError { field, message: e });
                None
            }
        },
    }
}

/// Checks the `cluster_key` pattern `[A-Za-z0-9._-]{1,128}`.
pub fn valid_cluster_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_CLUSTER_KEY_LEN
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl RawTaskSpec {
    /// Validates every field and reports all problems at once.
    pub fn validate(self) -> Result<TaskSpec, Vec<FieldError>> {
        let mut errs = Vec::new();

        let name = required(self.name, "name", &mut errs);
        if name.chars().count() > MAX_NAME_LEN {
            errs.push(FieldError { field: "name", message: format!("must be at most {MAX_NAME_LEN} characters") });
        }
        if name.chars().any(char::is_control) {
            errs.push(FieldError { field: "name", message: "must not contain control characters".into() });
        }

        let cluster_key = required(self.cluster_key, "cluster_key", &mut errs);
        if !cluster_key.is_empty() && !valid_cluster_key(&cluster_key) {
            errs.push(FieldError {
                field: "cluster_key",
                message: format!("must match [A-Za-z0-9._-]{{1,{MAX_CLUSTER_KEY_LEN}}}"),
            });
        }

        let host = required(self.host, "source.host", &mut errs);
        if host.len() > 255 || host.chars().any(|c| c.is_whitespace() || c.is_control() || c == '/') {
            errs.push(FieldError { field: "source.host", message: "is not a valid host name or address".into() });
        }
        let port = match self.port {
            None => {
                errs.push(FieldError { field: "source.port", message: "is required".into() });
                0
            }
            Some(p) if (1..=65535).contains(&p) => p as u16,
            Some(p) => {
                errs.push(FieldError { field: "source.port", message: format!("{p} is not between 1 and 65535") });
                0
            }
        };
        let user = required(self.user, "source.user", &mut errs);
        if user.len() > 255 {
            errs.push(FieldError { field: "source.user", message: "must be at most 255 bytes".into() });
        }
        let password = self.password.unwrap_or_default();
        let flavor = parse_enum::<Flavor>(self.flavor, "source.flavor", None, &mut errs);
        let server_id = match self.server_id {
            None => None,
            Some(id) if (1..=u32::MAX as i64).contains(&id) => Some(id as u32),
            Some(id) => {
                errs.push(FieldError {
                    field: "source.server_id",
                    message: format!("{id} is not between 1 and 4294967295"),
                });
                None
            }
        };
        let tls_mode = parse_enum::<TlsMode>(self.tls_mode, "source.tls_mode", Some(TlsMode::Preferred), &mut errs);
        let tls_ca_file = self.tls_ca_file.filter(|s| !s.is_empty());
        if matches!(tls_mode, Some(TlsMode::VerifyCa | TlsMode::VerifyIdentity)) && tls_ca_file.is_none() {
            // Without a CA file the system roots are used; that is valid for verify_identity
            // against public CAs, but a private CA is the norm for databases: say so early.
            if tls_mode == Some(TlsMode::VerifyCa) {
                errs.push(FieldError {
                    field: "source.tls_ca_file",
                    message: "is required for tls_mode verify_ca".into(),
                });
            }
        }

        let server_public_key = match self.server_public_key.filter(|k| !k.trim().is_empty()) {
            None => None,
            Some(pem) => match crate::rsa_key::public_key_bits(&pem) {
                Ok(bits) if bits >= crate::rsa_key::MIN_BITS => Some(crate::rsa_key::normalize(&pem)),
                Ok(bits) => {
                    errs.push(FieldError {
                        field: "source.server_public_key",
                        message: format!(
                            "is a {bits}-bit key; at least {} bits are required",
                            crate::rsa_key::MIN_BITS
                        ),
                    });
                    None
                }
                Err(e) => {
                    errs.push(FieldError { field: "source.server_public_key", message: e });
                    None
                }
            },
        };

        let mode = parse_enum::<StartMode>(self.start_mode, "start.mode", None, &mut errs);
        let start = match mode {
            Some(StartMode::Latest) => Some(StartSpec::Latest),
            Some(StartMode::ArchiveOnly) => Some(StartSpec::ArchiveOnly),
            Some(StartMode::FilePos) => {
                let file = match self.start_file.as_deref() {
                    None | Some("") => {
                        errs.push(FieldError { field: "start.file", message: "is required for mode FILE_POS".into() });
                        None
                    }
                    Some(f) => match BinlogFileName::parse(f) {
                        Ok(n) => Some(n),
                        Err(e) => {
                            errs.push(FieldError { field: "start.file", message: e.to_string() });
                            None
                        }
                    },
                };
                let pos = match self.start_pos {
                    None => {
                        errs.push(FieldError { field: "start.pos", message: "is required for mode FILE_POS".into() });
                        None
                    }
                    Some(p) if p < 4 => {
                        errs.push(FieldError {
                            field: "start.pos",
                            message: format!("{p} is before the first event (positions start at 4)"),
                        });
                        None
                    }
                    Some(p) if p > u32::MAX as i64 => {
                        errs.push(FieldError {
                            field: "start.pos",
                            message: format!("{p} is beyond the 4 GiB position range"),
                        });
                        None
                    }
                    Some(p) => Some(p as u64),
                };
                match (file, pos) {
                    (Some(file), Some(pos)) => Some(StartSpec::FilePos { file, pos }),
                    _ => None,
                }
            }
            Some(StartMode::Gtid) => match (self.start_gtid_set.as_deref(), flavor) {
                (None, _) => {
                    errs.push(FieldError {
                        field: "start.gtid_set",
                        message: "is required for mode GTID (may be empty: \"\")".into(),
                    });
                    None
                }
                (Some(text), Some(flavor)) => match StartGtid::parse(flavor, text) {
                    Ok(g) => Some(StartSpec::Gtid { gtid_set: g }),
                    Err(e) => {
                        errs.push(FieldError { field: "start.gtid_set", message: e.to_string() });
                        None
                    }
                },
                (Some(_), None) => None,
            },
            None => None,
        };
        if mode.is_some() && mode != Some(StartMode::FilePos) && (self.start_file.is_some() || self.start_pos.is_some())
        {
            errs.push(FieldError { field: "start.file", message: "file/pos are only valid with mode FILE_POS".into() });
        }
        if mode.is_some() && mode != Some(StartMode::Gtid) && self.start_gtid_set.is_some() {
            errs.push(FieldError { field: "start.gtid_set", message: "gtid_set is only valid with mode GTID".into() });
        }

        let retention_days = match self.retention_days {
            None => DEFAULT_RETENTION_DAYS,
            Some(d) if (1..=3650).contains(&d) => d as u32,
            Some(d) => {
                errs.push(FieldError {
                    field: "storage.retention_days",
                    message: format!("{d} is not between 1 and 3650"),
                });
                DEFAULT_RETENTION_DAYS
            }
        };

        let bucket_retention_days = match self.bucket_retention_days {
            None => DEFAULT_BUCKET_RETENTION_DAYS.max(retention_days),
            Some(d) if (1..=3650).contains(&d) && d as u32 >= retention_days => d as u32,
            Some(d) if (1..=3650).contains(&d) => {
                errs.push(FieldError {
                    field: "storage.bucket_retention_days",
                    message: format!("{d} is shorter than the local retention ({retention_days} days)"),
                });
                retention_days
            }
            Some(d) => {
                errs.push(FieldError {
                    field: "storage.bucket_retention_days",
                    message: format!("{d} is not between 1 and 3650"),
                });
                retention_days
            }
        };

        if !errs.is_empty() {
            return Err(errs);
        }
        Ok(TaskSpec {
            name,
            cluster_key,
            source: SourceSpec {
                host,
                port,
                user,
                password,
                flavor: flavor.expect("checked above"),
                server_id,
                tls_mode: tls_mode.expect("checked above"),
                tls_ca_file,
                server_public_key,
                semi_sync: self.semi_sync.unwrap_or(false),
            },
            start: start.expect("checked above"),
            retention_days,
            bucket_retention_days,
        })
    }
}

/// A valid spec for unit tests: a MariaDB source at db1.example, LATEST.
#[cfg(test)]
pub(crate) fn test_spec(name: &str, cluster_key: &str) -> TaskSpec {
    test_raw_spec(name, cluster_key).validate().expect("a valid test spec")
}

/// [`test_spec`] before validation, for tests that change a field first.
#[cfg(test)]
pub(crate) fn test_raw_spec(name: &str, cluster_key: &str) -> RawTaskSpec {
    RawTaskSpec {
        name: Some(name.into()),
        cluster_key: Some(cluster_key.into()),
        host: Some("db1.example".into()),
        port: Some(3306),
        user: Some("repl".into()),
        password: Some(Secret::new("pw")),
        flavor: Some("mariadb".into()),
        start_mode: Some("LATEST".into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawTaskSpec {
        test_raw_spec("t", "k-1")
    }

    fn field_errors(r: RawTaskSpec) -> Vec<&'static str> {
        r.validate().unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_minimal_spec_validates_with_defaults() {
        let s = raw().validate().unwrap();
        assert_eq!(s.retention_days, 7);
        assert_eq!(s.source.tls_mode, TlsMode::Preferred);
        assert_eq!(s.start, StartSpec::Latest);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let mut r = raw();
        r.port = Some(70000);
        r.flavor = Some("postgres".into());
        r.cluster_key = Some("bad key!".into());
        r.name = Some("x".repeat(300));
        let f = field_errors(r);
        assert_eq!(f, vec!["name", "cluster_key", "source.port", "source.flavor"]);
    }

    #[test]
    fn file_pos_needs_file_and_pos_from_4() {
        let mut r = raw();
        r.start_mode = Some("FILE_POS".into());
        assert_eq!(field_errors(r.clone()), vec!["start.file", "start.pos"]);
        r.start_file = Some("mysql-bin.000001".into());
        r.start_pos = Some(3);
        assert_eq!(field_errors(r.clone()), vec!["start.pos"]);
        r.start_pos = Some(4);
        assert!(r.validate().is_ok());
    }

    #[test]
    fn port_zero_and_unknown_mode_are_rejected() {
        let mut r = raw();
        r.port = Some(0);
        r.start_mode = Some("SOMETIME".into());
        assert_eq!(field_errors(r), vec!["source.port", "start.mode"]);
    }

    /// Every (from, to, mover) of the state table: the allowed moves are listed here in full,
    /// every other one must be refused.
    #[test]
    fn transitions_follow_the_table() {
        use Mover::*;
        use TaskState::*;
        let allowed: &[(Mover, TaskState, &[TaskState])] = &[
            (Task, Starting, &[Running, RetryBackoff, Failed, Stopping, LeaseDegraded]),
            (Task, Running, &[RetryBackoff, Failed, Stopping, LeaseDegraded]),
            (Task, RetryBackoff, &[Starting, Running, Failed, Stopping, LeaseDegraded]),
            (Task, Stopping, &[Stopped, Failed]),
            (Task, LeaseDegraded, &[Starting, Running, RetryBackoff, Stopping, Failed]),
            (Operator, Stopped, &[Starting]),
            (Operator, Failed, &[Starting, Stopped]),
            (Operator, Starting, &[Stopping]),
            (Operator, Running, &[Stopping]),
            (Operator, RetryBackoff, &[Stopping]),
            (Operator, LeaseDegraded, &[Stopping]),
            (Operator, Stopping, &[Stopped]),
            (Repair, Stopped, &[Starting]),
            (Repair, Starting, &[Starting, Stopped]),
            (Repair, Running, &[Starting, Stopped]),
            (Repair, RetryBackoff, &[Starting, Stopped]),
            (Repair, Stopping, &[Starting, Stopped]),
            (Repair, LeaseDegraded, &[Starting, Stopped]),
        ];
        for &mover in Mover::ALL {
            for &from in TaskState::ALL {
                for &to in TaskState::ALL {
                    let listed = allowed.iter().any(|(m, f, tos)| *m == mover && *f == from && tos.contains(&to));
                    assert_eq!(from.allows(to, mover), listed, "{mover:?}: {from} -> {to}");
                }
            }
        }
        assert!(!LeaseDegraded.can_become(Stopped), "a stop passes through STOPPING");
        assert!(!Failed.allows(Starting, Repair), "a failed task waits for its operator, restart or not");
        assert_eq!(TaskState::origins(Stopping, Operator), vec![Starting, Running, RetryBackoff, LeaseDegraded]);
        assert_eq!(TaskState::origins(Stopped, Operator), vec![Stopping, Failed]);
        let active: Vec<TaskState> = TaskState::ALL.iter().copied().filter(|s| s.is_active()).collect();
        assert_eq!(active, vec![Starting, Running, RetryBackoff, Stopping, LeaseDegraded]);
    }

    #[test]
    fn a_stored_password_is_kept_only_for_the_same_destination() {
        let stored = raw().validate().unwrap().source;
        type Edit = fn(&mut SourceSpec);
        let table: &[(&str, Edit, Option<&str>)] = &[
            ("nothing changed", |_| {}, None),
            ("another host", |s| s.host = "db.attacker.example".into(), Some("source.host")),
            ("another port", |s| s.port = 3307, Some("source.port")),
            ("another user", |s| s.user = "root".into(), Some("source.user")),
            ("TLS off", |s| s.tls_mode = TlsMode::Disabled, Some("source.tls_mode")),
            ("TLS verified", |s| s.tls_mode = TlsMode::VerifyIdentity, Some("source.tls_mode")),
            ("another CA", |s| s.tls_ca_file = Some("ca.pem".into()), Some("source.tls_ca_file")),
            ("a pinned key", |s| s.server_public_key = Some("k".into()), Some("source.server_public_key")),
            ("flavor and server_id", |s| (s.flavor, s.server_id) = (Flavor::Mysql, Some(9)), None),
        ];
        for (what, edit, changed) in table {
            let mut updated = stored.clone();
            updated.password = Secret::default();
            edit(&mut updated);
            match (kept_password(&stored, &updated), changed) {
                (Ok(pw), None) => assert_eq!(pw.expose(), "pw", "{what}"),
                (Err(e), Some(field)) => {
                    assert_eq!(e.field, "source.password", "{what}");
                    assert!(e.message.contains(field), "{what}: {}", e.message);
                }
                (got, want) => panic!("{what}: got {got:?}, expected a change of {want:?}"),
            }
        }
        // With no stored password there is nothing to disclose.
        let mut empty = stored.clone();
        empty.password = Secret::default();
        let mut moved = empty.clone();
        moved.port = 1;
        assert_eq!(kept_password(&empty, &moved).unwrap(), Secret::default());
    }

    #[test]
    fn a_pinned_server_key_must_be_an_rsa_public_key() {
        let mut r = raw();
        r.server_public_key = Some("not a key".into());
        assert_eq!(field_errors(r.clone()), vec!["source.server_public_key"]);
        r.server_public_key = Some("  ".into());
        assert_eq!(r.validate().unwrap().source.server_public_key, None, "blank is no key");
    }

    #[test]
    fn cluster_key_pattern() {
        assert!(valid_cluster_key("a.B_c-9"));
        assert!(!valid_cluster_key(""));
        assert!(!valid_cluster_key("a/b"));
        assert!(!valid_cluster_key(&"a".repeat(129)));
        assert!(valid_cluster_key(&"a".repeat(128)));
    }
}
