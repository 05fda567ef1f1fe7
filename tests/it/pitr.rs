//! Point-in-time recovery end to end: a snapshot (`mariadb-dump --master-data`, and the
//! `--gtid` variant), more writes, a DROP TABLE "disaster" at time T, more writes; then, using
//! only the replay API and the snapshot, a fresh mariadbd restored to T-1s (and to just before
//! the DROP's GTID) has the source's tables as they were just before T (CHECKSUM TABLE).
//! Also: the window reports a deleted file as a break, downloads refuse `../` and symlinks,
//! the archive holds exactly the plan's files, and the CLI fetches them.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::pitr::{self, between, dump, enc, get_bytes, restore, tar_entries};
use crate::common::poll_until;
use crate::common::replication::{fast_server_opts, local_dir, start_copy_task, wait_caught_up};
use crate::common::server::{Server, run_cli};

const TABLES: [&str; 3] = ["accounts", "ledger", "notes"];

fn checksums(db: &MariaDb) -> Vec<String> {
    pitr::checksums(db, &TABLES)
}

fn write_round(db: &MariaDb, round: u32) {
    db.sql(&format!(
        "BEGIN;
         INSERT INTO ledger (account, amount) SELECT seq, {round} + seq / 100 FROM seq_1_to_150;
         UPDATE accounts SET balance = balance + {round} WHERE id % 5 = {m};
         COMMIT;
         INSERT INTO notes (body) VALUES (REPEAT('note {round} ', 30));",
        m = round % 5
    ));
}

fn replay_plan(srv: &Server, id: i64, query: &str) -> (u16, Value) {
    srv.get(&format!("/api/tasks/{id}/replay?{query}"))
}

#[test]
fn pitr_restores_to_just_before_a_dropped_table_by_time_and_by_gtid() {
    let source = MariaDb::start(MariaDbOpts::default().max_binlog_size("32K"));
    let srv = Server::start(fast_server_opts());
    let id = start_copy_task(&srv, &source, "pitr");
    source.sql(
        "CREATE TABLE accounts (id INT PRIMARY KEY, owner VARCHAR(64), balance DECIMAL(12,2)) ENGINE=InnoDB;
         CREATE TABLE ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, account INT, amount DECIMAL(12,2)) ENGINE=InnoDB;
         CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT) ENGINE=InnoDB;
         INSERT INTO accounts SELECT seq, CONCAT('owner-', seq), 100 FROM seq_1_to_300;",
    );
    for round in 0..5 {
        write_round(&source, round);
    }
    let by_pos = dump(&source, false);
    let by_gtid = dump(&source, true);
    let start_file = between(&by_pos, "MASTER_LOG_FILE='", "'").to_string();
    let start_pos = between(&by_pos, "MASTER_LOG_POS=", ";").to_string();
    let start_gtid = between(&by_gtid, "gtid_slave_pos='", "'").to_string();

    for round in 5..25 {
        write_round(&source, round);
    }
    // The state just before the disaster; then a quiet second so that T-1s is after it.
    let expected = checksums(&source);
    let last_write: i64 = source.query_value("SELECT UNIX_TIMESTAMP()").parse().expect("time");
    let t: i64 = poll_until(Duration::from_secs(10), "the source's clock to pass two seconds", || {
        let now: i64 = source.query_value("SELECT UNIX_TIMESTAMP()").parse().expect("time");
        (now >= last_write + 2).then_some(now)
    });
    source.sql("DROP TABLE ledger");
    let drop_gtid = source.gtid_binlog_pos();
    for round in 25..30 {
        source.sql(&format!("INSERT INTO notes (body) VALUES ('after the disaster {round}')"));
        source.sql(&format!("UPDATE accounts SET balance = balance - {round}"));
    }
    source.flush_binary_logs();
    source.sql("INSERT INTO notes (body) VALUES ('in the open file')");
    wait_caught_up(&srv, &source, id);

    let (status, window) = srv.get(&format!("/api/tasks/{id}/window"));
    assert_eq!(status, 200, "{window}");
    assert_eq!(window["continuous"], true, "{window}");
    assert_eq!(window["breaks"], serde_json::json!([]), "{window}");
    assert!(window["earliest"]["time"].is_string() && window["latest"]["time"].is_string(), "{window}");

    // By time: from the dump's position to T-1s.
    let stop = chrono::DateTime::from_timestamp(t - 1, 0).expect("time").to_rfc3339();
    let query = format!("start_file={}&start_pos={start_pos}&stop_datetime={}", enc(&start_file), enc(&stop));
    let (status, plan) = replay_plan(&srv, id, &query);
    assert_eq!(status, 200, "{plan}");
    let command = plan["command"].as_str().expect("command").to_string();
    assert!(command.starts_with("TZ=UTC mariadb-binlog --start-position="), "{command}");
    let planned: Vec<String> =
        plan["files"].as_array().expect("files").iter().map(|f| f["name"].as_str().expect("name").into()).collect();
    assert!(planned.len() >= 2, "the range spans rotations: {planned:?}");
    assert_eq!(planned[0], start_file);
    let replica = MariaDb::start(MariaDbOpts::default().server_id(2));
    restore(&replica, &by_pos, &command);
    assert_eq!(checksums(&replica), expected, "restored to T-1s by time");

    // By GTID: from the --gtid dump's state to just before the DROP's transaction.
    let query = format!("start_gtid_set={}&stop_gtid={}", enc(&start_gtid), enc(&drop_gtid));
    let (status, gplan) = replay_plan(&srv, id, &query);
    assert_eq!(status, 200, "{gplan}");
    let replica2 = MariaDb::start(MariaDbOpts::default().server_id(3));
    restore(&replica2, &by_gtid, gplan["command"].as_str().expect("command"));
    assert_eq!(checksums(&replica2), expected, "restored to just before GTID {drop_gtid}");

    // The archive holds exactly the plan's files, with the plan's sizes.
    let (status, ctype, tar) = get_bytes(&srv, &format!("/api/tasks/{id}/replay/archive?{query}"));
    assert_eq!((status, ctype.as_str()), (200, "application/x-tar"));
    let entries = tar_entries(&tar);
    let want: Vec<(String, u64)> = gplan["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| (f["name"].as_str().expect("name").to_string(), f["size"].as_u64().expect("size")))
        .collect();
    assert_eq!(entries, want);

    // The CLI fetches the files and prints the command over the copies.
    let fetch = tempfile::tempdir().expect("temp dir");
    let fetch_dir = fetch.path().to_str().expect("utf-8 path");
    let (code, out, err) = run_cli(
        &[
            "replay",
            "--server",
            &srv.url(""),
            "--task",
            &id.to_string(),
            "--start-file",
            &start_file,
            "--start-pos",
            &start_pos,
            "--stop-datetime",
            &stop,
            "--fetch",
            fetch_dir,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let cli_command = out.lines().last().expect("a command line");
    assert!(cli_command.contains(fetch_dir) && cli_command.contains("--stop-datetime="), "{out}");
    let local = local_dir(&srv, id, &source);
    for name in &planned {
        let a = std::fs::read(fetch.path().join(name)).expect("fetched file");
        let b = std::fs::read(local.join(name)).expect("local file");
        assert_eq!(a, b[..a.len()], "{name} fetched differs");
    }

    // A range past what is held is refused, naming what is missing.
    let far = chrono::DateTime::from_timestamp(t + 3600, 0).expect("time").to_rfc3339();
    let (status, body) = replay_plan(
        &srv,
        id,
        &format!("start_file={}&start_pos={start_pos}&stop_datetime={}", enc(&start_file), enc(&far)),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "RANGE_NOT_COVERED");
    assert!(body["error"].as_str().expect("error").contains("after the latest event held"), "{body}");
    let (status, body) = replay_plan(&srv, id, "stop_gtid=0-1-1");
    assert_eq!(status, 400, "{body}");

    downloads_refuse_traversal_and_symlinks(&srv, id, &local, &planned);
    a_deleted_file_is_a_break(&srv, id, &local, &planned, &query);
}

fn downloads_refuse_traversal_and_symlinks(srv: &Server, id: i64, local: &Path, planned: &[String]) {
    let (status, _, body) = get_bytes(srv, &format!("/api/tasks/{id}/files/{}", planned[1]));
    assert_eq!(status, 200);
    assert_eq!(body, std::fs::read(local.join(&planned[1])).expect("local file"));
    for bad in ["..%2F..%2Fmeta.db", "..", "%2E%2E", "x%2F..%2F..%2Fmeta.db", "..%2F1%2F"] {
        let (status, _, _) = get_bytes(srv, &format!("/api/tasks/{id}/files/{bad}"));
        assert!(status == 400 || status == 404, "{bad}: {status}");
    }
    // A catalogued file replaced by a symlink to the metadata database is not followed.
    let victim = local.join(&planned[0]);
    let kept = local.join("kept-aside");
    std::fs::rename(&victim, &kept).expect("move aside");
    std::os::unix::fs::symlink(srv.data_dir().join("meta.db"), &victim).expect("symlink");
    let (status, _, body) = get_bytes(srv, &format!("/api/tasks/{id}/files/{}", planned[0]));
    // Refused before any open (the catalog does not take a symlink for its file) or by O_NOFOLLOW.
    assert!(status == 404 || status == 422, "a symlink was served: {status}");
    assert!(String::from_utf8_lossy(&body).contains("\"code\""), "not an error body");
    std::fs::remove_file(&victim).expect("remove symlink");
    std::fs::rename(&kept, &victim).expect("restore");
}

fn a_deleted_file_is_a_break(srv: &Server, id: i64, local: &Path, planned: &[String], query: &str) {
    let gone = &planned[1];
    std::fs::remove_file(local.join(gone)).expect("delete a file");
    let (_, window) = srv.get(&format!("/api/tasks/{id}/window"));
    assert_eq!(window["continuous"], false, "{window}");
    let breaks = window["breaks"].as_array().expect("breaks");
    assert_eq!(breaks.len(), 1, "{window}");
    assert_eq!(breaks[0]["reason"], "FILE_MISSING");
    assert!(breaks[0]["detail"].as_str().expect("detail").contains(gone.as_str()), "{window}");
    let (status, body) = replay_plan(srv, id, query);
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().expect("error").contains(gone.as_str()), "{body}");
}
