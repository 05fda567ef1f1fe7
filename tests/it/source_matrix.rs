//! The source-configuration matrix (issue 14): every combination of the settings that change
//! what a MariaDB source writes or sends, streamed through restarts of binlog-server and of the
//! source, ending byte-identical with the checkpoint at the source's end.
//!
//! Dimensions and how they are grouped (24 cells, 4 `mariadbd`, 8 tasks, one binlog-server):
//!
//! | dimension | values | where it is set |
//! |---|---|---|
//! | `binlog_checksum` | NONE, CRC32 | server start option: one source each |
//! | `log_bin_compress` | OFF, ON (`log_bin_compress_min_len=10`, so DDL and most DML compress) | server start option: one source each |
//! | `binlog_format` | ROW, STATEMENT, MIXED | per session: three loads on every source, each in its own format, interleaved in the same files |
//! | start mode | FILE_POS (from the first file at 4), GTID (from the source's 3rd transaction: the first file joined mid-way) | per task: two tasks on every source |
//!
//! So each source (checksum x compress) covers its 3 formats x 2 start modes = 6 cells, and the
//! four sources cover all 24. The loads write small inserts, multi-statement transactions,
//! deletes, standalone DDL, MyISAM inserts and XA transactions, with rotations (64 KiB files).
//! Every cell goes through: binlog-server SIGTERM once and kill -9 once (one process runs all
//! tasks), its source restarted once, all mid-stream; then a last standalone DDL (compressed
//! where compression is on: it must end its transaction, so the checkpoint reaches the end),
//! `FLUSH BINARY LOGS`, and the checks: every sealed file byte-identical to the source's (the
//! mid-way first file from its start position), the open one a prefix but for the in-use flag,
//! every GTID exactly once, the checkpoint at the source's end with its GTID state.

use std::collections::BTreeSet;
use std::thread;

use binlog_server::binlog::event::{Fde, FileEvents, statement_prefix, types};
use serde_json::json;

use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::replication::{
    LoadGenerator, LoadShape, assert_copy_matches_source, assert_each_gtid_once, assert_each_gtid_once_after,
    create_task, fast_server_opts, from_first_file, last_event_id, source_json, start_task, wait_caught_up,
    wait_checkpoint_advances, wait_event_after, wait_running,
};
use crate::common::server::Server;

const FORMATS: [&str; 3] = ["ROW", "STATEMENT", "MIXED"];
/// The GTID tasks start after this transaction of their source (the loads' first statements).
const GTID_START_AFTER: u64 = 3;

/// One source of the matrix and the two tasks that copy it.
struct Source {
    checksum: &'static str,
    compress: bool,
    db: MariaDb,
    by_pos: i64,
    by_gtid: i64,
    loads: Vec<LoadGenerator>,
}

impl Source {
    fn name(&self) -> String {
        format!("checksum {} compress {}", self.checksum, if self.compress { "ON" } else { "OFF" })
    }

    fn tasks(&self) -> [i64; 2] {
        [self.by_pos, self.by_gtid]
    }

    /// One load per binlog format, each in its own table.
    fn start_loads(&mut self, round: u64) {
        self.loads = FORMATS
            .iter()
            .enumerate()
            .map(|(i, format)| {
                let table = format!("m_{}", format.to_ascii_lowercase());
                let session = format!("SET SESSION binlog_format = {format};");
                LoadGenerator::start_session(&self.db, &table, round * 10 + i as u64, LoadShape::Varied, &session)
            })
            .collect();
    }

    fn stop_loads(&mut self) {
        for load in self.loads.drain(..) {
            load.stop();
        }
    }
}

/// What the source's own files hold, to prove the cells are really covered: the kinds of events
/// (statements by their first word, rows events, compressed or not, XA) and the checksum
/// algorithms of the files.
fn coverage(db: &MariaDb) -> BTreeSet<String> {
    let mut kinds = BTreeSet::new();
    for (name, _) in db.binlog_files() {
        let data = std::fs::read(db.binlog_dir().join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut crc = true;
        for (_, ev) in FileEvents::new(&data).expect("magic") {
            let ty = ev[4];
            match ty {
                types::FORMAT_DESCRIPTION => {
                    let alg = Fde::parse(ev).expect("FDE").checksum;
                    crc = alg.has_crc();
                    kinds.insert(format!("checksum {alg:?}"));
                }
                types::QUERY | types::MARIA_QUERY_COMPRESSED => {
                    let text = statement_prefix(ev, crc, 13).expect("a statement");
                    let word = String::from_utf8_lossy(&text).split_whitespace().next().unwrap_or("").to_uppercase();
                    let compressed = if ty == types::MARIA_QUERY_COMPRESSED { "compressed " } else { "" };
                    kinds.insert(format!("{compressed}statement {word}"));
                }
                23..=25 | 30..=32 => {
                    kinds.insert("rows".into());
                }
                166..=171 => {
                    kinds.insert("compressed rows".into());
                }
                types::XA_PREPARE => {
                    kinds.insert("XA PREPARE".into());
                }
                _ => {}
            }
        }
    }
    kinds
}

fn start_source(checksum: &'static str, compress: bool) -> MariaDb {
    MariaDb::start(
        MariaDbOpts::default()
            .max_binlog_size("64K")
            .arg(format!("--binlog-checksum={checksum}"))
            .arg(format!("--log-bin-compress={}", if compress { "ON" } else { "OFF" }))
            .arg("--log-bin-compress-min-len=10"),
    )
}

/// Every task's checkpoint moves on, and each shows a TASK_RUNNING event after its mark.
fn all_stream_again(srv: &Server, marks: &[(i64, i64)], what: &str) {
    for &(id, mark) in marks {
        wait_event_after(srv, id, "TASK_RUNNING", mark);
        wait_checkpoint_advances(srv, id);
    }
    eprintln!("{what}: all {} tasks stream again", marks.len());
}

fn marks(srv: &Server, sources: &[Source]) -> Vec<(i64, i64)> {
    sources.iter().flat_map(Source::tasks).map(|id| (id, last_event_id(srv, id))).collect()
}

#[test]
fn every_source_configuration_streams_resumes_and_stays_byte_identical() {
    let started = std::time::Instant::now();
    let settings = [("NONE", false), ("NONE", true), ("CRC32", false), ("CRC32", true)];
    // The four sources start in parallel: set-up dominates otherwise.
    let dbs: Vec<MariaDb> = thread::scope(|s| {
        let handles: Vec<_> = settings.iter().map(|&(c, z)| s.spawn(move || start_source(c, z))).collect();
        handles.into_iter().map(|h| h.join().expect("a source started")).collect()
    });
    let mut srv = Server::start(fast_server_opts());
    let mut sources: Vec<Source> = Vec::new();
    for ((checksum, compress), db) in settings.into_iter().zip(dbs) {
        let row = db.sql("SELECT @@global.binlog_checksum, @@global.log_bin_compress");
        assert_eq!(row, vec![vec![checksum.to_string(), if compress { "1" } else { "0" }.to_string()]]);
        // The first transactions, before any task: the GTID task starts after the third.
        for i in 1..=GTID_START_AFTER {
            db.sql(&format!("CREATE TABLE IF NOT EXISTS m_setup_{i} (id INT PRIMARY KEY) COMMENT 'set-up {i}'"));
        }
        let key = format!("{}-{}", checksum.to_ascii_lowercase(), if compress { "z" } else { "plain" });
        let by_pos = create_task(&srv, &format!("{key}-pos"), source_json(&db), from_first_file(&db));
        let gtid = format!("0-1-{GTID_START_AFTER}");
        let by_gtid =
            create_task(&srv, &format!("{key}-gtid"), source_json(&db), json!({"mode": "GTID", "gtid_set": gtid}));
        let mut source = Source { checksum, compress, db, by_pos, by_gtid, loads: Vec::new() };
        for id in source.tasks() {
            start_task(&srv, id);
        }
        source.start_loads(1);
        sources.push(source);
    }
    for id in sources.iter().flat_map(Source::tasks) {
        wait_running(&srv, id);
        wait_checkpoint_advances(&srv, id);
    }
    eprintln!("streaming after {:.1?}", started.elapsed());

    let m = marks(&srv, &sources);
    srv.restart();
    all_stream_again(&srv, &m, "binlog-server SIGTERM");

    let m = marks(&srv, &sources);
    srv.kill9();
    srv.restart();
    all_stream_again(&srv, &m, "binlog-server kill -9");

    for source in &mut sources {
        let m: Vec<(i64, i64)> = source.tasks().iter().map(|&id| (id, last_event_id(&srv, id))).collect();
        source.stop_loads();
        source.db.restart();
        source.start_loads(2);
        all_stream_again(&srv, &m, &format!("source restart ({})", source.name()));
    }
    eprintln!("restarts done after {:.1?}", started.elapsed());

    for source in &mut sources {
        source.stop_loads();
        // The last transaction is a standalone DDL (compressed where compression is on): the
        // checkpoint can only reach the end if it ends its transaction.
        source.db.sql("CREATE TABLE m_last (id INT PRIMARY KEY, v VARCHAR(100)) COMMENT 'the last statement'");
        for id in source.tasks() {
            wait_caught_up(&srv, &source.db, id);
        }
        source.db.flush_binary_logs();
    }
    for source in &sources {
        let name = source.name();
        let end = source.db.gtid_binlog_pos();
        for id in source.tasks() {
            wait_caught_up(&srv, &source.db, id);
            let copy = assert_copy_matches_source(&srv, &source.db, id);
            assert!(copy.sealed.len() >= 3, "{name}, task {id}: the loads rotate the binlog: {copy:?}");
            let cp = srv.checkpoint(id);
            assert_eq!(
                cp.gtid_set.as_deref(),
                Some(end.as_str()),
                "{name}, task {id}: the checkpoint's GTID state: {cp:?}"
            );
        }
        let kinds = coverage(&source.db);
        let alg = if source.checksum == "NONE" { "checksum Off" } else { "checksum Crc32" };
        let z = if source.compress { "compressed " } else { "" };
        let expected = [
            alg.to_string(),
            // Statement-format DML and standalone DDL (compressed where compression is on).
            format!("{z}statement INSERT"),
            format!("{z}statement DELETE"),
            format!("{z}statement CREATE"),
            // Row-format DML, the MyISAM terminator, XA.
            format!("{z}rows"),
            "statement COMMIT".to_string(),
            "XA PREPARE".to_string(),
        ];
        let missing: Vec<&String> = expected.iter().filter(|k| !kinds.contains(*k)).collect();
        assert!(missing.is_empty(), "{name}: the source's files lack {missing:?} (they hold {kinds:?})");
        let other_alg = if source.checksum == "NONE" { "checksum Crc32" } else { "checksum Off" };
        assert!(!kinds.contains(other_alg), "{name}: {kinds:?}");
        let n = assert_each_gtid_once(&srv, &source.db, source.by_pos);
        assert_each_gtid_once_after(&srv, &source.db, source.by_gtid, GTID_START_AFTER);
        eprintln!("{name}: {n} transactions, byte-identical in both start modes");
    }
    eprintln!("matrix done in {:.1?}", started.elapsed());
}
