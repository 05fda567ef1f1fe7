//! Point-in-time replay: `mariadb-binlog` over our local files, piped into a fresh mariadbd,
//! reproduces the source's tables (CHECKSUM TABLE equal). This is what operators keep binlogs
//! for; it proves the files are not only identical but usable.

use std::process::{Command, Stdio};

use serde_json::json;

use crate::common::mariadb::{MariaDb, MariaDbOpts, REPL_PASSWORD, REPL_USER};
use crate::common::replication::wait_caught_up;
use crate::common::require_binary;
use crate::common::server::{Server, ServerOpts};

const TABLES: [&str; 3] = ["accounts", "ledger", "notes"];

fn checksums(db: &MariaDb) -> Vec<String> {
    TABLES.iter().map(|t| db.sql(&format!("CHECKSUM TABLE test.{t}"))[0][1].clone()).collect()
}

#[test]
fn replaying_our_files_rebuilds_the_source_tables() {
    let source = MariaDb::start(MariaDbOpts::default().max_binlog_size("64K"));
    let srv = Server::start(ServerOpts::default());
    let first = source.binlog_files()[0].0.clone();
    let (status, task) = srv.post(
        "/api/tasks",
        &json!({
            "name": "replay", "cluster_key": "replay",
            "source": {"host": "127.0.0.1", "port": source.port(), "user": REPL_USER, "password": REPL_PASSWORD, "flavor": "mariadb"},
            "start": {"mode": "FILE_POS", "file": first, "pos": 4},
        }),
    );
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_i64().expect("id");
    assert_eq!(srv.post(&format!("/api/tasks/{id}/start"), &json!({})).0, 200);

    // A workload with DDL, DML of several kinds, a rollback, MyISAM (non-transactional) and
    // enough volume for many 64 KiB rotations.
    source.sql(
        "CREATE TABLE accounts (id INT PRIMARY KEY, owner VARCHAR(64), balance DECIMAL(12,2)) ENGINE=InnoDB;
         CREATE TABLE ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, account INT, amount DECIMAL(12,2), at DATETIME(6)) ENGINE=InnoDB;
         CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT) ENGINE=MyISAM;",
    );
    source.sql("INSERT INTO accounts SELECT seq, CONCAT('owner-', seq), 100 FROM seq_1_to_500");
    for round in 0..20 {
        source.sql(&format!(
            "BEGIN;
             INSERT INTO ledger (account, amount, at) SELECT seq, {round} + seq / 100, NOW(6) FROM seq_1_to_200;
             UPDATE accounts SET balance = balance + {round} WHERE id % 7 = {m};
             COMMIT;
             INSERT INTO notes (body) VALUES (REPEAT('note {round} ', 40));
             BEGIN; DELETE FROM accounts WHERE id = 1; ROLLBACK;",
            m = round % 7
        ));
    }
    source.sql("ALTER TABLE accounts ADD COLUMN flags INT NOT NULL DEFAULT 0; UPDATE accounts SET flags = id % 3;");
    source.sql("DELETE FROM ledger WHERE id % 10 = 0");
    wait_caught_up(&srv, &source, id);

    // Replay every local file, in order, into a fresh server.
    let names: Vec<String> = srv.files(id).into_iter().map(|f| f.name).collect();
    assert!(names.len() >= 4, "expected at least 3 rotations, got {names:?}");
    let dir = srv.data_dir().join(id.to_string()).join("mariadb-1-0");
    let replica = MariaDb::start(MariaDbOpts::default().server_id(2));
    let mut binlog = Command::new(require_binary("mariadb-binlog"));
    binlog.args(names.iter().map(|n| dir.join(n))).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut decoder = binlog.spawn().expect("mariadb-binlog");
    let sql = decoder.stdout.take().expect("stdout");
    let client = Command::new(require_binary("mariadb"))
        .args(["--no-defaults", "-h127.0.0.1", &format!("-P{}", replica.port()), "-uroot"])
        .stdin(Stdio::from(sql))
        .output()
        .expect("mariadb client");
    let decoded = decoder.wait_with_output().expect("mariadb-binlog exit");
    assert!(decoded.status.success(), "mariadb-binlog failed: {}", String::from_utf8_lossy(&decoded.stderr));
    assert!(client.status.success(), "replay failed: {}", String::from_utf8_lossy(&client.stderr));

    assert_eq!(checksums(&replica), checksums(&source), "replayed tables differ from the source's");
    assert_eq!(
        replica.query_value("SELECT COUNT(*) FROM test.ledger"),
        source.query_value("SELECT COUNT(*) FROM test.ledger")
    );
}
