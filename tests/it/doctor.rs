//! `binlog-server doctor` through the real binary over a data directory a real task wrote from a
//! real `mariadbd`: all well first, then each kind of damage named, and nothing on disk changed by
//! the doctor itself. `doctor --repair` with upload on (moto): refused while the server runs,
//! orphans moved aside, a damaged sealed file restored from the bucket, what it cannot repair
//! explained.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use binlog_server::api::dto::FileDto;
use binlog_server::meta::FileState;
use serde_json::Value;

use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::replication::{
    WAIT, fast_server_opts, flush_and_catch_up, meta_checkpoint, meta_files, source_identity, start_copy_task,
    wait_running,
};
use crate::common::s3::S3Server;
use crate::common::server::{Server, ServerOpts, run_cli};
use crate::common::{files_named, poll_until};

/// Every file under `dir` with its bytes (the data dir is small: a few binlog files and meta.db).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read_dir {}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                out.insert(path, bytes);
            }
        }
    }
    out
}

/// Runs `doctor` over `data_dir`; asserts it changed nothing there; returns (code, stdout, stderr).
fn doctor(data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let before = snapshot(data_dir);
    let mut argv = vec!["doctor"];
    argv.extend_from_slice(args);
    let dir = data_dir.to_str().expect("temp paths are UTF-8");
    let out = run_cli(&argv, &[("BINLOG_SERVER_DATA_DIR", dir)]);
    let after = snapshot(data_dir);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "doctor {args:?} must not add or remove files"
    );
    for (path, bytes) in &before {
        assert!(after[path] == *bytes, "doctor {args:?} changed {}", path.display());
    }
    out
}

#[test]
fn doctor_names_each_kind_of_damage_and_changes_nothing() {
    let db = MariaDb::start(MariaDbOpts::default().max_binlog_size("16384"));
    db.sql("CREATE TABLE d (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)");
    let mut srv = Server::start(fast_server_opts());
    let id = start_copy_task(&srv, &db, "doctor");
    wait_running(&srv, id);
    for i in 0..6 {
        db.sql(&format!("INSERT INTO d (v) SELECT REPEAT('x', 400) FROM seq_1_to_{}", 20 + i));
    }
    flush_and_catch_up(&srv, &db, id);
    // The sha256 of a sealed file is recorded shortly after sealing: wait for all of them.
    poll_until(WAIT, "every sealed file's sha256 in the catalog", || {
        let fs = srv.files(id);
        let sealed: Vec<&FileDto> = fs.iter().filter(|f| f.state == FileState::Sealed).collect();
        (sealed.len() >= 2 && sealed.iter().all(|f| f.sha256.is_some())).then_some(())
    });
    let status = srv.stop();
    assert!(status.success(), "binlog-server stopped cleanly: {status:?}");

    let data = srv.data_dir();
    let identity = source_identity(&db);
    let dir = data.join(id.to_string()).join(&identity);
    let rows = meta_files(&data, id);
    let sealed: Vec<_> = rows.iter().filter(|r| r.state == "SEALED").collect();
    let open = rows.iter().find(|r| r.state == "OPEN").expect("an open file after the flush");

    let (code, out, err) = doctor(&data, &[]);
    assert_eq!(code, 0, "a healthy data dir: stdout {out:?} stderr {err:?}");
    assert!(out.contains("all well"), "{out}");
    assert!(out.contains(&format!("{} catalogued file(s)", rows.len())), "{out}");

    // One byte of a sealed file flipped (same size): only the sha256 can tell.
    let victim = &sealed[sealed.len() / 2];
    let victim_path = dir.join(&victim.file_name);
    let mut bytes = std::fs::read(&victim_path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&victim_path, &bytes).unwrap();
    let victim_rel = format!("{identity}/{}", victim.file_name);
    let (code, out, _) = doctor(&data, &[]);
    assert_eq!(code, 3, "problems found: {out}");
    let line = out.lines().find(|l| l.contains(&victim_rel)).unwrap_or_else(|| panic!("{victim_rel} named: {out}"));
    assert!(line.contains("sha256 mismatch") && line.contains(&format!("task {id}")), "{line}");
    assert!(out.contains("PROBLEMS FOUND") && out.contains("1 finding(s)"), "{out}");

    // The open file cut below the checkpoint.
    let cp = meta_checkpoint(&data, id).expect("a checkpoint");
    assert_eq!(cp.file_name, open.file_name, "the checkpoint is in the open file");
    let need = open.local_offset(cp.pos);
    let open_path = dir.join(&open.file_name);
    std::fs::OpenOptions::new().write(true).open(&open_path).unwrap().set_len(need - 1).unwrap();
    let open_rel = format!("{identity}/{}", open.file_name);
    let (code, out, _) = doctor(&data, &[]);
    assert_eq!(code, 3, "{out}");
    let line = out.lines().find(|l| l.contains(&open_rel)).unwrap_or_else(|| panic!("{open_rel} named: {out}"));
    assert!(line.contains("shorter than the checkpoint") && line.contains(&need.to_string()), "{line}");

    // A file the catalog does not name.
    std::fs::write(dir.join("stray.bin"), b"not ours").unwrap();
    let (code, out, _) = doctor(&data, &[]);
    assert_eq!(code, 3, "{out}");
    let line = out.lines().find(|l| l.contains("stray.bin")).unwrap_or_else(|| panic!("orphan named: {out}"));
    assert!(line.contains("orphan"), "{line}");
    assert!(out.contains("3 finding(s)"), "all three at once: {out}");

    // The same as JSON, for scripts; --task narrows to one task.
    let (code, out, err) = doctor(&data, &["--json", "--task", &id.to_string()]);
    assert_eq!(code, 3, "{err}");
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("JSON: {e}: {out}"));
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["tasks_checked"], 1);
    let problems: BTreeMap<String, String> = doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| (f["file"].as_str().unwrap().to_string(), f["problem"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        problems,
        BTreeMap::from([
            (victim_rel, "sha256_mismatch".to_string()),
            (open_rel, "open_file_short".to_string()),
            (format!("{identity}/stray.bin"), "orphan".to_string()),
        ])
    );

    // A directory named like a task the catalog does not hold (checked without --task only).
    std::fs::create_dir_all(data.join("999")).unwrap();
    std::fs::write(data.join("999").join("bin.000001"), b"left behind").unwrap();
    let (code, out, _) = doctor(&data, &[]);
    assert_eq!(code, 3, "{out}");
    let line = out.lines().find(|l| l.contains("999/")).unwrap_or_else(|| panic!("orphan task dir named: {out}"));
    assert!(line.contains("orphan task directory"), "{line}");
    assert!(out.contains("1 task(s)") && out.contains("4 finding(s)"), "{out}");

    // A task that does not exist: the check cannot run (1), not "problems found" (3).
    let (code, _, err) = doctor(&data, &["--task", "999"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no task 999"), "{err}");
}

#[test]
fn doctor_repair_restores_from_the_bucket_moves_orphans_aside_and_refuses_beside_a_server() {
    let db = MariaDb::start(MariaDbOpts::default().max_binlog_size("16384"));
    db.sql("CREATE TABLE r (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)");
    let s3 = S3Server::start(false);
    let upload: Vec<(String, String)> = s3.upload_env(ServerOpts::default()).env;
    let mut srv = Server::start(s3.upload_env(fast_server_opts()).env("BINLOG_SERVER_UPLOAD_RETRY_INITIAL_SEC", "1"));
    let id = start_copy_task(&srv, &db, "repair");
    wait_running(&srv, id);
    for i in 0..6 {
        db.sql(&format!("INSERT INTO r (v) SELECT REPEAT('y', 400) FROM seq_1_to_{}", 20 + i));
    }
    flush_and_catch_up(&srv, &db, id);
    let fs = poll_until(WAIT, "every sealed file uploaded and verified", || {
        let fs = srv.files(id);
        let sealed: Vec<&FileDto> = fs.iter().filter(|f| f.state == FileState::Sealed).collect();
        (sealed.len() >= 2 && sealed.iter().all(|f| f.sha256.is_some() && f.upload.verified)).then_some(fs)
    });

    let data = srv.data_dir();
    let identity = source_identity(&db);
    let dir = data.join(id.to_string()).join(&identity);
    let data_s = data.to_str().expect("temp paths are UTF-8").to_string();
    let mut env: Vec<(&str, &str)> = upload.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("BINLOG_SERVER_DATA_DIR", &data_s));

    // Beside the running server: refused, naming who holds the data directory; nothing moved.
    std::fs::write(dir.join("stray.bin"), b"not ours").unwrap();
    let (code, out, err) = run_cli(&["doctor", "--repair"], &env);
    assert_eq!(code, 4, "refused while the server runs: stdout {out:?} stderr {err:?}");
    assert!(
        err.contains("refused") && err.contains(&format!("pid {}", srv.pid())) && err.contains("binlog-server.lock"),
        "names the lock and its holder: {err}"
    );
    assert!(dir.join("stray.bin").exists() && !data.join(".stale").exists(), "nothing moved: {err}");

    let status = srv.stop();
    assert!(status.success(), "binlog-server stopped cleanly: {status:?}");

    // Damage: a byte flipped in a sealed file the bucket holds, an orphan task directory.
    let victim = fs.iter().find(|f| f.state == FileState::Sealed).expect("a sealed file");
    let name = victim.name.clone();
    let key = victim.upload.object_key.clone().expect("an object key");
    let victim_path = dir.join(&name);
    let original = std::fs::read(&victim_path).unwrap();
    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    std::fs::write(&victim_path, &flipped).unwrap();
    std::fs::create_dir_all(data.join("999")).unwrap();
    std::fs::write(data.join("999").join("left.bin"), b"left behind").unwrap();
    // (Not through `doctor()`: SQLite may fold a WAL the server left into meta.db when the
    // doctor's connection closes, which that helper's byte comparison would count.)
    let (code, out, _) = run_cli(&["doctor"], &env);
    assert_eq!(code, 3, "three findings before the repair: {out}");

    let (code, out, err) = run_cli(&["doctor", "--repair"], &env);
    assert_eq!(code, 0, "all repaired: stdout {out}\nstderr {err}");
    let victim_rel = format!("{identity}/{name}");
    let line = out.lines().find(|l| l.contains(&victim_rel)).unwrap_or_else(|| panic!("{victim_rel} named: {out}"));
    assert!(line.contains("sha256 mismatch") && line.contains("REPAIRED") && line.contains(&key), "{line}");
    assert!(out.contains("3 repaired, 0 not repaired; after the repair: all well"), "{out}");
    assert!(std::fs::read(&victim_path).unwrap() == original, "restored byte-identical to what was sealed");
    assert!(s3.get(&key) == original, "and to the bucket's copy");
    let aside = files_named(&data.join(".stale"), &name);
    assert_eq!(aside.len(), 1, "the bad copy is kept in .stale: {aside:?}");
    assert!(std::fs::read(&aside[0]).unwrap() == flipped, "the bad copy, as it was");
    let stray = files_named(&data.join(".stale"), "stray.bin");
    assert_eq!(stray.len(), 1, "the orphan moved, not deleted: {stray:?}");
    assert!(stray[0].to_string_lossy().contains(&format!("/{id}/{identity}/stray.bin")), "{stray:?}");
    assert!(!dir.join("stray.bin").exists() && !data.join("999").exists(), "moved out of the way");
    let left = files_named(&data.join(".stale"), "left.bin");
    assert!(left.len() == 1 && left[0].ends_with("999/left.bin"), "the orphan task directory moved whole: {left:?}");
    assert_eq!(std::fs::read(&left[0]).unwrap(), b"left behind");

    let (code, out, _) = run_cli(&["doctor"], &env);
    assert_eq!(code, 0, "a second run reports all well: {out}");
    assert!(out.contains("all well"), "{out}");

    // What it cannot repair: the open file cut below the checkpoint (lost durable bytes).
    let rows = meta_files(&data, id);
    let open = rows.iter().find(|r| r.state == "OPEN").expect("an open file");
    let cp = meta_checkpoint(&data, id).expect("a checkpoint");
    let need = open.local_offset(cp.pos);
    std::fs::OpenOptions::new().write(true).open(dir.join(&open.file_name)).unwrap().set_len(need - 1).unwrap();
    let (code, out, err) = run_cli(&["doctor", "--repair", "--json"], &env);
    assert_eq!(code, 3, "a problem remains: {out} {err}");
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("JSON: {e}: {out}"));
    assert_eq!(doc["ok"], false);
    let repairs = doc["repairs"].as_array().expect("repairs");
    assert_eq!(repairs.len(), 1, "{doc:#}");
    assert_eq!(repairs[0]["problem"], "open_file_short");
    assert_eq!(repairs[0]["result"], "not_repaired");
    assert!(repairs[0]["next_step"].as_str().is_some_and(|s| s.contains("backup")), "{doc:#}");
    assert_eq!(doc["remaining"].as_array().map(Vec::len), Some(1), "{doc:#}");
}

/// While `doctor --repair` holds the data directory (played here by an exclusive `flock` on its
/// lock file, which is what the repair takes), a server does not start on it, and says why.
#[test]
fn a_server_does_not_start_while_a_repair_holds_the_data_directory() {
    let dir = crate::common::temp_dir("binlog-it-doctor-lock-");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(data.join("binlog-server.lock"))
        .unwrap();
    lock.try_lock().expect("the test takes the lock first");
    let data_s = data.to_str().expect("temp paths are UTF-8");
    let env = [("BINLOG_SERVER_DATA_DIR", data_s), ("BINLOG_SERVER_LISTEN_ADDR", "127.0.0.1:0")];
    let (code, out, err) = run_cli(&["serve"], &env);
    assert_eq!(code, 1, "refused: {out}{err}");
    assert!(
        err.contains("doctor --repair") && err.contains(&format!("pid {}", std::process::id())),
        "says a repair holds it, and who: {err}"
    );
    assert!(!data.join("meta.db").exists(), "nothing was created before the refusal");
    drop(lock);
    let (code, out, err) = run_cli(&["doctor", "--repair"], &env);
    assert_eq!(code, 1, "no metadata database yet: {out}{err}");
    assert!(err.contains("no metadata database"), "the repair itself got past the lock: {err}");
}
