//! `ReplicationActor`: one connection attempt to the source. Connects, identifies the source,
//! has the writer reconcile the local copy, asks for the binlog from the checkpoint, and streams
//! raw events through the `StreamTracker` into write batches for the `FileWriterActor`.
//!
//! Group commit is a pipeline: while the writer writes and fsyncs one batch, the next one
//! accumulates; a batch goes out as soon as the writer is free and nothing more is buffered (or
//! it holds `fsync_max_bytes`, or its oldest byte is `fsync_max_delay_ms` old). At most one batch
//! is in flight and one accumulates, so memory stays bounded by two batches (or two events,
//! when a single event is larger): that is the backpressure, and the socket is simply not read
//! while both are full.
//!
//! The attempt ends with an error (reported to the task, which decides retry or failure) or
//! when the actor is stopped; it never retries by itself.

use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use slog::{Logger, debug, info, warn};

use crate::actors::file_writer::{FileWriterActor, Prepare, Recover, WriteBatch, WriterError};
use crate::binlog::gtid::StartGtid;
use crate::binlog::stream::{GtidTracker, Seen, StreamError, StreamTracker, WriteOp};
use crate::domain::{Flavor, StartSpec, TaskErrorCode};
use crate::meta::Checkpoint;
use crate::retry::{FailureClass, Retry, SourcePos};
use crate::source::SourceError;
use crate::source::conn::{ConnectParams, SourceConn};
use crate::source::dump::{self, DumpFrom, ReplicaParams, SourceIdentity};
use crate::source::semisync::{self, AckPos, AckQueue};
use crate::telemetry::tracing::span;
use opentelemetry::KeyValue;
use opentelemetry::trace::{Span, Status};

/// Events smaller than this are copied into one buffer per batch (one write call); larger ones
/// are written from the buffer they arrived in.
const COALESCE_BELOW: usize = 64 * 1024;
/// How long after the dump request an idle stream counts as accepted (RUNNING).
const ACCEPT_GRACE: Duration = Duration::from_secs(2);
/// How often progress is reported to the task.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Why an attempt ended.
#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The source refused the position the dump asked for (a purged file, an impossible
    /// position): the message names that position, which the source's own text does not, and
    /// (`hint`) what to do when this source just replaced another one.
    #[error("binlog dump from {from}: {source}{hint}")]
    Dump { from: String, source: SourceError, hint: String },
    /// The tracker refused the stream; `at` is where our copy of the current file ends (where
    /// the refused event starts), when a file is open.
    #[error("stream{}: {source}", at.as_ref().map(|p| format!(" at {p}")).unwrap_or_default())]
    Stream { at: Option<SourcePos>, source: StreamError },
    #[error("local storage: {0}")]
    Writer(#[from] WriterError),
    #[error("the source ended the binlog stream (server shutdown?)")]
    Eof,
    #[error("no event or heartbeat for {0:?}: the connection is presumed dead")]
    Silence(Duration),
    #[error("the GTID position to resume from is unknown: {0}")]
    NoGtid(String),
    #[error("the file writer is gone")]
    WriterGone,
}

impl ReplError {
    /// The task error code and whether it is retryable: decides RETRY_BACKOFF or FAILED.
    pub fn classify(&self) -> FailureClass {
        match self {
            ReplError::Source(e) | ReplError::Dump { source: e, .. } => e.classify(),
            ReplError::Stream {
                source: StreamError::Event(crate::binlog::event::EventError::Checksum { .. }), ..
            } => FailureClass::retryable(TaskErrorCode::ChecksumMismatch),
            ReplError::Stream { .. } => FailureClass::retryable(TaskErrorCode::SourceProtocolError),
            ReplError::Writer(e) => e.classify(),
            ReplError::Eof | ReplError::Silence(_) => FailureClass::retryable(TaskErrorCode::SourceUnreachable),
            ReplError::NoGtid(_) => FailureClass::permanent(TaskErrorCode::InvalidStartPosition),
            ReplError::WriterGone => FailureClass::retryable(TaskErrorCode::InternalError),
        }
    }

    /// Where in the source's binlog the attempt failed, when the error is about the stream.
    pub fn at(&self) -> Option<SourcePos> {
        match self {
            ReplError::Stream { at, .. } => at.clone(),
            _ => None,
        }
    }
}

/// Reports from a replication attempt to its task.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum ReplicationEvent {
    /// Connected and identified; the dump is about to be requested.
    Connected {
        identity: String,
        version: String,
        connection_id: u32,
        tls: bool,
    },
    /// The dump was accepted and events flow.
    Streaming {
        from: String,
    },
    /// Semi-sync was asked for: whether this connection got it, and if not, why.
    SemiSync {
        active: bool,
        reason: Option<String>,
    },
    /// GTID mode followed the source to another server.
    Switchover {
        old: String,
        new: String,
    },
    Progress(Progress),
    /// The attempt is over (`None` only when stopped on request).
    Ended {
        error: Option<String>,
        code: Option<TaskErrorCode>,
        retryable: bool,
        crc_error: bool,
        /// Where in the source's binlog it failed (stream errors only).
        at: Option<SourcePos>,
    },
}

/// Stream progress, for status, lag and metrics.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub file: Option<String>,
    pub pos: Option<u64>,
    /// Timestamp (source clock, seconds) of the last event written.
    pub last_event_ts: u32,
    /// The source's heartbeat said we hold everything it has.
    pub caught_up: bool,
    pub events_written: u64,
    pub bytes_written: u64,
    /// Semi-sync acks sent in this attempt, and the last acknowledged position (`file:pos`).
    pub acks_sent: u64,
    pub last_ack_pos: Option<String>,
}

/// Everything one attempt needs.
#[derive(Clone)]
pub struct ReplicationParams {
    pub task_id: i64,
    pub connect: ConnectParams,
    pub flavor: Flavor,
    pub start: StartSpec,
    pub replica: ReplicaParams,
    pub silence_timeout: Duration,
    pub fsync_max_bytes: usize,
    pub fsync_max_delay: Duration,
    /// `source.semi_sync`: announce a semi-sync replica when the source offers it.
    pub semi_sync: bool,
    pub log: Logger,
}

pub struct ReplicationActor {
    params: ReplicationParams,
    writer: Addr<FileWriterActor>,
    report: Recipient<ReplicationEvent>,
    connection_id: Option<u32>,
    finished: bool,
}

impl ReplicationActor {
    pub fn new(params: ReplicationParams, writer: Addr<FileWriterActor>, report: Recipient<ReplicationEvent>) -> Self {
        ReplicationActor { params, writer, report, connection_id: None, finished: false }
    }
}

/// Stop the attempt: the connection is closed and the source's dump thread for it killed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopReplication;

#[derive(Message)]
#[rtype(result = "()")]
struct ConnectionId(u32);

impl Actor for ReplicationActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let params = self.params.clone();
        let writer = self.writer.clone();
        let report = self.report.clone();
        let me = ctx.address();
        let fut = async move { run_attempt(params, writer, report, me).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.finished = true;
            let ended = match res {
                Ok(()) => {
                    ReplicationEvent::Ended { error: None, code: None, retryable: true, crc_error: false, at: None }
                }
                Err(e) => {
                    let FailureClass { code, retry } = e.classify();
                    let retryable = retry == Retry::Retryable;
                    let crc_error = code == TaskErrorCode::ChecksumMismatch;
                    let at = e.at();
                    ReplicationEvent::Ended { error: Some(e.to_string()), code: Some(code), retryable, crc_error, at }
                }
            };
            act.report.do_send(ended);
            ctx.stop();
        }));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Dropping the attempt's future closed our socket; the source notices at its next write.
        // Killing the dump thread makes it go now (a user may kill its own connections).
        if let (Some(id), false) = (self.connection_id, self.finished) {
            let p = self.params.connect.clone();
            let log = self.params.log.clone();
            actix_rt::spawn(async move {
                let kill = async {
                    let mut c = SourceConn::connect(&p).await?;
                    let r = c.execute(&format!("KILL CONNECTION {id}")).await;
                    c.quit().await;
                    r
                };
                match tokio::time::timeout(p.connect_timeout, kill).await {
                    Ok(Ok(())) => debug!(log, "source dump thread killed"; "connection_id" => id),
                    Ok(Err(e)) => {
                        debug!(log, "could not kill the source dump thread"; "connection_id" => id, "error" => %e)
                    }
                    Err(_) => debug!(log, "timed out killing the source dump thread"; "connection_id" => id),
                }
            });
        }
    }
}

impl Handler<ConnectionId> for ReplicationActor {
    type Result = ();

    fn handle(&mut self, msg: ConnectionId, _: &mut Context<Self>) {
        self.connection_id = Some(msg.0);
    }
}

impl Handler<StopReplication> for ReplicationActor {
    type Result = ();

    fn handle(&mut self, _: StopReplication, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// A deterministic replica uuid per task (MySQL tells replicas apart by it).
pub fn replica_uuid(cluster_key: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("binlog-server:{cluster_key}").as_bytes());
    let x = hex::encode(&h[..16]);
    format!("{}-{}-{}-{}-{}", &x[0..8], &x[8..12], &x[12..16], &x[16..20], &x[20..32])
}

async fn run_attempt(
    p: ReplicationParams,
    writer: Addr<FileWriterActor>,
    report: Recipient<ReplicationEvent>,
    me: Addr<ReplicationActor>,
) -> Result<(), ReplError> {
    // From the TCP connect to the accepted dump request (never the password).
    let mut connect_span = span(
        "source.connect",
        vec![
            KeyValue::new("task.id", p.task_id),
            KeyValue::new("source.host", p.connect.host.clone()),
            KeyValue::new("source.port", i64::from(p.connect.port)),
            KeyValue::new("source.flavor", p.flavor.as_str()),
            KeyValue::new("source.tls_mode", p.connect.tls_mode.as_str()),
        ],
    );
    // Crash recovery first, with or without the source: what was fsynced (and acked) past the
    // stored checkpoint is kept and checkpointed before anything else (see `Recover`).
    writer.send(Recover { flavor: p.flavor }).await.map_err(|_| ReplError::WriterGone)??;
    let mut conn = match SourceConn::connect(&p.connect).await {
        Ok(c) => c,
        Err(e) => {
            connect_span.set_status(Status::error(e.to_string()));
            return Err(e.into());
        }
    };
    let info = dump::inspect(&mut conn, p.flavor).await?;
    me.do_send(ConnectionId(conn.connection_id()));
    report.do_send(ReplicationEvent::Connected {
        identity: info.identity.to_string(),
        version: info.version.clone(),
        connection_id: conn.connection_id(),
        tls: conn.is_tls(),
    });
    let gtid_mode = matches!(p.start, StartSpec::Gtid { .. });
    let prepared = writer
        .send(Prepare { identity: info.identity.clone(), gtid_mode, flavor: p.flavor })
        .await
        .map_err(|_| ReplError::WriterGone)??;
    if let Some(old) = &prepared.switched_from {
        warn!(p.log, "the source is another server now; following it by GTID"; "old" => old, "new" => %info.identity);
        report.do_send(ReplicationEvent::Switchover { old: old.clone(), new: info.identity.to_string() });
    }

    let parse_gtid = |text: &Option<String>| -> Result<Option<StartGtid>, ReplError> {
        text.as_deref().map(|t| StartGtid::parse(p.flavor, t).map_err(|e| ReplError::NoGtid(e.to_string()))).transpose()
    };
    let (from, gtid_start) = match (&prepared.checkpoint, &p.start) {
        // A cluster takeover re-fetches a file from its first event, by position in any mode.
        (Some(_), _) if prepared.refetch_from.is_some() => {
            let r = prepared.refetch_from.as_ref().expect("checked");
            (DumpFrom::FilePos { file: r.name.clone(), pos: r.start_pos }, parse_gtid(&r.gtid_start)?)
        }
        // GTID mode resumes by GTID only on another server (a switchover). On the server that
        // wrote the checkpoint the position is exact, while a GTID dump starts at the next file
        // when the checkpoint follows a file's last transaction: the rest of that file (the STOP
        // of a clean shutdown, a ROTATE) would be missing from a copy then sealed as complete.
        (Some(cp), StartSpec::Gtid { .. }) if prepared.switched_from.is_some() => {
            let g = parse_gtid(&cp.gtid_set)?.ok_or_else(|| {
                ReplError::NoGtid(format!("the checkpoint at {}:{} has no GTID state", cp.file, cp.pos))
            })?;
            (DumpFrom::Gtid(g.clone()), Some(g))
        }
        (Some(cp), _) => (DumpFrom::FilePos { file: cp.file.clone(), pos: cp.pos }, parse_gtid(&cp.gtid_set)?),
        (None, StartSpec::Latest) => {
            let (file, pos, gtid) = dump::latest(&mut conn, &info).await?;
            (DumpFrom::FilePos { file, pos }, gtid)
        }
        (None, StartSpec::FilePos { file, pos }) => (DumpFrom::FilePos { file: file.clone(), pos: *pos }, None),
        (None, StartSpec::Gtid { gtid_set }) => (DumpFrom::Gtid(gtid_set.clone()), Some(gtid_set.clone())),
        // The supervisor never starts an archive-only task (`ControlError::ArchiveOnly`).
        (None, StartSpec::ArchiveOnly) => {
            return Err(ReplError::NoGtid("an ARCHIVE_ONLY task has no source to read from".into()));
        }
    };
    let from_text = match &from {
        DumpFrom::FilePos { file, pos } => format!("{file}:{pos}"),
        DumpFrom::Gtid(g) => format!("GTID {g}"),
    };
    let semi_sync = if p.semi_sync { announce_semi_sync(&p, &mut conn, &report).await? } else { false };
    dump::start_dump(&mut conn, &info, &p.replica, &from).await?;
    if semi_sync {
        conn.expect_semi_sync();
    }
    info!(p.log, "binlog dump requested"; "from" => &from_text, "source" => %info.identity, "server_id" => p.replica.server_id);
    connect_span.set_attribute(KeyValue::new("source.identity", info.identity.to_string()));
    connect_span.set_attribute(KeyValue::new("dump.from", from_text.clone()));
    connect_span.end();

    let mut tracker = StreamTracker::new(
        prepared.local,
        GtidTracker::new(p.flavor, gtid_start.as_ref()),
        info.binlog_checksum.has_crc(),
    );
    if let DumpFrom::FilePos { file, pos } = &from {
        tracker = tracker.expecting_start(file.clone(), *pos);
    }
    let mut pump = Pump {
        tracker,
        identity: info.identity.clone(),
        batch: Batch::default(),
        boundaries_sent: 0,
        progress: Progress::default(),
        last_progress: Instant::now(),
        streaming_reported: false,
        from_text: from_text.clone(),
        semi: semi_sync.then(|| SemiSync {
            queue: AckQueue::default(),
            // What the store says is durable already covers events the source re-sends.
            durable: prepared
                .checkpoint
                .as_ref()
                .filter(|c| c.source_identity == info.identity.as_str())
                .map(|c| AckPos { file: c.file.clone(), pos: c.pos }),
            label: p.task_id.to_string(),
        }),
    };
    pump.run(&p, &mut conn, &writer, &report).await.map_err(|e| match e {
        ReplError::Source(source)
            if matches!(
                source.classify().code,
                TaskErrorCode::SourceBinlogPurged | TaskErrorCode::InvalidStartPosition
            ) =>
        {
            let hint = match &prepared.switched_from {
                Some(old) if matches!(from, DumpFrom::Gtid(_)) => format!(
                    ". This source replaced {old} and does not have the GTID state the task reached there: the \
                     failover may have lost transactions. To archive this source from here on, give the task a GTID \
                     start this source has (its gtid_binlog_pos when it was promoted) and start it; the recovery \
                     window then shows the switchover as a break naming what is missing"
                ),
                _ => String::new(),
            };
            ReplError::Dump { from: from_text, source, hint }
        }
        e => e,
    })
}

/// Asks the source for semi-sync; says so (warning event) when it cannot be had, and streams
/// asynchronously then. Returns whether the stream carries semi-sync headers.
async fn announce_semi_sync(
    p: &ReplicationParams,
    conn: &mut SourceConn,
    report: &Recipient<ReplicationEvent>,
) -> Result<bool, ReplError> {
    match dump::announce_semi_sync(conn).await? {
        semisync::Support::Active { announce } => {
            info!(p.log, "semi-synchronous replica: the source's commits wait for our fsync"; "announced" => announce);
            report.do_send(ReplicationEvent::SemiSync { active: true, reason: None });
            Ok(true)
        }
        semisync::Support::Unavailable { reason } => {
            warn!(p.log, "semi-sync requested but not available"; "reason" => &reason);
            report.do_send(ReplicationEvent::SemiSync { active: false, reason: Some(reason) });
            Ok(false)
        }
    }
}

/// A semi-sync stream's acks: the requests not answered yet and what is durable.
struct SemiSync {
    queue: AckQueue,
    /// The durable checkpoint as the writer last answered it.
    durable: Option<AckPos>,
    /// The metrics label (task id).
    label: String,
}

/// A batch being accumulated: coalesced small events, pass-through large ones.
#[derive(Default)]
struct Batch {
    ops: Vec<WriteOp>,
    small: BytesMut,
    small_end: u64,
    bytes: usize,
    since: Option<Instant>,
}

impl Batch {
    fn push(&mut self, op: WriteOp) {
        self.since.get_or_insert_with(Instant::now);
        match op {
            WriteOp::Append { bytes, end_pos } if bytes.len() < COALESCE_BELOW => {
                self.small.extend_from_slice(&bytes);
                self.small_end = end_pos;
                self.bytes += bytes.len();
            }
            other => {
                self.flush_small();
                if let WriteOp::Append { bytes, .. } = &other {
                    self.bytes += bytes.len();
                }
                self.ops.push(other);
            }
        }
    }

    fn flush_small(&mut self) {
        if !self.small.is_empty() {
            let bytes: Bytes = self.small.split().freeze();
            self.ops.push(WriteOp::Append { bytes, end_pos: self.small_end });
        }
    }

    fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.small.is_empty()
    }

    fn take(&mut self) -> Vec<WriteOp> {
        self.flush_small();
        self.bytes = 0;
        self.since = None;
        std::mem::take(&mut self.ops)
    }
}

struct Pump {
    tracker: StreamTracker,
    identity: SourceIdentity,
    batch: Batch,
    boundaries_sent: u64,
    progress: Progress,
    last_progress: Instant,
    streaming_reported: bool,
    from_text: String,
    /// Set when the source accepted us as a semi-sync replica.
    semi: Option<SemiSync>,
}

type InFlight =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Result<Option<Checkpoint>, WriterError>, MailboxError>>>>;

impl Pump {
    async fn run(
        &mut self,
        p: &ReplicationParams,
        conn: &mut SourceConn,
        writer: &Addr<FileWriterActor>,
        report: &Recipient<ReplicationEvent>,
    ) -> Result<(), ReplError> {
        let mut in_flight: Option<InFlight> = None;
        // Silence counts only while we are willing to read: a slow fsync is not the source's.
        let mut quiet_since = Instant::now();
        // A source refuses a bad start position right after the FDE; if nothing was refused
        // by then, the dump is accepted even when the source is idle (no event, and heartbeats
        // may be far apart).
        let accepted_at = tokio::time::Instant::now() + ACCEPT_GRACE.min(p.silence_timeout / 2);
        let mut scratch: Vec<WriteOp> = Vec::new();
        loop {
            let can_read = self.batch.bytes < p.fsync_max_bytes;
            let last_heard = conn.last_activity().max(quiet_since);
            let silence_at = tokio::time::Instant::from_std(last_heard + p.silence_timeout);
            let delay_at = self.batch.since.map(|s| tokio::time::Instant::from_std(s + p.fsync_max_delay));
            tokio::select! {
                biased;
                done = async { in_flight.as_mut().expect("guarded").await }, if in_flight.is_some() => {
                    in_flight = None;
                    if !can_read {
                        quiet_since = Instant::now();
                    }
                    let durable = done.map_err(|_| ReplError::WriterGone)??;
                    if let (Some(semi), Some(cp)) = (self.semi.as_mut(), durable) {
                        semi.durable = Some(AckPos { file: cp.file, pos: cp.pos });
                    }
                }
                pkt = conn.read_packet(), if can_read => {
                    let seen = self.on_packet(pkt?, &mut scratch)?;
                    // RUNNING once real events or a heartbeat flow: an impossible start position
                    // is refused only after the artificial rotate and the FDE.
                    if !self.streaming_reported && matches!(seen, Some(Seen::Written { .. } | Seen::Heartbeat { .. })) {
                        self.streaming_reported = true;
                        report.do_send(ReplicationEvent::Streaming { from: self.from_text.clone() });
                    }
                }
                _ = tokio::time::sleep_until(accepted_at), if !self.streaming_reported => {
                    self.streaming_reported = true;
                    report.do_send(ReplicationEvent::Streaming { from: self.from_text.clone() });
                }
                _ = tokio::time::sleep_until(delay_at.unwrap_or(silence_at)), if delay_at.is_some() && in_flight.is_none() => {}
                _ = tokio::time::sleep_until(silence_at), if can_read => {
                    if conn.last_activity().max(quiet_since).elapsed() >= p.silence_timeout {
                        return Err(ReplError::Silence(p.silence_timeout));
                    }
                }
            }
            // Acks go out here, between reads, as soon as the writer's answer covers them: the
            // read above is cancel-safe, so nothing on the socket holds an ack back.
            self.send_ack(conn).await?;
            if !can_read && self.batch.bytes < p.fsync_max_bytes {
                quiet_since = Instant::now();
            }
            if in_flight.is_none() && !self.batch.is_empty() {
                let full = self.batch.bytes >= p.fsync_max_bytes;
                let drained = !conn.has_buffered_packet();
                let old = self.batch.since.is_some_and(|s| s.elapsed() >= p.fsync_max_delay);
                if full || drained || old {
                    let msg = self.cut_batch();
                    let w = writer.clone();
                    in_flight = Some(Box::pin(async move { w.send(msg).await }));
                }
            }
            if self.last_progress.elapsed() >= PROGRESS_EVERY {
                self.last_progress = Instant::now();
                self.report_progress(report);
            }
        }
    }

    fn cut_batch(&mut self) -> WriteBatch {
        let checkpoint = if self.tracker.boundary_count() != self.boundaries_sent {
            self.boundaries_sent = self.tracker.boundary_count();
            self.tracker.boundary().map(|b| Checkpoint {
                source_identity: self.identity.to_string(),
                file: b.file.clone(),
                pos: b.pos,
                gtid_set: self.tracker.gtid().snapshot(),
            })
        } else {
            None
        };
        WriteBatch { ops: self.batch.take(), checkpoint }
    }

    /// Sends the ack the durable checkpoint now owes the source, if any (never beyond it: see
    /// `AckQueue::covered_by`).
    async fn send_ack(&mut self, conn: &mut SourceConn) -> Result<(), ReplError> {
        let Some(semi) = self.semi.as_mut() else { return Ok(()) };
        let Some(durable) = semi.durable.as_ref() else { return Ok(()) };
        let Some(ack) = semi.queue.covered_by(durable) else { return Ok(()) };
        conn.send_semi_sync_ack(&ack.at.file, ack.at.pos).await?;
        let m = crate::telemetry::metrics::metrics();
        m.semi_sync_acks.with_label_values(&[&semi.label]).inc();
        for t in &ack.received {
            m.semi_sync_ack_seconds.observe(t.elapsed().as_secs_f64());
        }
        self.progress.acks_sent += 1;
        self.progress.last_ack_pos = Some(ack.at.to_string());
        Ok(())
    }

    fn on_packet(&mut self, pkt: Bytes, scratch: &mut Vec<WriteOp>) -> Result<Option<Seen>, ReplError> {
        match pkt.first() {
            Some(0x00) => {
                let body = pkt.slice(1..);
                let (event, needs_ack) = match self.semi {
                    Some(_) => {
                        let s = semisync::strip_header(&body)?;
                        (s.event, s.needs_ack)
                    }
                    None => (body, false),
                };
                let received = Instant::now();
                let seen = self.tracker.on_event(event.clone(), scratch).map_err(|source| {
                    let at = self.tracker.current_file().zip(self.tracker.next_pos());
                    ReplError::Stream { at: at.map(|(f, pos)| SourcePos { file: f.to_string(), pos }), source }
                })?;
                if needs_ack {
                    self.ask_ack(&event, received)?;
                }
                for op in scratch.drain(..) {
                    self.batch.push(op);
                }
                match seen {
                    Seen::Written { timestamp } => {
                        self.progress.last_event_ts = timestamp;
                        self.progress.caught_up = false;
                    }
                    Seen::Heartbeat { log_pos } => {
                        self.progress.caught_up = self.tracker.next_pos() == Some(u64::from(log_pos));
                    }
                    Seen::Skipped => {}
                }
                Ok(Some(seen))
            }
            Some(0xFF) => Err(crate::source::conn::parse_err_packet(&pkt).into()),
            Some(0xFE) if pkt.len() < 9 => Err(ReplError::Eof),
            _ => Err(SourceError::Protocol(format!(
                "unexpected packet in the binlog stream (first byte {:?})",
                pkt.first()
            ))
            .into()),
        }
    }

    /// Remembers that the source waits for an ack of `event` (the end of a transaction): at
    /// the event's end position (its header's `log_pos`) in the file being streamed.
    fn ask_ack(&mut self, event: &[u8], received: Instant) -> Result<(), ReplError> {
        let (Some(semi), Some(file)) = (self.semi.as_mut(), self.tracker.current_file()) else {
            return Err(SourceError::Protocol(
                "an event asked for a semi-sync ack before the stream named its file".into(),
            )
            .into());
        };
        let log_pos =
            event.get(13..17).map(|b| u64::from(u32::from_le_bytes(b.try_into().expect("4 bytes")))).ok_or_else(
                || SourceError::Protocol("an event shorter than its header asked for a semi-sync ack".into()),
            )?;
        semi.queue.asked(AckPos { file: file.clone(), pos: log_pos }, received);
        Ok(())
    }

    fn report_progress(&mut self, report: &Recipient<ReplicationEvent>) {
        let stats = self.tracker.stats();
        self.progress.file = self.tracker.current_file().map(|f| f.to_string());
        self.progress.pos = self.tracker.next_pos();
        self.progress.events_written = stats.events_written;
        self.progress.bytes_written = stats.bytes_written;
        report.do_send(ReplicationEvent::Progress(self.progress.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_coalesces_small_events_and_passes_large_ones() {
        let mut b = Batch::default();
        b.push(WriteOp::Append { bytes: Bytes::from_static(b"aaa"), end_pos: 7 });
        b.push(WriteOp::Append { bytes: Bytes::from_static(b"bb"), end_pos: 9 });
        let big = Bytes::from(vec![7u8; COALESCE_BELOW]);
        b.push(WriteOp::Append { bytes: big.clone(), end_pos: 9 + big.len() as u64 });
        b.push(WriteOp::Append { bytes: Bytes::from_static(b"c"), end_pos: 10 + big.len() as u64 });
        assert_eq!(b.bytes, 6 + big.len());
        let ops = b.take();
        assert_eq!(
            ops,
            vec![
                WriteOp::Append { bytes: Bytes::from_static(b"aaabb"), end_pos: 9 },
                WriteOp::Append { bytes: big.clone(), end_pos: 9 + big.len() as u64 },
                WriteOp::Append { bytes: Bytes::from_static(b"c"), end_pos: 10 + big.len() as u64 },
            ]
        );
        assert!(b.is_empty());
        assert_eq!(b.bytes, 0);
    }

    #[test]
    fn replica_uuid_is_stable_and_well_formed() {
        let a = replica_uuid("k1");
        assert_eq!(a, replica_uuid("k1"));
        assert_ne!(a, replica_uuid("k2"));
        assert_eq!(a.len(), 36);
        assert!(crate::binlog::gtid::Uuid::parse(&a).is_ok());
    }
}
