//! The service-wide summary behind `GET /api/summary` and the UI's dashboard: which tasks need a
//! look first, the worst lag, throughput. Pure: the facts (the task rows, the store's upload
//! counts, this process's counters) come in, a `Summary` goes out; nothing here reads a
//! database, a clock or a metric. Rates come from `RateMeter`, which keeps the counter samples
//! the caller feeds it.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::domain::{StallAfter, Task, TaskState};
use crate::retry::is_stuck;

/// Tasks the summary lists, most urgent first (the rest are counted).
pub const URGENT_LIMIT: usize = 50;

/// What the live side of this process knows about one task (from its metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LiveTask {
    /// `binlog_server_replication_lag_seconds`; `None` before it was measured.
    pub lag_seconds: Option<f64>,
    /// Bytes per second over the rate window; `None` until two samples exist.
    pub bytes_per_second: Option<f64>,
    /// `binlog_server_writer_busy_seconds`: how long the writer's batch in progress has run
    /// (0 between batches); `None` before the task's timer first set it.
    pub writer_busy_seconds: Option<f64>,
    /// `binlog_server_writer_start_seconds`: how long the writer's start (crash recovery and
    /// reconciling the local files, before streaming) has run (0 otherwise); `None` as above.
    pub writer_start_seconds: Option<f64>,
}

impl LiveTask {
    /// Whether the writer's batch in progress has run `after.batch` or longer, or its start
    /// `after.start` or longer: the disk (or the metadata store) hangs, and nothing becomes
    /// durable (or the task does not stream) until it returns.
    pub fn writer_stalled(&self, after: StallAfter) -> bool {
        let reached = |secs: Option<f64>, stall: Duration| secs.is_some_and(|s| s >= stall.as_secs_f64());
        reached(self.writer_busy_seconds, after.batch) || reached(self.writer_start_seconds, after.start)
    }
}

/// How urgent a task is, lower first: stuck or with a stalled writer (`needs_look`: both need a
/// look now), failed, retrying, with an error, the rest.
pub fn urgency(task: &Task, needs_look: bool) -> u8 {
    if needs_look {
        return 0;
    }
    match task.state {
        TaskState::Failed => 1,
        TaskState::RetryBackoff | TaskState::LeaseDegraded => 2,
        _ if task.last_error.is_some() => 3,
        TaskState::Starting | TaskState::Stopping => 4,
        TaskState::Running => 5,
        TaskState::Stopped => 6,
    }
}

/// One task in the most-urgent list.
#[derive(Debug, Clone, PartialEq)]
pub struct UrgentTask<'a> {
    pub task: &'a Task,
    pub stuck: bool,
    /// Its writer's batch has run for the stall threshold or longer (see [`LiveTask::writer_stalled`]).
    pub writer_stalled: bool,
    pub live: LiveTask,
}

/// What `GET /api/summary` reports, before it is shaped into JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary<'a> {
    pub total: i64,
    /// Every state, zeros included.
    pub by_state: BTreeMap<&'static str, i64>,
    pub active: i64,
    pub stuck: i64,
    /// FAILED, RETRY_BACKOFF and LEASE_DEGRADED.
    pub failing: i64,
    /// Active tasks whose writer's batch or start has not returned for its stall threshold.
    pub writers_stalled: i64,
    /// Up to `URGENT_LIMIT` tasks: stuck or with a stalled writer first, then failed, retrying,
    /// with an error, starting or stopping, running (by lag, worst first), stopped; failing the
    /// longest first within a rank.
    pub urgent: Vec<UrgentTask<'a>>,
    /// The task with the largest measured lag.
    pub worst_lag: Option<(&'a Task, f64)>,
}

/// What makes a task need a look: `alert_after` retrying (stuck), its writer's work running
/// as long as `writer_stall` says (stalled).
#[derive(Debug, Clone, Copy)]
pub struct Alerts {
    pub alert_after: chrono::Duration,
    pub writer_stall: StallAfter,
}

/// Builds the summary from every task row and what this process measures per task.
pub fn summarize<'a>(
    tasks: &'a [Task],
    live: &BTreeMap<i64, LiveTask>,
    now: DateTime<Utc>,
    alerts: Alerts,
) -> Summary<'a> {
    let mut by_state: BTreeMap<&'static str, i64> = TaskState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    let (mut active, mut stuck, mut failing, mut writers_stalled) = (0, 0, 0, 0);
    let mut ranked: Vec<(u8, UrgentTask<'a>)> = Vec::with_capacity(tasks.len());
    let mut worst_lag: Option<(&Task, f64)> = None;
    for t in tasks {
        *by_state.entry(t.state.as_str()).or_default() += 1;
        active += i64::from(t.state.is_active());
        failing += i64::from(matches!(t.state, TaskState::Failed | TaskState::RetryBackoff | TaskState::LeaseDegraded));
        // A stopped task's last gauge value is history, not lag.
        let l = if t.state.is_active() { live.get(&t.id.0).copied().unwrap_or_default() } else { LiveTask::default() };
        let u = UrgentTask {
            task: t,
            stuck: is_stuck(t.state, t.last_error.as_ref(), now, alerts.alert_after),
            writer_stalled: l.writer_stalled(alerts.writer_stall),
            live: l,
        };
        stuck += i64::from(u.stuck);
        writers_stalled += i64::from(u.writer_stalled);
        if let Some(lag) = l.lag_seconds
            && worst_lag.is_none_or(|(_, w)| lag > w)
        {
            worst_lag = Some((t, lag));
        }
        ranked.push((urgency(t, u.stuck || u.writer_stalled), u));
    }
    let since = |t: &Task| t.last_error.as_ref().map(|e| e.since);
    ranked.sort_by(|(ra, UrgentTask { task: a, live: la, .. }), (rb, UrgentTask { task: b, live: lb, .. })| {
        ra.cmp(rb)
            // Failing for longer first (None, no error, sorts last).
            .then_with(|| match (since(a), since(b)) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            })
            .then_with(|| lb.lag_seconds.unwrap_or(-1.0).total_cmp(&la.lag_seconds.unwrap_or(-1.0)))
            .then_with(|| a.spec.name.cmp(&b.spec.name))
            .then_with(|| a.id.0.cmp(&b.id.0))
    });
    let urgent = ranked.into_iter().take(URGENT_LIMIT).map(|(_, u)| u).collect();
    Summary { total: tasks.len() as i64, by_state, active, stuck, failing, writers_stalled, urgent, worst_lag }
}

/// Cumulative counters of one task at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub events: u64,
    pub bytes: u64,
}

/// Rates from cumulative counters sampled at each summary request: at most one sample a second
/// is kept, for at most `window`, so memory stays bounded however often clients ask.
#[derive(Debug)]
pub struct RateMeter {
    window: Duration,
    samples: VecDeque<(Instant, BTreeMap<i64, Counters>)>,
}

/// Rates over the meter's window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    /// Seconds between the oldest sample used and now; `None` before two samples exist.
    pub window_seconds: Option<f64>,
    pub events_per_second: Option<f64>,
    pub bytes_per_second: Option<f64>,
    pub per_task_bytes: BTreeMap<i64, f64>,
}

impl RateMeter {
    pub fn new(window: Duration) -> RateMeter {
        RateMeter { window, samples: VecDeque::new() }
    }

    /// Records `now`'s counters and returns the rates since the oldest sample in the window. A
    /// task whose counters went down (deleted and recreated, or the process's counters reset)
    /// or that is new since that sample has no rate yet.
    pub fn observe(&mut self, now: Instant, counters: BTreeMap<i64, Counters>) -> Rates {
        while self.samples.front().is_some_and(|(t, _)| now.duration_since(*t) > self.window) {
            self.samples.pop_front();
        }
        let rates = match self.samples.front() {
            Some((t, old)) if now.duration_since(*t) >= Duration::from_secs(1) => {
                let dt = now.duration_since(*t).as_secs_f64();
                let mut per_task_bytes = BTreeMap::new();
                let (mut events, mut bytes) = (0u64, 0u64);
                for (id, c) in &counters {
                    if let Some(o) = old.get(id)
                        && c.events >= o.events
                        && c.bytes >= o.bytes
                    {
                        events += c.events - o.events;
                        bytes += c.bytes - o.bytes;
                        per_task_bytes.insert(*id, (c.bytes - o.bytes) as f64 / dt);
                    }
                }
                Rates {
                    window_seconds: Some(dt),
                    events_per_second: Some(events as f64 / dt),
                    bytes_per_second: Some(bytes as f64 / dt),
                    per_task_bytes,
                }
            }
            _ => Rates::default(),
        };
        if self.samples.back().is_none_or(|(t, _)| now.duration_since(*t) >= Duration::from_secs(1)) {
            self.samples.push_back((now, counters));
        }
        rates
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{TaskError, TaskErrorCode, TaskId};

    fn task(id: i64, name: &str, state: TaskState, failing_for_sec: Option<i64>, now: DateTime<Utc>) -> Task {
        let spec = crate::domain::test_spec(name, &format!("k{id}"));
        Task {
            id: TaskId(id),
            spec,
            desired_state: crate::domain::DesiredState::Running,
            state,
            last_error: failing_for_sec.map(|s| TaskError {
                code: TaskErrorCode::SourceUnreachable,
                message: "down".into(),
                since: now - chrono::Duration::seconds(s),
                attempts: 3,
            }),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn stuck_first_then_failed_then_retrying_then_running_by_lag() {
        let now = Utc::now();
        let alert = chrono::Duration::seconds(300);
        let tasks = vec![
            task(1, "stopped", TaskState::Stopped, None, now),
            task(2, "running-low-lag", TaskState::Running, None, now),
            task(3, "retrying", TaskState::RetryBackoff, Some(10), now),
            task(4, "failed", TaskState::Failed, Some(5), now),
            task(5, "stuck", TaskState::RetryBackoff, Some(900), now),
            task(6, "running-high-lag", TaskState::Running, None, now),
            task(7, "failed-longer", TaskState::Failed, Some(50), now),
        ];
        let live: BTreeMap<i64, LiveTask> = [
            (2, LiveTask { lag_seconds: Some(1.0), ..LiveTask::default() }),
            (
                6,
                LiveTask {
                    lag_seconds: Some(42.0),
                    bytes_per_second: Some(10.0),
                    writer_busy_seconds: Some(0.2),
                    writer_start_seconds: Some(0.0),
                },
            ),
            (1, LiveTask { lag_seconds: Some(999.0), ..LiveTask::default() }),
        ]
        .into();
        let s = summarize(&tasks, &live, now, alerts(alert));
        let order: Vec<&str> = s.urgent.iter().map(|u| u.task.spec.name.as_str()).collect();
        assert_eq!(
            order,
            ["stuck", "failed-longer", "failed", "retrying", "running-high-lag", "running-low-lag", "stopped"]
        );
        assert!(s.urgent[0].stuck && !s.urgent[1].stuck);
        assert_eq!((s.total, s.active, s.stuck, s.failing, s.writers_stalled), (7, 4, 1, 4, 0));
        assert_eq!(s.by_state["FAILED"], 2);
        assert_eq!(s.by_state["STARTING"], 0, "every state is listed");
        let (worst, lag) = s.worst_lag.expect("a lag");
        assert_eq!((worst.id, lag), (TaskId(6), 42.0), "a stopped task's stale gauge is no lag");
    }

    const STALL: StallAfter = StallAfter { batch: Duration::from_secs(10), start: Duration::from_secs(60) };

    fn alerts(alert_after: chrono::Duration) -> Alerts {
        Alerts { alert_after, writer_stall: STALL }
    }

    /// A running task whose disk hangs looks healthy by its state and its lag (the heartbeats
    /// still arrive), and a starting one like any other: its writer's busy (or start) seconds put
    /// it first, beside the stuck ones, and count it.
    #[test]
    fn a_stalled_writer_needs_a_look_first_and_is_counted() {
        let now = Utc::now();
        let tasks = vec![
            task(1, "failed", TaskState::Failed, Some(5), now),
            task(2, "busy-but-fine", TaskState::Running, None, now),
            task(3, "stalled", TaskState::Running, None, now),
            task(4, "stalled-at-the-line", TaskState::Running, None, now),
            task(5, "stuck", TaskState::RetryBackoff, Some(900), now),
            task(6, "stopped-stale-gauge", TaskState::Stopped, None, now),
            task(7, "idle", TaskState::Running, None, now),
            task(8, "start-stalled", TaskState::Starting, None, now),
            task(9, "starting-slowly", TaskState::Starting, None, now),
            task(10, "start-stalled-retrying", TaskState::RetryBackoff, Some(20), now),
        ];
        let busy = |s: f64| LiveTask { lag_seconds: Some(0.0), writer_busy_seconds: Some(s), ..LiveTask::default() };
        let start =
            |s: f64| LiveTask { writer_busy_seconds: Some(0.0), writer_start_seconds: Some(s), ..LiveTask::default() };
        let live: BTreeMap<i64, LiveTask> = [
            (2, busy(9.9)),
            (3, busy(600.0)),
            (4, busy(10.0)),
            (6, busy(3600.0)),
            (7, busy(0.0)),
            (8, start(60.0)),
            // 30 s: a batch would be stalled, a start (which may read a file back) is not yet.
            (9, start(30.0)),
            (10, start(61.0)),
        ]
        .into();
        let s = summarize(&tasks, &live, now, alerts(chrono::Duration::seconds(300)));
        let order: Vec<(&str, bool, bool)> =
            s.urgent.iter().map(|u| (u.task.spec.name.as_str(), u.stuck, u.writer_stalled)).collect();
        assert_eq!(
            order,
            [
                ("stuck", true, false),
                ("start-stalled-retrying", false, true),
                ("stalled", false, true),
                ("stalled-at-the-line", false, true),
                ("start-stalled", false, true),
                ("failed", false, false),
                ("starting-slowly", false, false),
                ("busy-but-fine", false, false),
                ("idle", false, false),
                ("stopped-stale-gauge", false, false),
            ]
        );
        assert_eq!((s.stuck, s.writers_stalled), (1, 4), "a stopped task's last gauge value is no stall");
        // Not measured yet (the task's timer has not run): no stall.
        assert!(!LiveTask::default().writer_stalled(STALL));
    }

    #[test]
    fn the_urgent_list_is_bounded() {
        let now = Utc::now();
        let tasks: Vec<Task> =
            (1..=1000).map(|i| task(i, &format!("t{i:04}"), TaskState::Running, None, now)).collect();
        let s = summarize(&tasks, &BTreeMap::new(), now, alerts(chrono::Duration::seconds(300)));
        assert_eq!((s.urgent.len(), s.total), (URGENT_LIMIT, 1000));
    }

    #[test]
    fn rates_come_from_samples_at_least_a_second_apart() {
        let t0 = Instant::now();
        let c = |e: u64, b: u64| Counters { events: e, bytes: b };
        let mut m = RateMeter::new(Duration::from_secs(60));
        assert_eq!(m.observe(t0, [(1, c(0, 0))].into()), Rates::default(), "one sample: no rate");
        assert_eq!(m.observe(t0 + Duration::from_millis(500), [(1, c(5, 50))].into()), Rates::default());
        let r = m.observe(t0 + Duration::from_secs(2), [(1, c(20, 2000)), (2, c(7, 7))].into());
        assert_eq!(r.window_seconds, Some(2.0));
        assert_eq!(r.events_per_second, Some(10.0));
        assert_eq!(r.bytes_per_second, Some(1000.0));
        assert_eq!(r.per_task_bytes, [(1, 1000.0)].into(), "task 2 is new: no rate yet");
        // The rate is over the whole window: from the oldest sample kept.
        let r = m.observe(t0 + Duration::from_secs(4), [(1, c(40, 4000))].into());
        assert_eq!((r.window_seconds, r.bytes_per_second), (Some(4.0), Some(1000.0)));
        // A counter that went down (task recreated) is left out rather than made negative.
        let mut fresh = RateMeter::new(Duration::from_secs(60));
        fresh.observe(t0, [(1, c(50, 50))].into());
        let r = fresh.observe(t0 + Duration::from_secs(2), [(1, c(1, 1))].into());
        assert_eq!((r.per_task_bytes, r.bytes_per_second), (BTreeMap::new(), Some(0.0)));
        // Samples older than the window are dropped.
        let r = m.observe(t0 + Duration::from_secs(100), [(1, c(101, 101))].into());
        assert_eq!(r, Rates::default());
        assert!(m.samples.len() <= 2, "{}", m.samples.len());
    }
}
