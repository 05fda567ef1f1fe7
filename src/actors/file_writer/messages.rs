//! What the writer is told and what it answers: its messages, its reports to the task, and its
//! error (classified for the task's failure policy).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix::prelude::*;

use crate::binlog::Flavor;
use crate::binlog::name::BinlogFileName;
use crate::binlog::stream::{LocalFiles, WriteOp};
use crate::domain::TaskErrorCode;
use crate::meta::{Checkpoint, StoreError};
use crate::reconcile::Refusal;
use crate::retry::FailureClass;
use crate::source::dump::SourceIdentity;

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
    pub(super) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
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
    Checkpointed {
        checkpoint: Checkpoint,
        fsync: Duration,
        bytes: u64,
    },
    FileCreated {
        identity: String,
        name: BinlogFileName,
    },
    /// `sha256`: the digest of the bytes the writer wrote into the file, when it wrote every one
    /// of them (a file it created and sealed in one run); `None` when the task must read the
    /// file back to hash it (a file resumed after a restart, or sealed by recovery).
    FileSealed {
        identity: String,
        name: BinlogFileName,
        path: PathBuf,
        size: u64,
        sha256: Option<String>,
    },
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
    /// When the batch's first event was read off the source's socket (the
    /// `binlog_server_durable_seconds` histogram); `None` for batches not made from a stream.
    pub received: Option<std::time::Instant>,
    /// Run on the writer's thread the moment `checkpoint` is durable (after the fsync, before
    /// anything else: the metadata write, the report to the task, the answer); dropped unrun when
    /// the batch fails or has no checkpoint. A semi-sync ack goes out here, so that the source's
    /// commit waiting for it does not also wait for this answer to reach the stream task.
    pub after_durable: Option<AfterDurable>,
}

/// See [`WriteBatch::after_durable`].
pub struct AfterDurable(Box<dyn FnOnce() + Send>);

impl AfterDurable {
    pub fn new(f: impl FnOnce() + Send + 'static) -> Self {
        AfterDurable(Box::new(f))
    }

    pub(super) fn run(self) {
        (self.0)()
    }
}

impl std::fmt::Debug for AfterDurable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AfterDurable")
    }
}

/// Persist the durable checkpoint now if it is newer than the stored one (the task's timer). A
/// failure is logged once and fails the next `WriteBatch`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PersistCheckpoint;

/// Flush, persist and close the open file (task stop). The writer can be prepared again.
#[derive(Message)]
#[rtype(result = "Result<Option<Checkpoint>, WriterError>")]
pub struct CloseFiles;
