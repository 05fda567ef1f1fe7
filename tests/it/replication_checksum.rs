//! Sources with `binlog_checksum=NONE`, and sources whose setting changes between files (issue
//! 14). Before the fix a task on a NONE source stopped streaming for good after any reconnect
//! inside a file: the source re-sends the file's format description with `log_pos` 0 but, under
//! NONE, leaves its CRC as written in the file, and the tracker checked that CRC against the
//! changed header ("CRC32 mismatch", RETRY_BACKOFF forever). Here every way a stream resumes
//! (binlog-server SIGTERM and kill -9, a source restart, a cut link), in both start modes, ends
//! with every file byte-identical to the source's and every transaction exactly once.

use binlog_server::binlog::event::{ChecksumAlg, Fde, FileEvents};
use binlog_server::domain::TaskState;
use serde_json::{Value, json};

use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::poll_until;
use crate::common::proxy::Proxy;
use crate::common::replication::{
    LoadGenerator, LoadShape, WAIT, api_checkpoint, assert_copy_matches_source, assert_each_gtid_once, create_task,
    fast_server_opts, flush_and_catch_up, from_first_file, last_event_id, local_dir, source_json, source_via,
    start_task, task_events, wait_checkpoint_advances, wait_event_after, wait_running,
};
use crate::common::server::Server;

/// A GTID-mode task from the empty set: it copies every file from its start, like FILE_POS
/// from the first file (and would follow a switchover by GTID).
fn from_no_gtid() -> Value {
    json!({"mode": "GTID", "gtid_set": ""})
}

/// After an interruption: every task streams again (a TASK_RUNNING event after `mark`) and its
/// checkpoint moves on (the load must be running).
fn streams_again(srv: &Server, tasks: &[(i64, i64)], what: &str) {
    for &(id, mark) in tasks {
        wait_event_after(srv, id, "TASK_RUNNING", mark);
        let cp = wait_checkpoint_advances(srv, id);
        eprintln!("{what}: task {id} streams again, checkpoint {cp:?}");
    }
}

/// `(task, its newest event id)` for each task: the marks `streams_again` waits past.
fn marks(srv: &Server, ids: &[i64]) -> Vec<(i64, i64)> {
    ids.iter().map(|&id| (id, last_event_id(srv, id))).collect()
}

/// No attempt of the task ended with a checksum mismatch, and none is left retrying.
fn never_a_checksum_error(srv: &Server, id: i64) {
    let bad: Vec<_> = task_events(srv, id).into_iter().filter(|e| e.2.contains("CHECKSUM_MISMATCH")).collect();
    assert!(bad.is_empty(), "task {id} hit checksum errors: {bad:?}");
    let repl = srv.replication(id);
    assert_eq!(repl.crc_errors, 0, "task {id}: {repl:?}");
    let t = srv.task(id);
    assert_eq!((t.state, &t.last_error), (TaskState::Running, &None), "task {id}: {t:?}");
}

/// The report (a NONE source, FILE_POS from the first file at 4, catch up, SIGTERM,
/// `serve` again: the task must stream again), then kill -9, a source restart and a cut link,
/// for a FILE_POS, a GTID and a LATEST task on the same source (LATEST joins the first file
/// mid-way, after its header). Each interruption lands inside a NONE file, past position 4: the
/// case that re-sends the FDE with the stale CRC.
#[test]
fn a_checksum_none_source_resumes_after_every_kind_of_interruption() {
    let mut db = MariaDb::start(MariaDbOpts::default().max_binlog_size("64K").arg("--binlog-checksum=NONE"));
    assert_eq!(db.query_value("SELECT @@global.binlog_checksum"), "NONE");
    let proxy = Proxy::start(db.addr());
    let mut srv = Server::start(fast_server_opts());
    let first = from_first_file(&db);
    assert_eq!(first["pos"], 4);
    let ids = [
        create_task(&srv, "none-pos", source_via(proxy.port()), first),
        create_task(&srv, "none-gtid", source_via(proxy.port()), from_no_gtid()),
        create_task(&srv, "none-latest", source_via(proxy.port()), json!({"mode": "LATEST"})),
    ];
    for &id in &ids {
        start_task(&srv, id);
        wait_running(&srv, id);
    }
    let mut load = LoadGenerator::start(&db, "none_load", 14);
    for &id in &ids {
        wait_checkpoint_advances(&srv, id);
    }

    let m = marks(&srv, &ids);
    srv.restart();
    streams_again(&srv, &m, "binlog-server SIGTERM + serve");

    let m = marks(&srv, &ids);
    srv.kill9();
    srv.restart();
    streams_again(&srv, &m, "binlog-server kill -9");

    let m = marks(&srv, &ids);
    load.stop();
    db.restart();
    load = LoadGenerator::start(&db, "none_load", 15);
    streams_again(&srv, &m, "source restart");

    let m = marks(&srv, &ids);
    assert!(proxy.cut_all() >= ids.len(), "every task's connection goes through the proxy");
    streams_again(&srv, &m, "cut link");

    load.stop();
    for &id in &ids {
        flush_and_catch_up(&srv, &db, id);
        let copy = assert_copy_matches_source(&srv, &db, id);
        assert!(copy.sealed.len() >= 3, "task {id}: the load and the restarts rotate the binlog: {copy:?}");
        // The LATEST copy's first file starts mid-way without the source's GTID list, which
        // mariadb-binlog's strict mode refuses to read together with the next files from their
        // start; its byte identity from the start position on already holds every transaction once.
        if id != ids[2] {
            assert_each_gtid_once(&srv, &db, id);
        }
        never_a_checksum_error(&srv, id);
    }
}

/// Which checksum setting a local file was written under (its FDE's).
fn checksum_of(path: &std::path::Path) -> ChecksumAlg {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, fde) = FileEvents::new(&data).expect("magic").next().expect("an FDE");
    Fde::parse(fde).expect("FDE").checksum
}

/// Polls until the task's checkpoint is in `file` or a later one; returns it.
fn wait_checkpoint_reaches(srv: &Server, id: i64, file: &str) -> (String, u64) {
    poll_until(WAIT, &format!("the checkpoint of task {id} to reach {file}"), || {
        api_checkpoint(srv, id).filter(|(f, p)| f.as_str() >= file && *p > 4)
    })
}

/// `SET GLOBAL binlog_checksum` (which rotates); returns the first file written under it.
fn set_checksum(db: &MariaDb, value: &str) -> String {
    db.sql(&format!("SET GLOBAL binlog_checksum = {value}"));
    db.master_status().expect("binlog on").file
}

/// CRC32 in one file, NONE in the next and back (`SET GLOBAL binlog_checksum` + rotation), with
/// binlog-server stopped inside a file whose setting differs from the one the source has when it
/// comes back: SIGTERM inside a NONE file and resume under CRC32, kill -9 inside a CRC32 file and
/// resume under NONE. Both start modes; every file byte-identical.
#[test]
fn a_source_whose_checksum_changes_between_files_streams_and_resumes() {
    let db = MariaDb::start(MariaDbOpts::default().max_binlog_size("1M"));
    let mut srv = Server::start(fast_server_opts());
    let ids = [
        create_task(&srv, "switch-pos", source_json(&db), from_first_file(&db)),
        create_task(&srv, "switch-gtid", source_json(&db), from_no_gtid()),
    ];
    for &id in &ids {
        start_task(&srv, id);
        wait_running(&srv, id);
    }
    let load = LoadGenerator::start_shaped(&db, "switch_load", 16, LoadShape::Trickle);
    for &id in &ids {
        wait_checkpoint_advances(&srv, id);
    }

    let none_file = set_checksum(&db, "NONE");
    for &id in &ids {
        wait_checkpoint_reaches(&srv, id, &none_file);
    }
    let m = marks(&srv, &ids);
    srv.stop();
    let crc_file = set_checksum(&db, "CRC32");
    srv.restart();
    streams_again(&srv, &m, "resumed inside a NONE file, the source now CRC32");
    for &id in &ids {
        wait_checkpoint_reaches(&srv, id, &crc_file);
    }

    let m = marks(&srv, &ids);
    srv.kill9();
    let none_again = set_checksum(&db, "NONE");
    srv.restart();
    streams_again(&srv, &m, "resumed inside a CRC32 file, the source now NONE");
    for &id in &ids {
        wait_checkpoint_reaches(&srv, id, &none_again);
    }

    load.stop();
    for &id in &ids {
        flush_and_catch_up(&srv, &db, id);
        assert_copy_matches_source(&srv, &db, id);
        assert_each_gtid_once(&srv, &db, id);
        never_a_checksum_error(&srv, id);
        let dir = local_dir(&srv, id, &db);
        let settings: Vec<(String, ChecksumAlg)> =
            srv.files(id).iter().map(|f| f.name.clone()).map(|n| (n.clone(), checksum_of(&dir.join(&n)))).collect();
        let crc_at = |name: &str| settings.iter().find(|(n, _)| n == name).map(|(_, c)| *c);
        assert_eq!(crc_at(&none_file), Some(ChecksumAlg::Off), "task {id}: {settings:?}");
        assert_eq!(crc_at(&crc_file), Some(ChecksumAlg::Crc32), "task {id}: {settings:?}");
        assert_eq!(crc_at(&none_again), Some(ChecksumAlg::Off), "task {id}: {settings:?}");
    }
}
