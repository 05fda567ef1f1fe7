//! Faults around a running task: the source restarting, the TCP link cut or turned into a
//! blackhole (by the harness's proxy, `common::proxy`), and the permanent failures an operator
//! must see as FAILED with a precise `last_error.code`: purged binlogs, a wrong password, a
//! source without a binary log, impossible start positions, a user without REPLICATION SLAVE.

use std::time::{Duration, Instant};

use binlog_server::binlog::event::types;
use binlog_server::domain::{TaskError, TaskErrorCode, TaskState};
use binlog_server::meta::FileState;
use serde_json::json;

use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::poll_until;
use crate::common::proxy::Proxy;
use crate::common::replication::{
    IN_USE_FLAG_OFFSET, LoadGenerator, WAIT, api_checkpoint, assert_copy_matches_source, assert_each_gtid_once,
    create_task, fast_server_opts, first_difference, flush_and_catch_up, from_first_file, last_event_id,
    last_event_type, local_dir, source_json, source_via, start_copy_task, start_task, stop_task, task_events, tear,
    wait_caught_up, wait_checkpoint_advances, wait_event_after, wait_failed, wait_running,
};
use crate::common::server::Server;

/// Waits for a TASK_RETRY_BACKOFF event after event `mark`, then a TASK_RUNNING event after that
/// one; returns the retry message.
fn wait_retry_then_running(srv: &Server, id: i64, mark: i64) -> String {
    let (retry_id, message) = wait_event_after(srv, id, "TASK_RETRY_BACKOFF", mark);
    wait_event_after(srv, id, "TASK_RUNNING", retry_id);
    message
}

/// Both start modes: a GTID-mode task resumes by position on the same server too, so that the
/// STOP event after its checkpoint is fetched (a GTID dump would start at the next file).
#[test]
fn source_restart_mid_stream_resumes_with_the_stop_event_and_no_gap() {
    let mut db = MariaDb::start(MariaDbOpts::default().max_binlog_size("256K"));
    let srv = Server::start(fast_server_opts());
    let by_pos = start_copy_task(&srv, &db, "restart");
    let by_gtid = create_task(&srv, "restart-gtid", source_json(&db), json!({"mode": "GTID", "gtid_set": ""}));
    start_task(&srv, by_gtid);
    let ids = [by_pos, by_gtid];
    let load = LoadGenerator::start(&db, "restart_load", 1);
    for id in ids {
        wait_running(&srv, id);
        wait_checkpoint_advances(&srv, id);
    }
    load.stop();
    // Caught up: each checkpoint follows the last transaction, so the STOP the source writes at
    // shutdown is the only thing left in the file.
    for id in ids {
        wait_caught_up(&srv, &db, id);
    }
    let closed = db.master_status().expect("binlog on").file;

    let marks: Vec<i64> = ids.iter().map(|&id| last_event_id(&srv, id)).collect();
    db.stop();
    for (&id, &mark) in ids.iter().zip(&marks) {
        let (_, message) = wait_event_after(&srv, id, "TASK_RETRY_BACKOFF", mark);
        assert!(
            message.starts_with("SOURCE_UNREACHABLE"),
            "a source shutdown is retried as SOURCE_UNREACHABLE: {message}"
        );
        assert_eq!(srv.task(id).state, TaskState::RetryBackoff, "the task waits for the source");
    }
    db.restart();
    let load = LoadGenerator::start(&db, "restart_load", 2);
    for id in ids {
        wait_running(&srv, id);
        wait_checkpoint_advances(&srv, id);
    }
    load.stop();
    for id in ids {
        flush_and_catch_up(&srv, &db, id);
        let copy = assert_copy_matches_source(&srv, &db, id);
        // The source wrote a STOP event to the file it closed at shutdown (it is never streamed
        // live: the task fetched it by resuming at its checkpoint), then opened a new file.
        let ours = std::fs::read(local_dir(&srv, id, &db).join(&closed)).expect("the file closed at shutdown");
        assert_eq!(
            last_event_type(&ours),
            Some(types::STOP),
            "task {id}: {closed} must end with the source's STOP event"
        );
        let after = copy.sealed.iter().position(|n| *n == closed).expect("the closed file is sealed");
        assert!(
            after + 1 < copy.sealed.len(),
            "task {id}: the file opened after the restart must be copied too: {copy:?}"
        );
        assert_each_gtid_once(&srv, &db, id);
    }
}

#[test]
fn a_cut_link_is_retried_and_resumed_without_a_gap() {
    let db = MariaDb::start(MariaDbOpts::default().max_binlog_size("128K"));
    let proxy = Proxy::start(db.addr());
    let srv = Server::start(fast_server_opts());
    let id = create_task(&srv, "cut", source_via(proxy.port()), from_first_file(&db));
    start_task(&srv, id);
    wait_running(&srv, id);
    let load = LoadGenerator::start(&db, "cut_load", 3);
    for round in 1..=3 {
        wait_checkpoint_advances(&srv, id);
        let mark = last_event_id(&srv, id);
        let cut = proxy.cut_all();
        assert!(cut >= 1, "round {round}: the task's connection must go through the proxy");
        let message = wait_retry_then_running(&srv, id, mark);
        assert!(message.starts_with("SOURCE_UNREACHABLE"), "round {round}: a cut link is retried: {message}");
    }
    load.stop();
    flush_and_catch_up(&srv, &db, id);
    assert_copy_matches_source(&srv, &db, id);
    assert_each_gtid_once(&srv, &db, id);
    let repl = srv.replication(id);
    assert!(repl.reconnects >= 3, "three cuts, three reconnects: {repl:?}");
}

#[test]
fn a_blackholed_link_is_detected_by_heartbeat_silence() {
    let db = MariaDb::start(MariaDbOpts::default());
    let proxy = Proxy::start(db.addr());
    // Heartbeat every 200 ms: silence for 1 s (5 periods) means the link is dead.
    let srv = Server::start(fast_server_opts());
    let id = create_task(&srv, "blackhole", source_via(proxy.port()), from_first_file(&db));
    start_task(&srv, id);
    wait_running(&srv, id);
    let load = LoadGenerator::start(&db, "blackhole_load", 4);
    wait_checkpoint_advances(&srv, id);

    let mark = last_event_id(&srv, id);
    let before = proxy.accepted();
    let since = Instant::now();
    assert!(proxy.blackhole_all() >= 1, "the task's connection must go through the proxy");
    let message = wait_retry_then_running(&srv, id, mark);
    let detected = since.elapsed();
    assert!(
        message.contains("no event or heartbeat"),
        "a silent link is detected by the missing heartbeats, not by an error: {message}"
    );
    // TCP itself would take minutes to notice; the heartbeat check takes about 1 s.
    assert!(detected < Duration::from_secs(15), "a blackhole took {detected:?} to detect");
    assert!(proxy.accepted() > before, "the task reconnected through a new connection");
    load.stop();
    flush_and_catch_up(&srv, &db, id);
    assert_copy_matches_source(&srv, &db, id);
    assert_each_gtid_once(&srv, &db, id);
}

#[test]
fn purged_binlogs_past_the_checkpoint_fail_the_task() {
    let db = MariaDb::start(MariaDbOpts::default());
    let srv = Server::start(fast_server_opts());
    let id = start_copy_task(&srv, &db, "purged");
    wait_running(&srv, id);
    db.sql("CREATE TABLE p (id INT PRIMARY KEY); INSERT INTO p VALUES (1), (2);");
    wait_caught_up(&srv, &db, id);
    stop_task(&srv, id);

    for i in 3..6 {
        db.sql(&format!("INSERT INTO p VALUES ({i})"));
        db.flush_binary_logs();
    }
    let newest = db.master_status().expect("binlog on").file;
    let (checkpoint_file, _) = api_checkpoint(&srv, id).expect("a checkpoint");
    // The source keeps a file until its binlog checkpoint has passed it: purge until the file
    // the task needs is gone.
    poll_until(WAIT, &format!("PURGE BINARY LOGS TO '{newest}' to remove {checkpoint_file}"), || {
        db.sql(&format!("PURGE BINARY LOGS TO '{newest}'"));
        (!db.binlog_files().iter().any(|(name, _)| *name == checkpoint_file)).then_some(())
    });
    start_task(&srv, id);
    let TaskError { code, message, .. } = wait_failed(&srv, id);
    assert_eq!(code, TaskErrorCode::SourceBinlogPurged, "{message}");
    assert!(
        message.contains(&format!("binlog dump from {checkpoint_file}:")),
        "the error names the position: {message}"
    );
    assert!(
        task_events(&srv, id).iter().any(|e| e.1 == "TASK_ERROR" && e.2.starts_with("SOURCE_BINLOG_PURGED")),
        "the failure is in the task's events"
    );
}

#[test]
fn a_wrong_password_fails_without_showing_the_password() {
    const WRONG: &str = "Wr0ng-pw-Zq81x";
    let db = MariaDb::start(MariaDbOpts::default());
    let srv = Server::start(fast_server_opts());
    let mut source = source_json(&db);
    source["password"] = json!(WRONG);
    let id = create_task(&srv, "badpw", source, from_first_file(&db));
    start_task(&srv, id);
    let TaskError { code, message, .. } = wait_failed(&srv, id);
    assert_eq!(code, TaskErrorCode::SourceAccessDenied, "{message}");
    assert!(message.contains("Access denied"), "the source's reason is kept: {message}");

    let (_, shown) = srv.get(&format!("/api/tasks/{id}"));
    let (_, repl) = srv.get(&format!("/api/tasks/{id}/replication"));
    let events = format!("{:?}", task_events(&srv, id));
    for (what, text) in [
        ("the task", shown.to_string()),
        ("the replication status", repl.to_string()),
        ("the events", events),
        ("the server log", srv.log_text()),
        ("the console", std::fs::read_to_string(srv.console_path()).unwrap_or_default()),
    ] {
        assert!(!text.contains(WRONG), "the password shows in {what}");
    }
}

#[test]
fn a_source_without_a_binary_log_fails_the_task() {
    let db = MariaDb::start(MariaDbOpts::default().without_log_bin());
    let srv = Server::start(fast_server_opts());
    let id = create_task(
        &srv,
        "nolog",
        source_json(&db),
        json!({"mode": "FILE_POS", "file": "mariadb-bin.000001", "pos": 4}),
    );
    start_task(&srv, id);
    let TaskError { code, message, .. } = wait_failed(&srv, id);
    assert_eq!(code, TaskErrorCode::SourceLogBinOff, "{message}");
    assert!(srv.files(id).is_empty(), "nothing is written");
}

#[test]
fn impossible_start_positions_fail_the_task() {
    let db = MariaDb::start(MariaDbOpts::default());
    db.sql("CREATE TABLE s (id INT PRIMARY KEY, v TEXT); INSERT INTO s VALUES (1, 'a'), (2, 'b');");
    db.flush_binary_logs();
    db.sql("INSERT INTO s VALUES (3, 'c')");
    let srv = Server::start(fast_server_opts());
    let files_now = db.binlog_files();
    let (closed, closed_size) = files_now[0].clone();
    let active = db.master_status().expect("binlog on");
    // A position inside an event: the first GTID event of the closed file starts after the
    // header events; 3 bytes into it is no event boundary.
    let events = db.sql(&format!("SHOW BINLOG EVENTS IN '{closed}'"));
    let gtid_at: u64 =
        events.iter().find(|r| r[2] == "Gtid").map(|r| r[1].parse().expect("Pos")).expect("a GTID event");
    let cases = [
        ("inside the FDE", closed.clone(), 5),
        ("inside a GTID event", closed.clone(), gtid_at + 3),
        ("beyond the end of a closed file", closed.clone(), closed_size + 1000),
        ("beyond the end of the active file", active.file.clone(), active.position + 1000),
    ];
    for (i, (what, file, pos)) in cases.iter().enumerate() {
        let id = create_task(
            &srv,
            &format!("badpos{i}"),
            source_json(&db),
            json!({"mode": "FILE_POS", "file": file, "pos": pos}),
        );
        start_task(&srv, id);
        let TaskError { code, message, .. } = wait_failed(&srv, id);
        assert_eq!(code, TaskErrorCode::InvalidStartPosition, "{what} ({file}:{pos}): {message}");
        assert!(srv.files(id).is_empty(), "{what}: nothing is written");
    }
}

#[test]
fn a_user_without_replication_slave_is_access_denied() {
    let db = MariaDb::start(MariaDbOpts::default());
    // Everything a replica needs except REPLICATION SLAVE.
    db.sql(
        "SET SESSION sql_log_bin = 0;
         CREATE USER 'norepl'@'%' IDENTIFIED BY 'norepl-Pass-1';
         GRANT BINLOG MONITOR, SLAVE MONITOR, SELECT ON *.* TO 'norepl'@'%';",
    );
    let srv = Server::start(fast_server_opts());
    let mut source = source_json(&db);
    source["user"] = json!("norepl");
    source["password"] = json!("norepl-Pass-1");
    let id = create_task(&srv, "norepl", source, from_first_file(&db));
    start_task(&srv, id);
    let TaskError { code, message, .. } = wait_failed(&srv, id);
    assert_eq!(code, TaskErrorCode::SourceAccessDenied, "{message}");
    assert!(srv.files(id).is_empty(), "nothing is written");
}

/// After a source crash mid-write and its restart, the copy of the torn file (everything up to
/// the tear) is byte-identical to the source's, every later file is whole, each GTID is there
/// once, and the task says what happened.
fn assert_left_the_tear_behind(srv: &Server, db: &MariaDb, id: i64, torn_file: &str, at: u64, torn_len: usize) {
    flush_and_catch_up(srv, db, id);
    let dir = local_dir(srv, id, db);
    let ours = std::fs::read(dir.join(torn_file)).unwrap();
    let mut theirs = std::fs::read(db.binlog_dir().join(torn_file)).unwrap();
    assert_eq!(theirs.len(), at as usize + torn_len, "the source kept its torn tail");
    theirs[IN_USE_FLAG_OFFSET] &= !1;
    assert!(
        ours[..] == theirs[..at as usize],
        "{torn_file}: differs from the source's up to the tear at {:?}",
        first_difference(&ours, &theirs[..at as usize])
    );
    let files = srv.files(id);
    let sealed = files.iter().find(|f| f.name == torn_file).expect("the torn file is catalogued");
    assert_eq!((sealed.state, sealed.size), (FileState::Sealed, at), "{sealed:?}");
    for (name, _) in db.binlog_files().into_iter().filter(|(n, _)| n.as_str() > torn_file) {
        let ours = std::fs::read(dir.join(&name)).unwrap_or_else(|e| panic!("our {name}: {e}"));
        let mut theirs = std::fs::read(db.binlog_dir().join(&name)).unwrap();
        theirs[IN_USE_FLAG_OFFSET] &= !1;
        assert!(ours == theirs, "{name}: differs from the source's at {:?}", first_difference(&ours, &theirs));
    }
    assert_each_gtid_once(srv, db, id);
    let said = task_events(srv, id).into_iter().find(|(_, t, _)| t == "SOURCE_TORN_TAIL");
    let (_, _, message) = said.unwrap_or_else(|| panic!("no SOURCE_TORN_TAIL event: {:?}", task_events(srv, id)));
    assert!(message.contains(torn_file) && message.contains(&at.to_string()), "{message}");
    assert_eq!(srv.task(id).state, TaskState::Running);
}

/// Issue 17's kill test once met this: the source killed in the middle of writing an event
/// keeps the torn tail after its crash recovery (MariaDB does not cut it back) and writes its
/// new transactions to a new file; a dump by position that reaches the tear is refused for
/// good (1236), so the task failed and archived nothing more. It resumes by GTID past the tear
/// instead, and the source's GTID state decides that nothing committed follows it.
/// A source, and a task caught up on it with a table `torn` created.
fn torn_set_up(key: &str) -> (MariaDb, Server, i64) {
    let db = MariaDb::start(MariaDbOpts::default());
    let srv = Server::start(fast_server_opts());
    let id = start_copy_task(&srv, &db, key);
    db.sql("CREATE TABLE torn (id INT PRIMARY KEY) ENGINE=InnoDB");
    wait_caught_up(&srv, &db, id);
    (db, srv, id)
}

#[test]
fn a_source_file_torn_by_a_crash_is_left_behind_at_the_tear() {
    let (mut db, srv, id) = torn_set_up("torn");
    db.sql("INSERT INTO torn VALUES (1)");
    let end = wait_caught_up(&srv, &db, id);
    db.kill();
    let torn_len = tear(&db, &end.file, end.position);
    db.restart();
    db.sql("INSERT INTO torn VALUES (2)");
    assert_left_the_tear_behind(&srv, &db, id, &end.file, end.position, torn_len);
}

/// The same, with the task behind when the source died: the transactions before the tear come
/// first (the dump by position reads up to it and they are written), then the resume by GTID.
#[test]
fn a_torn_source_file_is_copied_up_to_the_tear_when_the_task_was_behind() {
    let (mut db, srv, id) = torn_set_up("torn-behind");
    stop_task(&srv, id);
    for i in 1..=20 {
        db.sql(&format!("INSERT INTO torn VALUES ({i})"));
    }
    let end = db.master_status().unwrap();
    db.kill();
    let torn_len = tear(&db, &end.file, end.position);
    db.restart();
    db.sql("INSERT INTO torn VALUES (21)");
    start_task(&srv, id);
    assert_left_the_tear_behind(&srv, &db, id, &end.file, end.position, torn_len);
}
