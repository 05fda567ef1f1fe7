//! The failure policy of a task, as pure decisions: after each failed replication attempt, retry
//! (showing which `last_error`) or give up (FAILED, with which code and message); and when a
//! task that keeps retrying counts as stuck.
//!
//! A retryable failure is retried, with backoff, for as long as it takes, except one that is not
//! transient at all: the same failure at the same source position, with no progress in between,
//! `same_error_limit` times in a row. A source that sends the same unusable bytes at the same
//! place will send them again; retrying hides that from the operator forever. A different
//! failure, or a checkpoint that moved, starts the count again.
//!
//! Nothing here reads a clock, a socket or the store: the TaskActor passes the facts in and
//! carries the verdict out.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::domain::{TaskError, TaskErrorCode, TaskState};

/// Whether a failure may pass by itself (the task retries with backoff) or needs an operator
/// (FAILED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    Retryable,
    Permanent,
}

/// How a failure is classified: the task error code the API shows, and whether retrying may
/// help (what an attempt's [`Failure`] carries as `code` and `retryable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureClass {
    pub code: TaskErrorCode,
    pub retry: Retry,
}

impl FailureClass {
    pub fn retryable(code: TaskErrorCode) -> Self {
        FailureClass { code, retry: Retry::Retryable }
    }

    pub fn permanent(code: TaskErrorCode) -> Self {
        FailureClass { code, retry: Retry::Permanent }
    }

    /// Retryable when `retryable` holds (a condition known only at run time).
    pub fn retryable_if(code: TaskErrorCode, retryable: bool) -> Self {
        if retryable { FailureClass::retryable(code) } else { FailureClass::permanent(code) }
    }

    pub fn is_retryable(self) -> bool {
        self.retry == Retry::Retryable
    }
}

/// `retry.*` of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Identical failures in a row that fail the task; 0 never does.
    pub same_error_limit: u32,
    /// A task retrying for longer than this is stuck.
    pub alert_after: chrono::Duration,
}

impl RetryPolicy {
    pub fn from_settings(s: &crate::config::RetrySettings) -> Self {
        RetryPolicy {
            same_error_limit: s.same_error_limit,
            alert_after: chrono::Duration::seconds(i64::try_from(s.alert_after_sec).unwrap_or(i64::MAX / 1000)),
        }
    }
}

/// A position in the source's binlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePos {
    pub file: String,
    pub pos: u64,
}

impl fmt::Display for SourcePos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// One replication attempt that ended with an error, as the task saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: TaskErrorCode,
    pub message: String,
    /// Whether the failure may pass by itself; a permanent one fails the task at once.
    pub retryable: bool,
    /// Where the stream was in the source's binlog when it failed (none before it streamed).
    pub at: Option<SourcePos>,
    /// The durable checkpoint when it failed: progress between two failures shows here.
    pub checkpoint: Option<SourcePos>,
}

/// What the policy remembers between attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryState {
    /// Since when the task has been failing and how many attempts failed: the period starts at
    /// a failure and ends when the task streams again.
    period: Option<(DateTime<Utc>, u32)>,
    /// The last failure and how many times in a row it happened with no progress in between
    /// (a task that streams a little and fails at the same place again does not start over).
    repeated: Option<(Failure, u32)>,
}

/// The decision after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// RETRY_BACKOFF, showing this error.
    Retry(TaskError),
    /// FAILED with this error: a permanent failure, or a retryable one that kept repeating.
    Fail(TaskError),
}

impl RetryState {
    /// The task streams again: the next failure starts a new period (`since`, `attempts`).
    pub fn streaming(&mut self) {
        self.period = None;
    }

    /// Decides what follows a failed attempt, and remembers it.
    pub fn failed(&mut self, failure: Failure, now: DateTime<Utc>, policy: &RetryPolicy) -> Verdict {
        let (since, attempts) = match self.period {
            Some((since, n)) => (since, n.saturating_add(1)),
            None => (now, 1),
        };
        self.period = Some((since, attempts));
        let repeats = match &self.repeated {
            Some((last, n)) if *last == failure => n.saturating_add(1),
            _ => 1,
        };
        self.repeated = Some((failure.clone(), repeats));
        let error = |code, message| TaskError { code, message, since, attempts };
        if !failure.retryable {
            return Verdict::Fail(error(failure.code, failure.message));
        }
        match escalation(failure.code) {
            Some(code) if policy.same_error_limit > 0 && repeats >= policy.same_error_limit => {
                Verdict::Fail(error(code, escalated_message(code, &failure, repeats)))
            }
            _ => Verdict::Retry(error(failure.code, failure.message)),
        }
    }
}

/// The code a retryable failure becomes when it repeats identically at one position: failures
/// about the bytes the source sends there. Connection failures, a full disk or an unreachable
/// metadata database never escalate (they pass once the outside world is fixed; a task stuck
/// on them is counted by `is_stuck`).
pub fn escalation(code: TaskErrorCode) -> Option<TaskErrorCode> {
    match code {
        TaskErrorCode::ChecksumMismatch => Some(TaskErrorCode::SourceEventCorrupt),
        TaskErrorCode::SourceProtocolError => Some(TaskErrorCode::SourceStreamUnreadable),
        _ => None,
    }
}

/// What the FAILED task's error and event say: where, how often, and what to check.
fn escalated_message(code: TaskErrorCode, f: &Failure, repeats: u32) -> String {
    let place = match (&f.at, &f.checkpoint) {
        (Some(at), _) => format!("at {at}"),
        (None, Some(cp)) => format!("after the checkpoint {cp}"),
        (None, None) => "at the start of the stream".to_string(),
    };
    match code {
        TaskErrorCode::SourceEventCorrupt => format!(
            "the event {place} failed its CRC32 check {repeats} times in a row ({}): the source's binlog file is \
             damaged there, or something between the source and binlog-server alters the stream. Check the file on \
             the source (mysqlbinlog/mariadb-binlog --verify-binlog-checksum) and the network path (proxies, TLS \
             offload), then start the task again",
            f.message
        ),
        _ => format!(
            "the source's stream {place} was refused {repeats} times in a row ({}): binlog-server cannot use what \
             the source sends there. Check the source's binlog at that position and its settings (binlog_checksum, \
             log_bin_compress, binlog_format), report it with the server log if they look right, then start the \
             task again",
            f.message
        ),
    }
}

/// Whether a task counts as stuck: retrying (RETRY_BACKOFF) since longer than `alert_after`.
pub fn is_stuck(
    state: TaskState,
    last_error: Option<&TaskError>,
    now: DateTime<Utc>,
    alert_after: chrono::Duration,
) -> bool {
    state == TaskState::RetryBackoff && last_error.is_some_and(|e| now - e.since > alert_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskErrorCode::*;

    fn at(file: &str, pos: u64) -> Option<SourcePos> {
        Some(SourcePos { file: file.into(), pos })
    }

    fn failure(code: TaskErrorCode, message: &str, pos: u64, checkpoint: u64) -> Failure {
        let retryable = !matches!(code, SourceAccessDenied | SourceBinlogPurged);
        Failure {
            code,
            message: message.into(),
            retryable,
            at: at("b.000003", pos),
            checkpoint: at("b.000003", checkpoint),
        }
    }

    /// What a sequence of failures leads to, with limit 3: the verdict's (kind, code, attempts)
    /// after each, and a streaming period where the sequence says so.
    #[test]
    fn the_same_failure_at_the_same_position_fails_the_task_and_anything_else_resets_the_count() {
        let crc = || failure(ChecksumMismatch, "CRC32 mismatch: stored 1, computed 2", 900, 500);
        let gap = || failure(SourceProtocolError, "position gap", 900, 500);
        let down = || failure(SourceUnreachable, "connection refused", 900, 500);
        enum Step {
            Fail(Failure),
            Stream,
        }
        use Step::*;
        /// After each failure: (failed?, code, attempts).
        type Verdicts = Vec<(bool, TaskErrorCode, u32)>;
        // (case, steps, the verdicts)
        let cases: Vec<(&str, Vec<Step>, Verdicts)> = vec![
            (
                "a checksum mismatch three times at one place",
                vec![Fail(crc()), Fail(crc()), Fail(crc())],
                vec![(false, ChecksumMismatch, 1), (false, ChecksumMismatch, 2), (true, SourceEventCorrupt, 3)],
            ),
            (
                "a protocol error three times",
                vec![Fail(gap()), Fail(gap()), Fail(gap())],
                vec![
                    (false, SourceProtocolError, 1),
                    (false, SourceProtocolError, 2),
                    (true, SourceStreamUnreadable, 3),
                ],
            ),
            (
                "streaming a little in between does not reset the count",
                vec![Fail(crc()), Stream, Fail(crc()), Stream, Fail(crc())],
                vec![(false, ChecksumMismatch, 1), (false, ChecksumMismatch, 1), (true, SourceEventCorrupt, 1)],
            ),
            (
                "progress (the checkpoint moved) resets it",
                vec![
                    Fail(crc()),
                    Fail(crc()),
                    Fail(failure(ChecksumMismatch, "CRC32 mismatch: stored 1, computed 2", 900, 700)),
                    Fail(crc()),
                ],
                vec![
                    (false, ChecksumMismatch, 1),
                    (false, ChecksumMismatch, 2),
                    (false, ChecksumMismatch, 3),
                    (false, ChecksumMismatch, 4),
                ],
            ),
            (
                "another position resets it",
                vec![
                    Fail(crc()),
                    Fail(crc()),
                    Fail(failure(ChecksumMismatch, "CRC32 mismatch: stored 1, computed 2", 950, 500)),
                ],
                vec![(false, ChecksumMismatch, 1), (false, ChecksumMismatch, 2), (false, ChecksumMismatch, 3)],
            ),
            (
                "another error in between resets it",
                vec![Fail(crc()), Fail(crc()), Fail(down()), Fail(crc()), Fail(crc())],
                vec![
                    (false, ChecksumMismatch, 1),
                    (false, ChecksumMismatch, 2),
                    (false, SourceUnreachable, 3),
                    (false, ChecksumMismatch, 4),
                    (false, ChecksumMismatch, 5),
                ],
            ),
            (
                "a failure that is about the outside world never escalates",
                vec![Fail(down()), Fail(down()), Fail(down()), Fail(down())],
                vec![
                    (false, SourceUnreachable, 1),
                    (false, SourceUnreachable, 2),
                    (false, SourceUnreachable, 3),
                    (false, SourceUnreachable, 4),
                ],
            ),
            (
                "a permanent failure fails at once, counting the attempts before it",
                vec![Fail(down()), Fail(failure(SourceBinlogPurged, "purged", 900, 500))],
                vec![(false, SourceUnreachable, 1), (true, SourceBinlogPurged, 2)],
            ),
        ];
        let policy = RetryPolicy { same_error_limit: 3, alert_after: chrono::Duration::seconds(300) };
        for (case, steps, expected) in cases {
            let mut state = RetryState::default();
            let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
            let mut got = Vec::new();
            for (i, step) in steps.into_iter().enumerate() {
                match step {
                    Stream => state.streaming(),
                    Fail(f) => {
                        let now = t0 + chrono::Duration::seconds(i as i64);
                        got.push(match state.failed(f, now, &policy) {
                            Verdict::Retry(e) => (false, e.code, e.attempts),
                            Verdict::Fail(e) => (true, e.code, e.attempts),
                        });
                    }
                }
            }
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn the_escalated_error_names_the_place_the_count_and_what_to_check() {
        let policy = RetryPolicy { same_error_limit: 2, alert_after: chrono::Duration::seconds(300) };
        let mut state = RetryState::default();
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let f = failure(ChecksumMismatch, "CRC32 mismatch: stored 29ec8a54, computed 2fa242e9", 1234, 1000);
        assert!(matches!(state.failed(f.clone(), t0, &policy), Verdict::Retry(_)));
        let Verdict::Fail(e) = state.failed(f, t0 + chrono::Duration::seconds(5), &policy) else {
            panic!("not failed")
        };
        assert_eq!((e.code, e.since, e.attempts), (SourceEventCorrupt, t0, 2));
        for part in ["at b.000003:1234", "2 times in a row", "stored 29ec8a54", "--verify-binlog-checksum"] {
            assert!(e.message.contains(part), "{part:?} missing: {}", e.message);
        }
        // Without a stream position, the checkpoint is named.
        let mut state = RetryState::default();
        let f = Failure { at: None, ..failure(SourceProtocolError, "unexpected packet", 0, 77) };
        let _ = state.failed(f.clone(), t0, &policy);
        let Verdict::Fail(e) = state.failed(f, t0, &policy) else { panic!("not failed") };
        assert!(e.message.contains("after the checkpoint b.000003:77"), "{}", e.message);
        // Limit 0: never.
        let never = RetryPolicy { same_error_limit: 0, ..policy };
        let mut state = RetryState::default();
        for _ in 0..100 {
            assert!(matches!(state.failed(failure(ChecksumMismatch, "x", 1, 1), t0, &never), Verdict::Retry(_)));
        }
    }

    #[test]
    fn a_period_starts_at_a_failure_and_ends_when_the_task_streams() {
        let policy = RetryPolicy { same_error_limit: 5, alert_after: chrono::Duration::seconds(300) };
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let mut state = RetryState::default();
        let down = || failure(SourceUnreachable, "refused", 4, 4);
        let since_attempts = |v: Verdict| match v {
            Verdict::Retry(e) | Verdict::Fail(e) => (e.since, e.attempts),
        };
        assert_eq!(since_attempts(state.failed(down(), t0, &policy)), (t0, 1));
        let later = t0 + chrono::Duration::seconds(40);
        assert_eq!(since_attempts(state.failed(down(), later, &policy)), (t0, 2));
        state.streaming();
        assert_eq!(since_attempts(state.failed(down(), later, &policy)), (later, 1));
    }

    #[test]
    fn stuck_means_retrying_for_longer_than_the_alert_delay() {
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let err = TaskError { code: SourceUnreachable, message: "refused".into(), since: t0, attempts: 9 };
        let after = chrono::Duration::seconds(300);
        let s = |n: i64| t0 + chrono::Duration::seconds(n);
        // (state, last_error, now, stuck)
        let cases = [
            (TaskState::RetryBackoff, Some(&err), s(301), true),
            (TaskState::RetryBackoff, Some(&err), s(300), false),
            (TaskState::RetryBackoff, Some(&err), s(10), false),
            (TaskState::RetryBackoff, None, s(1000), false),
            (TaskState::Failed, Some(&err), s(1000), false),
            (TaskState::Running, Some(&err), s(1000), false),
        ];
        for (state, e, now, stuck) in cases {
            assert_eq!(is_stuck(state, e, now, after), stuck, "{state} {now}");
        }
    }
}
