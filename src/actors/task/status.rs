//! What a running task reports about itself: `RuntimeStatus` (the API's live view, `GetStatus`),
//! kept up to date from the replication's progress, and the lag and checkpoint-age gauges.

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::Serialize;
use slog::{info, warn};

use super::TaskActor;
use crate::actors::file_writer::{StallNote, Work, busy_seconds};
use crate::actors::replication::Progress;
use crate::domain::{TaskError, TaskEventType, TaskState};
use crate::meta::Checkpoint;
use crate::telemetry::metrics::metrics;

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
    /// Since when the writer's batch in progress has not returned, once it is said to be stalled
    /// (`writer.stall_after_sec`), or its start (`writer.start_stall_after_sec`); `None` again
    /// when it returns.
    pub writer_stalled_since: Option<DateTime<Utc>>,
    /// What that stalled work is (set with `writer_stalled_since`).
    pub writer_stalled_in: Option<Work>,
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

impl TaskActor {
    pub(super) fn apply_progress(&mut self, p: Progress) {
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

    /// Carries out `StallWatch::observe` on the writer's mark: a batch that has not returned for
    /// `writer.stall_after_sec`, or a start for `writer.start_stall_after_sec`, is a warning and
    /// (at most once per `STALL_EVENTS_EVERY`) a task event, and so is its end.
    pub(super) fn watch_writer(&mut self, ctx: &mut Context<Self>) {
        let (mark, now) = (self.writer_busy.mark(), std::time::Instant::now());
        let running = |work| busy_seconds(mark.filter(|m| m.work == work).map(|m| m.since), now);
        let m = metrics();
        m.writer_busy.with_label_values(&[&self.label]).set(running(Work::Batch));
        m.writer_start.with_label_values(&[&self.label]).set(running(Work::Start));
        let Some(note) = self.stall.observe(mark, now) else {
            return;
        };
        let (kind, message, event) = match note {
            StallNote::Stalled { work, for_, event } => {
                let message = match work {
                    Work::Batch => format!(
                        "the writer's batch (write-out and fsync, or the checkpoint's store) has not returned for {} s: \
                         the disk (or the metadata store) is hanging or failing; the durable checkpoint does not \
                         move, and a semi-sync source's commits and the relay's clients wait for it",
                        for_.as_secs()
                    ),
                    Work::Start => format!(
                        "the writer's start (crash recovery and reconciling the local files with the durable \
                         checkpoint, before streaming) has not returned for {} s: the disk (or the metadata store) \
                         is hanging, failing or very slow; the task streams nothing until it returns",
                        for_.as_secs()
                    ),
                };
                warn!(self.ctx.log, "writer stalled: {message}"; "stalled_s" => for_.as_secs());
                let for_ = chrono::Duration::from_std(for_).unwrap_or(chrono::Duration::MAX);
                self.status.writer_stalled_since = Utc::now().checked_sub_signed(for_);
                self.status.writer_stalled_in = Some(work);
                (TaskEventType::WriterStalled, message, event)
            }
            StallNote::Returned { work, after, event } => {
                let what = match work {
                    Work::Batch => "batch",
                    Work::Start => "start",
                };
                let message = format!("the writer's stalled {what} returned after about {} s", after.as_secs());
                info!(self.ctx.log, "writer stall ended: {message}"; "after_s" => after.as_secs());
                self.status.writer_stalled_since = None;
                self.status.writer_stalled_in = None;
                (TaskEventType::WriterStallEnded, message, event)
            }
        };
        if !event || self.relinquished {
            return;
        }
        let (id, store, log) = (self.id(), self.ctx.store.clone(), self.ctx.log.clone());
        ctx.spawn(
            async move {
                if let Err(e) = store.call(move |s| s.append_event(id, kind, &message)).await {
                    warn!(log, "cannot record the writer-stall event"; "error" => %e);
                }
            }
            .into_actor(self),
        );
    }

    /// Lag and checkpoint age, from what the actor knows now (also on a 1 s tick: an idle
    /// stream reports nothing but its lag still means something).
    pub(super) fn refresh_gauges(&mut self) {
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
            let busy_for = busy_seconds(self.writer_busy.since(), std::time::Instant::now());
            let age = checkpoint_age(self.status.caught_up, self.status.checkpoint_at, now, busy_for);
            m.checkpoint_age.with_label_values(&[&self.label]).set(age);
        }
    }
}

/// The `checkpoint_age` gauge: seconds since the durable checkpoint moved, 0 when caught up
/// (the source's heartbeat says we received everything: nothing waits to be made durable), but
/// never less than how long the writer's batch in progress has run (`writer_busy_for`, seconds):
/// nothing became durable meanwhile. A hung disk under a quiet source is caught up (the stream
/// still reads heartbeats) yet falls behind, and the gauge's alert must see it.
pub(super) fn checkpoint_age(
    caught_up: bool,
    checkpoint_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    writer_busy_for: f64,
) -> f64 {
    let since_moved = match (caught_up, checkpoint_at) {
        (false, Some(at)) => (now - at).num_milliseconds().max(0) as f64 / 1000.0,
        (true, _) | (false, None) => 0.0,
    };
    since_moved.max(writer_busy_for)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_age_is_never_less_than_the_batch_in_progress_has_run() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let ago = |s: i64| Some(now - chrono::Duration::seconds(s));
        // (caught up, checkpoint moved, writer busy for s, age)
        let table = [
            (true, ago(3600), 0.0, 0.0),     // caught up and idle: nothing waits
            (true, ago(3600), 0.002, 0.002), // a healthy batch: milliseconds
            (true, ago(3600), 42.0, 42.0),   // a hung disk under a quiet source
            (true, None, 12.5, 12.5),        // ... before the first checkpoint
            (false, ago(30), 0.0, 30.0),     // behind: since the checkpoint moved
            (false, ago(30), 0.5, 30.0),     // the batch in flight changes nothing
            (false, ago(5), 700.0, 700.0),   // a batch hung longer than the checkpoint is old
            (false, None, 0.0, 0.0),         // no checkpoint yet, nothing running
            (false, ago(-5), 0.0, 0.0),      // a clock step back: never negative
        ];
        for (caught_up, at, busy, want) in table {
            let got = checkpoint_age(caught_up, at, now, busy);
            assert!((got - want).abs() < 1e-9, "caught up {caught_up}, moved {at:?}, busy {busy} s: {got} != {want}");
        }
    }
}
