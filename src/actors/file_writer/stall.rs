//! A writer's batch that does not return (a disk that hangs, a write blocked behind a device
//! that is gone) is said while it lasts: the slow-fsync warning ([`super::fsync::SlowFsyncs`])
//! comes only when the fsync returns, and a hung one never does. The writer marks when each
//! batch began, and each store of the checkpoint on the timer and the final flush ([`Busy`]: a
//! hung store write holds every batch behind it); the task's one-second timer asks
//! [`StallWatch::observe`] what to say and carries it out (a warning and a task event).

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A disk on which every batch stalls would otherwise add two task events per batch for as long
/// as it lasts: the events of a stall (and its end) are recorded at most once in this long per
/// task; every stall is still logged.
pub const STALL_EVENTS_EVERY: Duration = Duration::from_secs(600);

/// The instants [`Busy`] stores are counted from here (an `Instant` has no integer form).
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// When the writer's current batch began, or idle. Shared by the writer (on its pool thread)
/// and its task (which reads it on a timer). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Busy(Arc<AtomicU64>);

impl Busy {
    /// Marks a batch begun now, until the guard is dropped.
    pub(super) fn begin(&self) -> BusyGuard {
        let since = Instant::now().saturating_duration_since(*EPOCH).as_nanos() as u64;
        // 0 means idle: a batch begun in the epoch's first nanosecond counts from the next one.
        self.0.store(since.max(1), Ordering::Release);
        BusyGuard(self.clone())
    }

    /// When the batch in progress began (`None`: the writer is between batches).
    pub fn since(&self) -> Option<Instant> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            nanos => Some(*EPOCH + Duration::from_nanos(nanos)),
        }
    }
}

/// How long a batch begun at `since` (`Busy::since`; `None`: between batches) has run at `now`,
/// in seconds: the busy gauge, and the floor of the checkpoint's age.
pub fn busy_seconds(since: Option<Instant>, now: Instant) -> f64 {
    since.map_or(0.0, |s| now.saturating_duration_since(s).as_secs_f64())
}

/// Clears the mark when the batch is over (however it ends: answered, failed or panicked).
pub(super) struct BusyGuard(Busy);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.0.store(0, Ordering::Release);
    }
}

/// What the task says about its writer; `event`: also as a task event (else only logged).
#[derive(Debug, PartialEq, Eq)]
pub enum StallNote {
    /// The batch begun `for_` ago has not returned.
    Stalled { for_: Duration, event: bool },
    /// The stalled batch returned; it had taken at most `after` (seen on this tick).
    Returned { after: Duration, event: bool },
}

/// The task's side: says a stall once per batch, and its end once; records them as task events
/// at most once per [`STALL_EVENTS_EVERY`].
#[derive(Debug)]
pub struct StallWatch {
    stall: Duration,
    /// The start of the batch said to be stalled, and whether that stall was recorded.
    said: Option<(Instant, bool)>,
    /// When a stall was last recorded as an event.
    recorded_at: Option<Instant>,
}

impl StallWatch {
    /// A batch running `stall` (`writer.stall_after_sec`) or longer is stalled.
    pub fn with_stall(stall: Duration) -> StallWatch {
        StallWatch { stall, said: None, recorded_at: None }
    }

    /// The writer's batch in progress began at `busy_since` (`None`: between batches); `Some`
    /// when something is to be said at `now`.
    pub fn observe(&mut self, busy_since: Option<Instant>, now: Instant) -> Option<StallNote> {
        if let Some((said, event)) = self.said
            && busy_since != Some(said)
        {
            self.said = None;
            return Some(StallNote::Returned { after: now.saturating_duration_since(said), event });
        }
        let since = busy_since?;
        let for_ = now.saturating_duration_since(since);
        if self.said.is_none() && for_ >= self.stall {
            let event = self.recorded_at.is_none_or(|t| now.saturating_duration_since(t) >= STALL_EVENTS_EVERY);
            if event {
                self.recorded_at = Some(now);
            }
            self.said = Some((since, event));
            return Some(StallNote::Stalled { for_, event });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_batch_is_said_once_while_it_lasts_and_once_when_it_returns() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let secs = Duration::from_secs;
        let stalled = |s: u64, event: bool| Some(StallNote::Stalled { for_: secs(s), event });
        let returned = |s: u64, event: bool| Some(StallNote::Returned { after: secs(s), event });
        // (tick at second, the batch in progress began at second (None: idle), what is said)
        let table: &[(u64, Option<u64>, Option<StallNote>)] = &[
            (0, None, None),                    // idle
            (1, Some(1), None),                 // a batch begins
            (10, Some(1), None),                // 9 s: not yet
            (11, Some(1), stalled(10, true)),   // 10 s: said, and recorded
            (12, Some(1), None),                // said once
            (40, Some(1), None),                // still the same batch: nothing more
            (41, None, returned(40, true)),     // it returned: recorded like its stall
            (42, None, None),                   // said once
            (43, Some(43), None),               // the next batch, healthy so far
            (44, Some(44), None),               // and the next: batches that return are never said
            (60, Some(44), stalled(16, false)), // this one stalls: logged, no event (49 s after one)
            // It returned and the next began before the tick saw it: the end is said ...
            (61, Some(61), returned(17, false)),
            (71, Some(61), stalled(10, false)), // ... and the next stall
            (72, None, returned(11, false)),
            (620, Some(600), stalled(20, true)), // 609 s after the last event: recorded again
            (621, None, returned(21, true)),
        ];
        let mut w = StallWatch::with_stall(Duration::from_secs(10));
        for (tick, busy, want) in table {
            let got = w.observe(busy.map(at), at(*tick));
            assert_eq!(&got, want, "tick at {tick} s, busy since {busy:?}");
        }
    }

    #[test]
    fn the_mark_is_set_for_the_batch_and_cleared_however_it_ends() {
        let busy = Busy::default();
        assert_eq!(busy.since(), None);
        let before = Instant::now();
        {
            let _g = busy.begin();
            let since = busy.since().expect("marked while the batch runs");
            assert!(since >= before - Duration::from_millis(1) && since <= Instant::now(), "{since:?}");
            let later = since + Duration::from_millis(1500);
            assert!((busy_seconds(Some(since), later) - 1.5).abs() < 1e-9);
            assert_eq!(busy_seconds(Some(later), since), 0.0, "never negative");
        }
        assert_eq!(busy.since(), None, "cleared when the guard is dropped");
        assert_eq!(busy_seconds(busy.since(), Instant::now()), 0.0, "between batches");
        let b = busy.clone();
        let panicked = std::panic::catch_unwind(move || {
            let _g = b.begin();
            panic!("a batch that panics");
        });
        assert!(panicked.is_err());
        assert_eq!(busy.since(), None, "cleared by a panicking batch too");
    }
}
