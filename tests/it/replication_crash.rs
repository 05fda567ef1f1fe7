//! Crash safety of the replication core. binlog-server is killed with SIGKILL at random moments
//! while the source takes a continuous write load and rotates small binlog files; after every
//! kill, what the crash left on disk must respect "the checkpoint is never ahead of the durable
//! bytes", and after the restarts the copy must be byte-identical to the source with every
//! transaction exactly once. A torn tail (a partial transaction after the checkpoint) must be
//! cut back to the checkpoint when the server comes back.
//!
//! The kill moments come from a seeded RNG; the seed is printed, and `BINLOG_TEST_SEED=<n>`
//! replays a run.

use std::path::Path;
use std::time::{Duration, Instant};

use binlog_server::binlog::event::{FileEvents, types};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::replication::{
    CheckpointRow, LoadGenerator, assert_copy_matches_source, assert_each_gtid_once, fast_server_opts,
    flush_and_catch_up, local_dir, meta_checkpoint, meta_files, source_identity, start_copy_task, wait_caught_up,
    wait_checkpoint_advances, wait_checkpoint_moves, wait_running,
};
use crate::common::server::Server;
use crate::common::{file_len, read_from};

/// How many times the server is killed in the random-kill test.
const KILLS: usize = 12;

/// The seed for this run: `BINLOG_TEST_SEED` if set, else the clock. Printed either way.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("BINLOG_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_nanos() as u64
    });
    eprintln!("{test}: seed {seed} (replay with BINLOG_TEST_SEED={seed})");
    seed
}

/// What one kill left behind, as read from disk with the server down.
#[derive(Debug)]
struct AfterKill {
    checkpoint: Option<CheckpointRow>,
    /// Bytes in the checkpoint's file beyond the checkpoint (a tail reconciliation must cut).
    tail: u64,
    /// Files created after the checkpoint's file (reconciliation must remove them).
    files_beyond: usize,
}

/// Asserts the durability invariants on what a kill -9 left: the persisted checkpoint names a
/// file the catalog knows and that exists, whose size covers the checkpoint's local offset; the
/// bytes up to it are whole events ending a transaction; every file before it is on disk, and
/// every sealed file has exactly its recorded size.
fn assert_durable_after_kill(srv: &Server, db: &MariaDb, id: i64, kill: usize) -> AfterKill {
    let identity = source_identity(db);
    let dir = local_dir(srv, id, db);
    let rows: Vec<_> = meta_files(&srv.data_dir(), id).into_iter().filter(|r| r.source_identity == identity).collect();
    for r in rows.iter().filter(|r| r.state == "SEALED") {
        let on_disk = file_len(&dir.join(&r.file_name));
        assert_eq!(
            on_disk, r.size,
            "kill {kill}: sealed {} has {on_disk} bytes, the catalog says {}",
            r.file_name, r.size
        );
    }
    let Some(cp) = meta_checkpoint(&srv.data_dir(), id) else {
        // Killed before the first checkpoint: nothing is promised yet.
        return AfterKill { checkpoint: None, tail: 0, files_beyond: rows.len() };
    };
    assert_eq!(cp.source_identity, identity, "kill {kill}: checkpoint of another source: {cp:?}");
    let i = rows
        .iter()
        .position(|r| r.file_name == cp.file_name)
        .unwrap_or_else(|| panic!("kill {kill}: the checkpoint names {} but the catalog has {rows:?}", cp.file_name));
    for r in &rows[..i] {
        assert!(dir.join(&r.file_name).is_file(), "kill {kill}: {} (before the checkpoint) is missing", r.file_name);
    }
    let path = dir.join(&cp.file_name);
    assert!(path.is_file(), "kill {kill}: the checkpoint's file {} does not exist", path.display());
    let want = rows[i].local_offset(cp.pos);
    let have = file_len(&path);
    assert!(
        have >= want,
        "kill {kill}: checkpoint {}:{} is ahead of the durable bytes: {} holds {have} bytes, the checkpoint \
         needs {want}",
        cp.file_name,
        cp.pos,
        path.display()
    );
    assert_transaction_boundary(&path, want, kill);
    AfterKill { tail: have - want, files_beyond: rows.len() - i - 1, checkpoint: Some(cp) }
}

/// The first `len` bytes of the file are whole events, and the last of them may end a
/// transaction (XID, a QUERY such as COMMIT or DDL, or a non-transactional header event).
fn assert_transaction_boundary(path: &Path, len: u64, kill: usize) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let data = &data[..len as usize];
    let mut events = FileEvents::new(data).unwrap_or_else(|e| panic!("kill {kill}: {}: {e}", path.display()));
    let last = events.by_ref().last().map(|(off, ev)| (off, ev[4]));
    assert_eq!(events.torn_at, None, "kill {kill}: {} is not cut at an event boundary at {len}", path.display());
    if let Some((off, ty)) = last {
        let ends_a_transaction = [
            types::XID,
            types::QUERY,
            types::FORMAT_DESCRIPTION,
            types::MARIA_GTID_LIST,
            types::MARIA_BINLOG_CHECKPOINT,
            types::ROTATE,
            types::STOP,
        ];
        assert!(
            ends_a_transaction.contains(&ty),
            "kill {kill}: the checkpoint at {len} of {} follows an event of type {ty} (at {off}): inside a transaction",
            path.display()
        );
    }
}

/// `(file, pos)` ordering of two checkpoints of one source (file names sort by number).
fn checkpoint_key(cp: &CheckpointRow) -> (String, u64) {
    (cp.file_name.clone(), cp.pos)
}

#[test]
fn kill_9_at_random_moments_never_loses_or_duplicates_a_transaction() {
    let started = Instant::now();
    let seed = seed("kill_9_at_random_moments");
    let mut rng = StdRng::seed_from_u64(seed);
    let max_binlog_size = ["64K", "128K", "256K"][rng.random_range(0..3)];
    eprintln!("max_binlog_size {max_binlog_size}");
    let db = MariaDb::start(MariaDbOpts::default().max_binlog_size(max_binlog_size));
    let mut srv = Server::start(fast_server_opts());
    let id = start_copy_task(&srv, &db, "crash");
    wait_running(&srv, id);
    let load = LoadGenerator::start(&db, "crash_load", seed);

    let mut previous: Option<CheckpointRow> = None;
    let mut tails = 0;
    for kill in 1..=KILLS {
        // One kill in four lands during start-up (reconciliation, connecting); the others while
        // streaming, 0-1.5 s after the task is RUNNING again.
        let during_startup = kill > 1 && rng.random_range(0..4) == 0;
        let delay = Duration::from_millis(rng.random_range(0..1500));
        if !during_startup {
            wait_running(&srv, id);
            std::thread::sleep(delay);
        }
        srv.kill9();
        let after = assert_durable_after_kill(&srv, &db, id, kill);
        eprintln!(
            "kill {kill}: {}; checkpoint {:?}; {} bytes and {} files beyond it",
            if during_startup { "during start-up".to_string() } else { format!("streaming, {delay:?} after RUNNING") },
            after.checkpoint.as_ref().map(checkpoint_key),
            after.tail,
            after.files_beyond
        );
        if after.tail > 0 || after.files_beyond > 0 {
            tails += 1;
        }
        if let (Some(prev), Some(now)) = (&previous, &after.checkpoint) {
            assert!(
                checkpoint_key(now) >= checkpoint_key(prev),
                "kill {kill}: the persisted checkpoint went back from {prev:?} to {now:?}"
            );
        }
        previous = after.checkpoint.or(previous);
        srv.restart();
    }
    wait_running(&srv, id);
    let transactions = load.stop();
    wait_caught_up(&srv, &db, id);
    // Close the source's file too, so every file but a new empty one is complete on both sides.
    flush_and_catch_up(&srv, &db, id);
    let copy = assert_copy_matches_source(&srv, &db, id);
    let gtids = assert_each_gtid_once(&srv, &db, id);
    eprintln!(
        "{KILLS} kills ({tails} left bytes or files beyond the checkpoint), {transactions} transactions sent, \
         {gtids} GTIDs, {} sealed files identical, in {:.1?}",
        copy.sealed.len(),
        started.elapsed()
    );
    assert!(copy.sealed.len() >= 3, "the load must rotate the binlog several times: {copy:?}");
}

#[test]
fn a_torn_tail_left_by_a_crash_is_cut_back_to_the_checkpoint() {
    let db = MariaDb::start(MariaDbOpts::default().max_binlog_size("256K"));
    let mut srv = Server::start(fast_server_opts());
    let id = start_copy_task(&srv, &db, "torn");
    wait_running(&srv, id);
    let load = LoadGenerator::start(&db, "torn_load", 7);
    wait_checkpoint_advances(&srv, id);
    load.stop();
    let end = wait_caught_up(&srv, &db, id);
    srv.kill9();

    // While the server is down the source logs one more transaction; our file gets its first
    // half, as if the crash had interrupted the write of it, plus a few garbage bytes.
    let cp = meta_checkpoint(&srv.data_dir(), id).expect("a persisted checkpoint");
    assert_eq!((cp.file_name.as_str(), cp.pos), (end.file.as_str(), end.position), "caught up before the kill");
    let path = local_dir(&srv, id, &db).join(&cp.file_name);
    assert_eq!(file_len(&path), cp.pos, "the open file ends at the checkpoint");
    db.sql("BEGIN; INSERT INTO torn_load (k, v) SELECT seq, REPEAT('t', 300) FROM seq_1_to_20; COMMIT;");
    let source = std::fs::read(db.binlog_dir().join(&cp.file_name)).expect("the source's file");
    // The transaction ends where the source's end is, unless it filled the file and the source
    // rotated after it (then the file's end; half of it is still inside the transaction).
    let status = db.master_status().expect("binlog on");
    let end_of_txn = if status.file == cp.file_name { status.position as usize } else { source.len() };
    let transaction = &source[cp.pos as usize..end_of_txn];
    let mut tail = transaction[..transaction.len() / 2].to_vec();
    tail.extend_from_slice(&[0xA5; 37]);
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).expect("open the local file");
        f.write_all(&tail).expect("append the torn tail");
    }
    let log_before = file_len(&srv.log_path());

    srv.restart();
    wait_running(&srv, id);
    let log = read_from(&srv.log_path(), log_before).unwrap_or_default();
    let torn_len = cp.pos + tail.len() as u64;
    let (from, to) = (format!("from: {torn_len}"), format!("to: {}", cp.pos));
    assert!(
        log.lines().any(|l| l.contains("truncating to the checkpoint")
            && l.split(", ").any(|kv| kv.trim() == from)
            && l.split(", ").any(|kv| kv.trim() == to)),
        "the restart must log cutting {} from {torn_len} to {} bytes:\n{log}",
        cp.file_name,
        cp.pos
    );
    let load = LoadGenerator::start(&db, "torn_load", 8);
    wait_checkpoint_moves(&srv, id, Some(&(cp.file_name.clone(), cp.pos)));
    load.stop();
    flush_and_catch_up(&srv, &db, id);
    let copy = assert_copy_matches_source(&srv, &db, id);
    assert!(copy.sealed.contains(&cp.file_name), "{} must be sealed and identical: {copy:?}", cp.file_name);
    assert_each_gtid_once(&srv, &db, id);
}

/// A crash between a file's seal (its last fsync) and the catalog transaction that marks it
/// SEALED and moves the checkpoint past it (debug-build hook: the process aborts right there,
/// once). The catalog still has the file OPEN with the checkpoint inside it, the durability
/// invariants hold, and after the restart the file is sealed once, byte-identical to the
/// source's, and the copy goes on without a gap or a duplicate.
#[test]
fn a_crash_between_a_seal_and_its_catalog_record_loses_nothing() {
    let db = MariaDb::start(MariaDbOpts::default());
    let scratch = crate::common::temp_dir("binlog-it-seal-crash-");
    let armed = scratch.path().join("armed");
    let mut srv =
        Server::start(fast_server_opts().env("BINLOG_TEST_ABORT_BEFORE_SEAL_RECORD", armed.display().to_string()));
    let id = start_copy_task(&srv, &db, "seal-crash");
    wait_running(&srv, id);
    let load = LoadGenerator::start(&db, "seal_load", 3);
    wait_checkpoint_advances(&srv, id);
    load.stop();
    let end = wait_caught_up(&srv, &db, id);
    // The source rotates: our writer seals its file and dies before recording it.
    std::fs::write(&armed, b"").expect("arm the hook");
    db.sql("FLUSH BINARY LOGS");
    crate::common::poll_until(Duration::from_secs(60), "the server to abort before recording the seal", || {
        (!srv.is_running()).then_some(())
    });
    assert!(!armed.exists(), "it aborted at the hook, not elsewhere");
    srv.kill9();
    assert_durable_after_kill(&srv, &db, id, 1);
    let row = meta_files(&srv.data_dir(), id).into_iter().find(|r| r.file_name == end.file).expect("the file's row");
    assert_eq!(row.state, "OPEN", "the seal was not recorded: {row:?}");
    let cp = meta_checkpoint(&srv.data_dir(), id).expect("a persisted checkpoint");
    assert_eq!(cp.file_name, end.file, "the checkpoint has not left the file: {cp:?}");

    srv.restart();
    wait_running(&srv, id);
    let load = LoadGenerator::start(&db, "seal_load", 4);
    wait_checkpoint_moves(&srv, id, Some(&(end.file.clone(), end.position)));
    load.stop();
    flush_and_catch_up(&srv, &db, id);
    let copy = assert_copy_matches_source(&srv, &db, id);
    assert!(copy.sealed.contains(&end.file), "{} must be sealed and identical: {copy:?}", end.file);
    assert_each_gtid_once(&srv, &db, id);
}

/// `writer.direct_io: on` (O_DIRECT, off by default): a copy under a rotating load, the server
/// killed with SIGKILL in the middle, restarted, then caught up: every sealed file is the
/// source's, with the sha256 the writer recorded as it wrote (or read back, for the file it
/// resumed), and the open file a prefix of the source's.
#[test]
fn with_direct_io_a_killed_copy_resumes_byte_identical() {
    use sha2::{Digest, Sha256};
    let db = MariaDb::start(MariaDbOpts::default().max_binlog_size("64K"));
    let mut srv = Server::start(fast_server_opts().env("BINLOG_SERVER_WRITER_DIRECT_IO", "on"));
    let id = start_copy_task(&srv, &db, "direct-io");
    let load = LoadGenerator::start(&db, "direct_io", 11);
    crate::common::poll_until(Duration::from_secs(60), "three sealed files written with O_DIRECT", || {
        (srv.files(id).iter().filter(|f| f.state == binlog_server::meta::FileState::Sealed).count() >= 3).then_some(())
    });
    srv.kill9();
    srv.restart();
    load.stop();
    flush_and_catch_up(&srv, &db, id);
    let summary = assert_copy_matches_source(&srv, &db, id);
    assert!(summary.sealed.len() >= 4, "{summary:?}");
    let dir = local_dir(&srv, id, &db);
    for name in &summary.sealed {
        let digest = crate::common::poll_until(Duration::from_secs(60), &format!("{name}'s sha256"), || {
            srv.files(id).into_iter().find(|f| &f.name == name)?.sha256
        });
        let bytes = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(digest, hex::encode(Sha256::digest(&bytes)), "{name}: the recorded sha256");
    }
    assert!(!srv.log_text().contains("writing through the page cache"), "direct_io on never falls back");
}
