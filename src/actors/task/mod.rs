//! `TaskActor`: one task's state machine. Owns the task's `FileWriterActor` (for the task's
//! whole run), one `ReplicationActor` per connection attempt, and (later) its `UploadActor`.
//!
//! It owns the restart policy: a retryable failure -> RETRY_BACKOFF and a new attempt after a
//! capped, jittered exponential delay, resuming from the last durable checkpoint; a permanent one
//! -> FAILED with `last_error`. Every transition lands in the store with its task event. It
//! never touches sockets or files itself, and a child's failure never takes the process down.

mod events;
mod record;
mod status;
mod stop;

pub use events::sha256_file;
pub use status::{GetStatus, RuntimeStatus, SemiSyncStatus};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use slog::{Logger, error, info, warn};

use crate::actors::file_writer::{Busy, CloseFiles, FileWriterActor, PersistCheckpoint, StallWatch, Writer};
use crate::actors::replication::{ReplicationActor, ReplicationParams, StopReplication, replica_uuid};
use crate::actors::upload::{StopUploads, UploadActor, UploadParams};
use crate::config::Settings;
use crate::domain::{Task, TaskError, TaskErrorCode, TaskEventType, TaskId, TaskState, effective_server_id};
use crate::meta::{LastError, Store};
use crate::retry::RetryState;
use crate::source::conn::ConnectParams;
use crate::source::dump::ReplicaParams;
use crate::telemetry::metrics::metrics;
use crate::upload::ObjectStore;

/// What a TaskActor needs from its parent.
#[derive(Clone)]
pub struct TaskContext {
    pub store: Store,
    pub settings: Arc<Settings>,
    pub log: Logger,
    pub supervisor: Recipient<TaskExited>,
    /// The bucket, when upload is enabled.
    pub objects: Option<Arc<ObjectStore>>,
    /// Cluster mode: the lease this task runs under (its `store` is fenced by the same lease).
    pub lease: Option<crate::cluster::LeaseGuard>,
    /// Where upload actors run: their own thread, because uploading means hashing every byte
    /// (rust-s3 hashes each request body to sign it), which must not delay the tasks' actors.
    pub uploads: actix::ArbiterHandle,
    /// The threads the task's writer does its blocking work on (shared by every task).
    pub writers: crate::actors::file_writer::WriterPool,
    /// Where the writer publishes the durable checkpoint for the relay.
    pub relay: crate::relay::CheckpointHub,
}

/// Cluster mode: the lease is lost or about to be; stop writing at once. Nothing is recorded in
/// the store (it is another node's task now, or the store is unreachable). Replies when done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Relinquish {
    pub reason: String,
}

/// Cluster mode: lease renewals are failing (`true`) or succeed again (`false`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaseDegraded(pub bool);

/// Retry-upload was asked for: wake the uploader.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WakeUploads;

/// Told to the supervisor when a TaskActor ends.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TaskExited {
    pub id: TaskId,
    /// The actor that ended: a newer one may run the task by now (a lease taken again).
    pub actor: Addr<TaskActor>,
    /// Cluster mode: the lease epoch it ran under.
    pub epoch: Option<i64>,
}

/// Operator stop: stop streaming, flush + fsync + persist the checkpoint, then STOPPED.
/// Replies once done.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

/// Process shutdown: like `Stop`, but the operator's desired state is left as it is, so the
/// task resumes at the next start.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

pub struct TaskActor {
    task: Task,
    ctx: TaskContext,
    state: TaskState,
    writer: Option<Addr<FileWriterActor>>,
    replication: Option<Addr<ReplicationActor>>,
    uploader: Option<Addr<UploadActor>>,
    attempt: u32,
    retry: Option<SpawnHandle>,
    stopping: bool,
    status: RuntimeStatus,
    /// Totals of finished attempts (each attempt counts from zero).
    base_events: u64,
    base_bytes: u64,
    base_acks: u64,
    /// Sealed files whose sha256 is to be recorded: (identity, name, path, the digest of the
    /// bytes as written when the writer has it, else `None`: read the file back).
    to_hash: VecDeque<(String, String, PathBuf, Option<String>)>,
    hashing: bool,
    /// The task id as a metric label value.
    label: String,
    /// Cluster mode: renewals failing. The stored state says LEASE_DEGRADED; the state the
    /// replication reached meanwhile is recorded once renewals succeed again.
    degraded: Option<TaskState>,
    /// Set once the lease is gone: nothing more is recorded.
    relinquished: bool,
    /// The failure policy's memory: the current retry period and the repeated failure.
    failures: RetryState,
    /// What the writer is busy with and since when (the writer marks it), and what was said
    /// about it: a batch or start that does not return is said while it lasts (`watch_writer`).
    writer_busy: Busy,
    stall: StallWatch,
}

impl TaskActor {
    pub fn new(task: Task, ctx: TaskContext) -> Self {
        let state = task.state;
        let label = task.id.0.to_string();
        let stall_after = ctx.settings.writer.stall_after();
        TaskActor {
            task,
            ctx,
            state,
            writer: None,
            replication: None,
            uploader: None,
            attempt: 0,
            retry: None,
            stopping: false,
            status: RuntimeStatus::default(),
            base_events: 0,
            base_bytes: 0,
            base_acks: 0,
            to_hash: VecDeque::new(),
            hashing: false,
            label,
            degraded: None,
            relinquished: false,
            failures: RetryState::default(),
            writer_busy: Busy::default(),
            stall: StallWatch::with_stall(stall_after),
        }
    }

    fn id(&self) -> TaskId {
        self.task.id
    }

    fn replication_params(&self) -> ReplicationParams {
        let s = &self.ctx.settings;
        let src = &self.task.spec.source;
        let heartbeat = Duration::from_millis(s.replication.heartbeat_period_ms);
        ReplicationParams {
            task_id: self.task.id.0,
            connect: ConnectParams {
                host: src.host.clone(),
                port: src.port,
                user: src.user.clone(),
                password: src.password.clone(),
                tls_mode: src.tls_mode,
                tls_ca_file: src.tls_ca_file.clone(),
                tls_ca_dir: (!s.replication.tls_ca_dir.is_empty()).then(|| s.replication.tls_ca_dir.clone().into()),
                server_public_key: src.server_public_key.clone(),
                connect_timeout: Duration::from_millis(s.replication.connect_timeout_ms),
                max_packet: s.replication.max_event_bytes as usize + 1,
            },
            flavor: src.flavor,
            start: self.task.spec.start.clone(),
            replica: ReplicaParams {
                server_id: effective_server_id(&self.task, s.replication.server_id_base),
                replica_uuid: replica_uuid(&self.task.spec.cluster_key),
                heartbeat,
            },
            silence_timeout: heartbeat * s.replication.heartbeat_timeout_factor,
            fsync_max_bytes: s.writer.fsync_max_bytes as usize,
            fsync_max_delay: Duration::from_millis(s.writer.fsync_max_delay_ms),
            semi_sync: src.semi_sync,
            log: self.ctx.log.clone(),
        }
    }

    fn start_attempt(&mut self, ctx: &mut Context<Self>) {
        self.retry = None;
        self.status.retry_in_ms = None;
        let Some(writer) = self.writer.clone() else { return };
        let params = self.replication_params();
        self.replication = Some(ReplicationActor::new(params, writer, ctx.address().recipient()).start());
    }

    fn fail(&mut self, err: TaskError, ctx: &mut Context<Self>) {
        if err.code == TaskErrorCode::LeaseLost {
            // Not a failure of the task: this node may no longer run it. Stop, record nothing.
            warn!(self.ctx.log, "stopping: the lease is no longer ours"; "error" => &err.message);
            self.relinquished = true;
            self.shutdown_children(ctx, |_, ctx| ctx.stop());
            return;
        }
        error!(self.ctx.log, "task failed"; "code" => %err.code, "error" => &err.message, "attempts" => err.attempts);
        self.status.last_error = Some(err.clone());
        let event = Some((TaskEventType::TaskError, format!("{}: {}", err.code, err.message)));
        // Children first (flush what is durable), then the state, then the actor ends; the task
        // waits for its operator. Chained, because actix runs `ctx.wait` futures last-in first
        // and drops them once the actor stops.
        self.shutdown_children(ctx, move |act, ctx| {
            act.record_then(TaskState::Failed, LastError::Set(err), event, ctx, |_, ctx| ctx.stop());
        });
    }

    /// Stops the replication attempt, then flushes and closes the writer; then calls `done`.
    fn shutdown_children(
        &mut self,
        ctx: &mut Context<Self>,
        done: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        self.stopping = true;
        if let Some(h) = self.retry.take() {
            ctx.cancel_future(h);
        }
        let replication = self.replication.take();
        if let Some(u) = self.uploader.take() {
            u.do_send(StopUploads);
        }
        // A task giving its lease up writes nothing more: its files are not even flushed (what is
        // not yet fsynced is not checkpointed either; the next owner fetches it again).
        let writer = if self.relinquished { None } else { self.writer.clone() };
        let log = self.ctx.log.clone();
        ctx.wait(
            async move {
                if let Some(r) = replication {
                    let _ = r.send(StopReplication).await;
                }
                if let Some(w) = writer {
                    match w.send(CloseFiles).await {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Ok(()),
                    }
                } else {
                    Ok(())
                }
                .inspect_err(|e| error!(log, "closing the files failed"; "error" => e))
            }
            .into_actor(self)
            .map(move |res, act, ctx| {
                if let Err(e) = res
                    && act.state != TaskState::Failed
                {
                    act.status.last_error = Some(TaskError::first(TaskErrorCode::LocalStorageError, e, Utc::now()));
                }
                done(act, ctx);
            }),
        );
    }
}

impl Actor for TaskActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        info!(self.ctx.log, "task starting"; "state" => %self.state);
        self.status.state = Some(self.state);
        let s = self.ctx.settings.clone();
        let (id, store, log, report) =
            (self.id(), self.ctx.store.clone(), self.ctx.log.clone(), ctx.address().recipient());
        let interval = Duration::from_millis(s.writer.checkpoint_interval_ms);
        let data_dir = s.data_dir.clone();
        let lease = self.ctx.lease.clone();
        let relay = self.ctx.relay.publisher(id);
        let direct_io = s.writer.direct_io;
        let w = Writer::new(id, &data_dir, store, log, report, interval)
            .with_relay(relay)
            .with_direct_io(direct_io)
            .with_busy(self.writer_busy.clone());
        let w = match lease {
            Some(guard) => w.with_lease(crate::actors::file_writer::WriterLease { guard }),
            None => w,
        };
        self.writer = Some(FileWriterActor::start_on(&self.ctx.writers, w));
        // Idle streams still get their last checkpoint persisted.
        ctx.run_interval(interval.max(Duration::from_millis(50)), |act, _| {
            if let Some(w) = &act.writer {
                let _ = w.try_send(PersistCheckpoint);
            }
        });
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            act.refresh_gauges();
            act.watch_writer(ctx);
        });
        // Sealed files whose sha256 is still missing (a crash interrupted hashing).
        let store = self.ctx.store.clone();
        let data_dir = s.data_dir.clone();
        ctx.spawn(async move { store.call(move |s| s.list_files(id)).await.unwrap_or_default() }.into_actor(self).map(
            move |files, act, ctx| {
                for f in files.into_iter().filter(|f| f.state == crate::meta::FileState::Sealed && f.sha256.is_none()) {
                    let path = f.local_path(&data_dir);
                    act.to_hash.push_back((f.source_identity, f.file_name.to_string(), path, None));
                }
                act.hash_next(ctx);
            },
        ));
        let params = UploadParams::for_task(
            &s,
            &self.task,
            self.ctx.store.clone(),
            self.ctx.objects.clone(),
            self.ctx.log.new(slog::o!("actor" => "upload")),
            self.ctx.lease.clone(),
        );
        self.uploader = Some(UploadActor::start_in_arbiter(&self.ctx.uploads, move |_| UploadActor::new(params)));
        self.start_attempt(ctx);
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        info!(self.ctx.log, "task actor stopped"; "state" => %self.state);
        // Lag and age mean nothing for a task that does not run; counters stay.
        let _ = metrics().lag.remove_label_values(&[&self.label]);
        let _ = metrics().checkpoint_age.remove_label_values(&[&self.label]);
        let _ = metrics().writer_busy.remove_label_values(&[&self.label]);
        let _ = metrics().writer_start.remove_label_values(&[&self.label]);
        let epoch = self.ctx.lease.as_ref().map(|l| l.epoch());
        self.ctx.supervisor.do_send(TaskExited { id: self.id(), actor: ctx.address(), epoch });
    }
}
