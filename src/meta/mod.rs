//! The metadata store: tasks, checkpoints, task events and the binlog file catalog, on embedded
//! SQLite (default) or MySQL/MariaDB, behind one `Store`.
//!
//! Diesel is blocking: every method of `Store` blocks, and async callers go through
//! `Store::call`, which runs the closure on the blocking thread pool. Nothing here may be called
//! directly from an async executor thread. Secrets are stored but never logged.

/// The catalog row of one file: `one_file!(task_id, source_identity, file_name)`.
macro_rules! one_file {
    ($id:expr, $identity:expr, $name:expr) => {
        crate::meta::schema::binlog_files::table
            .filter(crate::meta::schema::binlog_files::task_id.eq($id.0))
            .filter(crate::meta::schema::binlog_files::source_identity.eq($identity))
            .filter(crate::meta::schema::binlog_files::file_name.eq($name))
    };
}

pub mod cipher;
mod conn;
pub mod guard;
mod imports;
pub mod leases;
mod models;
mod relay_users;
pub mod schema;
mod store;
mod uploads;

pub use imports::SealAt;

pub use conn::{
    ConnTuning, MetaConnection, MetaDsn, MigrationStatus, build_pool, migrate_down, migrate_up, migration_status,
};
pub use models::{Checkpoint, FileRecord, FileState, TaskEvent, TaskFilter, UploadInfo, UploadState};
#[doc(hidden)]
pub use relay_users::RelayUser;
#[cfg(any(test, feature = "test-support"))]
pub use store::contract;
pub use store::{CatalogReader, LastError, Store, Transition};

/// What can go wrong talking to the metadata database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Duplicate(&'static str),
    #[error("not found")]
    NotFound,
    /// A conditional update found the row in another state than required.
    #[error("task is {0}")]
    Conflict(crate::domain::TaskState),
    /// A mover claimed a change the state table (`TaskState::allows`) does not have: a bug.
    #[error("the state table has no change from {from} to {to}")]
    Forbidden { from: crate::domain::TaskState, to: crate::domain::TaskState },
    /// The metadata database cannot be reached (connection, pool, worker).
    #[error("metadata database unavailable: {0}")]
    Unavailable(String),
    /// The service is shutting down: no new work is taken.
    #[error("the service is shutting down")]
    ShuttingDown,
    /// The metadata database is not what this needs (missing file, SQLite in cluster mode).
    #[error("metadata database misconfigured: {0}")]
    Misconfigured(String),
    /// A local file the change needs could not be read.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata schema: {0}")]
    Migration(String),
    #[error("corrupt metadata row: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Secrets(#[from] cipher::CipherError),
    /// A fenced write found the writer's lease gone (expired, or another node took it).
    #[error("lease lost: {0} no longer holds this task's lease; the write was refused")]
    Fenced(String),
    /// A row the change needs stayed locked by another session's open transaction for longer
    /// than this session waits (MySQL/MariaDB error 1205): another node stalled inside a
    /// transaction, typically. The change was not made; trying again later is safe.
    #[error("a metadata row stayed locked by another session's open transaction (a stalled node?): {0}")]
    Locked(String),
    #[error("metadata query failed: {0}")]
    Query(#[source] diesel::result::Error),
    /// A new task would exceed `max_tasks`.
    #[error(
        "the limit of {0} tasks is reached (max_tasks): delete a task that is no longer needed, or raise max_tasks"
    )]
    TaskLimit(u32),
}

impl StoreError {
    /// Whether trying again later may succeed (connection trouble, lock timeouts). A
    /// misconfiguration, a bad row or a lost lease stays what it is until somebody acts.
    pub fn is_retryable(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            StoreError::Unavailable(_) | StoreError::ShuttingDown | StoreError::Locked(_) => true,
            StoreError::Query(Error::DatabaseError(kind, _)) => matches!(
                kind,
                DatabaseErrorKind::SerializationFailure
                    | DatabaseErrorKind::ClosedConnection
                    | DatabaseErrorKind::UnableToSendCommand
                    | DatabaseErrorKind::Unknown
            ),
            _ => false,
        }
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::NotFound => StoreError::NotFound,
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, ref info) => {
                if info.message().contains("cluster_key") || info.constraint_name() == Some("tasks_cluster_key") {
                    StoreError::Duplicate("cluster_key")
                } else {
                    StoreError::Duplicate("row")
                }
            }
            // MySQL/MariaDB error 1205; diesel has no kind for it, only the server's message.
            Error::DatabaseError(_, ref info) if info.message().starts_with("Lock wait timeout exceeded") => {
                StoreError::Locked(info.message().to_string())
            }
            other => StoreError::Query(other),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TaskState;
    use diesel::result::{DatabaseErrorKind, Error};

    #[test]
    fn which_store_errors_are_worth_a_retry() {
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let db = |kind| StoreError::Query(Error::DatabaseError(kind, Box::new(String::from("server said no"))));
        let table: Vec<(StoreError, bool)> = vec![
            (StoreError::Unavailable("pool timed out".into()), true),
            (StoreError::ShuttingDown, true),
            (StoreError::Locked("Lock wait timeout exceeded".into()), true),
            (db(DatabaseErrorKind::SerializationFailure), true),
            (db(DatabaseErrorKind::ClosedConnection), true),
            (db(DatabaseErrorKind::UnableToSendCommand), true),
            (db(DatabaseErrorKind::Unknown), true),
            (db(DatabaseErrorKind::CheckViolation), false),
            (StoreError::Misconfigured("no metadata database at /x/meta.db".into()), false),
            (StoreError::Io { what: "reading /x/file".into(), source: io() }, false),
            (StoreError::Duplicate("cluster_key"), false),
            (StoreError::NotFound, false),
            (StoreError::Conflict(TaskState::Running), false),
            (StoreError::Forbidden { from: TaskState::Stopped, to: TaskState::Running }, false),
            (StoreError::Migration("schema is newer".into()), false),
            (StoreError::Corrupt("bad row".into()), false),
            (StoreError::Fenced("node-a".into()), false),
            (StoreError::TaskLimit(10), false),
            (StoreError::Query(Error::NotFound), false),
        ];
        for (e, want) in table {
            assert_eq!(e.is_retryable(), want, "{e:?}");
        }
    }
}
