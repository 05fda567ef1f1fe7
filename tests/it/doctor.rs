//! `binlog-server doctor` through the real binary over a data directory a real task wrote from a
//! real `mariadbd`: all well first, then each kind of damage named, and nothing on disk changed by
//! the doctor itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::poll_until;
use crate::common::replication::{
    WAIT, fast_server_opts, files, flush_and_catch_up, meta_checkpoint, meta_files, source_identity, start_copy_task,
    wait_running,
};
use crate::common::server::{Server, run_cli};

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
        let fs = files(&srv, id);
        let sealed: Vec<&Value> = fs.iter().filter(|f| f["state"] == "SEALED").collect();
        (sealed.len() >= 2 && sealed.iter().all(|f| f["sha256"].is_string())).then_some(())
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
