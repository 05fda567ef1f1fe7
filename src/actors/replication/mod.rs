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
use crate::source::conn::{ConnectParams, SourceConn};
use crate::source::dump::{self, DumpFrom, ReplicaParams, SourceIdentity};
use crate::source::semisync::{self, AckPos, AckQueue};
use crate::source::{SourceError, TornTail, torn_tail};
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
    #[error(
        "the source accepted the dump request and then sent nothing for {0:?}, not even the rotate event that opens \
         every dump: its dump thread is blocked (a MariaDB whose semi-sync dump thread hung holds every later dump \
         with the same server id; see docs/guide/semi-sync.md)"
    )]
    DumpUnanswered(Duration),
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
            ReplError::Eof | ReplError::Silence(_) | ReplError::DumpUnanswered(_) => {
                FailureClass::retryable(TaskErrorCode::SourceUnreachable)
            }
            ReplError::NoGtid(_) => FailureClass::permanent(TaskErrorCode::InvalidStartPosition),
            ReplError::WriterGone => FailureClass::retryable(TaskErrorCode::InternalError),
        }
    }

    /// The source's own error, when the attempt ended with one.
    pub fn source_error(&self) -> Option<&SourceError> {
        match self {
            ReplError::Source(e) | ReplError::Dump { source: e, .. } => Some(e),
            _ => None,
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
    /// The dump was accepted: `heard` when an event or a heartbeat arrived, not only the
    /// grace for a refusal passed (then `Heard` follows once one does).
    Streaming {
        from: String,
        heard: bool,
    },
    /// The first event or heartbeat of an attempt already reported as `Streaming` unheard.
    Heard,
    /// Semi-sync was asked for: whether this connection got it, and if not, why.
    SemiSync {
        active: bool,
        reason: Option<String>,
    },
    /// The source's file ends with an event that never ended (it crashed while writing it):
    /// the attempt resumes by GTID past it (`source::torn_tail`).
    TornTail {
        file: String,
        at: u64,
    },
    /// GTID mode followed the source to another server.
    Switchover {
        old: String,
        new: String,
    },
    Progress(Progress),
    /// The attempt failed (an attempt stopped on request reports nothing).
    Ended {
        error: String,
        code: TaskErrorCode,
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
        let fut = async move {
            let mut past = None;
            let mut torn_asked = false;
            loop {
                let e = match run_attempt(params.clone(), writer.clone(), report.clone(), me.clone(), past.take()).await
                {
                    // The copy reached the source's current file: dump again from its durable
                    // checkpoint, now as a semi-sync replica (`semisync::announce_when`).
                    Ok(()) => continue,
                    Err(e) => e,
                };
                // A dump refused at a torn tail the source left after a crash is asked again once,
                // by GTID from the checkpoint, in the same attempt; anything else ends the attempt.
                let torn = if torn_asked { None } else { e.source_error().and_then(|e| torn_tail(params.flavor, e)) };
                let Some(torn) = torn else { return e };
                warn!(params.log, "the source's file ends with an event that never ended (it crashed while writing \
                                   it); resuming by GTID past it";
                      "file" => %torn.file, "at" => torn.at);
                report.do_send(ReplicationEvent::TornTail { file: torn.file.to_string(), at: torn.at });
                torn_asked = true;
                past = Some(torn);
            }
        };
        ctx.spawn(fut.into_actor(self).map(|e: ReplError, act, ctx| {
            act.finished = true;
            let FailureClass { code, retry } = e.classify();
            let retryable = retry == Retry::Retryable;
            let crc_error = code == TaskErrorCode::ChecksumMismatch;
            let at = e.at();
            act.report.do_send(ReplicationEvent::Ended { error: e.to_string(), code, retryable, crc_error, at });
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
    past: Option<TornTail>,
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
    // The source's current file, when the start below already asked for it (LATEST).
    let mut source_current = None;
    let (from, gtid_start) = match (&prepared.checkpoint, &p.start, &past) {
        // Past a torn tail (see `ReplicationActor::started`): by GTID from the checkpoint, which
        // must still be in the torn file, on this source, at or before the tear.
        (cp, _, Some(torn)) => {
            let cp = cp.as_ref().filter(|cp| {
                prepared.refetch_from.is_none()
                    && cp.file == torn.file
                    && cp.pos <= torn.at
                    && cp.source_identity == info.identity.to_string()
            });
            let g = cp.and_then(|cp| parse_gtid(&cp.gtid_set).transpose()).transpose()?.ok_or_else(|| {
                ReplError::NoGtid(format!(
                    "cannot resume past the torn end of {} at {}: the checkpoint ({}) is not in that file or has no \
                     GTID state",
                    torn.file,
                    torn.at,
                    prepared.checkpoint.as_ref().map_or("none".to_string(), |c| format!("{}:{}", c.file, c.pos))
                ))
            })?;
            (DumpFrom::Gtid(g.clone()), Some(g))
        }
        // A cluster takeover re-fetches a file from its first event, by position in any mode.
        (Some(_), _, None) if prepared.refetch_from.is_some() => {
            let r = prepared.refetch_from.as_ref().expect("checked");
            (DumpFrom::FilePos { file: r.name.clone(), pos: r.start_pos }, parse_gtid(&r.gtid_start)?)
        }
        // GTID mode resumes by GTID only on another server (a switchover). On the server that
        // wrote the checkpoint the position is exact, while a GTID dump starts at the next file
        // when the checkpoint follows a file's last transaction: the rest of that file (the STOP
        // of a clean shutdown, a ROTATE) would be missing from a copy then sealed as complete.
        (Some(cp), StartSpec::Gtid { .. }, None) if prepared.switched_from.is_some() => {
            let g = parse_gtid(&cp.gtid_set)?.ok_or_else(|| {
                ReplError::NoGtid(format!("the checkpoint at {}:{} has no GTID state", cp.file, cp.pos))
            })?;
            (DumpFrom::Gtid(g.clone()), Some(g))
        }
        (Some(cp), _, None) => (DumpFrom::FilePos { file: cp.file.clone(), pos: cp.pos }, parse_gtid(&cp.gtid_set)?),
        (None, StartSpec::Latest, None) => {
            let (file, pos, gtid) = dump::latest(&mut conn, &info).await?;
            source_current = Some(file.clone());
            (DumpFrom::FilePos { file, pos }, gtid)
        }
        (None, StartSpec::FilePos { file, pos }, None) => (DumpFrom::FilePos { file: file.clone(), pos: *pos }, None),
        (None, StartSpec::Gtid { gtid_set }, None) => (DumpFrom::Gtid(gtid_set.clone()), Some(gtid_set.clone())),
        // The supervisor never starts an archive-only task (`ControlError::ArchiveOnly`).
        (None, StartSpec::ArchiveOnly, None) => {
            return Err(ReplError::NoGtid("an ARCHIVE_ONLY task has no source to read from".into()));
        }
    };
    let from_text = match &from {
        DumpFrom::FilePos { file, pos } => format!("{file}:{pos}"),
        DumpFrom::Gtid(g) => format!("GTID {g}"),
    };
    let (semi_sync, semi_later) = if p.semi_sync {
        semi_sync_for(&p, &mut conn, &info, &from, source_current, &report).await?
    } else {
        (false, None)
    };
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
    if let Some(torn) = &past {
        tracker = tracker.continuing_past(torn.file.clone());
    }
    let mut pump = Pump {
        tracker,
        identity: info.identity.clone(),
        batch: Batch::default(),
        boundaries_sent: 0,
        progress: Progress::default(),
        last_progress: Instant::now(),
        reported: pump::Reported::Nothing,
        received: false,
        from_text: from_text.clone(),
        semi_later,
        semi: semi_sync.then(|| SemiSync {
            queue: AckQueue::default(),
            // What the store says is durable already covers events the source re-sends.
            durable: prepared
                .checkpoint
                .as_ref()
                .filter(|c| c.source_identity == info.identity.as_str())
                .map(|c| AckPos { file: c.file.clone(), pos: c.pos }),
            label: p.task_id.to_string(),
            socket: conn.ack_socket(),
            owed: None,
        }),
    };
    pump.run(&p, &mut conn, &writer, &report).await.map_err(|e| match e {
        ReplError::Source(source)
            if matches!(
                source.classify().code,
                TaskErrorCode::SourceBinlogPurged | TaskErrorCode::InvalidStartPosition
            ) =>
        {
            let hint = match (&past, &prepared.switched_from) {
                (Some(torn), _) => {
                    format!(
                        ". The source's {} ends with an event that never ended at {} (it crashed while writing it), and \
                         the dump by GTID that was to go on past it was refused too: the source's GTID state does not \
                         say that nothing committed follows the tear",
                        torn.file, torn.at
                    )
                }
                (None, Some(old)) if matches!(from, DumpFrom::Gtid(_)) => format!(
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

mod pump;
mod semi;
#[cfg(test)]
mod tests;

use pump::{Batch, Pump, SemiSync};
use semi::semi_sync_for;
