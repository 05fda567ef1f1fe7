//! Storage that fails or changes behind the server's back (issue 22, item 3), each against a real
//! `mariadbd`: a task's open file made unwritable mid-stream (FAILED with LOCAL_STORAGE_ERROR,
//! nothing checkpointed past the disk, the other task unaffected); the SQLite metadata database
//! deleted or corrupted while running and at start (a message naming the file and the way back,
//! binlog files untouched); a sealed file changed on disk (neither downloaded nor relayed).
//!
//! The tests run as root, which ignores file modes: "unwritable" is `chattr +i` (immutable),
//! which binds root too. Where the filesystem has no such attribute the test says so and returns.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use binlog_server::actors::file_writer::Work;
use binlog_server::api::dto::FileDto;
use binlog_server::api::error::ErrorCode;
use binlog_server::domain::{TaskError, TaskErrorCode, TaskState};
use binlog_server::meta::FileState;
use serde_json::json;

use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::pitr::get_bytes;
use crate::common::replication::{
    IN_USE_FLAG_OFFSET, api_checkpoint, assert_copy_matches_source, create_task, fast_server_opts, flush_and_catch_up,
    from_first_file, local_dir, slow_disk_server_opts, source_json, start_copy_task, start_task, task_events,
    wait_caught_up, wait_event_after, wait_failed, wait_running,
};
use crate::common::server::{Server, run_cli};
use crate::common::{files_named, free_port, output_with_deadline, poll_until, require_binary, temp_dir};

const WAIT: Duration = Duration::from_secs(60);

/// Paths made immutable (`chattr +i`) for the life of the guard.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    /// `None` when the filesystem (or the lack of CAP_LINUX_IMMUTABLE) refuses the attribute.
    fn set(paths: &[&Path]) -> Option<Immutable> {
        let mut guard = Immutable(Vec::new());
        for p in paths {
            let ok = Command::new("chattr").arg("+i").arg(p).status().is_ok_and(|s| s.success());
            if !ok {
                return None;
            }
            guard.0.push(p.to_path_buf());
        }
        Some(guard)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        // Undone even when the test failed: an immutable file would outlive its temp dir.
        for p in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(p).status();
        }
    }
}

fn insert_rows(db: &MariaDb, table: &str, rows: u32) {
    db.sql(&format!("INSERT INTO {table} (v) SELECT REPEAT('s', 200) FROM seq_1_to_{rows}"));
}

/// `bytes` with the FDE's in-use flag cleared (the source sets it in its open file, copies never
/// carry it).
fn without_in_use_flag(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() > IN_USE_FLAG_OFFSET {
        bytes[IN_USE_FLAG_OFFSET] &= !1;
    }
    bytes
}

#[test]
fn an_unwritable_open_file_fails_its_task_and_no_other() {
    let db = MariaDb::start(MariaDbOpts::default());
    db.sql("CREATE TABLE u (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)");
    let srv = Server::start(fast_server_opts());
    let victim = start_copy_task(&srv, &db, "victim");
    let bystander = start_copy_task(&srv, &db, "bystander");
    insert_rows(&db, "u", 100);
    let end = wait_caught_up(&srv, &db, victim);
    wait_caught_up(&srv, &db, bystander);

    let dir = local_dir(&srv, victim, &db);
    let open = dir.join(&end.file);
    let Some(frozen) = Immutable::set(&[&open, &dir]) else {
        eprintln!("storage_faults: chattr +i is not available on {}; skipped", dir.display());
        return;
    };
    // Every write to the open file and every new file in its directory now fails with EPERM.
    insert_rows(&db, "u", 100);
    let TaskError { code, message, .. } = wait_failed(&srv, victim);
    assert_eq!(code, TaskErrorCode::LocalStorageError, "{message}");
    assert!(message.contains("Operation not permitted"), "the message names the cause: {message}");
    assert!(message.contains(&end.file), "the message names the file: {message}");

    // Nothing checkpointed past what is on disk, and what is on disk is the source's bytes.
    let (cp_file, cp_pos) = api_checkpoint(&srv, victim).expect("a checkpoint");
    assert_eq!(cp_file, end.file, "the checkpoint stayed in the file that could not be written");
    let on_disk = std::fs::read(&open).expect("read the open file");
    assert!(cp_pos <= on_disk.len() as u64, "checkpoint {cp_pos} past the {} bytes on disk", on_disk.len());
    let source = std::fs::read(db.binlog_dir().join(&end.file)).expect("the source's file");
    let n = on_disk.len().min(source.len());
    assert!(
        without_in_use_flag(on_disk[..n].to_vec()) == without_in_use_flag(source[..n].to_vec()),
        "the bytes on disk are the source's"
    );

    // The other task in the same process copied everything meanwhile.
    insert_rows(&db, "u", 10);
    wait_caught_up(&srv, &db, bystander);
    assert_eq!(srv.task(bystander).state, TaskState::Running);

    // Writable again, the failed task is started by hand and loses nothing.
    drop(frozen);
    start_task(&srv, victim);
    wait_running(&srv, victim);
    flush_and_catch_up(&srv, &db, victim);
    assert_copy_matches_source(&srv, &db, victim);
}

/// The environment `binlog-server serve` needs to run over `data_dir` outside the harness.
fn serve_env(data_dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("BINLOG_SERVER_DATA_DIR", data_dir.display().to_string()),
        ("BINLOG_SERVER_LISTEN_ADDR", format!("127.0.0.1:{}", free_port())),
    ]
}

/// `binlog-server serve` over `data_dir`, expected to refuse to start: (exit code, all output).
fn serve_refused(data_dir: &Path) -> (i32, String) {
    let env = serve_env(data_dir);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (code, stdout, stderr) = run_cli(&["serve"], &env);
    (code, format!("{stdout}{stderr}"))
}

/// Waits for the server process to end by itself; returns its log. The harness then forgets
/// the (reaped) process, so a restart launches a new one without signalling the old PID.
fn wait_exit(srv: &mut Server, why: &str) -> String {
    poll_until(WAIT, why, || (!srv.is_running()).then_some(()));
    srv.kill9();
    srv.log_text()
}

/// The sealed files of `dir` as (name, bytes), and checks each equals the source's file.
fn sealed_copies(srv: &Server, id: i64, db: &MariaDb) -> Vec<(String, Vec<u8>)> {
    let dir = local_dir(srv, id, db);
    let sealed: Vec<(String, Vec<u8>)> = srv
        .files(id)
        .iter()
        .filter(|f| f.state == FileState::Sealed)
        .map(|f| {
            let name = f.name.clone();
            let bytes = std::fs::read(dir.join(&name)).expect("a sealed file");
            assert!(bytes == std::fs::read(db.binlog_dir().join(&name)).expect("source file"), "{name}");
            (name, bytes)
        })
        .collect();
    assert!(!sealed.is_empty(), "the task sealed at least one file");
    sealed
}

fn assert_untouched(dir: &Path, sealed: &[(String, Vec<u8>)]) {
    for (name, bytes) in sealed {
        let now = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name} is gone: {e}"));
        assert!(now == *bytes, "{name} changed");
    }
}

fn assert_names_way_back(text: &str, meta: &Path) {
    let meta = meta.display().to_string();
    for part in [meta.as_str(), "restore", "binlog-server doctor", "were not touched"] {
        assert!(text.contains(part), "the message must say {part:?}: {text}");
    }
}

#[test]
fn a_deleted_metadata_database_stops_the_server_and_a_restored_backup_resumes() {
    let db = MariaDb::start(MariaDbOpts::default());
    db.sql("CREATE TABLE m (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)");
    let mut srv = Server::start(fast_server_opts());
    let id = start_copy_task(&srv, &db, "meta-deleted");
    insert_rows(&db, "m", 50);
    flush_and_catch_up(&srv, &db, id);
    let data = srv.data_dir();
    let meta = data.join("meta.db");
    let (_backup, backup_file) = backup_meta(&meta);
    insert_rows(&db, "m", 50);
    flush_and_catch_up(&srv, &db, id);
    let sealed = sealed_copies(&srv, id, &db);
    let dir = local_dir(&srv, id, &db);

    std::fs::remove_file(&meta).expect("delete meta.db");
    let log = wait_exit(&mut srv, "the server to stop after its metadata database was deleted");
    assert!(log.contains("was deleted while binlog-server was running"), "{log}");
    assert_names_way_back(&log, &meta);
    assert_untouched(&dir, &sealed);

    // At start, without the file: refused, since the task directories would be forgotten.
    let (code, out) = serve_refused(&data);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("does not exist") && out.contains("refuses to start"), "{out}");
    assert_names_way_back(&out, &meta);
    assert!(!meta.exists(), "no empty catalog was created");
    assert_untouched(&dir, &sealed);

    // An empty file in its place, with no write-ahead log: a database that never had a commit
    // (as one lost to a power cut before its first commit was synced): refused alike.
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(data.join(format!("meta.db{ext}")));
    }
    std::fs::write(&meta, b"").expect("an empty meta.db");
    let (code, out) = serve_refused(&data);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("is empty") && out.contains("refuses to start"), "{out}");
    assert_names_way_back(&out, &meta);
    assert_eq!(std::fs::metadata(&meta).map(|m| m.len()).ok(), Some(0), "nothing was written into it");
    assert_untouched(&dir, &sealed);

    // A database that knows no task (one that lost its commits, as a power cut could leave it
    // before every commit was synced, or another one): refused alike, once open.
    let other = temp_dir("meta-no-task-");
    let other_db = other.path().join("meta.db");
    let (code, stdout, stderr) =
        run_cli(&["migrate", "up", "--meta-dsn", &format!("sqlite://{}", other_db.display())], &[]);
    assert_eq!(code, 0, "migrate up: {stdout}{stderr}");
    std::fs::copy(&other_db, &meta).expect("a catalog with no task in place");
    let (code, out) = serve_refused(&data);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("knows no task") && out.contains("refuses to start"), "{out}");
    assert_names_way_back(&out, &meta);
    assert_untouched(&dir, &sealed);

    // The recovery steps work: the lost database's -wal/-shm out, the backup in, start again.
    restore_meta(&backup_file, &meta);
    srv.restart();
    wait_running(&srv, id);
    insert_rows(&db, "m", 10);
    flush_and_catch_up(&srv, &db, id);
    assert_copy_matches_source(&srv, &db, id);
}

/// The operator's backup of `meta` (sqlite3's online backup, taken while the server runs):
/// the folder holding it, and the file.
fn backup_meta(meta: &Path) -> (tempfile::TempDir, PathBuf) {
    let backup = temp_dir("meta-backup-");
    let file = backup.path().join("meta.db");
    let out = output_with_deadline(
        Command::new(require_binary("sqlite3")).arg(meta).arg(format!(".backup '{}'", file.display())),
        WAIT,
        "sqlite3 .backup",
    );
    assert!(out.status.success(), "sqlite3 .backup: {}", String::from_utf8_lossy(&out.stderr));
    (backup, file)
}

/// The doctor guide's way back, with the server stopped: the lost database's `-wal` and `-shm`
/// out, the backup in.
fn restore_meta(backup: &Path, meta: &Path) {
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(meta.with_file_name(format!("meta.db{ext}")));
    }
    std::fs::copy(backup, meta).expect("restore the backup");
}

/// A restored `meta.db` backup older than what the source still keeps: the binlog files written
/// since the backup are not in its catalog, and the source has purged them, so this disk holds the
/// only copies. Starting on the backup (the doctor guide's way back) must not delete them: they
/// are set aside in `.stale/`, the task says what the source lacks, and importing the set-aside
/// copies back gives the archive every file, byte for byte.
#[test]
fn a_restored_backup_older_than_the_sources_binlogs_deletes_no_file() {
    let db = MariaDb::start(MariaDbOpts::default());
    db.sql("CREATE TABLE r (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)");
    let mut srv = Server::start(fast_server_opts());
    let id = start_copy_task(&srv, &db, "meta-old-backup");
    insert_rows(&db, "r", 50);
    flush_and_catch_up(&srv, &db, id);
    let data = srv.data_dir();
    let meta = data.join("meta.db");
    let (_backup, backup_file) = backup_meta(&meta);
    // A task created after the backup: the restored catalog will not know it, and will hand its
    // id out again.
    let later = start_copy_task(&srv, &db, "meta-after-backup");
    for _ in 0..3 {
        insert_rows(&db, "r", 50);
        flush_and_catch_up(&srv, &db, id);
    }
    wait_caught_up(&srv, &db, later);
    let sealed = sealed_copies(&srv, id, &db);
    assert!(sealed.len() >= 4, "files sealed before and after the backup: {}", sealed.len());
    let later_sealed = sealed_copies(&srv, later, &db);
    srv.stop();

    // The source lets its history go: every file but the one it writes now.
    let current = db.master_status().expect("binlog on").file;
    db.sql(&format!("PURGE BINARY LOGS TO '{current}'"));
    assert_eq!(db.binlog_files().len(), 1, "the source keeps only {current}");

    restore_meta(&backup_file, &meta);
    srv.restart();
    let err = wait_failed(&srv, id);
    let log = srv.log_text();
    assert_eq!(err.code, TaskErrorCode::SourceBinlogPurged, "{err:?}");
    let orphans = log.lines().find(|l| l.contains("task directories the catalog does not know"));
    assert!(
        orphans.is_some_and(|l| l.contains(&format!("task_dirs: {later}"))),
        "the start names task {later}'s folder: {orphans:?}"
    );
    // Nothing the disk held is gone: each sealed file is still here, in the task's folder or set
    // aside, byte for byte.
    // (Task `later`'s folder holds copies of the same source's files: not looked in.)
    for (name, bytes) in &sealed {
        let copies = [files_named(&data.join(id.to_string()), name), files_named(&data.join(".stale"), name)].concat();
        assert!(
            copies.iter().any(|p| std::fs::read(p).is_ok_and(|b| b == *bytes)),
            "{name} is gone from {} ({copies:?}); the task: {err:?}\n{log}",
            data.display()
        );
    }
    assert!(log.contains("set aside a file the catalog does not know"), "{log}");
    let said: Vec<String> =
        task_events(&srv, id).into_iter().filter(|(_, t, _)| t == "FILES_SET_ASIDE").map(|(_, _, m)| m).collect();
    assert!(
        said.len() == 1 && said[0].contains("not in the catalog") && said[0].contains("binlog-server import --task"),
        "one FILES_SET_ASIDE event saying why and the way back: {said:?}"
    );

    // The way back: import the set-aside copies into the (failed, so stopped) task, start it.
    let aside: Vec<PathBuf> = std::fs::read_dir(data.join(".stale"))
        .expect("a .stale folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{id}-"))))
        .collect();
    assert_eq!(aside.len(), 1, "one set-aside folder for the task: {aside:?}");
    let data_arg = data.display().to_string();
    let (code, stdout, stderr) = run_cli(
        &["import", "--task", &id.to_string(), &aside[0].display().to_string()],
        &[("BINLOG_SERVER_DATA_DIR", &data_arg)],
    );
    assert_eq!(code, 0, "import the set-aside copies: {stdout}{stderr}");
    let restored: Vec<&String> = sealed.iter().map(|(n, _)| n).filter(|n| aside[0].join(n).exists()).collect();
    assert!(restored.len() >= 2, "the backup knew none of the last files: {restored:?}");
    for name in restored {
        assert!(stdout.contains(&format!("imported {name} (SEALED")), "{name} imported as sealed: {stdout}");
    }
    start_task(&srv, id);
    wait_running(&srv, id);
    insert_rows(&db, "r", 10);
    flush_and_catch_up(&srv, &db, id);
    // Every file the source once had is in the archive as it was; what the source still has too.
    let dir = local_dir(&srv, id, &db);
    assert_untouched(&dir, &sealed);
    let mut compared = 0;
    for (name, _) in db.binlog_files() {
        let ours = srv.files(id).into_iter().find(|f| f.name == name);
        if ours.is_some_and(|f| f.state == FileState::Sealed) {
            let theirs = std::fs::read(db.binlog_dir().join(&name)).expect("the source's file");
            assert!(std::fs::read(dir.join(&name)).is_ok_and(|b| b == theirs), "{name} differs from the source's");
            compared += 1;
        }
    }
    assert!(compared >= 1, "the file the import ended in was completed from the source and sealed");

    // A task created now gets the id of the one created after the backup: that task's folder is
    // set aside whole, not mixed into the new task's.
    let new = create_task(&srv, "meta-new-after-restore", source_json(&db), from_first_file(&db));
    assert_eq!(new, later, "the restored catalog hands the id out again");
    let leftover: Vec<PathBuf> = std::fs::read_dir(data.join(".stale"))
        .expect("a .stale folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{later}-"))))
        .collect();
    assert_eq!(leftover.len(), 1, "the earlier task {later}'s folder set aside: {leftover:?}");
    let identity = local_dir(&srv, later, &db).file_name().expect("a source folder").to_owned();
    for (name, bytes) in &later_sealed {
        let kept = std::fs::read(leftover[0].join(&identity).join(name));
        assert!(kept.is_ok_and(|b| b == *bytes), "the earlier task's {name} kept as it was");
        assert!(!local_dir(&srv, later, &db).join(name).exists(), "{name} is not in the new task's folder");
    }
    assert!(srv.log_text().contains("a new task's folder held files of a task this catalog does not know"));
    let said: Vec<String> =
        task_events(&srv, new).into_iter().filter(|(_, t, _)| t == "FILES_SET_ASIDE").map(|(_, _, m)| m).collect();
    assert!(said.len() == 1 && said[0].contains("moved whole to"), "the new task says so: {said:?}");
    start_task(&srv, new);
    wait_caught_up(&srv, &db, new);
}

/// Overwrites the first bytes of `path` in place (same inode, same size).
fn scribble(path: &Path) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).expect("open for writing");
    f.seek(SeekFrom::Start(0)).expect("seek");
    f.write_all(b"this is no database, it is a scribble").expect("write");
    f.sync_all().expect("fsync");
}

#[test]
fn a_corrupt_metadata_database_is_named_while_running_and_at_start() {
    let db = MariaDb::start(MariaDbOpts::default());
    db.sql("CREATE TABLE c (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)");
    let mut srv = Server::start(fast_server_opts());
    let id = start_copy_task(&srv, &db, "meta-corrupt");
    insert_rows(&db, "c", 50);
    flush_and_catch_up(&srv, &db, id);
    let sealed = sealed_copies(&srv, id, &db);
    let dir = local_dir(&srv, id, &db);
    let data = srv.data_dir();
    let meta = data.join("meta.db");

    scribble(&meta);
    let log = wait_exit(&mut srv, "the server to stop after its metadata database was overwritten");
    assert!(log.contains("is corrupt"), "{log}");
    assert_names_way_back(&log, &meta);
    assert_untouched(&dir, &sealed);

    // The orderly stop checkpoints SQLite's WAL into the file, which rewrites its first page: the
    // damage at start is done while the server is down.
    scribble(&meta);
    let (code, out) = serve_refused(&data);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("is corrupt"), "{out}");
    assert_names_way_back(&out, &meta);
    assert_untouched(&dir, &sealed);
}

const RELAY_USER: &str = "relay-sf";
const RELAY_PASSWORD: &str = "relay-Sf-1";

/// Reads `first` from the relay with `mariadb-binlog`: (success, stderr, the bytes it wrote of
/// `first`, if it wrote that file at all).
fn read_from_relay(port: u16, first: &str) -> (bool, String, Option<Vec<u8>>) {
    let out_dir = temp_dir("relay-read-");
    let mut cmd = Command::new(require_binary("mariadb-binlog"));
    cmd.args(["--no-defaults", "--read-from-remote-server", "--raw", "--to-last-log", "--host=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--user={RELAY_USER}"))
        .env("MYSQL_PWD", RELAY_PASSWORD)
        .arg(format!("--result-file={}/", out_dir.path().display()))
        .arg(first);
    let out = output_with_deadline(&mut cmd, WAIT, "mariadb-binlog from the relay");
    let written = std::fs::read(out_dir.path().join(first)).ok();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned(), written)
}

/// The offset of an event about halfway through a binlog file with a body of at least 16 bytes,
/// and its size.
fn an_event_halfway(bytes: &[u8]) -> (usize, usize) {
    let mut at = 4;
    loop {
        let size = u32::from_le_bytes(bytes[at + 9..at + 13].try_into().expect("4 bytes")) as usize;
        assert!(size >= 19 && at + size <= bytes.len(), "an event at {at} of plausible size {size}");
        if at >= bytes.len() / 2 && size >= 19 + 16 + 4 {
            return (at, size);
        }
        at += size;
    }
}

#[test]
fn a_sealed_file_changed_on_disk_is_neither_downloaded_nor_relayed() {
    a_sealed_file_changed_on_disk("CRC32");
}

#[test]
fn a_sealed_file_without_event_checksums_changed_on_disk_is_neither_downloaded_nor_relayed() {
    a_sealed_file_changed_on_disk("NONE");
}

/// One byte inside an event's body flipped in a sealed file, its size unchanged. The download
/// and the archive refuse it by its sha256. The relay, on a source with event checksums, sends
/// the events before the changed one (the source's bytes) and refuses at it, naming its
/// position, before any of it goes out; without event checksums it refuses by the sha256 before
/// the file's first byte.
fn a_sealed_file_changed_on_disk(checksum: &str) {
    let db = MariaDb::start(MariaDbOpts::default().arg(format!("--binlog-checksum={checksum}")));
    assert_eq!(db.query_value("SELECT @@global.binlog_checksum"), checksum);
    db.sql("CREATE TABLE s (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)");
    let relay_port = free_port();
    let srv =
        Server::start(fast_server_opts().env("BINLOG_SERVER_RELAY_LISTEN_ADDR", format!("127.0.0.1:{relay_port}")));
    let id = start_copy_task(&srv, &db, &format!("sealed-changed-{}", checksum.to_lowercase()));
    let (status, body) = srv
        .put(&format!("/api/tasks/{id}/relay"), &json!({"users": [{"name": RELAY_USER, "password": RELAY_PASSWORD}]}));
    assert_eq!(status, 200, "{body}");
    insert_rows(&db, "s", 50);
    flush_and_catch_up(&srv, &db, id);
    // The first file, sealed and hashed.
    let first: FileDto = poll_until(WAIT, "the first file's sha256 to be recorded", || {
        srv.files(id).into_iter().find(|f| f.state == FileState::Sealed && f.sha256.is_some())
    });
    let name = first.name.clone();
    let source = std::fs::read(db.binlog_dir().join(&name)).expect("source file");
    let (ok, stderr, written) = read_from_relay(relay_port, &name);
    assert!(ok, "the relay serves the intact file: {stderr}");
    assert!(written.as_ref() == Some(&source), "the relay served the source's bytes");
    let download = format!("/api/tasks/{id}/files/{name}");
    let (status, _, served) = get_bytes(&srv, &download);
    assert_eq!(status, 200);
    assert!(served == source, "the intact file is served");

    // One byte inside an event's body flipped, the size unchanged.
    let path = local_dir(&srv, id, &db).join(&name);
    let mut bytes = std::fs::read(&path).expect("read");
    let (event_at, event_size) = an_event_halfway(&bytes);
    bytes[event_at + 19 + (event_size - 19 - 4) / 2] ^= 0x20;
    std::fs::write(&path, &bytes).expect("write");

    let r = srv.get_raw(&download);
    let err = r.error();
    assert_eq!((r.status, err.code), (409, ErrorCode::FileChanged), "{err:?}");
    let text = err.error.as_str();
    assert!(text.starts_with(&format!("{name} changed on disk since it was sealed")), "{text}");
    assert!(!text.contains(srv.data_dir().to_str().expect("UTF-8")), "no server path in the answer: {text}");

    let query = format!("start_file={name}&start_pos=4&stop_file={name}&stop_pos={}", first.size);
    let r = srv.get_raw(&format!("/api/tasks/{id}/replay/archive?{query}"));
    assert_eq!((r.status, r.error().code), (409, ErrorCode::FileChanged), "archive: {}", r.body);

    let (ok, stderr, written) = read_from_relay(relay_port, &name);
    assert!(!ok, "the relay must not serve a changed file");
    assert!(
        stderr.contains(&format!("{name} changed on disk since it was sealed")),
        "mariadb-binlog shows why: {stderr}"
    );
    let written = written.unwrap_or_default();
    assert!(source.starts_with(&written), "what went out is the source's bytes ({} bytes)", written.len());
    if checksum == "NONE" {
        assert!(stderr.contains("sha256"), "refused by the file's sha256: {stderr}");
        assert!(written.len() <= 4, "nothing of the file went out: {} bytes", written.len());
    } else {
        let at = format!("the event at position {event_at} fails its CRC32");
        assert!(stderr.contains(&at), "refused at the changed event ({at}): {stderr}");
        assert!(written.len() <= event_at, "nothing of the changed event went out: {} bytes", written.len());
    }
}

/// A disk that hangs: the slow-fsync warning comes only once an fsync returns, and a hung one
/// never does. A batch that has not returned is said while it lasts (a warning, a
/// WRITER_STALLED event, `/replication`, the gauges, the dashboard's summary), and so is its
/// end. A debug-build hook makes every data fsync take FSYNC_DELAY; a batch counts as stalled
/// after STALL (`writer.stall_after_sec`, 10 s by default).
#[test]
fn a_writer_batch_that_does_not_return_is_said_while_it_lasts() {
    const FSYNC_DELAY: Duration = Duration::from_secs(3);
    const STALL: Duration = Duration::from_secs(1);
    let db = MariaDb::start(MariaDbOpts::default());
    db.sql("CREATE TABLE h (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)");
    let srv = Server::start(
        slow_disk_server_opts(FSYNC_DELAY).env("BINLOG_SERVER_WRITER_STALL_AFTER_SEC", STALL.as_secs().to_string()),
    );
    let started = chrono::Utc::now();
    let id = start_copy_task(&srv, &db, "hung-disk");
    // A gauge of the task once it reaches the stall's length.
    let gauge_reaches_stall = |family: &str, what: &str| {
        let series = format!("{family}{{task=\"{id}\"}}");
        poll_until(WAIT, what, || {
            let r = srv.get_raw("/metrics");
            crate::common::metric_sample(&r.body, &series).filter(|v| *v >= STALL.as_secs_f64())
        })
    };
    // The gauge an alert reads: how long the batch in progress has been running.
    let busy =
        gauge_reaches_stall("binlog_server_writer_busy_seconds", "the writer's busy gauge to show the slow batch");
    assert!(busy < (FSYNC_DELAY * 3).as_secs_f64(), "{busy}");
    // What the API and the task page show while it lasts: since when the batch runs.
    let since =
        poll_until(WAIT, "/replication to show the stalled writer", || srv.replication(id).writer_stalled_since);
    let seen = chrono::Utc::now();
    assert!(since >= started && since <= seen - STALL, "stalled since {since}, task started {started}, seen {seen}");
    // The dashboard's summary counts it and lists the task first, though its state is RUNNING
    // and its lag looks healthy.
    let urgent = poll_until(WAIT, "/api/summary to count the stalled writer", || {
        let (_, s) = srv.get("/api/summary");
        (s["tasks"]["writers_stalled"] == 1).then(|| s["urgent"][0].clone())
    });
    assert_eq!(urgent["task"]["id"], id, "{urgent}");
    assert_eq!(urgent["writer_stalled"], true, "{urgent}");
    assert!(urgent["writer_busy_seconds"].as_f64().is_some_and(|b| b >= STALL.as_secs_f64()), "{urgent}");
    // The checkpoint-age alert's gauge counts it too: nothing became durable meanwhile, though
    // the stream is caught up (the source is quiet, its heartbeats still arrive) or has no
    // checkpoint yet, where the gauge said 0 before.
    gauge_reaches_stall("binlog_server_checkpoint_age_seconds", "the checkpoint age to count the hung batch");
    let (stalled_at, stalled) = wait_event_after(&srv, id, "WRITER_STALLED", 0);
    assert!(
        stalled.contains("has not returned for") && stalled.contains("durable checkpoint"),
        "the event says what it means: {stalled}"
    );
    let (_, ended) = wait_event_after(&srv, id, "WRITER_STALL_ENDED", stalled_at);
    let after: u64 = ended
        .split("after about ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {ended:?}"));
    assert!(after >= STALL.as_secs(), "{ended}");

    // Said while the batch lasted: before the fsync returned and was called slow.
    let log = srv.log_text();
    let said = log.find("writer stalled:").expect("a warning in the log");
    let returned = log.find("slow fsync:").expect("the slow fsync, once it returned");
    assert!(said < returned, "the stall was said before the fsync returned");
    assert!(log.contains("writer stall ended:"), "and its end");

    // A stall loses nothing: the task goes on once the disk answers.
    insert_rows(&db, "h", 10);
    flush_and_catch_up(&srv, &db, id);
    assert_copy_matches_source(&srv, &db, id);
    // Nothing left to write: the last stalled batch has returned, and the API says so.
    poll_until(WAIT, "/replication to stop showing a stalled writer", || {
        srv.replication(id).writer_stalled_since.is_none().then_some(())
    });
    poll_until(WAIT, "/api/summary to stop counting a stalled writer", || {
        let (_, s) = srv.get("/api/summary");
        (s["tasks"]["writers_stalled"] == 0 && s["urgent"][0]["writer_stalled"] == false).then_some(())
    });

    // Every batch stalled here: each stall is logged, but recorded as an event once per ten
    // minutes (a disk on which every batch stalls must not fill the events table).
    let logged = srv.log_text().matches("writer stalled:").count();
    assert!(logged >= 2, "the later batches stalled too: {logged} warnings");
    let events = task_events(&srv, id);
    let recorded = |kind: &str| events.iter().filter(|e| e.1 == kind).count();
    assert_eq!((recorded("WRITER_STALLED"), recorded("WRITER_STALL_ENDED")), (1, 1), "{events:?}");
}

/// A writer's start that does not return (the disk hangs while the writer reconciles the local
/// files, before the task streams; here a debug-build hook holds `Prepare`) is said as a stalled
/// start, on its own threshold, while the task stays STARTING: the gauge, `/replication`, the
/// dashboard's summary and the task's events. Once it returns the task streams and loses nothing.
#[test]
fn a_writer_start_that_does_not_return_is_said_while_it_lasts() {
    const START_DELAY: Duration = Duration::from_secs(8);
    const STALL: Duration = Duration::from_secs(1);
    let db = MariaDb::start(MariaDbOpts::default());
    db.sql("CREATE TABLE h (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)");
    insert_rows(&db, "h", 10);
    let srv = Server::start(
        fast_server_opts()
            .env("BINLOG_TEST_WRITER_START_DELAY_MS", START_DELAY.as_millis().to_string())
            .env("BINLOG_SERVER_WRITER_START_STALL_AFTER_SEC", STALL.as_secs().to_string()),
    );
    let id = start_copy_task(&srv, &db, "hung-start");
    let series = format!("binlog_server_writer_start_seconds{{task=\"{id}\"}}");
    let start = poll_until(WAIT, "the writer's start gauge to show the slow start", || {
        crate::common::metric_sample(&srv.get_raw("/metrics").body, &series).filter(|v| *v >= STALL.as_secs_f64())
    });
    assert!(start < START_DELAY.as_secs_f64() + 2.0, "{start}");
    let r = poll_until(WAIT, "/replication to show the stalled start", || {
        let r = srv.replication(id);
        r.writer_stalled_since.is_some().then_some(r)
    });
    assert_eq!(r.writer_stalled_in, Some(Work::Start), "{r:?}");
    // The dashboard counts it and lists it first, though STARTING says nothing by itself.
    let urgent = poll_until(WAIT, "/api/summary to count the stalled start", || {
        let (_, s) = srv.get("/api/summary");
        (s["tasks"]["writers_stalled"] == 1).then(|| s["urgent"][0].clone())
    });
    assert_eq!(urgent["task"]["id"], id, "{urgent}");
    assert_eq!(urgent["task"]["state"], "STARTING", "{urgent}");
    assert_eq!(urgent["writer_stalled"], true, "{urgent}");
    assert!(urgent["writer_start_seconds"].as_f64().is_some_and(|b| b >= STALL.as_secs_f64()), "{urgent}");
    assert_eq!(urgent["writer_busy_seconds"].as_f64(), Some(0.0), "no batch runs yet: {urgent}");
    let (stalled_at, stalled) = wait_event_after(&srv, id, "WRITER_STALLED", 0);
    assert!(
        stalled.contains("the writer's start") && stalled.contains("streams nothing"),
        "the event says what stalled: {stalled}"
    );
    let (_, ended) = wait_event_after(&srv, id, "WRITER_STALL_ENDED", stalled_at);
    assert!(ended.contains("stalled start returned"), "{ended}");

    // Once it returns, the task streams and loses nothing.
    wait_running(&srv, id);
    insert_rows(&db, "h", 10);
    flush_and_catch_up(&srv, &db, id);
    assert_copy_matches_source(&srv, &db, id);
    let r = poll_until(WAIT, "/replication to stop showing a stalled writer", || {
        let r = srv.replication(id);
        r.writer_stalled_since.is_none().then_some(r)
    });
    assert_eq!(r.writer_stalled_in, None, "{r:?}");
    poll_until(WAIT, "/api/summary to stop counting a stalled writer", || {
        let (_, s) = srv.get("/api/summary");
        (s["tasks"]["writers_stalled"] == 0 && s["urgent"][0]["writer_start_seconds"] == 0.0).then_some(())
    });
    // Only the start was said: the batches (at the 10 s default) never stalled.
    let log = srv.log_text();
    assert_eq!(log.matches("writer stalled:").count(), 1, "one stall, the start's");
    assert!(!log.contains("the writer's batch"), "no batch was called stalled");
}
