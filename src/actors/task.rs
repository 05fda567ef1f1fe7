//! `TaskActor`: one task's state machine. Owns the task's `FileWriterActor` (for the task's
//! whole run), one `ReplicationActor` per connection attempt, and (later) its `UploadActor`.
//!
//! It owns the restart policy: a retryable failure -> RETRY_BACKOFF and a new attempt after a
//! capped, jittered exponential delay, resuming from the last durable checkpoint; a permanent one
//! -> FAILED with `last_error`. Every transition lands in the store with its task event. It
//! never touches sockets or files itself, and a child's failure never takes the process down.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde::Serialize;
use slog::{Logger, error, info, warn};

use crate::actors::file_writer::{CloseFiles, FileWriterActor, PersistCheckpoint, WriterEvent};
use crate::actors::replication::{
    Progress, ReplicationActor, ReplicationEvent, ReplicationParams, StopReplication, replica_uuid,
};
use crate::actors::upload::{StopUploads, UploadActor, UploadNow, UploadParams};
use crate::config::Settings;
use crate::domain::{Mover, Task, TaskError, TaskErrorCode, TaskEventType, TaskId, TaskState, effective_server_id};
use crate::meta::{Checkpoint, LastError, Store, Transition};
use crate::retry::{Failure, RetryPolicy, RetryState, SourcePos, Verdict};
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

/// Live status only the actor knows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuntimeStatus {
    pub state: Option<TaskState>,
    pub source_identity: Option<String>,
    pub source_version: Option<String>,
    pub tls: bool,
    pub connected_since: Option<DateTime<Utc>>,
    pub streaming_from: Option<String>,
    pub current_file: Option<String>,
    pub current_pos: Option<u64>,
    /// Source timestamp of the last event written.
    pub last_event_time: Option<DateTime<Utc>>,
    pub caught_up: bool,
    /// Seconds the copy is behind the source (0 when a heartbeat says we hold everything).
    pub lag_seconds: Option<f64>,
    pub checkpoint: Option<Checkpoint>,
    pub checkpoint_at: Option<DateTime<Utc>>,
    pub events_written: u64,
    pub bytes_written: u64,
    pub last_fsync_us: Option<u64>,
    pub reconnects: u64,
    pub crc_errors: u64,
    pub retry_in_ms: Option<u64>,
    pub last_error: Option<TaskError>,
    pub semi_sync: SemiSyncStatus,
}

/// Semi-sync as the running task has it (`requested` comes from the task's settings).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SemiSyncStatus {
    /// The current connection is a semi-sync replica: the source waits for our acks.
    pub active: bool,
    /// Why semi-sync was asked for but not had (the source has it off or lacks it).
    pub unavailable: Option<String>,
    pub acks_sent: u64,
    pub last_ack_pos: Option<String>,
}

#[derive(Message)]
#[rtype(result = "RuntimeStatus")]
pub struct GetStatus;

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
    to_hash: VecDeque<(String, String, PathBuf)>,
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
}

impl TaskActor {
    pub fn new(task: Task, ctx: TaskContext) -> Self {
        let state = task.state;
        let label = task.id.0.to_string();
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
        }
    }

    fn id(&self) -> TaskId {
        self.task.id
    }

    /// Records `to` in the store if the local state allows it, in order with other writes.
    ///
    /// At most one `record` per handler: actix runs `ctx.wait` futures last-in first, so two
    /// writes from one handler would land reversed. Chain them with `record_then`.
    fn record(
        &mut self,
        to: TaskState,
        last_error: LastError,
        event: Option<(TaskEventType, String)>,
        ctx: &mut Context<Self>,
    ) {
        self.record_then(to, last_error, event, ctx, |_, _| {});
    }

    /// Like `record`, then runs `then` once the write has landed (used to stop after the final
    /// state is stored, never before).
    fn record_then(
        &mut self,
        to: TaskState,
        last_error: LastError,
        event: Option<(TaskEventType, String)>,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
        let id = self.id();
        if self.relinquished {
            then(self, ctx);
            return;
        }
        if let Some(underlying) = self.degraded.as_mut()
            && !matches!(to, TaskState::LeaseDegraded | TaskState::Stopping | TaskState::Stopped | TaskState::Failed)
        {
            // Degraded wins in the store until renewals succeed again; remember the real state.
            *underlying = to;
            self.status.state = Some(TaskState::LeaseDegraded);
            then(self, ctx);
            return;
        }
        let from = self.state;
        if (from == to && event.is_none()) || (from != to && !from.can_become(to)) {
            if from != to {
                warn!(self.ctx.log, "ignoring impossible transition"; "from" => %from, "to" => %to);
            }
            then(self, ctx);
            return;
        }
        self.state = to;
        self.status.state = Some(to);
        let store = self.ctx.store.clone();
        let log = self.ctx.log.clone();
        // The actor waits for each write before its next message: transitions land in order.
        ctx.wait(
            async move {
                let res = store
                    .call(move |s| {
                        let ev = event.as_ref().map(|(k, m)| (*k, m.as_str()));
                        // The same state again with a new error (another failed attempt) updates
                        // the error in place; otherwise only the event is added.
                        if from == to && !matches!(last_error, LastError::Set(_)) {
                            if let Some((k, m)) = ev {
                                s.append_event(id, k, m)?;
                            }
                            return Ok(());
                        }
                        let mut t = Transition::to(to, Mover::Task).from(from).last_error(last_error);
                        t.event = ev;
                        s.transition(id, t).map(|_| ())
                    })
                    .await;
                match res {
                    Err(e) => warn!(log, "could not record the task state"; "to" => %to, "error" => %e),
                    Ok(()) => slog::debug!(log, "task state recorded"; "from" => %from, "to" => %to),
                }
            }
            .into_actor(self)
            .map(move |_, act, ctx| then(act, ctx)),
        );
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

    /// Capped exponential backoff with jitter: uniform in [d/2, d], d = initial * 2^attempt.
    fn backoff(&mut self) -> Duration {
        let r = &self.ctx.settings.replication;
        let exp = r.retry_initial_ms.saturating_mul(1u64 << self.attempt.min(20));
        let d = exp.min(r.retry_max_ms).max(1);
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(rand::rng().random_range(d / 2..=d))
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

    fn hash_next(&mut self, ctx: &mut Context<Self>) {
        if self.hashing {
            return;
        }
        let Some((identity, name, path)) = self.to_hash.pop_front() else { return };
        self.hashing = true;
        let store = self.ctx.store.clone();
        let id = self.id();
        let log = self.ctx.log.clone();
        ctx.spawn(
            async move {
                let res = store
                    .call(move |s| {
                        let digest = sha256_file(&path).map_err(|e| {
                            crate::meta::StoreError::Unavailable(format!("cannot read {}: {e}", path.display()))
                        })?;
                        s.set_file_sha256(id, &identity, &name, &digest)
                    })
                    .await;
                if let Err(e) = res {
                    warn!(log, "could not record a sealed file's sha256"; "error" => %e);
                }
            }
            .into_actor(self)
            .map(|_, act, ctx| {
                act.hashing = false;
                // The file is in the upload queue once its sha256 is recorded.
                if let Some(u) = &act.uploader {
                    u.do_send(UploadNow);
                }
                act.hash_next(ctx);
            }),
        );
    }
}

/// The sha256 of a file, streamed (the digest the catalog records at sealing, and that serving
/// and uploading check against).
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    crate::pitr::files::sha256_of(std::fs::File::open(path)?)
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
        self.writer = Some(SyncArbiter::start(1, move || {
            let w = FileWriterActor::new(id, &data_dir, store.clone(), log.clone(), report.clone(), interval)
                .with_relay(relay.clone());
            match &lease {
                Some(guard) => w.with_lease(crate::actors::file_writer::WriterLease { guard: guard.clone() }),
                None => w,
            }
        }));
        // Idle streams still get their last checkpoint persisted.
        ctx.run_interval(interval.max(Duration::from_millis(50)), |act, _| {
            if let Some(w) = &act.writer {
                let _ = w.try_send(PersistCheckpoint);
            }
        });
        ctx.run_interval(Duration::from_secs(1), |act, _| act.refresh_gauges());
        // Sealed files whose sha256 is still missing (a crash interrupted hashing).
        let store = self.ctx.store.clone();
        let data_dir = s.data_dir.clone();
        ctx.spawn(async move { store.call(move |s| s.list_files(id)).await.unwrap_or_default() }.into_actor(self).map(
            move |files, act, ctx| {
                for f in files.into_iter().filter(|f| f.state == crate::meta::FileState::Sealed && f.sha256.is_none()) {
                    let path = f.local_path(&data_dir);
                    act.to_hash.push_back((f.source_identity, f.file_name.to_string(), path));
                }
                act.hash_next(ctx);
            },
        ));
        let up = &s.upload;
        let params = UploadParams {
            task_id: id,
            cluster_key: self.task.spec.cluster_key.clone(),
            data_dir: s.data_dir.clone(),
            store: self.ctx.store.clone(),
            objects: self.ctx.objects.clone(),
            retry_initial: Duration::from_secs(up.retry_initial_sec),
            retry_max: Duration::from_secs(up.retry_max_sec),
            retention_interval: Duration::from_secs(s.storage.retention_interval_sec),
            log: self.ctx.log.new(slog::o!("actor" => "upload")),
            guard: self.ctx.lease.clone(),
        };
        self.uploader = Some(UploadActor::start_in_arbiter(&self.ctx.uploads, move |_| UploadActor::new(params)));
        self.start_attempt(ctx);
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        info!(self.ctx.log, "task actor stopped"; "state" => %self.state);
        // Lag and age mean nothing for a task that does not run; counters stay.
        let _ = metrics().lag.remove_label_values(&[&self.label]);
        let _ = metrics().checkpoint_age.remove_label_values(&[&self.label]);
        let epoch = self.ctx.lease.as_ref().map(|l| l.epoch());
        self.ctx.supervisor.do_send(TaskExited { id: self.id(), actor: ctx.address(), epoch });
    }
}

impl Handler<ReplicationEvent> for TaskActor {
    type Result = ();

    fn handle(&mut self, msg: ReplicationEvent, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        match msg {
            ReplicationEvent::Connected { identity, version, tls, .. } => {
                self.status.source_identity = Some(identity);
                self.status.source_version = Some(version);
                self.status.tls = tls;
            }
            ReplicationEvent::Streaming { from } => {
                self.attempt = 0;
                self.failures.streaming();
                self.status.connected_since = Some(Utc::now());
                self.status.streaming_from = Some(from.clone());
                self.status.last_error = None;
                let source = format!(
                    "{} ({})",
                    self.status.source_identity.as_deref().unwrap_or("?"),
                    self.status.source_version.as_deref().unwrap_or("?")
                );
                info!(self.ctx.log, "streaming"; "from" => &from, "source" => &source);
                self.record(
                    TaskState::Running,
                    LastError::Clear,
                    Some((TaskEventType::TaskRunning, format!("streaming from {from} on {source}"))),
                    ctx,
                );
            }
            ReplicationEvent::Switchover { old, new } => {
                metrics().source_switchovers.with_label_values(&[&self.label]).inc();
                let msg = format!("source changed from {old} to {new}; following it by GTID");
                let state = self.state;
                self.record(state, LastError::Keep, Some((TaskEventType::SourceSwitchover, msg)), ctx);
            }
            ReplicationEvent::SemiSync { active, reason } => {
                let was_unavailable = self.status.semi_sync.unavailable.is_some();
                self.status.semi_sync.active = active;
                self.status.semi_sync.unavailable = reason.clone();
                // Said once per change, not at every reconnect.
                if let (Some(reason), false) = (reason, was_unavailable) {
                    let state = self.state;
                    self.record(state, LastError::Keep, Some((TaskEventType::SemiSyncUnavailable, reason)), ctx);
                }
            }
            ReplicationEvent::Progress(p) => self.apply_progress(p),
            ReplicationEvent::Ended { error, code, retryable, crc_error, at } => {
                self.replication = None;
                self.base_events = self.status.events_written;
                self.base_bytes = self.status.bytes_written;
                self.base_acks = self.status.semi_sync.acks_sent;
                self.status.semi_sync.active = false;
                if crc_error {
                    self.status.crc_errors += 1;
                    metrics().crc_errors.with_label_values(&[&self.label]).inc();
                }
                let failure = Failure {
                    code: code.unwrap_or(TaskErrorCode::InternalError),
                    message: error.unwrap_or_else(|| "replication ended".into()),
                    retryable,
                    at,
                    checkpoint: self
                        .status
                        .checkpoint
                        .as_ref()
                        .map(|c| SourcePos { file: c.file.to_string(), pos: c.pos }),
                };
                let policy = RetryPolicy::from_settings(&self.ctx.settings.retry);
                match self.failures.failed(failure, Utc::now(), &policy) {
                    Verdict::Retry(err) => self.retry_later(err, ctx),
                    Verdict::Fail(err) => self.fail(err, ctx),
                }
            }
        }
    }
}

impl TaskActor {
    /// RETRY_BACKOFF with `err` as the task's last error (stored, so every node's API shows
    /// it), and a new attempt after the backoff.
    fn retry_later(&mut self, err: TaskError, ctx: &mut Context<Self>) {
        let delay = self.backoff();
        self.status.reconnects += 1;
        metrics().reconnects.with_label_values(&[&self.label, err.code.as_str()]).inc();
        self.status.retry_in_ms = Some(delay.as_millis() as u64);
        self.status.last_error = Some(err.clone());
        warn!(self.ctx.log, "replication interrupted; retrying"; "error" => &err.message, "code" => %err.code,
              "attempts" => err.attempts, "retry_in_ms" => delay.as_millis() as u64);
        let event =
            format!("{}: {}; attempt {}, retrying in {} ms", err.code, err.message, err.attempts, delay.as_millis());
        self.record(TaskState::RetryBackoff, LastError::Set(err), Some((TaskEventType::TaskRetryBackoff, event)), ctx);
        self.retry = Some(ctx.run_later(delay, |act, ctx| act.start_attempt(ctx)));
    }
}

impl TaskActor {
    fn apply_progress(&mut self, p: Progress) {
        self.status.current_file = p.file;
        self.status.current_pos = p.pos;
        self.status.caught_up = p.caught_up;
        let (events, bytes) = (self.base_events + p.events_written, self.base_bytes + p.bytes_written);
        let m = metrics();
        m.events.with_label_values(&[&self.label]).inc_by(events.saturating_sub(self.status.events_written));
        m.bytes_written.with_label_values(&[&self.label]).inc_by(bytes.saturating_sub(self.status.bytes_written));
        self.status.events_written = events;
        self.status.bytes_written = bytes;
        self.status.semi_sync.acks_sent = self.base_acks + p.acks_sent;
        if p.last_ack_pos.is_some() {
            self.status.semi_sync.last_ack_pos = p.last_ack_pos;
        }
        if p.last_event_ts > 0 {
            self.status.last_event_time = DateTime::from_timestamp(i64::from(p.last_event_ts), 0);
        }
        self.refresh_gauges();
    }

    /// Lag and checkpoint age, from what the actor knows now (also on a 1 s tick: an idle
    /// stream reports nothing but its lag still means something).
    fn refresh_gauges(&mut self) {
        let now = Utc::now();
        let streaming = matches!(self.state, TaskState::Running | TaskState::RetryBackoff);
        self.status.lag_seconds = if self.status.caught_up {
            Some(0.0)
        } else {
            self.status.last_event_time.map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
        };
        let m = metrics();
        if streaming {
            if let Some(lag) = self.status.lag_seconds {
                m.lag.with_label_values(&[&self.label]).set(lag);
            }
            // Caught up means nothing is waiting to be made durable: the checkpoint is current.
            let age = match (self.status.caught_up, self.status.checkpoint_at) {
                (true, _) => 0.0,
                (false, Some(at)) => (now - at).num_milliseconds().max(0) as f64 / 1000.0,
                (false, None) => 0.0,
            };
            m.checkpoint_age.with_label_values(&[&self.label]).set(age);
        }
    }
}

impl Handler<WriterEvent> for TaskActor {
    type Result = ();

    fn handle(&mut self, msg: WriterEvent, ctx: &mut Context<Self>) {
        match msg {
            WriterEvent::Checkpointed { checkpoint, fsync, .. } => {
                self.status.checkpoint = Some(checkpoint);
                self.status.checkpoint_at = Some(Utc::now());
                self.status.last_fsync_us = Some(fsync.as_micros() as u64);
            }
            WriterEvent::FileCreated { .. } => {}
            WriterEvent::FileSealed { identity, name, path, size } => {
                let state = self.state;
                self.record(
                    state,
                    LastError::Keep,
                    Some((TaskEventType::TaskFileRotated, format!("{name} sealed ({size} bytes)"))),
                    ctx,
                );
                self.to_hash.push_back((identity, name.to_string(), path));
                self.hash_next(ctx);
            }
        }
    }
}

impl Handler<Stop> for TaskActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) -> Self::Result {
        info!(self.ctx.log, "stopping");
        // The supervisor already moved the stored state to STOPPING.
        if self.state != TaskState::Failed {
            self.state = TaskState::Stopping;
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.shutdown_children(ctx, move |act, ctx| {
            // Stop (and answer) only once the final state is stored.
            let finish = move |_: &mut TaskActor, ctx: &mut Context<TaskActor>| {
                ctx.stop();
                let _ = tx.send(());
            };
            if act.state == TaskState::Stopping {
                let event = Some((TaskEventType::TaskStopped, "stopped".to_string()));
                act.record_then(TaskState::Stopped, LastError::Keep, event, ctx, finish);
            } else {
                finish(act, ctx);
            }
        });
        Box::pin(
            async move {
                let _ = rx.await;
            }
            .into_actor(self),
        )
    }
}

impl Handler<Shutdown> for TaskActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.shutdown_children(ctx, move |act, ctx| {
            let finish = move |_: &mut TaskActor, ctx: &mut Context<TaskActor>| {
                ctx.stop();
                let _ = tx.send(());
            };
            let to_stopped = |act: &mut TaskActor, ctx: &mut Context<TaskActor>| {
                if act.state == TaskState::Stopping {
                    let msg = "stopped for process shutdown (resumes at next start)".to_string();
                    act.record_then(
                        TaskState::Stopped,
                        LastError::Keep,
                        Some((TaskEventType::TaskStopped, msg)),
                        ctx,
                        finish,
                    );
                } else {
                    finish(act, ctx);
                }
            };
            if act.state.can_become(TaskState::Stopping) {
                act.record_then(TaskState::Stopping, LastError::Keep, None, ctx, to_stopped);
            } else {
                to_stopped(act, ctx);
            }
        });
        Box::pin(
            async move {
                let _ = rx.await;
            }
            .into_actor(self),
        )
    }
}

impl Handler<Relinquish> for TaskActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Relinquish, ctx: &mut Context<Self>) -> Self::Result {
        warn!(self.ctx.log, "giving the task up on this node"; "reason" => &msg.reason);
        if let Some(g) = &self.ctx.lease {
            g.revoke();
        }
        self.relinquished = true;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.shutdown_children(ctx, move |_, ctx| {
            ctx.stop();
            let _ = tx.send(());
        });
        Box::pin(
            async move {
                let _ = rx.await;
            }
            .into_actor(self),
        )
    }
}

impl Handler<LeaseDegraded> for TaskActor {
    type Result = ();

    fn handle(&mut self, msg: LeaseDegraded, ctx: &mut Context<Self>) {
        if self.stopping || self.relinquished {
            return;
        }
        match (msg.0, self.degraded) {
            (true, None) => {
                let left = self.ctx.lease.as_ref().map(|g| g.remaining().as_secs_f64()).unwrap_or(0.0);
                warn!(self.ctx.log, "lease renewal failed; writing stops if it does not succeed in time";
                      "seconds_left" => left);
                let msg = format!("lease renewal failed; writing stops in {left:.1} s unless a renewal succeeds");
                let before = self.state;
                self.record(
                    TaskState::LeaseDegraded,
                    LastError::Keep,
                    Some((TaskEventType::TaskLeaseDegraded, msg)),
                    ctx,
                );
                self.degraded = Some(before);
            }
            (false, Some(underlying)) => {
                info!(self.ctx.log, "lease renewed again");
                self.degraded = None;
                let to = if underlying == TaskState::LeaseDegraded { TaskState::Running } else { underlying };
                self.record(to, LastError::Keep, Some((TaskEventType::TaskRunning, "lease renewed again".into())), ctx);
            }
            _ => {}
        }
    }
}

impl Handler<WakeUploads> for TaskActor {
    type Result = ();

    fn handle(&mut self, _: WakeUploads, _: &mut Context<Self>) {
        if let Some(u) = &self.uploader {
            u.do_send(UploadNow);
        }
    }
}

impl Handler<GetStatus> for TaskActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        let mut s = self.status.clone();
        s.state = Some(self.state);
        if !s.caught_up
            && let Some(t) = s.last_event_time
        {
            s.lag_seconds = Some((Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0);
        }
        MessageResult(s)
    }
}
