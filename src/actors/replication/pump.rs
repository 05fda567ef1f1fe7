//! The streaming loop of one connection: packets in, batches to the writer, semi-sync acks out
//! after the writer's fsync (from the writer's thread, or here on its answer), progress reports.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::*;
use crate::actors::file_writer::AfterDurable;
use crate::source::conn::AckSocket;

/// A semi-sync stream's acks: the requests not answered yet and what is durable.
pub(super) struct SemiSync {
    pub(super) queue: AckQueue,
    /// The durable checkpoint as the writer last answered it.
    pub(super) durable: Option<AckPos>,
    /// The metrics label (task id).
    pub(super) label: String,
    /// The source's socket for the writer's thread (`None` over TLS): see [`OwedAck`].
    pub(super) socket: Option<AckSocket>,
    /// The ack cut with the batch in flight, owed once its fsync returns.
    pub(super) owed: Option<OwedAck>,
}

/// An ack owed by the batch in flight: the last request its checkpoint covers (the rule is
/// `AckQueue::covered_by`'s, applied to the checkpoint the batch makes durable). The writer's
/// thread sends it the moment that fsync returns ([`WriteBatch::after_durable`]), without the
/// hop back to this task first; what it could not send (over TLS, or a full socket buffer) this
/// task sends on the writer's answer. Either way after the fsync, and one batch is in flight at
/// a time, so acks leave in order and only one thread writes to the socket at once.
pub(super) struct OwedAck {
    ack: semisync::Ack,
    send: Arc<AckSend>,
}

/// The part of an owed ack the writer's thread shares.
struct AckSend {
    frame: Vec<u8>,
    /// Bytes of `frame` written by the writer's thread.
    written: AtomicUsize,
    /// When the writer's thread wrote the whole frame.
    sent_at: OnceLock<Instant>,
}

impl AckSend {
    fn send_on(&self, socket: &AckSocket) {
        let n = socket.send_now(&self.frame);
        self.written.store(n, Ordering::Release);
        if n == self.frame.len() {
            let _ = self.sent_at.set(Instant::now());
        }
    }
}

/// A batch being accumulated: coalesced small events, pass-through large ones.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) ops: Vec<WriteOp>,
    pub(super) small: BytesMut,
    pub(super) small_end: u64,
    pub(super) bytes: usize,
    pub(super) since: Option<Instant>,
}

impl Batch {
    pub(super) fn push(&mut self, op: WriteOp) {
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

    pub(super) fn flush_small(&mut self) {
        if !self.small.is_empty() {
            let bytes: Bytes = self.small.split().freeze();
            self.ops.push(WriteOp::Append { bytes, end_pos: self.small_end });
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.small.is_empty()
    }

    pub(super) fn take(&mut self) -> Vec<WriteOp> {
        self.flush_small();
        self.bytes = 0;
        self.since = None;
        std::mem::take(&mut self.ops)
    }
}

pub(super) struct Pump {
    pub(super) tracker: StreamTracker,
    pub(super) identity: SourceIdentity,
    pub(super) batch: Batch,
    pub(super) boundaries_sent: u64,
    pub(super) progress: Progress,
    pub(super) last_progress: Instant,
    /// How far the task was told this attempt got: accepted (RUNNING), and heard from.
    pub(super) reported: Reported,
    /// Whether any packet of the dump arrived (the rotate that opens every dump comes first).
    pub(super) received: bool,
    pub(super) from_text: String,
    /// Set when the source accepted us as a semi-sync replica.
    pub(super) semi: Option<SemiSync>,
    /// Semi-sync asked for but not announced (the dump began before the source's current
    /// file): where the dump ends so that the next one announces it.
    pub(super) semi_later: Option<semisync::Announce>,
}

/// What an attempt has told its task about the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reported {
    Nothing,
    /// Nothing refused the dump within the grace (RUNNING), but nothing came either: the retry
    /// period goes on, so a source that accepts dumps and then stays silent, again and again,
    /// is a task retrying (and stuck), not one that streams a second at a time.
    Accepted,
    /// An event or a heartbeat arrived: the source does stream.
    Heard,
}

/// The writer's answer to a batch, as the attempt's error.
fn written(answer: Result<Result<Option<Checkpoint>, WriterError>, MailboxError>) -> Result<(), ReplError> {
    answer.map_err(|_| ReplError::WriterGone)?.map(|_| ()).map_err(ReplError::from)
}

/// How many already-buffered packets one turn of the streaming loop takes (see `Pump::run`).
const DRAIN_AT_ONCE: usize = 64;

type InFlight =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Result<Option<Checkpoint>, WriterError>, MailboxError>>>>;

impl Pump {
    pub(super) async fn run(
        &mut self,
        p: &ReplicationParams,
        conn: &mut SourceConn,
        writer: &Addr<FileWriterActor>,
        report: &Recipient<ReplicationEvent>,
    ) -> Result<(), ReplError> {
        let mut in_flight: Option<InFlight> = None;
        let res = self.stream(p, conn, writer, report, &mut in_flight).await;
        // The source ended the stream itself (an error packet, or the end of a shutdown), or sent
        // an event we refuse (a CRC32 mismatch, a position or size that lies: `ReplError::Stream`,
        // raised before the tracker takes any of that event's bytes): every event before that
        // arrived whole and was checked, so it is written before the attempt ends. A resume then
        // starts after it; the copy reaches the point where the source's stream went wrong (a
        // corrupted event in the source's file would otherwise hold back, at every attempt, the
        // transactions read with it), and a decision about where the source's stream stopped
        // (`source::torn_tail`) is made on a checkpoint that reached that point.
        if let Err(ReplError::Source(SourceError::Server { .. }) | ReplError::Eof | ReplError::Stream { .. }) = &res {
            self.write_what_arrived(writer, in_flight.take(), &p.log).await;
        }
        res
    }

    async fn write_what_arrived(&mut self, writer: &Addr<FileWriterActor>, in_flight: Option<InFlight>, log: &Logger) {
        if let Some(f) = in_flight
            && let Err(e) = written(f.await)
        {
            debug!(log, "the batch in flight when the stream ended was not written"; "error" => %e);
            return;
        }
        if !self.batch.is_empty() {
            let msg = self.cut_batch();
            if let Err(e) = written(writer.send(msg).await) {
                debug!(log, "the last events before the stream ended were not written"; "error" => %e);
            }
        }
    }

    async fn stream(
        &mut self,
        p: &ReplicationParams,
        conn: &mut SourceConn,
        writer: &Addr<FileWriterActor>,
        report: &Recipient<ReplicationEvent>,
        in_flight: &mut Option<InFlight>,
    ) -> Result<(), ReplError> {
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
                    *in_flight = None;
                    if !can_read {
                        quiet_since = Instant::now();
                    }
                    let durable = done.map_err(|_| ReplError::WriterGone)??;
                    if let Some(cp) = durable {
                        // Durable in the source's current file: hand over to a semi-sync dump.
                        if self.semi_later.as_ref().is_some_and(|l| l.reached(&cp.file)) {
                            info!(p.log, "reached the source's current file; dumping again as a semi-sync replica";
                                  "from" => format!("{}:{}", cp.file, cp.pos));
                            return Ok(());
                        }
                        if let Some(semi) = self.semi.as_mut() {
                            semi.durable = Some(AckPos { file: cp.file, pos: cp.pos });
                        }
                    }
                }
                pkt = conn.read_packet(), if can_read => {
                    let mut pkt = pkt?;
                    self.received = true;
                    let mut taken = 1;
                    loop {
                        let seen = self.on_packet(pkt, &mut scratch)?;
                        // RUNNING once real events or a heartbeat flow: an impossible start
                        // position is refused only after the artificial rotate and the FDE.
                        if self.reported != Reported::Heard
                            && matches!(seen, Some(Seen::Written { .. } | Seen::Heartbeat { .. }))
                        {
                            let msg = match self.reported {
                                Reported::Nothing => ReplicationEvent::Streaming { from: self.from_text.clone(), heard: true },
                                _ => ReplicationEvent::Heard,
                            };
                            self.reported = Reported::Heard;
                            report.do_send(msg);
                        }
                        // Packets already in the read buffer are taken here, a few at a time,
                        // without a trip through this `select!` each (its timers cost more than
                        // a small event). Stops where the loop below could cut the batch: full,
                        // or the buffer drained; the writer's answer and the batch's age are
                        // looked at again after at most `DRAIN_AT_ONCE` packets.
                        if taken >= DRAIN_AT_ONCE
                            || self.batch.bytes >= p.fsync_max_bytes
                            || !conn.has_buffered_packet()
                        {
                            break;
                        }
                        // Complete in the buffer: returns without waiting on the socket.
                        pkt = conn.read_packet().await?;
                        taken += 1;
                    }
                }
                _ = tokio::time::sleep_until(accepted_at), if self.reported == Reported::Nothing => {
                    self.reported = Reported::Accepted;
                    report.do_send(ReplicationEvent::Streaming { from: self.from_text.clone(), heard: false });
                }
                _ = tokio::time::sleep_until(delay_at.unwrap_or(silence_at)), if delay_at.is_some() && in_flight.is_none() => {}
                _ = tokio::time::sleep_until(silence_at), if can_read => {
                    if conn.last_activity().max(quiet_since).elapsed() >= p.silence_timeout {
                        return Err(if self.received {
                            ReplError::Silence(p.silence_timeout)
                        } else {
                            ReplError::DumpUnanswered(p.silence_timeout)
                        });
                    }
                }
            }
            // Acks go out here, between reads, as soon as the writer's answer covers them: the
            // read above is cancel-safe, so nothing on the socket holds an ack back. The one the
            // batch owed was sent by the writer's thread already, unless it could not be.
            if in_flight.is_none() {
                self.finish_owed_ack(conn, &p.log).await?;
            }
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
                    *in_flight = Some(Box::pin(async move { w.send(msg).await }));
                }
            }
            if self.last_progress.elapsed() >= PROGRESS_EVERY {
                self.last_progress = Instant::now();
                self.report_progress(report);
            }
        }
    }

    pub(super) fn cut_batch(&mut self) -> WriteBatch {
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
        let received = self.batch.since;
        let after_durable = checkpoint.as_ref().and_then(|cp| self.owe_ack(cp));
        WriteBatch { ops: self.batch.take(), checkpoint, received, after_durable }
    }

    /// The ack the batch about to be cut owes once `checkpoint` is durable, if any: remembered
    /// in `semi.owed`, and handed to the writer's thread to send right after the fsync when the
    /// connection allows it (see [`OwedAck`]).
    fn owe_ack(&mut self, checkpoint: &Checkpoint) -> Option<AfterDurable> {
        let semi = self.semi.as_mut()?;
        let ack = semi.queue.covered_by(&AckPos { file: checkpoint.file.clone(), pos: checkpoint.pos })?;
        let send = Arc::new(AckSend {
            frame: semisync::ack_frame(&ack.at.file, ack.at.pos),
            written: AtomicUsize::new(0),
            sent_at: OnceLock::new(),
        });
        let hook = semi.socket.clone().map(|socket| {
            let send = Arc::clone(&send);
            AfterDurable::new(move || send.send_on(&socket))
        });
        semi.owed = Some(OwedAck { ack, send });
        hook
    }

    /// On the writer's answer: counts the owed ack the writer's thread sent, or sends what it
    /// could not (all of it over TLS; the rest of a frame a full socket buffer cut).
    async fn finish_owed_ack(&mut self, conn: &mut SourceConn, log: &Logger) -> Result<(), ReplError> {
        let Some(semi) = self.semi.as_mut() else { return Ok(()) };
        let Some(OwedAck { ack, send }) = semi.owed.take() else { return Ok(()) };
        let sent_at = match send.sent_at.get() {
            Some(at) => *at,
            None => {
                let written = send.written.load(Ordering::Acquire);
                let why = match semi.socket {
                    None => "the connection is encrypted",
                    Some(_) => "the writer's thread could not send it whole",
                };
                debug!(log, "semi-sync ack sent by the stream task";
                    "why" => why, "at" => %ack.at, "written_by_writer" => written, "of" => send.frame.len());
                conn.send_semi_sync_ack(&send.frame[written..]).await?;
                Instant::now()
            }
        };
        self.acked(ack, sent_at);
        Ok(())
    }

    /// Counts an ack that went out at `sent_at`.
    fn acked(&mut self, ack: semisync::Ack, sent_at: Instant) {
        let Some(semi) = self.semi.as_ref() else { return };
        let m = crate::telemetry::metrics::metrics();
        m.semi_sync_acks.with_label_values(&[&semi.label]).inc();
        for t in &ack.received {
            m.semi_sync_ack_seconds.observe(sent_at.saturating_duration_since(*t).as_secs_f64());
        }
        self.progress.acks_sent += 1;
        self.progress.last_ack_pos = Some(ack.at.to_string());
    }

    /// Sends an ack for requests the durable checkpoint already covers without a batch of
    /// their own (events a source re-sends at or below the stored checkpoint), if any (never
    /// beyond it: see `AckQueue::covered_by`). A batch's own ack is `owe_ack`'s.
    pub(super) async fn send_ack(&mut self, conn: &mut SourceConn) -> Result<(), ReplError> {
        let Some(semi) = self.semi.as_mut() else { return Ok(()) };
        let Some(durable) = semi.durable.as_ref() else { return Ok(()) };
        let Some(ack) = semi.queue.covered_by(durable) else { return Ok(()) };
        conn.send_semi_sync_ack(&semisync::ack_frame(&ack.at.file, ack.at.pos)).await?;
        self.acked(ack, Instant::now());
        Ok(())
    }

    pub(super) fn on_packet(&mut self, pkt: Bytes, scratch: &mut Vec<WriteOp>) -> Result<Option<Seen>, ReplError> {
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
                // Only an event that asks for an ack needs its arrival time (one clock read less
                // per event otherwise).
                let received = needs_ack.then(Instant::now);
                let seen = self.tracker.on_event(event.clone(), scratch).map_err(|source| {
                    let at = self.tracker.current_file().zip(self.tracker.next_pos());
                    ReplError::Stream { at: at.map(|(f, pos)| SourcePos { file: f.to_string(), pos }), source }
                })?;
                if let Some(received) = received {
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
    pub(super) fn ask_ack(&mut self, event: &[u8], received: Instant) -> Result<(), ReplError> {
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

    pub(super) fn report_progress(&mut self, report: &Recipient<ReplicationEvent>) {
        let stats = self.tracker.stats();
        self.progress.file = self.tracker.current_file().map(|f| f.to_string());
        self.progress.pos = self.tracker.next_pos();
        self.progress.events_written = stats.events_written;
        self.progress.bytes_written = stats.bytes_written;
        report.do_send(ReplicationEvent::Progress(self.progress.clone()));
    }
}
