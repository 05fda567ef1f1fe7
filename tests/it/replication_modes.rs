//! The three start modes on MariaDB (LATEST, FILE_POS, GTID) and resume across restarts:
//! where the local copy begins, that it matches the source byte for byte from there, and that a
//! GTID-mode task resumes (by position on the server that wrote its checkpoint, by GTID after a
//! switchover) with no gap and no duplicate.

use std::path::PathBuf;

use binlog_server::domain::{TaskErrorCode, TaskState};
use binlog_server::meta::FileState;
use serde_json::{Value, json};

use crate::common::mariadb::{MariaDb, MariaDbOpts, REPL_PASSWORD, REPL_USER};
use crate::common::server::{Server, ServerOpts};

use binlog_server::binlog::event::{EventHeader, FileEvents, MAGIC, parse_mariadb_gtid, types};

fn server() -> Server {
    Server::start(
        ServerOpts::default()
            .env("BINLOG_SERVER_REPLICATION_HEARTBEAT_PERIOD_MS", "200")
            .env("BINLOG_SERVER_REPLICATION_RETRY_INITIAL_MS", "100")
            .env("BINLOG_SERVER_REPLICATION_RETRY_MAX_MS", "1000"),
    )
}

fn create_task(srv: &Server, db: &MariaDb, key: &str, start: Value) -> i64 {
    let body = json!({
        "name": key, "cluster_key": key,
        "source": {"host": "127.0.0.1", "port": db.port(), "user": REPL_USER, "password": REPL_PASSWORD, "flavor": "mariadb"},
        "start": start,
    });
    let id = srv.create(&body).id;
    srv.start_task(id);
    id
}

fn wait_running(srv: &Server, id: i64) {
    srv.wait_for_state(id, TaskState::Running);
}

/// Waits until the task's durable checkpoint is at the source's current end.
/// The source's end is read again at every poll: after a FLUSH BINARY LOGS, MariaDB appends a
/// binlog checkpoint event to the new file a moment later, so an end read once can be stale.
fn wait_caught_up(srv: &Server, db: &MariaDb, id: i64) {
    crate::common::replication::wait_caught_up(srv, db, id);
}

fn local_dir(srv: &Server, id: i64) -> PathBuf {
    srv.data_dir().join(id.to_string()).join("mariadb-1-0")
}

fn source_bytes(db: &MariaDb, name: &str) -> Vec<u8> {
    std::fs::read(db.binlog_dir().join(name)).unwrap_or_else(|e| panic!("source file {name}: {e}"))
}

fn insert_rows(db: &MariaDb, table: &str, n: usize) {
    db.sql(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(200)) ENGINE=InnoDB"
    ));
    for i in 0..n {
        db.sql(&format!("INSERT INTO {table} (v) VALUES ('row {i} {}')", "x".repeat(i % 50)));
    }
}

/// Splits a local file joined mid-way into (header events, events after the header) and checks
/// the header: the magic, then the FDE as the source re-sends it (log_pos 0).
fn split_mid_way(local: &[u8], start_pos: u64, header_events: &[u8]) -> (usize, Vec<u8>) {
    assert_eq!(&local[..4], &MAGIC, "magic");
    let mut header_len = 4;
    for (off, ev) in FileEvents::new(local).expect("magic") {
        let h = EventHeader::parse(ev).expect("header");
        if !header_events.contains(&h.type_code) {
            assert_eq!(h.start_pos(), Some(start_pos), "first event after the header starts at start_pos");
            break;
        }
        header_len = off + ev.len();
    }
    (header_len, local[header_len..].to_vec())
}

/// MariaDB GTID sequence numbers of the GTID events in `data` (a whole local file).
fn gtid_seqs(data: &[u8]) -> Vec<u64> {
    FileEvents::new(data)
        .expect("magic")
        .filter(|(_, e)| e[4] == types::MARIA_GTID)
        .map(|(_, e)| parse_mariadb_gtid(e, true).expect("GTID event").gtid.seq)
        .collect()
}

#[test]
fn latest_starts_at_the_current_end_and_matches_the_source_from_there() {
    let db = MariaDb::start(MariaDbOpts::default());
    insert_rows(&db, "history", 20);
    let before = db.master_status().expect("binlog on");
    let history_pos = db.gtid_binlog_pos();
    let srv = server();
    let id = create_task(&srv, &db, "latest", json!({"mode": "LATEST"}));
    wait_running(&srv, id);
    insert_rows(&db, "after", 30);
    wait_caught_up(&srv, &db, id);

    let f = srv.files(id);
    assert_eq!(f[0].name, before.file, "{f:?}");
    assert_eq!(f[0].start_pos, before.position, "the first file starts where LATEST pointed");
    let local = std::fs::read(local_dir(&srv, id).join(&before.file)).expect("local file");
    let (_, body) = split_mid_way(&local, before.position, &[types::FORMAT_DESCRIPTION]);
    let src = source_bytes(&db, &before.file);
    let end = before.position as usize + body.len();
    assert!(end <= src.len(), "local copy is longer than the source");
    assert!(body == src[before.position as usize..end], "bytes after the header differ from the source's");
    // Exactly the transactions after LATEST (a CREATE TABLE and 30 inserts), none of the history.
    let seq_of = |pos: String| -> u64 { pos.rsplit('-').next().expect("seq").parse().expect("number") };
    let (first, last) = (seq_of(history_pos) + 1, seq_of(db.gtid_binlog_pos()));
    assert_eq!(last - first + 1, 31);
    assert_eq!(gtid_seqs(&local), (first..=last).collect::<Vec<_>>());
}

#[test]
fn file_pos_mid_file_starts_with_magic_and_fde_then_the_events_from_pos() {
    let db = MariaDb::start(MariaDbOpts::default());
    insert_rows(&db, "t", 10);
    // A valid position: the start of the 5th GTID event group in the first file.
    let file = db.binlog_files()[0].0.clone();
    let rows = db.sql(&format!("SHOW BINLOG EVENTS IN '{file}'"));
    let gtid_starts: Vec<u64> = rows.iter().filter(|r| r[2] == "Gtid").map(|r| r[1].parse().expect("Pos")).collect();
    let pos = gtid_starts[4];
    let srv = server();
    let id = create_task(&srv, &db, "filepos", json!({"mode": "FILE_POS", "file": file, "pos": pos}));
    wait_running(&srv, id);
    insert_rows(&db, "t", 5);
    wait_caught_up(&srv, &db, id);

    let local = std::fs::read(local_dir(&srv, id).join(&file)).expect("local file");
    let (header_len, body) = split_mid_way(&local, pos, &[types::FORMAT_DESCRIPTION]);
    let fde = &local[4..header_len];
    assert_eq!(EventHeader::parse(fde).expect("fde").log_pos, 0, "a re-sent FDE has log_pos 0");
    let src = source_bytes(&db, &file);
    assert!(body == src[pos as usize..pos as usize + body.len()], "events from pos differ from the source's");
    assert_eq!(srv.files(id)[0].start_pos, pos);
}

#[test]
fn gtid_mode_starts_after_the_given_gtid_and_resumes_across_restarts() {
    let db = MariaDb::start(MariaDbOpts::default());
    insert_rows(&db, "g", 12);
    // Start after the 7th transaction of domain 0 (the table creation is the first).
    let srv_id = db.query_value("SELECT @@server_id");
    let mut srv = server();
    let id = create_task(&srv, &db, "gtid", json!({"mode": "GTID", "gtid_set": format!("0-{srv_id}-7")}));
    wait_running(&srv, id);
    wait_caught_up(&srv, &db, id);
    let file = db.binlog_files()[0].0.clone();
    let local = std::fs::read(local_dir(&srv, id).join(&file)).expect("local file");
    assert_eq!(gtid_seqs(&local), (8..=13).collect::<Vec<_>>(), "transactions after 0-{srv_id}-7 only");
    let start_pos = srv.files(id)[0].start_pos;
    let (_, body) = split_mid_way(
        &local,
        start_pos,
        &[types::FORMAT_DESCRIPTION, types::MARIA_GTID_LIST, types::MARIA_BINLOG_CHECKPOINT],
    );
    let src = source_bytes(&db, &file);
    assert!(body == src[start_pos as usize..start_pos as usize + body.len()], "events from the GTID position differ");
    let cp = srv.checkpoint(id);
    assert_eq!(cp.gtid_set, Some(format!("0-{srv_id}-13")), "checkpoint carries the GTID state: {cp:?}");

    // Resume across a stop/start and across a kill -9, with rotations in between.
    srv.stop_task(id);
    insert_rows(&db, "g", 5);
    db.flush_binary_logs();
    insert_rows(&db, "g", 5);
    srv.start_task(id);
    wait_running(&srv, id);
    wait_caught_up(&srv, &db, id);
    srv.kill9();
    insert_rows(&db, "g", 5);
    db.flush_binary_logs();
    insert_rows(&db, "g", 3);
    srv.restart();
    wait_running(&srv, id);
    wait_caught_up(&srv, &db, id);

    // Every GTID exactly once, in order, from 8 on; later files identical to the source's.
    let mut all = Vec::new();
    for f in srv.files(id) {
        let name = f.name.as_str();
        let data = std::fs::read(local_dir(&srv, id).join(name)).expect("local file");
        all.extend(gtid_seqs(&data));
        if f.start_pos == 4 && f.state == FileState::Sealed {
            assert!(data == source_bytes(&db, name), "{name} differs from the source's file");
        }
    }
    let last: u64 = db.gtid_binlog_pos().rsplit('-').next().expect("seq").parse().expect("seq number");
    assert_eq!(all, (8..=last).collect::<Vec<_>>(), "each transaction exactly once");
}

#[test]
fn gtid_mode_with_an_empty_set_copies_every_file_from_its_start() {
    let db = MariaDb::start(MariaDbOpts::default());
    insert_rows(&db, "e", 5);
    db.flush_binary_logs();
    insert_rows(&db, "e", 5);
    db.flush_binary_logs();
    let srv = server();
    let id = create_task(&srv, &db, "gtid-empty", json!({"mode": "GTID", "gtid_set": ""}));
    wait_running(&srv, id);
    wait_caught_up(&srv, &db, id);
    let sealed: Vec<String> =
        srv.files(id).iter().filter(|f| f.state == FileState::Sealed).map(|f| f.name.clone()).collect();
    let source: Vec<String> = db.binlog_files().into_iter().map(|(n, _)| n).collect();
    assert_eq!(sealed, source[..source.len() - 1].to_vec(), "every closed source file is sealed locally");
    for name in &sealed {
        let local = std::fs::read(local_dir(&srv, id).join(name)).expect("local");
        assert!(local == source_bytes(&db, name), "{name} differs from the source's file");
    }
}

/// Kills the source's dump threads (our connection drops; the task reconnects).
fn kill_dump_threads(db: &MariaDb) {
    for row in db.sql("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'") {
        db.sql(&format!("KILL {}", row[0]));
    }
}

fn events(srv: &Server, id: i64) -> Vec<String> {
    srv.events(id).into_iter().map(|e| e.event_type).collect()
}

#[test]
fn a_new_source_identity_fails_file_pos_tasks_and_is_followed_by_gtid_tasks() {
    let db = MariaDb::start(MariaDbOpts::default());
    insert_rows(&db, "s", 5);
    let srv = server();
    let first = db.binlog_files()[0].0.clone();
    let by_pos = create_task(&srv, &db, "by-pos", json!({"mode": "FILE_POS", "file": first, "pos": 4}));
    let by_gtid = create_task(&srv, &db, "by-gtid", json!({"mode": "GTID", "gtid_set": ""}));
    wait_running(&srv, by_pos);
    wait_running(&srv, by_gtid);
    wait_caught_up(&srv, &db, by_gtid);

    // The source becomes another server (as after a failover to a server with the same data).
    db.sql("SET GLOBAL server_id = 2");
    insert_rows(&db, "s", 5);
    db.flush_binary_logs();
    insert_rows(&db, "s", 3);
    kill_dump_threads(&db);

    let failed = srv.wait_for_state(by_pos, TaskState::Failed);
    assert_eq!(failed.last_error.map(|e| e.code), Some(TaskErrorCode::SourceSwitchover));

    // The reconnect sees the new identity; the checkpoint moves to the new server's folder.
    crate::common::replication::wait_following(&srv, by_gtid, "mariadb-2-0");
    wait_caught_up(&srv, &db, by_gtid);
    assert!(events(&srv, by_gtid).contains(&"SOURCE_SWITCHOVER".to_string()));
    let old_dir = srv.data_dir().join(by_gtid.to_string()).join("mariadb-1-0");
    let new_dir = srv.data_dir().join(by_gtid.to_string()).join("mariadb-2-0");
    assert!(new_dir.is_dir(), "the new server's files get their own folder");
    // Every transaction exactly once across both servers' folders, in order.
    let mut seqs = Vec::new();
    for f in srv.files(by_gtid) {
        let dir = if f.source_identity == "mariadb-1-0" { &old_dir } else { &new_dir };
        let data = std::fs::read(dir.join(&f.name)).expect("local file");
        seqs.extend(gtid_seqs(&data));
    }
    let last: u64 = db.gtid_binlog_pos().rsplit('-').next().expect("seq").parse().expect("number");
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "each transaction exactly once");
    let cp = srv.checkpoint(by_gtid);
    assert_eq!(cp.gtid_set, Some(db.gtid_binlog_pos()), "{cp:?}");
}
