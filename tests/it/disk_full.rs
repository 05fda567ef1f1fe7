//! A full disk: the task pauses (RETRY_BACKOFF, LOCAL_STORAGE_ERROR naming the cause), loses
//! nothing, and catches up once there is room again. The data directory is a tiny tmpfs that
//! the test mounts (root only) and grows.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use binlog_server::domain::{TaskErrorCode, TaskState};
use binlog_server::meta::FileState;
use serde_json::json;

use crate::common::mariadb::{MariaDb, MariaDbOpts, REPL_PASSWORD, REPL_USER};
use crate::common::replication::wait_caught_up;
use crate::common::server::{Server, ServerOpts};
use crate::common::{is_root, poll_until, temp_dir};

const WAIT: Duration = Duration::from_secs(90);

/// A mounted tmpfs, unmounted (lazily: the server may still hold files) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("mount");
        assert!(out.status.success(), "mount tmpfs: {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs(path.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let out =
            Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).output().expect("remount");
        assert!(out.status.success(), "remount tmpfs: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_pauses_the_task_and_loses_nothing() {
    if !is_root() {
        eprintln!("disk_full: not root, cannot mount a tmpfs; this test runs in CI (root)");
        return;
    }
    let root = temp_dir("disk-full");
    let data = root.path().join("data");
    let fs = Tmpfs::mount(&data, "2m");
    let db = MariaDb::start(MariaDbOpts::default());
    let srv = Server::start(
        ServerOpts::default()
            .env("BINLOG_SERVER_DATA_DIR", data.to_str().expect("utf-8"))
            .env("BINLOG_SERVER_REPLICATION_RETRY_INITIAL_MS", "100")
            .env("BINLOG_SERVER_REPLICATION_RETRY_MAX_MS", "500"),
    );
    let first = db.binlog_files()[0].0.clone();
    let (status, task) = srv.post(
        "/api/tasks",
        &json!({
            "name": "full", "cluster_key": "full",
            "source": {"host": "127.0.0.1", "port": db.port(), "user": REPL_USER, "password": REPL_PASSWORD, "flavor": "mariadb"},
            "start": {"mode": "FILE_POS", "file": first, "pos": 4},
        }),
    );
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_i64().expect("id");
    assert_eq!(srv.post(&format!("/api/tasks/{id}/start"), &json!({})).0, 200);

    // About 6 MiB of binlog for a 2 MiB disk.
    db.sql("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(1000)) ENGINE=InnoDB");
    for _ in 0..12 {
        db.sql("INSERT INTO t (v) SELECT REPEAT('z', 1000) FROM seq_1_to_500");
    }
    let paused = poll_until(WAIT, "the task to pause on the full disk", || {
        let r = srv.replication(id);
        let storage_error = r.last_error.as_ref().is_some_and(|e| e.code == TaskErrorCode::LocalStorageError);
        (r.state == TaskState::RetryBackoff && storage_error).then_some(r)
    });
    let message = paused.last_error.as_ref().map_or("", |e| e.message.as_str());
    assert!(message.contains("No space left"), "the error names the cause: {paused:?}");

    fs.resize("64m");
    // The source's end is read again at every poll: after a rotation MariaDB appends a binlog
    // checkpoint event a moment later, so an end read once can be stale (seen under load).
    wait_caught_up(&srv, &db, id);
    let r = srv.replication(id);
    assert_eq!(r.state, TaskState::Running, "{r:?}");

    // Nothing lost, nothing doubled: every sealed file equals the source's.
    let dir = data.join(id.to_string()).join("mariadb-1-0");
    let mut sealed = 0;
    for f in srv.files(id) {
        if f.state == FileState::Sealed {
            let name = f.name.as_str();
            let local = std::fs::read(dir.join(name)).expect("local");
            let source = std::fs::read(db.binlog_dir().join(name)).expect("source");
            assert!(local == source, "{name} differs from the source's file");
            sealed += 1;
        }
    }
    assert!(sealed >= 4, "expected several sealed files, got {sealed}");
    drop(srv);
    drop(fs);
}
