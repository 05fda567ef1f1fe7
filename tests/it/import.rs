//! Importing existing binlog archives (issue 19) through the real binary, from files a real
//! `mariadbd` wrote and `mariadb-binlog --raw` copied: good files, a flipped byte, a truncated
//! copy, an overlap, another server's files, kill -9 in the middle, and the migration the guide
//! walks through (import a live source's raw archive, then start the task: no gap, no duplicate).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use binlog_server::api::dto::FileDto;
use binlog_server::domain::TaskState;
use binlog_server::meta::UploadState;
use serde_json::json;

use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::replication::{
    WAIT, assert_copy_matches_source, create_task, fast_server_opts, flush_and_catch_up, from_first_file, meta_files,
    source_identity, source_json, start_task, wait_running,
};
use crate::common::s3::S3Server;
use crate::common::server::{Server, run_cli};
use crate::common::{output_with_deadline, poll_until, require_binary, temp_dir};

/// `mariadb-binlog --read-from-remote-server --raw --to-last-log` of `db` from its first file
/// into `dir`: what a script-based archive holds (the live file copied as far as it was written).
pub(crate) fn raw_archive(db: &MariaDb, dir: &Path) -> Vec<PathBuf> {
    let first = db.binlog_files()[0].0.clone();
    let mut cmd = Command::new(require_binary("mariadb-binlog"));
    cmd.args(["--no-defaults", "--read-from-remote-server", "--raw", "--to-last-log", "--host=127.0.0.1"])
        .arg(format!("--port={}", db.port()))
        .arg("--user=root")
        .arg(format!("--result-file={}/", dir.display()))
        .arg(&first);
    let out = output_with_deadline(&mut cmd, Duration::from_secs(120), "mariadb-binlog");
    assert!(out.status.success(), "mariadb-binlog: {}", String::from_utf8_lossy(&out.stderr));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 3, "the source rotated at least twice: {files:?}");
    files
}

/// A source with a few small files and some transactions in each.
pub(crate) fn busy_source(opts: MariaDbOpts, table: &str) -> MariaDb {
    let db = MariaDb::start(opts.max_binlog_size("16384"));
    db.sql(&format!("CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)"));
    for i in 0..12 {
        db.sql(&format!("INSERT INTO {table} (v) SELECT REPEAT('x', 300) FROM seq_1_to_{}", 10 + i));
    }
    db
}

/// `binlog-server import` against the server's data directory: (exit code, stdout, stderr).
fn import(srv: &Server, id: i64, paths: &[&Path]) -> (i32, String, String) {
    let id = id.to_string();
    let mut argv = vec!["import", "--task", &id];
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    argv.extend(paths.iter().map(String::as_str));
    let data = srv.data_dir().display().to_string();
    run_cli(&argv, &[("BINLOG_SERVER_DATA_DIR", &data)])
}

/// The regular files under the task's folder (not the metadata database).
fn task_files(srv: &Server, id: i64) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![srv.data_dir().join(id.to_string())];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() { stack.push(p) } else { out.push(p) }
        }
    }
    out.sort();
    out
}

#[test]
fn a_live_sources_raw_archive_imported_then_started_continues_without_gap_or_duplicate() {
    let db = busy_source(MariaDbOpts::default(), "m");
    let archive = temp_dir("raw-archive");
    raw_archive(&db, archive.path());
    let srv = Server::start(fast_server_opts());
    let id = create_task(&srv, "migrated", source_json(&db), from_first_file(&db));

    let (code, out, err) = import(&srv, id, &[archive.path()]);
    assert_eq!(code, 0, "import: {out}{err}");
    let rows = meta_files(&srv.data_dir(), id);
    let names: Vec<&str> = rows.iter().map(|r| r.file_name.as_str()).collect();
    let source: Vec<String> = db.binlog_files().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, source.iter().map(String::as_str).collect::<Vec<_>>(), "every file imported: {out}");
    assert!(rows.iter().all(|r| r.source_identity == source_identity(&db)), "{rows:?}");
    assert_eq!(rows.last().unwrap().state, "OPEN", "the live file is continued by the task: {out}");

    // The source goes on while the task is still stopped; then the task takes over.
    for i in 0..5 {
        db.sql(&format!("INSERT INTO m (v) SELECT REPEAT('y', 300) FROM seq_1_to_{}", 10 + i));
    }
    start_task(&srv, id);
    wait_running(&srv, id);
    flush_and_catch_up(&srv, &db, id);
    let copy = assert_copy_matches_source(&srv, &db, id);
    assert!(copy.sealed.len() >= source.len(), "imported and fetched files alike are whole: {copy:?}");
    let (status, window) = srv.get(&format!("/api/tasks/{id}/window"));
    assert_eq!(status, 200, "{window}");
    assert_eq!(window["continuous"], true, "no break between imported and fetched files: {window}");
}

#[test]
fn bad_overlapping_and_foreign_files_are_refused_and_leave_nothing_behind() {
    let db = busy_source(MariaDbOpts::default(), "r");
    db.flush_binary_logs();
    let archive = temp_dir("raw-refusals");
    let raw = raw_archive(&db, archive.path());
    let srv = Server::start(fast_server_opts());
    let id = create_task(&srv, "archive", source_json(&db), json!({"mode": "ARCHIVE_ONLY"}));
    let work = temp_dir("import-bad");

    // One flipped byte inside an event of the second file: refused whole, naming file and offset.
    let bytes = std::fs::read(&raw[1]).unwrap();
    let flipped = work.path().join(raw[1].file_name().unwrap());
    let mut bad = bytes.clone();
    // A byte of the body of the event at the middle of the file (not a size field).
    let (start, _) = binlog_server::binlog::event::FileEvents::new(&bytes)
        .unwrap()
        .find(|(at, ev)| at + ev.len() > bytes.len() / 2)
        .unwrap();
    bad[start + 20] ^= 0x01;
    std::fs::write(&flipped, &bad).unwrap();
    let (code, out, err) = import(&srv, id, &[&raw[0], &flipped]);
    assert_eq!(code, 1, "a flipped byte is refused: {out}{err}");
    assert!(err.contains(raw[1].file_name().unwrap().to_str().unwrap()) && err.contains("offset"), "{err}");
    assert!(meta_files(&srv.data_dir(), id).is_empty(), "nothing catalogued");
    assert!(task_files(&srv, id).is_empty(), "nothing left on disk: {:?}", task_files(&srv, id));
    assert!(!srv.data_dir().join(".import").join(id.to_string()).exists(), "the staging folder is gone");

    // The good files go in; the same file again is an overlap.
    let (code, out, err) = import(&srv, id, &[&raw[0], &raw[1]]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(meta_files(&srv.data_dir(), id).len(), 2);
    let (code, _, err) = import(&srv, id, &[&raw[1]]);
    assert_eq!(code, 1, "an overlap is refused");
    assert!(err.contains("already"), "{err}");

    // A copy cut inside a transaction is kept up to its last complete one, and says so.
    let third = std::fs::read(&raw[2]).unwrap();
    let cut = work.path().join(raw[2].file_name().unwrap());
    std::fs::write(&cut, &third[..third.len() - 7]).unwrap();
    let (code, out, err) = import(&srv, id, &[&cut]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("truncated"), "the import says what it left out: {out}");
    let rows = meta_files(&srv.data_dir(), id);
    let last = rows.last().unwrap();
    assert!(last.size < third.len() as u64 - 7 && last.state == "SEALED", "{last:?}");
    let kept =
        std::fs::read(srv.data_dir().join(id.to_string()).join(&last.source_identity).join(&last.file_name)).unwrap();
    assert_eq!(&kept[..], &third[..kept.len()], "the kept part is the source's bytes");

    // Another server's files (server 2, its own history) are refused.
    let other = busy_source(MariaDbOpts::default().server_id(2), "o");
    let other_dir = temp_dir("raw-other");
    let other_raw = raw_archive(&other, other_dir.path());
    let before = task_files(&srv, id);
    let (code, _, err) = import(&srv, id, &[&other_raw[1]]);
    assert_eq!(code, 1, "another server's file is refused");
    assert!(err.contains("mariadb-2-0"), "{err}");
    assert_eq!(task_files(&srv, id), before, "nothing added");
    assert_eq!(srv.files(id).len(), 3, "the API lists the imported files");

    // An archive-only task never connects.
    let (status, body) = srv.post(&format!("/api/tasks/{id}/start"), &json!({}));
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("ARCHIVE_ONLY"), "{body}");
}

#[test]
fn kill_9_in_the_middle_of_an_import_leaves_nothing_half_imported() {
    let db = busy_source(MariaDbOpts::default(), "k");
    let archive = temp_dir("raw-kill");
    let raw = raw_archive(&db, archive.path());
    let srv = Server::start(fast_server_opts());
    let id = create_task(&srv, "killed", source_json(&db), json!({"mode": "ARCHIVE_ONLY"}));
    let data = srv.data_dir();
    let staging = data.join(".import").join(id.to_string());

    // The third file arrives through a pipe: the import has copied two files and half of the
    // third when it is killed, a point it cannot pass without us.
    let pipes = temp_dir("import-fifo");
    let name = raw[2].file_name().unwrap().to_str().unwrap().to_string();
    let fifo = pipes.path().join(&name);
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_binlog-server"))
        .args(["import", "--task", &id.to_string()])
        .args([&raw[0], &raw[1], &fifo])
        .env("BINLOG_SERVER_DATA_DIR", &data)
        .spawn()
        .unwrap();
    let third = std::fs::read(&raw[2]).unwrap();
    let half = third.len() / 2;
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    std::io::Write::write_all(&mut writer, &third[..half]).unwrap();
    poll_until(Duration::from_secs(60), "half of the third file staged", || {
        (std::fs::metadata(staging.join(&name)).ok()?.len() == half as u64).then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    drop(writer);

    assert!(meta_files(&data, id).is_empty(), "nothing catalogued");
    assert!(task_files(&srv, id).is_empty(), "nothing in the task's folder: {:?}", task_files(&srv, id));
    // The next import cleans the leftovers and takes the files whole.
    let (code, out, err) = import(&srv, id, &[archive.path()]);
    assert_eq!(code, 0, "the import after the kill: {out}{err}");
    assert!(!staging.exists(), "the staging folder is gone");
    let rows = meta_files(&data, id);
    assert_eq!(rows.len(), raw.len());
    for r in &rows {
        let ours = std::fs::read(data.join(id.to_string()).join(&r.source_identity).join(&r.file_name)).unwrap();
        let theirs = std::fs::read(archive.path().join(&r.file_name)).unwrap();
        assert!(ours == theirs, "{} is whole", r.file_name);
    }
}

/// Polls until task `id` lists `n` files, every one UPLOADED and verified; returns them.
fn wait_uploaded(srv: &Server, id: i64, n: usize) -> Vec<FileDto> {
    poll_until(WAIT, &format!("{n} imported files of task {id} uploaded and verified"), || {
        let fs = srv.files(id);
        (fs.len() == n && fs.iter().all(|f| f.upload.state == UploadState::Uploaded && f.upload.verified)).then_some(fs)
    })
}

/// How many uploads the server's log (kept across restarts) records.
fn uploads_logged(srv: &Server) -> usize {
    srv.log_text().matches("file uploaded and verified").count()
}

#[test]
fn an_archive_only_tasks_imported_files_are_uploaded_verified_and_only_once() {
    let db = busy_source(MariaDbOpts::default(), "u");
    db.flush_binary_logs();
    let archive = temp_dir("raw-upload");
    let raw = raw_archive(&db, archive.path());
    // The first two files are imported by the command while the server is down, the others over
    // the API while it runs.
    let imports = temp_dir("import-root");
    for (i, f) in raw.iter().enumerate() {
        let dir = imports.path().join(if i < 2 { "first" } else { "rest" });
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(f, dir.join(f.file_name().unwrap())).unwrap();
    }
    let s3 = S3Server::start(false);
    let opts =
        s3.upload_env(fast_server_opts()).env("BINLOG_SERVER_STORAGE_IMPORT_DIR", imports.path().display().to_string());
    let mut srv = Server::start(opts);
    let id = create_task(&srv, "archive-up", source_json(&db), json!({"mode": "ARCHIVE_ONLY"}));

    srv.stop();
    let (code, out, err) = import(&srv, id, &[&imports.path().join("first")]);
    assert_eq!(code, 0, "import: {out}{err}");
    // At the start of the process: what was imported meanwhile is uploaded.
    srv.restart();
    wait_uploaded(&srv, id, 2);
    // Right after an import over the API.
    let (status, body) = srv.post(&format!("/api/tasks/{id}/import"), &json!({"path": "rest"}));
    assert_eq!(status, 200, "{body}");
    let uploaded = wait_uploaded(&srv, id, raw.len());
    for f in &uploaded {
        let name = f.name.as_str();
        let key = f.upload.object_key.as_deref().unwrap_or_else(|| panic!("{name} has no object key: {f:?}"));
        assert_eq!(key, format!("it/archive-up/{}/{name}", source_identity(&db)), "object key layout");
        let object = s3.get(key);
        let theirs = std::fs::read(archive.path().join(name)).unwrap();
        assert!(object == theirs, "{key}: the object differs from the imported file");
        assert_eq!(Some(s3.head(key).1.as_str()), f.sha256.as_deref(), "{key}: sha256 metadata");
    }
    assert_eq!(srv.task(id).state, TaskState::Stopped, "an archive-only task never runs");
    assert_eq!(uploads_logged(&srv), raw.len(), "each file uploaded once");

    // A restart uploads nothing again: the new process's uploader has looked at the catalog
    // (its backlog gauge is set) and found nothing to do.
    srv.restart();
    poll_until(WAIT, "the restarted uploader's first look at the catalog", || {
        let text = srv.get_raw("/metrics").body;
        text.lines().any(|l| l == format!("binlog_server_upload_backlog_files{{task=\"{id}\"}} 0")).then_some(())
    });
    let after = srv.files(id);
    for (a, b) in after.iter().zip(&uploaded) {
        assert_eq!(a.upload, b.upload, "{} unchanged by the restart", a.name);
    }
    assert_eq!(uploads_logged(&srv), raw.len(), "nothing uploaded twice");
}

#[test]
fn kill_9_between_a_files_rename_and_its_catalogue_row_leaves_nothing_after_a_restart() {
    let db = busy_source(MariaDbOpts::default(), "w");
    let archive = temp_dir("raw-window");
    let raw = raw_archive(&db, archive.path());
    let mut srv = Server::start(fast_server_opts());
    let id = create_task(&srv, "window", source_json(&db), json!({"mode": "ARCHIVE_ONLY"}));
    let data = srv.data_dir();
    let staging = data.join(".import").join(id.to_string());
    let folder = data.join(id.to_string()).join(source_identity(&db));
    let second = raw[1].file_name().unwrap().to_str().unwrap().to_string();

    // The import stops (debug-build hook) once the second file is renamed into the task's
    // folder, before its catalogue row is written; it is killed there.
    let mut child = Command::new(env!("CARGO_BIN_EXE_binlog-server"))
        .args(["import", "--task", &id.to_string()])
        .arg(archive.path())
        .env("BINLOG_SERVER_DATA_DIR", &data)
        .env("BINLOG_TEST_IMPORT_HOLD_AFTER_RENAME", &second)
        .spawn()
        .unwrap();
    poll_until(WAIT, "the second file renamed into the task's folder", || folder.join(&second).exists().then_some(()));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(meta_files(&data, id).len(), 1, "only the first file is catalogued");
    assert_eq!(task_files(&srv, id).len(), 2, "the second one is on disk without its row");

    // After a restart of the server: the uncatalogued copy and the staging folder are gone.
    srv.restart();
    let first = folder.join(raw[0].file_name().unwrap());
    poll_until(WAIT, "the uncatalogued copy removed at the server's start", || {
        (task_files(&srv, id) == vec![first.clone()]).then_some(())
    });
    assert!(!staging.exists(), "the staging folder is gone");
    assert_eq!(meta_files(&data, id).len(), 1, "the catalogue is as it was");

    // Nothing blocks the next import: the rest of the archive goes in whole.
    let rest: Vec<&Path> = raw[1..].iter().map(PathBuf::as_path).collect();
    let (code, out, err) = import(&srv, id, &rest);
    assert_eq!(code, 0, "the import after the kill: {out}{err}");
    let rows = meta_files(&data, id);
    assert_eq!(rows.len(), raw.len());
    for r in &rows {
        let ours = std::fs::read(folder.join(&r.file_name)).unwrap();
        let theirs = std::fs::read(archive.path().join(&r.file_name)).unwrap();
        assert!(ours == theirs, "{} is whole", r.file_name);
    }
}
