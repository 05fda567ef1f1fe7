//! Helpers for replication tests: a task against a harness `MariaDb`, waits on its state and its
//! checkpoint, the byte comparison of the local copy with the source's files, the persisted
//! metadata as a crash left it (read with the `sqlite3` CLI), the GTIDs in local files, the
//! source's process list, and a background load generator.
//!
//! Everything here drives the real processes through their public surfaces (HTTP API, SQL, files
//! on disk); nothing mocks MySQL or reaches into the server's internals. Every wait is a poll
//! with a deadline that names what it waited for.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use binlog_server::binlog::event::{EventHeader, FileEvents, parse_mariadb_gtid, types};
use binlog_server::binlog::gtid::MariadbGtid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use binlog_server::api::dto::{FileDto, TaskDto};
use binlog_server::domain::{TaskError, TaskState};
use binlog_server::meta::FileState;

use super::mariadb::{MariaDb, MariaDbOpts, MasterStatus, REPL_PASSWORD, REPL_USER, TEST_DB};
use super::proxy::Proxy;
use super::server::{Server, ServerOpts};
use super::{kill_and_reap, output_with_deadline, poll_until, require_binary, wait_child};

/// Default deadline for a replication wait (connect, catch up, change state).
pub const WAIT: Duration = Duration::from_secs(60);

/// File offset of the FDE flags' low byte (4 magic + 17): the in-use flag, set by the source
/// while it has the file open and cleared in every copy built from the stream.
pub const IN_USE_FLAG_OFFSET: usize = 4 + 17;

/// Server options for replication tests: fast retries (100 ms doubling up to 1 s) and a 200 ms
/// heartbeat (a dead link is noticed after 1 s of silence).
pub fn fast_server_opts() -> ServerOpts {
    ServerOpts::default()
        .env("BINLOG_SERVER_REPLICATION_RETRY_INITIAL_MS", "100")
        .env("BINLOG_SERVER_REPLICATION_RETRY_MAX_MS", "1000")
        .env("BINLOG_SERVER_REPLICATION_HEARTBEAT_PERIOD_MS", "200")
}

/// [`fast_server_opts`] on a slow disk: every data fsync of the writer takes at least
/// `fsync_delay` (a debug-build hook), with heartbeats slow enough not to count the wait as a
/// dead source.
pub fn slow_disk_server_opts(fsync_delay: Duration) -> ServerOpts {
    fast_server_opts()
        .env("BINLOG_TEST_FSYNC_DELAY_MS", fsync_delay.as_millis().to_string())
        .env("BINLOG_SERVER_REPLICATION_HEARTBEAT_PERIOD_MS", "1000")
}

/// The `source` object of a task body for `db`, as the `repl` user.
pub fn source_json(db: &MariaDb) -> Value {
    json!({"host": db.host(), "port": db.port(), "user": REPL_USER, "password": REPL_PASSWORD, "flavor": "mariadb"})
}

/// A task source pointing at `port` on loopback (a `Proxy` in front of a source) as the `repl`
/// user every harness `MariaDb` has.
pub fn source_via(port: u16) -> Value {
    json!({"host": "127.0.0.1", "port": port, "user": REPL_USER, "password": REPL_PASSWORD, "flavor": "mariadb"})
}

/// A failover-ready pair: a primary (server 1), its replica (server 2, logging what it applies,
/// same GTID domain) replicating from it, and a proxy in front of the primary for tasks to
/// connect through. Small binlog files (`max_binlog_size`) make both rotate.
pub fn primary_replica_proxy(max_binlog_size: &str) -> (MariaDb, MariaDb, Proxy) {
    let primary = MariaDb::start(MariaDbOpts::default().max_binlog_size(max_binlog_size));
    let replica = MariaDb::start(MariaDbOpts::default().max_binlog_size(max_binlog_size).replica(2));
    replica.replicate_from(&primary);
    let proxy = Proxy::start(primary.addr());
    (primary, replica, proxy)
}

/// The failover: the primary dies (SIGKILL), the replica is promoted, and the proxy's address
/// moves to it (its live connections are cut, so clients reconnect to the new primary).
pub fn fail_over(primary: &mut MariaDb, replica: &MariaDb, proxy: &Proxy) {
    primary.kill();
    replica.promote();
    proxy.move_to(replica.addr());
}

/// Creates and starts a GTID-mode task (from the binlog's beginning) whose source is the proxy
/// at `port`; returns its id once RUNNING.
pub fn start_gtid_task_via(srv: &Server, port: u16, key: &str) -> i64 {
    let id = create_task(srv, key, source_via(port), json!({"mode": "GTID", "gtid_set": ""}));
    start_task(srv, id);
    wait_running(srv, id);
    id
}

/// Polls until the task's checkpoint was taken on source `identity` (it followed a switchover).
pub fn wait_following(srv: &Server, id: i64, identity: &str) {
    poll_until(WAIT, &format!("task {id} to follow source {identity}"), || {
        (srv.checkpoint(id).source_identity.as_deref() == Some(identity)).then_some(())
    });
}

/// `{"mode": "FILE_POS", "file": <db's first binlog file>, "pos": 4}`: copy everything.
pub fn from_first_file(db: &MariaDb) -> Value {
    let first = db.binlog_files().first().map(|(name, _)| name.clone()).expect("the source has a binlog file");
    json!({"mode": "FILE_POS", "file": first, "pos": 4})
}

/// Creates a task (`name` = `cluster_key` = `key`) with the given `source` and `start` objects;
/// returns its id. Panics unless the API answers 201.
pub fn create_task(srv: &Server, key: &str, source: Value, start: Value) -> i64 {
    srv.create(&json!({"name": key, "cluster_key": key, "source": source, "start": start})).id
}

/// `POST /api/tasks/{id}/start`; panics unless 200.
pub fn start_task(srv: &Server, id: i64) {
    srv.start_task(id);
}

/// `POST /api/tasks/{id}/stop` (returns once files are flushed and the state stored); panics
/// unless 200.
pub fn stop_task(srv: &Server, id: i64) {
    srv.stop_task(id);
}

/// Creates and starts a task copying `db` from its first file at position 4; returns its id.
pub fn start_copy_task(srv: &Server, db: &MariaDb, key: &str) -> i64 {
    let id = create_task(srv, key, source_json(db), from_first_file(db));
    start_task(srv, id);
    id
}

/// Polls until the task is RUNNING.
pub fn wait_running(srv: &Server, id: i64) -> TaskDto {
    srv.wait_for_state(id, TaskState::Running)
}

/// Polls until the task is FAILED; returns its `last_error`.
pub fn wait_failed(srv: &Server, id: i64) -> TaskError {
    let t = srv.wait_for_state(id, TaskState::Failed);
    t.last_error.clone().unwrap_or_else(|| panic!("task {id} FAILED without last_error: {t:?}"))
}

/// The persisted checkpoint as the API shows it: `(file, pos)`, `None` before the first one.
pub fn api_checkpoint(srv: &Server, id: i64) -> Option<(String, u64)> {
    let cp = srv.checkpoint(id);
    Some((cp.file?, cp.pos?))
}

/// Polls until the task's persisted checkpoint is the source's current end (`SHOW MASTER
/// STATUS`, re-read at every poll, so a source that still writes a BINLOG_CHECKPOINT event after
/// a rotation is followed). Returns the position reached. Stop the load first.
pub fn wait_caught_up(srv: &Server, db: &MariaDb, id: i64) -> MasterStatus {
    let mut last = None;
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_until(WAIT, &format!("the checkpoint of task {id} to reach the source's end"), || {
            let target = db.master_status().expect("the source's binary log is on");
            let cp = api_checkpoint(srv, id);
            let reached = cp.as_ref().is_some_and(|(f, p)| *f == target.file && *p == target.position);
            last = Some((cp, target.clone()));
            reached.then_some(target)
        })
    }));
    waited.unwrap_or_else(|_| {
        let repl = srv.replication(id);
        panic!(
            "task {id} did not catch up: (checkpoint, source end) last seen {last:?}\nreplication: {repl:?}\n{}",
            srv.diagnostics()
        )
    })
}

/// Polls until the persisted checkpoint differs from `from` (streaming makes progress).
pub fn wait_checkpoint_moves(srv: &Server, id: i64, from: Option<&(String, u64)>) -> (String, u64) {
    poll_until(WAIT, &format!("the checkpoint of task {id} to move past {from:?}"), || {
        api_checkpoint(srv, id).filter(|cp| Some(cp) != from)
    })
}

/// Reads the persisted checkpoint, then polls until it moves on (needs a load on the source).
pub fn wait_checkpoint_advances(srv: &Server, id: i64) -> (String, u64) {
    let now = api_checkpoint(srv, id);
    wait_checkpoint_moves(srv, id, now.as_ref())
}

/// The task's event timeline, newest first: `(id, event_type, message)`.
pub fn task_events(srv: &Server, id: i64) -> Vec<(i64, String, String)> {
    srv.events(id).into_iter().map(|e| (e.id, e.event_type, e.message)).collect()
}

/// The id of the task's newest event (0 when it has none): a mark for [`wait_event_after`].
pub fn last_event_id(srv: &Server, id: i64) -> i64 {
    task_events(srv, id).first().map(|e| e.0).unwrap_or(0)
}

/// Polls until an event of `event_type` newer than event `after` exists; returns
/// `(event id, message)` of the oldest such event.
pub fn wait_event_after(srv: &Server, id: i64, event_type: &str, after: i64) -> (i64, String) {
    poll_until(WAIT, &format!("a {event_type} event of task {id} after event {after}"), || {
        task_events(srv, id).into_iter().rev().find(|e| e.0 > after && e.1 == event_type).map(|e| (e.0, e.2))
    })
}

/// The source identity binlog-server derives for `db`: `mariadb-{server_id}-{gtid_domain_id}`.
pub fn source_identity(db: &MariaDb) -> String {
    format!("mariadb-{}-{}", db.opts().server_id, db.opts().gtid_domain_id)
}

/// Where the task keeps `db`'s files: `{data_dir}/{task_id}/{source_identity}`.
pub fn local_dir(srv: &Server, id: i64, db: &MariaDb) -> PathBuf {
    srv.data_dir().join(id.to_string()).join(source_identity(db))
}

/// What [`assert_copy_matches_source`] compared.
#[derive(Debug, Clone)]
pub struct CopySummary {
    /// Local files equal to the source's closed files, byte for byte.
    pub sealed: Vec<String>,
    /// The local open file (a prefix of the source's active file), if any.
    pub open: Option<String>,
}

/// Asserts that a task copying `db` holds an exact copy: every SEALED local file is
/// byte-identical (`==`) to the source's file; the OPEN one (at most one, the newest) is a prefix
/// of the source's file apart from the in-use flag at byte 21; no source file from the first
/// local one on is missing locally, and there is no local file the source lacks. The first local
/// file may be joined mid-way (a GTID or FILE_POS start inside it): then what follows its header
/// events equals the source's file from its `start_pos` on.
///
/// Run it when the copy is caught up, after `FLUSH BINARY LOGS` (or a clean source shutdown) if
/// every file must be sealed.
pub fn assert_copy_matches_source(srv: &Server, db: &MariaDb, id: i64) -> CopySummary {
    let identity = source_identity(db);
    let dir = local_dir(srv, id, db);
    let local: Vec<FileDto> = srv.files(id).into_iter().filter(|f| f.source_identity == identity).collect();
    let local_names: Vec<String> = local.iter().map(|f| f.name.clone()).collect();
    let source_names: Vec<String> = db.binlog_files().into_iter().map(|(name, _)| name).collect();
    let first = local_names.first().unwrap_or_else(|| panic!("task {id} holds no file of {identity}"));
    let from = source_names
        .iter()
        .position(|n| n == first)
        .unwrap_or_else(|| panic!("local file {first} is not on the source: {source_names:?}"));
    assert_eq!(
        local_names,
        source_names[from..].to_vec(),
        "task {id}: the local files must be exactly the source's files from {first} on"
    );
    let mut summary = CopySummary { sealed: Vec::new(), open: None };
    for (i, f) in local.iter().enumerate() {
        let name = &local_names[i];
        let start_pos = f.start_pos;
        assert!(start_pos == 4 || i == 0, "{name}: only the first local file may be joined mid-way: {f:?}");
        let whole = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("local {name} in {}: {e}", dir.display()));
        let source = std::fs::read(db.binlog_dir().join(name)).unwrap_or_else(|e| panic!("source {name}: {e}"));
        // A file joined mid-way: compare what follows its header with the source from start_pos.
        let (ours, theirs) = if start_pos == 4 {
            (&whole[..], &source[..])
        } else {
            let body_at = FileEvents::new(&whole)
                .expect("magic")
                .find(|(_, ev)| EventHeader::parse(ev).ok().and_then(|h| h.start_pos()) == Some(start_pos))
                .map_or(whole.len(), |(off, _)| off);
            (&whole[body_at..], &source[start_pos as usize..])
        };
        match f.state {
            FileState::Sealed => {
                // (An OPEN file's catalog size is only refreshed when a checkpoint is persisted.)
                assert_eq!(f.size, whole.len() as u64, "{name}: the catalog's size differs from the sealed file's");
                assert!(
                    ours == theirs,
                    "{name}: the sealed copy differs from the source's file ({} vs {} bytes, first difference at {:?})",
                    ours.len(),
                    theirs.len(),
                    first_difference(ours, theirs)
                );
                summary.sealed.push(name.clone());
            }
            FileState::Open => {
                assert_eq!(i, local.len() - 1, "{name}: only the newest local file may be OPEN: {local:?}");
                if let Some((cp_file, cp_pos)) = api_checkpoint(srv, id).filter(|(f, _)| f == name) {
                    // The source position the copy reaches (a mid-way body starts at start_pos).
                    let held = ours.len() as u64 + if start_pos == 4 { 0 } else { start_pos };
                    assert!(held >= cp_pos, "{name}: holds up to {held}, below the checkpoint {cp_file}:{cp_pos}");
                }
                assert!(ours.len() <= theirs.len(), "{name}: the open copy is longer than the source's file");
                let mut expected = theirs[..ours.len()].to_vec();
                if start_pos == 4 && expected.len() > IN_USE_FLAG_OFFSET {
                    expected[IN_USE_FLAG_OFFSET] &= !1;
                }
                assert!(
                    ours == expected,
                    "{name}: the open copy is not a prefix of the source's file (first difference at {:?})",
                    first_difference(ours, &expected)
                );
                summary.open = Some(name.clone());
            }
        }
    }
    summary
}

/// `FLUSH BINARY LOGS` on the source, then waits until the task holds everything: afterwards
/// every file but the new, nearly empty one is closed on the source and should be sealed locally.
pub fn flush_and_catch_up(srv: &Server, db: &MariaDb, id: i64) -> MasterStatus {
    db.flush_binary_logs();
    wait_caught_up(srv, db, id)
}

/// The offset of the first byte where `a` and `b` differ (`None` when one is a prefix of the
/// other and they have the same length).
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y).or((a.len() != b.len()).then_some(a.len().min(b.len())))
}

/// The MariaDB GTIDs of the GTID events in one local binlog file (the whole file, magic included).
pub fn mariadb_gtids(data: &[u8]) -> Vec<MariadbGtid> {
    FileEvents::new(data)
        .expect("a binlog file starts with the magic")
        .filter(|(_, ev)| ev[4] == types::MARIA_GTID)
        .map(|(off, ev)| parse_mariadb_gtid(ev, true).unwrap_or_else(|e| panic!("GTID event at {off}: {e}")).gtid)
        .collect()
}

/// The type code of the last complete event in a binlog file.
pub fn last_event_type(data: &[u8]) -> Option<u8> {
    FileEvents::new(data).ok()?.last().map(|(_, ev)| ev[4])
}

/// The GTIDs `mariadb-binlog` (the server's own decoder, independent of ours) reads from
/// `paths`, in order, as `domain-server-seq` strings; panics when it cannot decode them.
pub fn mariadb_binlog_gtids(paths: &[PathBuf]) -> Vec<String> {
    let mut cmd = Command::new(require_binary("mariadb-binlog"));
    cmd.arg("--no-defaults").args(paths);
    let out = output_with_deadline(&mut cmd, Duration::from_secs(120), "mariadb-binlog");
    assert!(out.status.success(), "mariadb-binlog failed on our files: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| {
            l.split_once("\tGTID ").map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_string())
        })
        .collect()
}

/// One row of the `binlog_files` catalog as persisted in `meta.db`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub source_identity: String,
    pub file_name: String,
    pub state: String,
    pub start_pos: u64,
    pub header_len: u64,
    pub size: u64,
}

impl FileRow {
    /// The local offset of source position `pos` in this file (the writer's mapping: equal for a
    /// file fetched from position 4, shifted by the header for a file joined mid-way).
    pub fn local_offset(&self, pos: u64) -> u64 {
        if self.start_pos <= 4 { pos } else { pos - self.start_pos + self.header_len }
    }
}

/// The checkpoint row as persisted in `meta.db`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub source_identity: String,
    pub file_name: String,
    pub pos: u64,
    pub gtid_set: String,
}

/// Runs a query on the server's SQLite metadata (`{data_dir}/meta.db`) with the `sqlite3` CLI;
/// rows of tab-separated columns (NULL as empty). Use it while the server is down (after a
/// kill -9) to see exactly what a crash left behind.
pub fn meta_query(data_dir: &Path, sql: &str) -> Vec<Vec<String>> {
    let db = data_dir.join("meta.db");
    assert!(db.is_file(), "no metadata database at {}", db.display());
    let mut cmd = Command::new(require_binary("sqlite3"));
    cmd.arg("-batch").arg("-bail").arg("-separator").arg("\t").arg(&db).arg(sql);
    let out = output_with_deadline(&mut cmd, Duration::from_secs(30), "sqlite3");
    assert!(out.status.success(), "sqlite3 {sql:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('\t').map(str::to_string).collect()).collect()
}

/// The persisted checkpoint of task `id` (`None` when there is none yet).
pub fn meta_checkpoint(data_dir: &Path, id: i64) -> Option<CheckpointRow> {
    let rows = meta_query(
        data_dir,
        &format!(
            "SELECT source_identity, file_name, pos, IFNULL(gtid_set, '') FROM checkpoints \
             WHERE task_id = {id} AND file_name IS NOT NULL"
        ),
    );
    let row = rows.first()?;
    Some(CheckpointRow {
        source_identity: row[0].clone(),
        file_name: row[1].clone(),
        pos: row[2].parse().unwrap_or_else(|_| panic!("checkpoint pos {:?}", row[2])),
        gtid_set: row[3].clone(),
    })
}

/// The persisted `binlog_files` rows of task `id`, in creation order.
pub fn meta_files(data_dir: &Path, id: i64) -> Vec<FileRow> {
    let num = |s: &str| -> u64 { s.parse().unwrap_or_else(|_| panic!("not a number in binlog_files: {s:?}")) };
    meta_query(
        data_dir,
        &format!(
            "SELECT source_identity, file_name, state, start_pos, header_len, size FROM binlog_files \
             WHERE task_id = {id} ORDER BY id"
        ),
    )
    .into_iter()
    .map(|r| FileRow {
        source_identity: r[0].clone(),
        file_name: r[1].clone(),
        state: r[2].clone(),
        start_pos: num(&r[3]),
        header_len: num(&r[4]),
        size: num(&r[5]),
    })
    .collect()
}

/// Source sessions in `Binlog Dump` (one per streaming replica): `(id, user)`.
pub fn binlog_dump_threads(db: &MariaDb) -> Vec<(String, String)> {
    db.sql("SELECT ID, USER FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump'")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect()
}

/// How many sessions `user` has open on the source.
pub fn user_sessions(db: &MariaDb, user: &str) -> usize {
    db.query_value(&format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{user}'"))
        .parse()
        .expect("COUNT(*) is a number")
}

/// A background writer: one `mariadb` client session (root, database `test`) fed InnoDB
/// transactions of varied sizes through its stdin until [`LoadGenerator::stop`]. Shapes, from a
/// seeded RNG: small autocommit inserts, multi-statement transactions (insert + update + delete),
/// rolled-back transactions (nothing logged), MyISAM inserts (a QUERY COMMIT terminator), and
/// now and then a transaction of 100-300 KiB that overruns a small `max_binlog_size`.
///
/// The short pause between transactions only paces the load (a few hundred per second); tests
/// never rely on it for ordering. A session that dies (source stopped) ends the load with an
/// error that `stop()` reports.
pub struct LoadGenerator {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<JoinHandle<Result<(), String>>>,
    table: String,
}

impl LoadGenerator {
    /// Creates table `table` (if needed) and starts the load on it.
    pub fn start(db: &MariaDb, table: &str, seed: u64) -> LoadGenerator {
        Self::start_shaped(db, table, seed, LoadShape::Mixed)
    }

    /// Like [`LoadGenerator::start`], with another shape of load.
    pub fn start_shaped(db: &MariaDb, table: &str, seed: u64, shape: LoadShape) -> LoadGenerator {
        Self::start_session(db, table, seed, shape, "")
    }

    /// Like [`LoadGenerator::start_shaped`], with `session_sql` run first in the load's session
    /// (`SET SESSION binlog_format = STATEMENT;`, ...).
    pub fn start_session(db: &MariaDb, table: &str, seed: u64, shape: LoadShape, session_sql: &str) -> LoadGenerator {
        db.sql(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, k INT, v TEXT) ENGINE=InnoDB;
             CREATE TABLE IF NOT EXISTS {table}_myisam (id BIGINT AUTO_INCREMENT PRIMARY KEY, v TEXT) ENGINE=MyISAM;"
        ));
        let mut child = Command::new(require_binary("mariadb"))
            .args(["--no-defaults", "-h127.0.0.1", &format!("-P{}", db.port()), "-uroot", "--batch"])
            .arg(format!("--database={TEST_DB}"))
            .env_remove("MYSQL_PWD")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning the load client: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop2, sent2, table2, init) = (stop.clone(), sent.clone(), table.to_string(), session_sql.to_string());
        let thread = thread::Builder::new()
            .name(format!("load-{table}"))
            .spawn(move || run_load(child, stdin, &table2, &init, seed, shape, &stop2, &sent2))
            .expect("spawn the load thread");
        LoadGenerator { stop, sent, thread: Some(thread), table: table.to_string() }
    }

    /// Transactions handed to the client so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops the load and waits until the client has executed (committed) everything it was
    /// given; returns the number of transactions sent. Panics if the session failed.
    pub fn stop(mut self) -> u64 {
        self.finish().unwrap_or_else(|e| panic!("load on {}: {e}", self.table));
        self.sent()
    }

    /// Like [`LoadGenerator::stop`], but returns the session's error instead of panicking (for a
    /// load whose source went away under it).
    pub fn stop_lenient(mut self) -> Result<u64, String> {
        self.finish().map(|()| self.sent())
    }

    fn finish(&mut self) -> Result<(), String> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| Err("the load thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for LoadGenerator {
    fn drop(&mut self) {
        // A test that panicked mid-way: end the client too (its result no longer matters).
        let _ = self.finish();
    }
}

/// What a [`LoadGenerator`] writes.
#[derive(Debug, Clone, Copy)]
pub enum LoadShape {
    /// The transactions described on [`LoadGenerator`], a few hundred per second.
    Mixed,
    /// Light: about 100 small statements per second (inserts of 100-3000 bytes, small
    /// insert-and-update transactions, deletes), for tests where many tasks copy everything.
    Trickle,
    /// The trickle, with now and then a standalone DDL, a MyISAM insert (non-transactional, a
    /// QUERY COMMIT terminator) and an XA transaction (PREPARE, then COMMIT in a group of its
    /// own): every kind of group a MariaDB binlog has, for the source-configuration matrix.
    Varied,
}

#[allow(clippy::too_many_arguments)]
fn run_load(
    mut child: Child,
    mut stdin: ChildStdin,
    table: &str,
    session_sql: &str,
    seed: u64,
    shape: LoadShape,
    stop: &AtomicBool,
    sent: &AtomicU64,
) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut write_err = stdin.write_all(format!("{session_sql}\n").as_bytes()).err();
    while write_err.is_none() && !stop.load(Ordering::Relaxed) {
        let (sql, pause) = match shape {
            LoadShape::Mixed => (load_transaction(&mut rng, table), Duration::from_micros(rng.random_range(0..4000))),
            LoadShape::Trickle => (trickle_statement(&mut rng, table), Duration::from_millis(8)),
            LoadShape::Varied => (varied_statement(&mut rng, table), Duration::from_millis(8)),
        };
        if let Err(e) = stdin.write_all(sql.as_bytes()).and_then(|()| stdin.flush()) {
            write_err = Some(e);
            break;
        }
        sent.fetch_add(1, Ordering::Relaxed);
        thread::sleep(pause);
    }
    drop(stdin);
    let status = match wait_child(&mut child, Duration::from_secs(120)) {
        Some(s) => s,
        None => {
            kill_and_reap(&mut child);
            return Err("the load client did not finish within 120 s of its input ending".into());
        }
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut stderr);
    }
    match (status.success(), write_err) {
        (true, None) => Ok(()),
        (_, err) => Err(format!("the load client ended with {status} (write error: {err:?}): {}", stderr.trim())),
    }
}

/// One statement of the trickle load, as SQL text ending in a newline.
fn trickle_statement(rng: &mut StdRng, t: &str) -> String {
    match rng.random_range(0..10) {
        0..=6 => format!(
            "INSERT INTO {t} (v) VALUES (REPEAT('{}', {}));\n",
            (b'a' + rng.random_range(0..26u8)) as char,
            rng.random_range(100..=3000)
        ),
        7..=8 => format!(
            "BEGIN; INSERT INTO {t} (v) SELECT REPEAT('m', {}) FROM seq_1_to_{}; \
             UPDATE {t} SET v = CONCAT(LEFT(v, 20), 'u') WHERE id = LAST_INSERT_ID(); COMMIT;\n",
            rng.random_range(50..=800),
            rng.random_range(2..=6)
        ),
        _ => format!("DELETE FROM {t} ORDER BY id LIMIT 1;\n"),
    }
}

/// One statement or transaction of the varied load, as SQL text ending in a newline.
fn varied_statement(rng: &mut StdRng, t: &str) -> String {
    let k: u32 = rng.random_range(0..1_000_000);
    match rng.random_range(0..100) {
        0..=79 => trickle_statement(rng, t),
        80..=87 => format!("INSERT INTO {t}_myisam (v) VALUES (REPEAT('y', {}));\n", rng.random_range(10..=300)),
        88..=93 => format!(
            "CREATE OR REPLACE TABLE {t}_ddl (id INT PRIMARY KEY, v VARCHAR(64)) COMMENT 'standalone DDL {k}';\n"
        ),
        _ => format!(
            "XA START '{t}{k}'; INSERT INTO {t} (v) VALUES ('xa {k}'); XA END '{t}{k}'; XA PREPARE '{t}{k}'; \
             XA COMMIT '{t}{k}';\n"
        ),
    }
}

/// One transaction of the load, as SQL text ending in a newline.
fn load_transaction(rng: &mut StdRng, t: &str) -> String {
    let k: u32 = rng.random_range(0..1_000_000);
    match rng.random_range(0..100) {
        // Small autocommit inserts.
        0..=59 => {
            let (rows, len) = (rng.random_range(1..=5), rng.random_range(20..=600));
            format!(
                "INSERT INTO {t} (k, v) SELECT {k} + seq, REPEAT(CHAR(65 + seq % 26), {len}) FROM seq_1_to_{rows};\n"
            )
        }
        // Multi-statement transactions.
        60..=84 => {
            let (rows, len) = (rng.random_range(5..=50), rng.random_range(50..=1000));
            format!(
                "BEGIN; INSERT INTO {t} (k, v) SELECT {k} + seq, REPEAT('m', {len}) FROM seq_1_to_{rows}; \
                 SET @m = (SELECT MAX(id) FROM {t}); \
                 UPDATE {t} SET v = CONCAT(LEFT(v, 40), '{k}') WHERE id BETWEEN @m - 30 AND @m - 20; \
                 DELETE FROM {t} WHERE id BETWEEN @m - 45 AND @m - 42; COMMIT;\n"
            )
        }
        // Rolled back: nothing reaches the binlog.
        85..=89 => format!("BEGIN; INSERT INTO {t} (k, v) VALUES ({k}, 'rolled back'); ROLLBACK;\n"),
        // Non-transactional: ends with a QUERY COMMIT instead of an XID.
        90..=96 => format!("INSERT INTO {t}_myisam (v) VALUES (REPEAT('y', {}));\n", rng.random_range(10..=300)),
        // Large: overruns a 64-256 KiB max_binlog_size by itself.
        _ => {
            let rows = rng.random_range(100..=300);
            format!("INSERT INTO {t} (k, v) SELECT {k} + seq, REPEAT('L', 1000) FROM seq_1_to_{rows};\n")
        }
    }
}

/// The sequence number of domain 0 in the source's `@@gtid_binlog_pos` (0 when empty).
pub fn source_last_seq(db: &MariaDb) -> u64 {
    let pos = db.gtid_binlog_pos();
    if pos.is_empty() {
        return 0;
    }
    let own = pos
        .split(',')
        .find(|g| g.starts_with(&format!("{}-", db.opts().gtid_domain_id)))
        .unwrap_or_else(|| panic!("no GTID of domain {} in {pos}", db.opts().gtid_domain_id));
    own.rsplit('-').next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad GTID {own}"))
}

/// Asserts that the task's local files (in catalog order) hold every transaction the source
/// logged exactly once and in order: GTID sequence numbers 1, 2, ..., the source's last, with
/// no duplicate and no gap, all of the source's domain and server id. `mariadb-binlog` decodes
/// the same files independently and must list the same GTIDs. Returns how many there are.
pub fn assert_each_gtid_once(srv: &Server, db: &MariaDb, id: i64) -> u64 {
    assert_each_gtid_once_after(srv, db, id, 0)
}

/// Like [`assert_each_gtid_once`], for a task that started after the source's transaction
/// `after` (a GTID start): sequence numbers `after + 1` to the source's last.
pub fn assert_each_gtid_once_after(srv: &Server, db: &MariaDb, id: i64, after: u64) -> u64 {
    let dir = local_dir(srv, id, db);
    let paths: Vec<PathBuf> = srv.files(id).iter().map(|f| dir.join(&f.name)).collect();
    let mut gtids = Vec::new();
    for p in &paths {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
        gtids.extend(mariadb_gtids(&data));
    }
    let (domain, server) = (db.opts().gtid_domain_id, db.opts().server_id);
    if let Some(g) = gtids.iter().find(|g| g.domain != domain || g.server_id != server) {
        panic!("GTID {g} is not from domain {domain} / server {server}");
    }
    let seqs: Vec<u64> = gtids.iter().map(|g| g.seq).collect();
    for w in seqs.windows(2) {
        assert!(w[1] == w[0] + 1, "GTID sequence jumps from {} to {} (a duplicate or a gap)", w[0], w[1]);
    }
    let last = source_last_seq(db);
    assert_eq!(seqs.first().copied(), Some(after + 1).filter(|_| last > after), "the first transaction must be there");
    assert_eq!(seqs.last().copied().unwrap_or(after), last, "the source's last transaction must be there");
    let theirs = mariadb_binlog_gtids(&paths);
    let ours: Vec<String> = gtids.iter().map(|g| format!("{}-{}-{}", g.domain, g.server_id, g.seq)).collect();
    assert!(theirs == ours, "mariadb-binlog reads other GTIDs from our files ({} vs {})", theirs.len(), ours.len());
    last
}

/// What a source killed in the middle of writing an event leaves in its file: the start of an
/// event that never ended (here a GTID event header declaring 200 bytes, and 10 of them).
pub fn tear(db: &MariaDb, file: &str, at: u64) -> usize {
    let mut torn = Vec::new();
    torn.extend_from_slice(&1_700_000_000u32.to_le_bytes());
    torn.push(types::MARIA_GTID);
    torn.extend_from_slice(&1u32.to_le_bytes());
    torn.extend_from_slice(&200u32.to_le_bytes());
    torn.extend_from_slice(&((at + 200) as u32).to_le_bytes());
    torn.extend_from_slice(&0u16.to_le_bytes());
    torn.extend_from_slice(&[7u8; 10]);
    let path = db.binlog_dir().join(file);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), at, "{file} ends where the tear goes");
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&torn).unwrap();
    torn.len()
}
