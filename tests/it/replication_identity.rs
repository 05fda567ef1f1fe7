//! Byte identity: a workload spanning several rotations, with row events over 16 MiB (split
//! packets), is copied so that every sealed file equals the source's file and the open file is
//! a prefix of the source's (apart from the source's in-use flag); memory stays bounded by the
//! largest event.

use std::path::PathBuf;
use std::time::Duration;

use binlog_server::meta::FileState;
use serde_json::json;

use crate::common::mariadb::{MariaDb, MariaDbOpts, REPL_PASSWORD, REPL_USER};
use crate::common::poll_until;
use crate::common::replication::wait_caught_up;
use crate::common::server::{Server, ServerOpts};

const WAIT: Duration = Duration::from_secs(120);
/// Byte offset of the FDE's flags low byte: the source's in-use flag while the file is open.
const IN_USE_FLAG_OFFSET: usize = 4 + 17;

fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kb * 1024
}

#[test]
fn every_sealed_file_equals_the_source_and_big_events_stay_bounded() {
    const BIG: usize = 21 << 20; // one row event above 20 MiB: two packets
    const HUGE: usize = 60 << 20; // four packets
    let db = MariaDb::start(MariaDbOpts::default().max_allowed_packet("256M"));
    let srv = Server::start(ServerOpts::default().env("BINLOG_SERVER_REPLICATION_HEARTBEAT_PERIOD_MS", "200"));
    let file = db.binlog_files()[0].0.clone();
    let body = json!({
        "name": "identity", "cluster_key": "identity",
        "source": {"host": "127.0.0.1", "port": db.port(), "user": REPL_USER, "password": REPL_PASSWORD, "flavor": "mariadb"},
        "start": {"mode": "FILE_POS", "file": file, "pos": 4},
    });
    let (status, task) = srv.post("/api/tasks", &body);
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_i64().expect("id");
    assert_eq!(srv.post(&format!("/api/tasks/{id}/start"), &json!({})).0, 200);

    // Small and medium transactions across several 1 MiB rotations, DDL, a multi-statement
    // transaction, a rolled-back one, and the two big row events.
    db.sql("CREATE TABLE small (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(255)) ENGINE=InnoDB");
    db.sql("CREATE TABLE big (id INT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB");
    for round in 0..6 {
        db.sql(&format!("INSERT INTO small (v) SELECT CONCAT('r{round}-', seq, REPEAT('y', 200)) FROM seq_1_to_2000"));
        db.sql("BEGIN; UPDATE small SET v = CONCAT(v, '!') WHERE id % 97 = 0; DELETE FROM small WHERE id % 89 = 0; COMMIT;");
        db.sql("BEGIN; INSERT INTO small (v) VALUES ('rolled back'); ROLLBACK;");
    }
    db.sql(&format!("INSERT INTO big VALUES (1, REPEAT('a', {BIG}))"));
    db.sql("ALTER TABLE small ADD COLUMN w INT NULL");
    db.sql(&format!("INSERT INTO big VALUES (2, REPEAT('b', {HUGE}))"));
    db.sql("INSERT INTO small (v) VALUES ('after the big ones')");
    let source_files = db.binlog_files();
    assert!(source_files.len() >= 4, "the workload must span at least 3 rotations: {source_files:?}");
    // The source's end is read at every poll (a binlog checkpoint event can land after a read).
    let target = wait_caught_up(&srv, &db, id);

    let local_dir: PathBuf = srv.data_dir().join(id.to_string()).join("mariadb-1-0");
    let files = srv.files(id);
    assert_eq!(files.len(), source_files.len(), "one local file per source file: {files:?}");
    for (f, (name, size)) in files.iter().zip(&source_files) {
        assert_eq!(&f.name, name);
        let local = std::fs::read(local_dir.join(name)).expect("local file");
        let source = std::fs::read(db.binlog_dir().join(name)).expect("source file");
        if name == &target.file {
            // The source still has this file open: a prefix, except its in-use flag.
            assert_eq!(f.state, FileState::Open);
            assert_eq!(local.len() as u64, target.position, "{name}: holds up to the checkpoint");
            let mut expected = source[..local.len()].to_vec();
            expected[IN_USE_FLAG_OFFSET] &= !1;
            assert!(local == expected, "{name}: not a prefix of the source's file");
        } else {
            assert_eq!(f.state, FileState::Sealed, "{name}");
            assert_eq!(local.len() as u64, *size, "{name}: size");
            assert!(local == source, "{name}: sealed copy differs from the source's file");
            // The digest the catalog shows is the digest of these bytes.
            let digest = poll_until(WAIT, "the sealed file's sha256", || {
                srv.files(id).into_iter().find(|x| &x.name == name)?.sha256
            });
            use sha2::{Digest, Sha256};
            assert_eq!(digest, hex::encode(Sha256::digest(&local)), "{name}: sha256");
        }
    }

    // Memory: the largest event passes through at most twice (the batch being written and the
    // one being read), plus fixed buffers; far below the sum of all events.
    let peak = peak_rss_bytes(srv.pid());
    // (A third copy, or a buffer that doubles while reassembling, would break this bound.)
    let bound = 2 * HUGE as u64 + (48 << 20);
    assert!(peak < bound, "peak RSS {} MiB exceeds {} MiB", peak >> 20, bound >> 20);
    eprintln!("peak RSS {} MiB for a {} MiB event", peak >> 20, HUGE >> 20);
}
