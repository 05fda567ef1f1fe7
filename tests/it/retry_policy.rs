//! No silent endless retry (issue 14, item 4). A task that retries shows the error of its last
//! attempt, since when it has been failing and how many attempts failed, in the task list and
//! the task itself (stored, so every node's API shows it); past `retry.alert_after_sec` it is
//! stuck (`stuck: true`, `binlog_server_tasks_stuck`). The same failure at the same source
//! position `retry.same_error_limit` times in a row is not transient: the task goes FAILED with
//! SOURCE_EVENT_CORRUPT, naming the file and position.
//!
//! The corruption is real bytes on a real link: the harness's proxy rewrites a marker in what
//! the source sends, so every reconnect gets the same damaged event at the same place.

use binlog_server::api::dto::{TaskDto, TaskPage};
use binlog_server::domain::{TaskError, TaskErrorCode, TaskState};
use chrono::Utc;

use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::poll_until;
use crate::common::proxy::Proxy;
use crate::common::replication::{
    WAIT, api_checkpoint, assert_copy_matches_source, create_task, fast_server_opts, flush_and_catch_up,
    from_first_file, source_via, start_copy_task, start_task, task_events, wait_caught_up, wait_failed, wait_running,
};
use crate::common::server::Server;

/// The task as `GET /api/tasks` lists it.
fn listed(srv: &Server, id: i64) -> TaskDto {
    let page: TaskPage = srv.get_as("/api/tasks");
    page.items.iter().find(|t| t.id == id).cloned().unwrap_or_else(|| panic!("task {id} is not listed: {page:?}"))
}

/// The value of an unlabelled gauge in `/metrics`.
fn gauge(srv: &Server, name: &str) -> i64 {
    let text = srv.get_raw("/metrics").body;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} has no sample in /metrics"))
}

#[test]
fn a_retrying_task_shows_its_error_since_when_and_how_often_and_becomes_stuck() {
    let mut db = MariaDb::start(MariaDbOpts::default());
    let srv = Server::start(fast_server_opts().env("BINLOG_SERVER_RETRY_ALERT_AFTER_SEC", "2"));
    let id = start_copy_task(&srv, &db, "stuck");
    wait_running(&srv, id);
    assert_eq!(gauge(&srv, "binlog_server_tasks_stuck"), 0);
    let t = srv.task(id);
    assert_eq!((&t.last_error, t.stuck), (&None, false), "{t:?}");

    let down_at = Utc::now();
    db.stop();
    // A few failed attempts: the error, since when and how many, in the task and in the list.
    let first = poll_until(WAIT, "three failed attempts recorded", || {
        let t = srv.task(id);
        let attempts = t.last_error.as_ref().map_or(0, |e| e.attempts);
        (t.state == TaskState::RetryBackoff && attempts >= 3).then_some(t)
    });
    let err: &TaskError = first.last_error.as_ref().expect("the loop waited for a last_error");
    assert_eq!(err.code, TaskErrorCode::SourceUnreachable, "{first:?}");
    assert!(!err.message.is_empty(), "{first:?}");
    let began = err.since;
    assert!(began >= down_at - chrono::Duration::seconds(1) && began <= Utc::now(), "since {began}: {first:?}");
    assert!(!first.stuck, "not stuck yet: {first:?}");
    // The list shows the same, and the period keeps its start while attempts grow.
    let later = poll_until(WAIT, "more attempts, in the task list too", || {
        let l = listed(&srv, id);
        let e = l.last_error.clone()?;
        (e.attempts > err.attempts).then_some(e)
    });
    assert_eq!(later.code, TaskErrorCode::SourceUnreachable, "{later:?}");
    assert_eq!(later.since, began, "since stays where the failing began: {later:?}");

    // Past retry.alert_after_sec (2 s here) the task is stuck: in the API and the gauge.
    poll_until(WAIT, "the task to be stuck in the list and the gauge", || {
        (listed(&srv, id).stuck && gauge(&srv, "binlog_server_tasks_stuck") == 1).then_some(())
    });
    assert!(srv.task(id).stuck);
    assert!(Utc::now() - began > chrono::Duration::seconds(2), "stuck only after the alert delay");

    // The source comes back: streaming again (an event or a heartbeat heard, not only a dump
    // accepted) clears the error and the alarm.
    db.restart();
    wait_running(&srv, id);
    let t = poll_until(WAIT, "the error cleared once the source is heard from", || {
        let t = srv.task(id);
        t.last_error.is_none().then_some(t)
    });
    assert!(!t.stuck, "{t:?}");
    assert_eq!(listed(&srv, id).last_error, None);
    // A scrape may be served from a render up to a second old.
    poll_until(WAIT, "the stuck gauge back at 0", || (gauge(&srv, "binlog_server_tasks_stuck") == 0).then_some(()));
}

/// A row value the proxy damages in transit (in the annotate and rows events that carry it).
const MARKER: &[u8] = b"damage-me-in-transit";
const DAMAGED: &[u8] = b"damage-me-in-transiT";

#[test]
fn the_same_checksum_error_at_the_same_position_fails_the_task_naming_file_and_position() {
    let db = MariaDb::start(MariaDbOpts::default());
    let proxy = Proxy::start(db.addr());
    let srv = Server::start(fast_server_opts());
    let id = create_task(&srv, "corrupt", source_via(proxy.port()), from_first_file(&db));
    start_task(&srv, id);
    wait_running(&srv, id);
    db.sql("CREATE TABLE c (id INT PRIMARY KEY, v VARCHAR(100)); INSERT INTO c VALUES (1, 'fine');");
    wait_caught_up(&srv, &db, id);
    let before = api_checkpoint(&srv, id).expect("a checkpoint");

    proxy.rewrite(MARKER, DAMAGED);
    let marker = std::str::from_utf8(MARKER).expect("ASCII");
    db.sql(&format!("INSERT INTO c VALUES (2, '{marker}')"));
    // The first event that carries the value: the statement annotation of the transaction.
    let events = db.sql(&format!("SHOW BINLOG EVENTS IN '{}'", before.0));
    let damaged_at: u64 = events
        .iter()
        .find(|r| r[2] == "Annotate_rows" && r[5].contains(marker))
        .map(|r| r[1].parse().expect("Pos"))
        .unwrap_or_else(|| panic!("no annotate event with the marker: {events:?}"));

    let TaskError { code, message, .. } = wait_failed(&srv, id);
    assert_eq!(code, TaskErrorCode::SourceEventCorrupt, "{message}");
    let place = format!("at {}:{damaged_at}", before.0);
    for part in [place.as_str(), "5 times in a row", "CRC32 mismatch", "--verify-binlog-checksum"] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    assert!(proxy.rewritten() >= 5, "every attempt got the damaged event: {}", proxy.rewritten());
    let t = srv.task(id);
    assert_eq!(t.last_error.as_ref().map(|e| e.code), Some(TaskErrorCode::SourceEventCorrupt), "{t:?}");
    // Every attempt met the same damage; the retries before the failure were visible.
    let events = task_events(&srv, id);
    let retries = events.iter().filter(|e| e.1 == "TASK_RETRY_BACKOFF" && e.2.starts_with("CHECKSUM_MISMATCH")).count();
    assert_eq!(retries, 4, "four retries, then the fifth failure is final: {events:?}");
    assert!(
        events.iter().any(|e| e.1 == "TASK_ERROR" && e.2.starts_with("SOURCE_EVENT_CORRUPT") && e.2.contains(&place)),
        "the failure is in the task's events with its position: {events:?}"
    );
    assert_eq!(api_checkpoint(&srv, id), Some(before.clone()), "nothing damaged was made durable");

    // Once the path is fixed, the operator starts the task again and it copies the real bytes.
    proxy.stop_rewriting();
    start_task(&srv, id);
    wait_running(&srv, id);
    flush_and_catch_up(&srv, &db, id);
    assert_copy_matches_source(&srv, &db, id);
}
