//! Point-in-time recovery across a source failover: a MariaDB primary and its replica
//! (`log_slave_updates`, same GTID domain) behind a TCP proxy that moves to the replica when the
//! primary dies; a GTID-mode task follows the move. Then, as an operator would: a snapshot of
//! the old primary, the replay command a plan prints, run by a real shell into a fresh server,
//! and CHECKSUM TABLE against the new primary. And the failover that loses transactions (the
//! replica was behind): the window names them, and no plan crosses it.

use std::time::Duration;

use binlog_server::api::dto::TaskDto;
use binlog_server::domain::{TaskError, TaskErrorCode};
use serde_json::{Value, json};

use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::pitr::{between, checksums, dump, enc, get_bytes, restore, tar_entries};
use crate::common::poll_until;
use crate::common::replication::{
    fail_over, fast_server_opts, primary_replica_proxy, source_via, start_gtid_task_via, start_task, wait_caught_up,
    wait_failed, wait_following, wait_running,
};
use crate::common::server::{Server, run_cli};

const TABLES: [&str; 3] = ["accounts", "ledger", "notes"];
const OLD: &str = "mariadb-1-0";
const NEW: &str = "mariadb-2-0";

fn schema(db: &MariaDb) {
    db.sql(
        "CREATE TABLE accounts (id INT PRIMARY KEY, owner VARCHAR(64), balance DECIMAL(12,2)) ENGINE=InnoDB;
         CREATE TABLE ledger (id BIGINT AUTO_INCREMENT PRIMARY KEY, account INT, amount DECIMAL(12,2)) ENGINE=InnoDB;
         CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT) ENGINE=InnoDB;
         INSERT INTO accounts SELECT seq, CONCAT('owner-', seq), 100 FROM seq_1_to_300;",
    );
}

/// Three transactions: inserts and updates in one, an insert, an update.
fn write_round(db: &MariaDb, round: u32) {
    db.sql(&format!(
        "BEGIN;
         INSERT INTO ledger (account, amount) SELECT seq, {round} + seq / 100 FROM seq_1_to_120;
         UPDATE accounts SET balance = balance + {round} WHERE id % 7 = {m};
         COMMIT;
         INSERT INTO notes (body) VALUES (REPEAT('note {round} ', 40));
         UPDATE notes SET body = CONCAT(body, '+') WHERE id % 3 = {k};",
        m = round % 7,
        k = round % 3
    ));
}

/// The next GTID the server will write in domain 0 (it must write one, or the stop is never
/// held): `0-<server_id>-<seq + 1>`.
fn next_gtid(db: &MariaDb) -> String {
    let pos = db.gtid_binlog_pos();
    let seq: u64 = pos.rsplit('-').next().expect("seq").parse().expect("number");
    format!("0-{}-{}", db.opts().server_id, seq + 1)
}

fn plan(srv: &Server, id: i64, query: &str) -> Value {
    let (status, plan) = srv.get(&format!("/api/tasks/{id}/replay?{query}"));
    assert_eq!(status, 200, "{query}: {plan}");
    plan
}

/// (source identity, file names) of each segment.
fn segments(plan: &Value) -> Vec<(String, Vec<String>)> {
    let text = |v: &Value| v.as_str().expect("string").to_string();
    plan["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| (text(&s["source_identity"]), s["files"].as_array().expect("files").iter().map(text).collect()))
        .collect()
}

/// Wipes the restore target's copy of the tables (each restore starts from the snapshot).
fn reset(target: &MariaDb) {
    target.sql("DROP DATABASE IF EXISTS test; CREATE DATABASE test");
}

fn unix_now(db: &MariaDb) -> i64 {
    db.query_value("SELECT UNIX_TIMESTAMP()").parse().expect("time")
}

#[test]
fn a_replay_across_a_followed_failover_restores_the_new_primary() {
    let (mut primary, replica, proxy) = primary_replica_proxy("16K");
    let srv = Server::start(fast_server_opts());
    let id = start_gtid_task_via(&srv, proxy.port(), "failover");
    schema(&primary);
    for round in 0..4 {
        write_round(&primary, round);
    }
    // The snapshot: by GTID and by the old primary's file and position, at one moment.
    let by_gtid = dump(&primary, true);
    let by_pos = dump(&primary, false);
    let start_gtid = between(&by_gtid, "gtid_slave_pos='", "'").to_string();
    let start_file = between(&by_pos, "MASTER_LOG_FILE='", "'").to_string();
    let start_pos = between(&by_pos, "MASTER_LOG_POS=", ";").to_string();
    for round in 4..8 {
        write_round(&primary, round);
    }
    // A point before the failover: the tables as they are now, and the next transaction.
    let before_failover = checksums(&primary, &TABLES);
    let stop_before = next_gtid(&primary);
    for round in 8..12 {
        write_round(&primary, round);
    }
    replica.sync_with(&primary);
    wait_caught_up(&srv, &primary, id);

    // The failover: the primary dies, the replica is promoted, the address moves to it.
    let connections = proxy.accepted();
    fail_over(&mut primary, &replica, &proxy);
    for round in 12..20 {
        write_round(&replica, round);
    }
    wait_following(&srv, id, NEW);
    assert!(proxy.accepted() > connections, "the task reached the new primary through the proxy");
    // The state to restore; a quiet moment, then the "disaster" on the new primary.
    let expected = checksums(&replica, &TABLES);
    let last_write = unix_now(&replica);
    let t = poll_until(Duration::from_secs(10), "the new primary's clock to pass two seconds", || {
        let now = unix_now(&replica);
        (now >= last_write + 2).then_some(now)
    });
    replica.sql("DROP TABLE ledger");
    let drop_gtid = replica.gtid_binlog_pos();
    replica.sql("INSERT INTO notes (body) VALUES ('after the disaster')");
    wait_caught_up(&srv, &replica, id);

    // The window passes through the switchover: a point, not a hole.
    let (status, window) = srv.get(&format!("/api/tasks/{id}/window"));
    assert_eq!(status, 200, "{window}");
    assert_eq!(window["continuous"], true, "{window:#}");
    assert_eq!(window["breaks"], json!([]), "{window:#}");
    let switchovers = window["switchovers"].as_array().expect("switchovers");
    assert_eq!(switchovers.len(), 1, "{window:#}");
    assert_eq!((&switchovers[0]["from_source"], &switchovers[0]["to_source"]), (&json!(OLD), &json!(NEW)));
    assert_eq!(switchovers[0]["after"]["source_identity"], OLD);
    assert_eq!(switchovers[0]["before"]["source_identity"], NEW);
    assert_eq!(window["gtid_set"], json!(replica.gtid_binlog_pos()), "{window:#}");

    let target = MariaDb::start(MariaDbOpts::default().server_id(3).without_log_bin());

    // By GTID: from the snapshot's state to just before the DROP, one segment per source.
    let query = format!("start_gtid_set={}&stop_gtid={}", enc(&start_gtid), enc(&drop_gtid));
    let by_gtid_plan = plan(&srv, id, &query);
    let segs = segments(&by_gtid_plan);
    assert_eq!(segs.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), [OLD, NEW], "{by_gtid_plan:#}");
    let command = by_gtid_plan["command"].as_str().expect("command");
    assert!(command.starts_with("{ mariadb-binlog ") && command.contains(" && mariadb-binlog "), "{command}");
    restore(&target, &by_gtid, command);
    assert_eq!(checksums(&target, &TABLES), expected, "restored by GTID across the failover");

    // By time: from the old primary's file and position to T-1s, after the failover.
    let stop = chrono::DateTime::from_timestamp(t - 1, 0).expect("time").to_rfc3339();
    let by_time_plan = plan(
        &srv,
        id,
        &format!(
            "start_file={}&start_pos={start_pos}&start_source_identity={OLD}&stop_datetime={}",
            enc(&start_file),
            enc(&stop)
        ),
    );
    assert_eq!(segments(&by_time_plan).iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), [OLD, NEW]);
    assert_eq!(segments(&by_time_plan)[0].1[0], start_file);
    reset(&target);
    restore(&target, &by_pos, by_time_plan["command"].as_str().expect("command"));
    assert_eq!(checksums(&target, &TABLES), expected, "restored by time across the failover");

    // A stop before the failover reads the old primary's files only.
    let early = plan(&srv, id, &format!("start_gtid_set={}&stop_gtid={}", enc(&start_gtid), enc(&stop_before)));
    assert_eq!(segments(&early).iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), [OLD], "{early:#}");
    assert!(early["files"].as_array().expect("files").iter().all(|f| f["source_identity"] == OLD), "{early:#}");
    reset(&target);
    restore(&target, &by_gtid, early["command"].as_str().expect("command"));
    assert_eq!(checksums(&target, &TABLES), before_failover, "restored to a point before the failover");

    // The archive holds every segment's files, a folder per source.
    let (status, ctype, tar) = get_bytes(&srv, &format!("/api/tasks/{id}/replay/archive?{query}"));
    assert_eq!((status, ctype.as_str()), (200, "application/x-tar"));
    let want: Vec<(String, u64)> = by_gtid_plan["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            (
                format!("{}/{}", f["source_identity"].as_str().expect("source"), f["name"].as_str().expect("name")),
                f["size"].as_u64().expect("size"),
            )
        })
        .collect();
    assert_eq!(tar_entries(&tar), want);

    // The CLI fetches them (a folder per source) and prints the command over the copies: run it.
    let fetch = tempfile::tempdir().expect("temp dir");
    let fetch_dir = fetch.path().to_str().expect("utf-8 path");
    let (code, out, err) = run_cli(
        &[
            "replay",
            "--server",
            &srv.url(""),
            "--task",
            &id.to_string(),
            "--start-gtid-set",
            &start_gtid,
            "--stop-gtid",
            &drop_gtid,
            "--fetch",
            fetch_dir,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("# segment 2 of 2: source mariadb-2-0"), "{out}");
    let cli_command = out.lines().last().expect("a command line");
    assert!(
        cli_command.contains(&format!("{fetch_dir}/{OLD}/")) && cli_command.contains(&format!("{fetch_dir}/{NEW}/"))
    );
    reset(&target);
    restore(&target, &by_gtid, cli_command);
    assert_eq!(checksums(&target, &TABLES), expected, "restored from the CLI's fetched copies");
}

#[test]
fn a_failover_that_lost_transactions_is_a_break_naming_them() {
    let (mut primary, replica, proxy) = primary_replica_proxy("16K");
    let srv = Server::start(fast_server_opts());
    let id = start_gtid_task_via(&srv, proxy.port(), "lossy");
    schema(&primary);
    for round in 0..3 {
        write_round(&primary, round);
    }
    let snapshot = between(&dump(&primary, true), "gtid_slave_pos='", "'").to_string();
    replica.sync_with(&primary);
    // The replica falls behind; what the primary writes now never reaches it.
    replica.stop_replica();
    for round in 3..5 {
        write_round(&primary, round);
    }
    wait_caught_up(&srv, &primary, id);
    let seq = |pos: String| -> u64 { pos.rsplit('-').next().expect("seq").parse().expect("number") };
    let promoted_at = replica.gtid_binlog_pos();
    let (kept, reached) = (seq(promoted_at.clone()), seq(primary.gtid_binlog_pos()));
    assert!(reached > kept, "the primary is ahead of its replica");
    let lost = format!("0-1-{}..0-1-{reached}", kept + 1);

    fail_over(&mut primary, &replica, &proxy);
    for round in 5..9 {
        write_round(&replica, round);
    }
    // The new primary refuses the GTID the task reached: the task stops, loudly.
    let TaskError { code, message, .. } = wait_failed(&srv, id);
    assert_eq!(code, TaskErrorCode::InvalidStartPosition, "{message}");
    assert!(message.contains(&format!("0-1-{reached}")), "{message}");
    assert!(message.contains("This source replaced mariadb-1-0") && message.contains("give the task a GTID start"));

    // The operator accepts the loss and archives the new primary from where it took over.
    let current = srv.task(id);
    let body = json!({
        "name": current.name, "cluster_key": current.cluster_key,
        "source": source_via(proxy.port()),
        "start": {"mode": "GTID", "gtid_set": promoted_at},
    });
    let _: TaskDto = srv.put_as(&format!("/api/tasks/{id}"), &body, 200);
    start_task(&srv, id);
    wait_running(&srv, id);
    wait_caught_up(&srv, &replica, id);

    // The window: the switchover is a break, with the lost GTIDs named.
    let (_, window) = srv.get(&format!("/api/tasks/{id}/window"));
    assert_eq!(window["continuous"], false, "{window:#}");
    assert_eq!(window["switchovers"], json!([]), "{window:#}");
    let breaks = window["breaks"].as_array().expect("breaks");
    assert_eq!(breaks.len(), 1, "{window:#}");
    assert_eq!(breaks[0]["reason"], "SOURCE_SWITCHOVER");
    assert_eq!(breaks[0]["missing_gtids"], json!(lost), "{window:#}");
    assert!(breaks[0]["detail"].as_str().expect("detail").contains(&format!("the new source lacks {lost}")));

    // A plan across it is refused, naming them; one on the new primary's side alone is not.
    let stop = next_gtid(&replica);
    replica.sql("INSERT INTO notes (body) VALUES ('the stop')");
    wait_caught_up(&srv, &replica, id);
    let (status, body) =
        srv.get(&format!("/api/tasks/{id}/replay?start_gtid_set={}&stop_gtid={}", enc(&snapshot), enc(&stop)));
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], "RANGE_NOT_COVERED");
    let error = body["error"].as_str().expect("error");
    assert!(error.contains("SourceSwitchover") && error.contains(&lost), "{error}");
    // (A GTID state before the divergence, like `promoted_at`, is on both lines: the new
    // primary's side is named by where its files begin.)
    let resume = &breaks[0]["before"];
    assert_eq!(resume["source_identity"], NEW);
    let query = format!(
        "start_file={}&start_pos={}&start_source_identity={NEW}&stop_gtid={}",
        resume["file"].as_str().expect("file"),
        resume["pos"],
        enc(&stop)
    );
    let p = plan(&srv, id, &query);
    assert_eq!(segments(&p).iter().map(|s| s.0.as_str()).collect::<Vec<_>>(), [NEW], "{p:#}");
}
