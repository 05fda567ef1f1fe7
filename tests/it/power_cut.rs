//! Power cuts: the data dir on a disk that drops, at the cut, everything not made durable by an
//! fsync (file bytes) or a directory fsync (names): `common::power_cut`. A `kill -9` alone cannot
//! show this, the kernel keeps a killed process's unsynced writes. In most tests the metadata
//! database is kept off that disk, on the machine's own (`server_on`): it survives the cut whole,
//! so every checkpoint it holds is one the data must still back (the hardest case for the data:
//! the store written after the fsync, never before). The tests that say so put it where the
//! default set-up does, `meta.db` in the data dir (`server_with_its_metadata_on`): the cut then
//! takes what SQLite had not synced as well.
//!
//! The cut happens the instant the server is killed: the disk serves every write straight to
//! its model (no page cache between them; SQLite's shared-memory index, which it maps and never
//! syncs, is the one exception, and no cut keeps it), so a process that is dead can add
//! nothing, and what it had synced is all that stays.

use std::path::Path;
use std::time::{Duration, Instant};

use binlog_server::domain::{DesiredState, TaskState};
use serde_json::json;

use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::power_cut::PowerCutDisk;
use crate::common::replication::{
    LoadGenerator, WAIT, api_checkpoint, assert_copy_matches_source, create_task, fast_server_opts, first_difference,
    flush_and_catch_up, from_first_file, local_dir, meta_files, meta_query, slow_disk_server_opts, source_identity,
    source_json, start_task, task_events, wait_running,
};
use crate::common::server::{Server, ServerOpts, run_cli};
use crate::common::{free_port, poll_until, temp_dir};
use crate::import::{busy_source, raw_archive};
use crate::relay::{RELAY_USER, grant, remote_raw_with};
use crate::semi_sync::{
    assert_sealed_copies_match, bytes_below_checkpoint, commit_a_marker_under_load, contains, semi_sync_source,
    start_semi_sync_task, wait_semi_sync_client,
};

/// The server on `disk`, its metadata database in `meta` (off the disk).
fn server_on(disk: &PowerCutDisk, meta: &Path, opts: ServerOpts) -> Server {
    Server::start(
        opts.env("BINLOG_SERVER_DATA_DIR", disk.path().display().to_string())
            .env("BINLOG_SERVER_META_DSN", format!("sqlite://{}", meta.join("meta.db").display())),
    )
}

/// The server on `disk` as the default set-up has it: its metadata database (`meta.db`) in the
/// data dir, on the same disk, so that a cut also takes what SQLite had not synced.
fn server_with_its_metadata_on(disk: &PowerCutDisk, opts: ServerOpts) -> Server {
    Server::start(opts.env("BINLOG_SERVER_DATA_DIR", disk.path().display().to_string()))
}

/// The crash and the reboot: the server dies (SIGKILL, reaped), the power goes at that instant,
/// comes back, and the server starts again on what the disk kept: what was durable, and with
/// `keep_seed` a random part of what was appended since (`PowerCutDisk::power_on_keeping_some`).
fn cut_and_restart(srv: &mut Server, disk: &mut PowerCutDisk, keep_seed: Option<u64>) {
    srv.kill9();
    disk.cut();
    match keep_seed {
        Some(seed) => disk.power_on_keeping_some(seed),
        None => disk.power_on(),
    }
    srv.restart();
}

/// Starts a load on `table` and waits until it committed more than `commits` and the task's
/// checkpoint moved: a cut then lands in a stream in progress. Returns the load, still running.
fn load_until_the_task_follows(
    srv: &Server,
    db: &MariaDb,
    id: i64,
    table: &str,
    round: u64,
    commits: u64,
) -> LoadGenerator {
    let load = LoadGenerator::start(db, table, round);
    let before = api_checkpoint(srv, id);
    poll_until(WAIT, "the load to commit and the task to follow", || {
        (load.sent() > commits && api_checkpoint(srv, id) != before).then_some(())
    });
    load
}

/// After the cuts: the task never said it lost data, and once caught up its copy is the
/// source's, byte for byte, with at least one file sealed.
fn assert_whole_after_the_cuts(srv: &Server, db: &MariaDb, id: i64) {
    let lost: Vec<String> = task_events(srv, id)
        .into_iter()
        .filter(|(_, _, m)| m.contains("lost data"))
        .map(|(_, t, m)| format!("{t}: {m}"))
        .collect();
    assert!(lost.is_empty(), "the task says it lost data: {lost:?}");
    flush_and_catch_up(srv, db, id);
    let copy = assert_copy_matches_source(srv, db, id);
    assert!(!copy.sealed.is_empty(), "no file was sealed: {copy:?}");
}

/// RPO 0 through a power cut (issue 17's promise: an ack is sent only after the fsync that
/// covers it): the moment a commit returns on the semi-sync source, the power of binlog-server's
/// disk goes and the source dies too; binlog-server restarts on what its disk kept, the source
/// still down, and the transaction is in its files below the checkpoint it reports. The stored
/// checkpoint lags the fsync by up to a minute, so what was acknowledged past it is recovered
/// from the files' durable tails.
#[test]
fn an_acknowledged_commit_survives_a_power_cut() {
    let meta = temp_dir("binlog-it-power-cut-meta-");
    acknowledged_commits_survive_power_cuts("power-cut-rpo", Some(meta.path()));
}

/// The same in the default set-up, the metadata database on the same disk: the cut also takes
/// the catalog rows SQLite had not synced (a file's row, its seal, the checkpoint). Recovery must
/// still find every acknowledged transaction: a file the catalog lost is a file it removes.
#[test]
fn an_acknowledged_commit_survives_a_power_cut_that_takes_the_metadata_too() {
    acknowledged_commits_survive_power_cuts("power-cut-rpo-meta", None);
}

/// [`an_acknowledged_commit_survives_a_power_cut`] with the metadata database in `meta` (off the
/// disk), or on the disk with `None`.
fn acknowledged_commits_survive_power_cuts(key: &str, meta: Option<&Path>) {
    const ROUNDS: usize = 10;
    let mut disk = PowerCutDisk::mount();
    let mut db = semi_sync_source(MariaDbOpts::default().max_binlog_size("256K"));
    let opts = fast_server_opts().env("BINLOG_SERVER_WRITER_CHECKPOINT_INTERVAL_MS", "60000");
    let mut srv = match meta {
        Some(meta) => server_on(&disk, meta, opts),
        None => server_with_its_metadata_on(&disk, opts),
    };
    let meta = meta.unwrap_or(disk.path()).to_path_buf();
    let id = start_semi_sync_task(&srv, &db, key);
    let dir = local_dir(&srv, id, &db);
    assert!(dir.starts_with(disk.path()), "{}", dir.display());
    db.sql("CREATE TABLE rpo (id INT PRIMARY KEY, marker VARCHAR(64)) ENGINE=InnoDB");
    let mut missing = Vec::new();
    for round in 0..ROUNDS {
        wait_semi_sync_client(&srv, &db, id);
        let (load, marker) = commit_a_marker_under_load(&db, "rpo", round);
        // The commit returned: the source had our ack. Our power goes, the source dies.
        srv.kill9();
        disk.cut();
        db.kill();
        let _ = load.stop_lenient();
        disk.power_on();
        srv.restart();
        // The source is down: what the server reports comes from what its disk kept.
        let deadline = Instant::now() + Duration::from_secs(20);
        let (covered, cp, why) = poll_until(WAIT, "the restarted server to report a checkpoint", || {
            let cp = api_checkpoint(&srv, id);
            let below = cp.as_ref().map(|cp| bytes_below_checkpoint(&meta, id, &dir, cp));
            let covered = matches!(&below, Some(Ok(bytes)) if contains(bytes, marker.as_bytes()));
            let why = match below {
                Some(Err(e)) => e,
                _ => format!("task state {:?}", srv.task(id).state),
            };
            (covered || Instant::now() >= deadline).then_some((covered, cp, why))
        });
        if !covered {
            missing.push((round, marker, cp, why));
        }
        db.restart();
    }
    let stats = disk.stats();
    assert!(
        missing.is_empty(),
        "{} of {ROUNDS} acknowledged transactions are not in the files below the reported checkpoint after a \
         power cut (round, marker, checkpoint after the restart, what was found): {missing:?}\ndisk: {stats:?}\n{}",
        missing.len(),
        srv.diagnostics()
    );
    assert!(stats.file_syncs > 0 && stats.dir_syncs > 0, "the disk saw no fsync: {stats:?}");
    eprintln!("{ROUNDS} power cuts: {stats:?}");
    // And the copy goes on, byte for byte, from what each cut left.
    wait_semi_sync_client(&srv, &db, id);
    flush_and_catch_up(&srv, &db, id);
    assert_sealed_copies_match(&srv, &db, id, &dir);
}

/// Without semi-sync, under a load that keeps the writer busy: the power goes at random moments
/// of the stream, and after each reboot the task comes back RUNNING by itself (its checkpoint
/// never named a byte the cut took: that would be refused as lost data and fail the task), and
/// the copy ends byte-identical to the source's files. Every other cut keeps a random part of
/// what was appended and not synced, as a disk that wrote some of it back by itself: a torn
/// tail for recovery. The cuts must have taken something back, or the test showed nothing.
#[test]
fn a_power_cut_mid_stream_loses_nothing_the_checkpoint_claimed() {
    cut_mid_stream(slow_disk_server_opts(SLOW_FSYNC), None, false);
}

/// The same in the default set-up, the metadata database on the same disk: each cut also takes
/// what SQLite had not synced: the stored checkpoint (written unsynced) falls back to where the
/// last synced commit left it, while the files' rows and seals (synced) stay.
#[test]
fn with_the_metadata_on_the_disk_a_power_cut_mid_stream_loses_nothing() {
    cut_mid_stream(slow_disk_server_opts(SLOW_FSYNC), None, true);
}

/// The same with `writer.direct_io: on`: the open file is written in zero-padded 4 KiB blocks
/// with O_DIRECT, the padding cut before each fsync; a cut that keeps part of what was written
/// may leave a padded block behind.
#[test]
fn with_direct_io_a_power_cut_mid_stream_loses_nothing_the_checkpoint_claimed() {
    let opts = slow_disk_server_opts(SLOW_FSYNC).env("BINLOG_SERVER_WRITER_DIRECT_IO", "on");
    cut_mid_stream(opts, Some("writing binlog files with O_DIRECT"), false);
}

/// Every data fsync of the writer waits this long first (a debug-build hook): written bytes then
/// wait for their fsync long enough that cuts land between the two, and must take them back.
const SLOW_FSYNC: Duration = Duration::from_millis(20);

/// [`a_power_cut_mid_stream_loses_nothing_the_checkpoint_claimed`] with the server run as `opts`
/// say, its metadata database on the cut disk with `meta_on_the_disk`; `log` is a line its log
/// must have (what the set-up is meant to show).
fn cut_mid_stream(opts: ServerOpts, log: Option<&str>, meta_on_the_disk: bool) {
    const ROUNDS: u64 = 8;
    let mut disk = PowerCutDisk::mount();
    let meta = temp_dir("binlog-it-power-cut-meta-");
    let db = MariaDb::start(MariaDbOpts::default().max_binlog_size("256K"));
    let mut srv = match meta_on_the_disk {
        true => server_with_its_metadata_on(&disk, opts),
        false => server_on(&disk, meta.path(), opts),
    };
    let id = create_task(&srv, "power-cut-stream", source_json(&db), from_first_file(&db));
    start_task(&srv, id);
    wait_running(&srv, id);
    for round in 0..ROUNDS {
        // Somewhere in the stream: after 30 to 170 commits of this round.
        let after = 30 + (round * 37 + u64::from(std::process::id())) % 140;
        let load = load_until_the_task_follows(&srv, &db, id, "cut_stream", round, after);
        // Every other cut, the disk also keeps a random part of what was appended and not yet
        // synced (recovery then finds a torn tail, or an O_DIRECT block's padding).
        let keep = (round % 2 == 1).then(|| u64::from(std::process::id()) << 8 | round);
        cut_and_restart(&mut srv, &mut disk, keep);
        wait_running(&srv, id);
        load.stop(); // the source stays up: a failed load panics here
    }
    let stats = disk.stats();
    eprintln!("{ROUNDS} power cuts mid-stream (seeds: process id << 8 | round): {stats:?}");
    assert!(stats.bytes_lost + stats.names_lost > 0, "no cut took anything back: the test showed nothing: {stats:?}");
    assert!(stats.bytes_kept_unsynced > 0, "no cut kept part of an unsynced append: no torn tail was shown: {stats:?}");
    assert_whole_after_the_cuts(&srv, &db, id);
    if let Some(line) = log {
        assert!(srv.log_text().contains(line), "the log never says {line:?}");
    }
}

/// A power cut in the middle of crash recovery itself: after a cut that kept part of an unsynced
/// append (a torn tail), the restarted task's start cuts the tail back, and the power goes again
/// at that very truncation (the disk kills the server in the call). The next start must recover
/// from what that left, and in the end the copy is whole. Rounds whose start had nothing to cut
/// just go on; at least one must have been cut mid-recovery.
#[test]
fn a_power_cut_while_recovery_cuts_a_torn_tail_loses_nothing() {
    const ROUNDS: u64 = 6;
    let mut disk = PowerCutDisk::mount();
    let meta = temp_dir("binlog-it-power-cut-meta-");
    let db = MariaDb::start(MariaDbOpts::default().max_binlog_size("256K"));
    // Crash recovery waits 1 s (debug-build hook) so that the server answers /healthz before
    // recovery can be cut: the harness's restart would otherwise see it die in start-up. (The
    // cut is armed before the restart; nothing before recovery shortens a file.)
    let opts = slow_disk_server_opts(SLOW_FSYNC).env("BINLOG_TEST_RECOVER_DELAY_MS", "1000");
    let mut srv = server_on(&disk, meta.path(), opts);
    let id = create_task(&srv, "power-cut-recovery", source_json(&db), from_first_file(&db));
    start_task(&srv, id);
    wait_running(&srv, id);
    let state = |id: i64| meta_query(meta.path(), &format!("SELECT state FROM tasks WHERE id = {id}"));
    let mut interrupted = 0;
    for round in 0..ROUNDS {
        let load = load_until_the_task_follows(&srv, &db, id, "cut_recovery", round, 50);
        srv.kill9();
        disk.cut();
        disk.power_on_keeping_some(u64::from(std::process::id()) << 8 | round);
        disk.cut_at_next_shrink();
        srv.restart();
        // Read from the catalog, not the API: the server may die under the request.
        let cut = poll_until(WAIT, "the start to cut a tail (and the power with it) or to run", || {
            if disk.was_cut() { Some(true) } else { (state(id) == vec![vec!["RUNNING".to_string()]]).then_some(false) }
        });
        disk.disarm();
        if cut {
            interrupted += 1;
            srv.kill9(); // reaps it
            disk.power_on();
            srv.restart();
        }
        wait_running(&srv, id);
        load.stop(); // the source stays up: a failed load panics here
    }
    let stats = disk.stats();
    eprintln!("{ROUNDS} power cuts, {interrupted} of them cut again during recovery: {stats:?}");
    assert!(interrupted > 0, "no start had a tail to cut: the test showed nothing: {stats:?}");
    assert_whole_after_the_cuts(&srv, &db, id);
}

/// The key that encrypts stored source passwords is made on the first start, in the data dir: a
/// power cut right after it (no task started yet, so nothing else synced the data dir) must not
/// take it back, or the next start makes another key and the stored password is undecryptable.
#[test]
fn the_secrets_key_survives_a_power_cut_before_any_task_starts() {
    let mut disk = PowerCutDisk::mount();
    let meta = temp_dir("binlog-it-power-cut-meta-");
    let db = MariaDb::start(MariaDbOpts::default());
    // A configured node id: no `node_id` file is written (whose own directory fsync would
    // otherwise sync the key's name by the way).
    let mut srv =
        server_on(&disk, meta.path(), fast_server_opts().env("BINLOG_SERVER_CLUSTER_NODE_ID", "power-cut-node"));
    let key = disk.path().join("secrets.key");
    let made = std::fs::read(&key).expect("the first start makes the key in the data dir");
    let id = create_task(&srv, "power-cut-key", source_json(&db), from_first_file(&db));
    cut_and_restart(&mut srv, &mut disk, None);
    assert_eq!(std::fs::read(&key).ok(), Some(made), "the key is not the one the first start made");
    start_task(&srv, id);
    wait_running(&srv, id);
    flush_and_catch_up(&srv, &db, id);
}

/// A deleted task's folder is moved to `.deleted` (or purged with `?purge_files=true`); after a
/// power cut it must not come back where a task of that id keeps its files.
#[test]
fn a_deleted_tasks_folder_does_not_come_back_after_a_power_cut() {
    let mut disk = PowerCutDisk::mount();
    let meta = temp_dir("binlog-it-power-cut-meta-");
    let db = MariaDb::start(MariaDbOpts::default());
    let mut srv = server_on(&disk, meta.path(), fast_server_opts());
    let kept = create_task(&srv, "power-cut-deleted", source_json(&db), from_first_file(&db));
    let purged = create_task(&srv, "power-cut-purged", source_json(&db), from_first_file(&db));
    for id in [kept, purged] {
        start_task(&srv, id);
        flush_and_catch_up(&srv, &db, id);
        srv.stop_task(id);
    }
    let kept_files = std::fs::read_dir(local_dir(&srv, kept, &db)).expect("the task's files").count();
    assert!(kept_files > 0);
    assert_eq!(srv.delete(&format!("/api/tasks/{kept}")).0, 204);
    assert_eq!(srv.delete(&format!("/api/tasks/{purged}?purge_files=true")).0, 204);
    cut_and_restart(&mut srv, &mut disk, None);
    for id in [kept, purged] {
        let dir = disk.path().join(id.to_string());
        assert!(!dir.exists(), "task {id}'s deleted folder came back after the cut: {}", dir.display());
    }
    let aside: Vec<_> = std::fs::read_dir(disk.path().join(".deleted"))
        .expect("the .deleted folder survives")
        .map(|e| e.expect("a readable entry").path())
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(aside[0].file_name().unwrap().to_string_lossy().starts_with(&format!("{kept}-")), "{aside:?}");
    let moved = std::fs::read_dir(aside[0].join(source_identity(&db))).expect("the moved files").count();
    assert_eq!(moved, kept_files, "every file of the deleted task is in {}", aside[0].display());
}

/// What the API answered as done is done after a power cut, in the default set-up (the metadata
/// database in the data dir, on the same disk): a task created, a task stopped, a task deleted,
/// relay users granted and a grant revoked (a revoked user must not come back: the relay logs
/// users in by these rows).
/// SQLite commits each of them in its write-ahead log; the cut takes whatever it had not synced.
#[test]
fn what_the_api_answered_survives_a_power_cut() {
    let mut disk = PowerCutDisk::mount();
    let db = MariaDb::start(MariaDbOpts::default());
    let mut srv = server_with_its_metadata_on(&disk, fast_server_opts());
    let stopped = create_task(&srv, "power-cut-api-stopped", source_json(&db), from_first_file(&db));
    let deleted = create_task(&srv, "power-cut-api-deleted", source_json(&db), from_first_file(&db));
    let revoked = create_task(&srv, "power-cut-api-revoked", source_json(&db), from_first_file(&db));
    start_task(&srv, stopped);
    flush_and_catch_up(&srv, &db, stopped);
    grant(&srv, stopped);
    let relay_users = |id: i64, users: serde_json::Value| {
        let (status, body) = srv.put(&format!("/api/tasks/{id}/relay"), &json!({ "users": users }));
        assert_eq!(status, 200, "PUT relay users of task {id}: {body}");
    };
    relay_users(revoked, json!([{"name": "revoked1", "password": "revoked-password"}]));
    relay_users(revoked, json!([]));
    assert_eq!(srv.stop_task(stopped).state, TaskState::Stopped);
    assert_eq!(srv.delete(&format!("/api/tasks/{deleted}")).0, 204);
    let created = create_task(&srv, "power-cut-api-created", source_json(&db), from_first_file(&db));
    cut_and_restart(&mut srv, &mut disk, None);
    let (status, body) = srv.get(&format!("/api/tasks/{created}"));
    assert_eq!(status, 200, "the task created before the cut is gone: {body}");
    let (status, body) = srv.get(&format!("/api/tasks/{deleted}"));
    assert_eq!(status, 404, "the task deleted before the cut is back: {body}");
    let task = srv.task(stopped);
    assert_eq!(
        (task.state, task.desired_state),
        (TaskState::Stopped, DesiredState::Stopped),
        "the task stopped before the cut is not stopped"
    );
    let users = |id: i64| {
        let (status, body) = srv.get(&format!("/api/tasks/{id}/relay"));
        assert_eq!(status, 200, "GET relay users of task {id}: {body}");
        body["users"].clone()
    };
    assert_eq!(users(stopped), json!([RELAY_USER]), "the relay grant made before the cut is gone");
    assert_eq!(users(revoked), json!([]), "the relay user revoked before the cut is back");
    // And the stopped task goes on from where the cut left it.
    start_task(&srv, stopped);
    flush_and_catch_up(&srv, &db, stopped);
    assert_copy_matches_source(&srv, &db, stopped);
}

/// The relay serves a task's files to replicas and `mariadb-binlog`, never past the durable
/// checkpoint (issue 18): bytes past it may be taken back by a crash, and a client that had them
/// would hold transactions the archive no longer has. Under load, with fsyncs slowed 20 ms (the
/// open file holds written, unsynced bytes most of the time), a non-blocking dump
/// (`mariadb-binlog --raw --to-last-log`) reads to the end of what the relay serves; the power
/// goes right after it, and everything it received must be in what the disk kept, byte for byte.
#[test]
fn a_relay_client_never_holds_a_byte_a_power_cut_took_back() {
    const ROUNDS: u64 = 5;
    let mut disk = PowerCutDisk::mount();
    let meta = temp_dir("binlog-it-power-cut-meta-");
    let db = MariaDb::start(MariaDbOpts::default().max_binlog_size("256K"));
    let first = db.binlog_files()[0].0.clone();
    let relay_port = free_port();
    let opts =
        slow_disk_server_opts(SLOW_FSYNC).env("BINLOG_SERVER_RELAY_LISTEN_ADDR", format!("127.0.0.1:{relay_port}"));
    let mut srv = server_on(&disk, meta.path(), opts);
    let id = create_task(&srv, "power-cut-relay", source_json(&db), from_first_file(&db));
    grant(&srv, id);
    start_task(&srv, id);
    wait_running(&srv, id);
    let dir = local_dir(&srv, id, &db);
    let mut compared = 0;
    for round in 0..ROUNDS {
        let load = load_until_the_task_follows(&srv, &db, id, "cut_relay", round, 50);
        let out = temp_dir("binlog-it-power-cut-relay-");
        let (ok, stderr) = remote_raw_with(relay_port, &first, out.path(), &[]);
        assert!(ok, "round {round}: mariadb-binlog from the relay: {stderr}");
        // The power goes the moment the client has what it was sent.
        srv.kill9();
        disk.cut();
        let _ = load.stop_lenient();
        disk.power_on();
        for entry in std::fs::read_dir(out.path()).expect("the client's files") {
            let entry = entry.expect("a readable entry");
            let got = std::fs::read(entry.path()).expect("a file the client wrote");
            let name = entry.file_name();
            let kept = std::fs::read(dir.join(&name)).unwrap_or_default();
            assert!(
                got.len() <= kept.len() && kept[..got.len()] == got[..],
                "round {round}: the relay client holds {} bytes of {name:?}, the disk kept {} after the power cut \
                 (first difference at {:?}): bytes were served past the durable checkpoint",
                got.len(),
                kept.len(),
                first_difference(&got, &kept)
            );
            compared += 1;
        }
        srv.restart();
        wait_running(&srv, id);
    }
    assert!(compared > ROUNDS as usize, "the client received too few files to show anything: {compared}");
    let stats = disk.stats();
    eprintln!("{ROUNDS} power cuts after a relay dump: {stats:?}, {compared} files compared");
    assert!(stats.bytes_lost > 0, "no cut took back anything: the test showed nothing: {stats:?}");
}

/// `binlog-server import` reports an archive imported only once every file is fsynced, renamed
/// into the task's folder, the folder fsynced, and its catalogue row durably written: a power cut
/// the moment it returns keeps every file, whole, where the catalogue says. The metadata database
/// is on the same disk (the default set-up): a catalogue row the cut took back would leave the
/// files unknown, and the next start removes unknown files.
#[test]
fn an_import_that_returned_survives_a_power_cut() {
    let mut disk = PowerCutDisk::mount();
    let db = busy_source(MariaDbOpts::default(), "imported");
    let archive = temp_dir("binlog-it-power-cut-archive-");
    let raw = raw_archive(&db, archive.path());
    let mut srv = server_with_its_metadata_on(&disk, fast_server_opts());
    let id = create_task(&srv, "power-cut-import", source_json(&db), json!({"mode": "ARCHIVE_ONLY"}));
    let data = disk.path().display().to_string();
    let (code, out, err) = run_cli(
        &["import", "--task", &id.to_string(), &archive.path().display().to_string()],
        &[("BINLOG_SERVER_DATA_DIR", &data)],
    );
    assert_eq!(code, 0, "the import: {out}{err}");
    cut_and_restart(&mut srv, &mut disk, None);
    let folder = local_dir(&srv, id, &db);
    let rows = meta_files(disk.path(), id);
    assert_eq!(rows.len(), raw.len(), "every archive file is catalogued: {rows:?}");
    for r in &rows {
        let ours = std::fs::read(folder.join(&r.file_name))
            .unwrap_or_else(|e| panic!("{} is catalogued but the power cut took it: {e}", r.file_name));
        let theirs = std::fs::read(archive.path().join(&r.file_name)).expect("the archive's file");
        assert!(
            ours == theirs,
            "{} differs after the power cut at {:?}",
            r.file_name,
            first_difference(&ours, &theirs)
        );
    }
    assert!(disk.stats().file_syncs >= raw.len() as u64, "{:?}", disk.stats());
}
