//! A writer's work that does not return (a disk that hangs, a write blocked behind a device
//! that is gone) is said while it lasts: the slow-fsync warning ([`super::fsync::SlowFsyncs`])
//! comes only when the fsync returns, and a hung one never does. The writer marks when each
//! batch began, and each store of the checkpoint on the timer and the final flush ([`Busy`]: a
//! hung store write holds every batch behind it), and its start (`Recover`, `Prepare`: crash
//! recovery and reconciling the local files, which a hung disk holds as well, the task staying
//! STARTING); the task's one-second timer asks [`StallWatch::observe`] what to say and carries it
//! out (a warning and a task event). A start may legitimately read a whole open file back, so it
//! has a threshold of its own ([`StallAfter`]).

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::domain::StallAfter;

/// A disk on which every batch stalls would otherwise add two task events per batch for as long
/// as it lasts: the events of a stall (and its end) are recorded at most once in this long per
/// task; every stall is still logged.
pub const STALL_EVENTS_EVERY: Duration = Duration::from_secs(600);

/// The instants [`Busy`] stores are counted from here (an `Instant` has no integer form).
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The bit of [`Busy`]'s word that says the work is a start; the rest counts nanoseconds since
/// [`EPOCH`] (2^63 ns is 292 years), 0 meaning idle.
const START_BIT: u64 = 1 << 63;

/// What the writer is busy with (in the API: `BATCH`, `START`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[schema(as = WriterWork)]
pub enum Work {
    /// A batch's write-out and fsync, a checkpoint's store, the final flush.
    Batch,
    /// `Recover` or `Prepare`: crash recovery and reconciling the local files before streaming.
    Start,
}

impl Work {
    /// The threshold past which this work is stalled.
    pub fn stall_after(self, after: StallAfter) -> Duration {
        match self {
            Work::Batch => after.batch,
            Work::Start => after.start,
        }
    }
}

/// The writer's work in progress: what, and since when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub work: Work,
    pub since: Instant,
}

/// What the writer is busy with and since when, or idle. Shared by the writer (on its pool
/// thread) and its task (which reads it on a timer). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Busy(Arc<AtomicU64>);

impl Busy {
    /// Marks `work` begun now, until the guard is dropped; the guard then puts back what was
    /// marked before (a start that ran a batch's step is a start again).
    pub(super) fn begin(&self, work: Work) -> BusyGuard {
        let nanos = Instant::now().saturating_duration_since(*EPOCH).as_nanos() as u64;
        // 0 means idle: work begun in the epoch's first nanosecond counts from the next one.
        let word = nanos.clamp(1, START_BIT - 1) | if work == Work::Start { START_BIT } else { 0 };
        let before = self.0.swap(word, Ordering::AcqRel);
        BusyGuard { busy: self.clone(), before }
    }

    /// The work in progress (`None`: the writer is between batches).
    pub fn mark(&self) -> Option<Mark> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            word => Some(Mark {
                work: if word & START_BIT != 0 { Work::Start } else { Work::Batch },
                since: *EPOCH + Duration::from_nanos(word & !START_BIT),
            }),
        }
    }

    /// When the work in progress began, whatever it is (`None`: between batches).
    pub fn since(&self) -> Option<Instant> {
        self.mark().map(|m| m.since)
    }
}

/// How long work begun at `since` (`Busy::since`; `None`: between batches) has run at `now`,
/// in seconds: the busy gauges, and the floor of the checkpoint's age.
pub fn busy_seconds(since: Option<Instant>, now: Instant) -> f64 {
    since.map_or(0.0, |s| now.saturating_duration_since(s).as_secs_f64())
}

/// Puts back the mark from before when the work is over (however it ends: answered, failed or
/// panicked).
pub(super) struct BusyGuard {
    busy: Busy,
    before: u64,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.busy.0.store(self.before, Ordering::Release);
    }
}

/// What the task says about its writer; `event`: also as a task event (else only logged).
#[derive(Debug, PartialEq, Eq)]
pub enum StallNote {
    /// The `work` begun `for_` ago has not returned.
    Stalled { work: Work, for_: Duration, event: bool },
    /// The stalled `work` returned; it had taken at most `after` (seen on this tick).
    Returned { work: Work, after: Duration, event: bool },
}

/// The task's side: says a stall once per piece of work, and its end once; records them as task
/// events at most once per [`STALL_EVENTS_EVERY`].
#[derive(Debug)]
pub struct StallWatch {
    after: StallAfter,
    /// The work said to be stalled, and whether that stall was recorded.
    said: Option<(Mark, bool)>,
    /// When a stall was last recorded as an event.
    recorded_at: Option<Instant>,
}

impl StallWatch {
    /// Work running as long as its kind's threshold in `after` or longer is stalled.
    pub fn with_stall(after: StallAfter) -> StallWatch {
        StallWatch { after, said: None, recorded_at: None }
    }

    /// The writer's work in progress is `mark` (`None`: between batches); `Some` when something
    /// is to be said at `now`.
    pub fn observe(&mut self, mark: Option<Mark>, now: Instant) -> Option<StallNote> {
        if let Some((said, event)) = self.said
            && mark != Some(said)
        {
            self.said = None;
            return Some(StallNote::Returned {
                work: said.work,
                after: now.saturating_duration_since(said.since),
                event,
            });
        }
        let mark = mark?;
        let for_ = now.saturating_duration_since(mark.since);
        if self.said.is_none() && for_ >= mark.work.stall_after(self.after) {
            let event = self.recorded_at.is_none_or(|t| now.saturating_duration_since(t) >= STALL_EVENTS_EVERY);
            if event {
                self.recorded_at = Some(now);
            }
            self.said = Some((mark, event));
            return Some(StallNote::Stalled { work: mark.work, for_, event });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_work_is_said_once_while_it_lasts_and_once_when_it_returns() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let secs = Duration::from_secs;
        let (b, st) = (Work::Batch, Work::Start);
        let stalled = |work, s: u64, event: bool| Some(StallNote::Stalled { work, for_: secs(s), event });
        let returned = |work, s: u64, event: bool| Some(StallNote::Returned { work, after: secs(s), event });
        // (tick at second, the work in progress and the second it began (None: idle), what is said)
        type Row = (u64, Option<(Work, u64)>, Option<StallNote>);
        let table: &[Row] = &[
            (0, None, None),                            // idle
            (1, Some((b, 1)), None),                    // a batch begins
            (10, Some((b, 1)), None),                   // 9 s: not yet
            (11, Some((b, 1)), stalled(b, 10, true)),   // 10 s: said, and recorded
            (12, Some((b, 1)), None),                   // said once
            (40, Some((b, 1)), None),                   // still the same batch: nothing more
            (41, None, returned(b, 40, true)),          // it returned: recorded like its stall
            (42, None, None),                           // said once
            (43, Some((b, 43)), None),                  // the next batch, healthy so far
            (44, Some((b, 44)), None),                  // and the next: batches that return are never said
            (60, Some((b, 44)), stalled(b, 16, false)), // this one stalls: logged, no event (49 s after one)
            // It returned and the next began before the tick saw it: the end is said ...
            (61, Some((b, 61)), returned(b, 17, false)),
            (71, Some((b, 61)), stalled(b, 10, false)), // ... and the next stall
            (72, None, returned(b, 11, false)),
            // A start (recovery before streaming) has its own, longer threshold.
            (100, Some((st, 100)), None),
            (130, Some((st, 100)), None), // 30 s: a batch would be stalled, a start is not yet
            (159, Some((st, 100)), None),
            (160, Some((st, 100)), stalled(st, 60, false)), // a minute: said as a start
            (161, Some((st, 100)), None),
            (170, Some((b, 165)), returned(st, 70, false)), // it returned; the stream's first batch runs
            (620, Some((b, 600)), stalled(b, 20, true)),    // 609 s after the last event: recorded again
            (621, None, returned(b, 21, true)),
            (760, Some((st, 700)), stalled(st, 60, false)), // 140 s after it: logged only
            (761, None, returned(st, 61, false)),
        ];
        let mut w = StallWatch::with_stall(StallAfter { batch: secs(10), start: secs(60) });
        for (tick, busy, want) in table {
            let got = w.observe(busy.map(|(work, s)| Mark { work, since: at(s) }), at(*tick));
            assert_eq!(&got, want, "tick at {tick} s, busy {busy:?}");
        }
    }

    #[test]
    fn the_mark_says_the_work_and_is_put_back_however_it_ends() {
        let busy = Busy::default();
        assert_eq!(busy.mark(), None);
        let before = Instant::now();
        {
            let _g = busy.begin(Work::Batch);
            let m = busy.mark().expect("marked while the batch runs");
            assert_eq!(m.work, Work::Batch);
            assert!(m.since >= before - Duration::from_millis(1) && m.since <= Instant::now(), "{m:?}");
            assert_eq!(busy.since(), Some(m.since));
            let later = m.since + Duration::from_millis(1500);
            assert!((busy_seconds(Some(m.since), later) - 1.5).abs() < 1e-9);
            assert_eq!(busy_seconds(Some(later), m.since), 0.0, "never negative");
        }
        assert_eq!(busy.mark(), None, "cleared when the guard is dropped");
        assert_eq!(busy_seconds(busy.since(), Instant::now()), 0.0, "between batches");
        {
            let _start = busy.begin(Work::Start);
            let start = busy.mark().expect("marked while the start runs");
            assert_eq!(start.work, Work::Start);
            {
                let _step = busy.begin(Work::Batch);
                assert_eq!(busy.mark().map(|m| m.work), Some(Work::Batch));
            }
            assert_eq!(busy.mark(), Some(start), "the start again, since when it began");
        }
        assert_eq!(busy.mark(), None);
        let b = busy.clone();
        let panicked = std::panic::catch_unwind(move || {
            let _g = b.begin(Work::Start);
            panic!("a start that panics");
        });
        assert!(panicked.is_err());
        assert_eq!(busy.mark(), None, "cleared by panicking work too");
    }
}
