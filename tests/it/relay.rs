//! The relay (issue 18): real replicas and `mariadb-binlog` read a task's archive from
//! binlog-server over the replication protocol, as they would read the source; with
//! `relay.tls.*`, over TLS (certificates made by `openssl`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use binlog_server::meta::UploadState;
use serde_json::json;

use crate::common::mariadb::{MariaDb, MariaDbOpts, REPL_PASSWORD, REPL_USER, TEST_DB};
use crate::common::replication::{
    LoadGenerator, fast_server_opts, flush_and_catch_up, start_copy_task, wait_caught_up,
};
use crate::common::server::Server;
use crate::common::{free_port, output_with_deadline, require_binary, temp_dir};

pub(crate) const RELAY_USER: &str = "relay1";
pub(crate) const RELAY_PASSWORD: &str = "relay-Pw-1";
const DEADLINE: Duration = Duration::from_secs(90);

/// binlog-server with the relay on a free loopback port; returns it and the port.
fn relay_server() -> (Server, u16) {
    relay_server_with(fast_server_opts())
}

fn relay_server_with(opts: crate::common::server::ServerOpts) -> (Server, u16) {
    let port = free_port();
    let srv = Server::start(opts.env("BINLOG_SERVER_RELAY_LISTEN_ADDR", format!("127.0.0.1:{port}")));
    (srv, port)
}

pub(crate) fn grant(srv: &Server, id: i64) {
    let (status, body) = srv
        .put(&format!("/api/tasks/{id}/relay"), &json!({"users": [{"name": RELAY_USER, "password": RELAY_PASSWORD}]}));
    assert_eq!(status, 200, "PUT relay users: {body}");
    assert_eq!(body["users"], json!([RELAY_USER]), "names only come back: {body}");
    assert!(!body.to_string().contains(RELAY_PASSWORD), "the password is never returned: {body}");
}

/// `mariadb-binlog --read-from-remote-server --raw --stop-never` from the relay on `port` as
/// `user`, from file `first`, writing into `out`: a live client that stays until killed (its
/// stderr is piped, for the caller's diagnostics).
pub(crate) fn spawn_stop_never_tail(
    port: u16,
    user: &str,
    password: &str,
    out: &Path,
    first: &str,
) -> std::process::Child {
    Command::new(require_binary("mariadb-binlog"))
        .args(["--no-defaults", "--read-from-remote-server", "--raw", "--stop-never", "--host=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--user={user}"))
        .env("MYSQL_PWD", password)
        .arg(format!("--result-file={}/", out.display()))
        .arg(first)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn mariadb-binlog --stop-never")
}

/// Waits until the source holds `n` binlog files (it rotates under a load).
fn wait_for_files(source: &MariaDb, n: usize) {
    crate::common::poll_until(DEADLINE, &format!("the source to rotate to {n} files"), || {
        (source.binlog_files().len() >= n).then_some(())
    });
}

/// `SHOW SLAVE STATUS` of `replica` as column -> value.
fn slave_status(replica: &MariaDb) -> std::collections::BTreeMap<String, String> {
    let mut cmd = Command::new(require_binary("mariadb"));
    cmd.args(["--no-defaults", "-h127.0.0.1", &format!("-P{}", replica.port()), "-uroot", "--vertical"])
        .env_remove("MYSQL_PWD")
        .args(["-e", "SHOW SLAVE STATUS"]);
    let out = output_with_deadline(&mut cmd, Duration::from_secs(30), "SHOW SLAVE STATUS");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

/// Waits until `replica` has applied everything the source logged, or panics with its status.
fn wait_synced(replica: &MariaDb, source: &MariaDb) {
    let want = source.gtid_binlog_pos();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let have = replica.query_value("SELECT @@gtid_slave_pos");
        if have == want {
            return;
        }
        let st = slave_status(replica);
        assert!(
            Instant::now() < deadline && st.get("Last_IO_Errno").is_none_or(|e| e == "0"),
            "replica on {} is at {have}, the source at {want}: {st:?}",
            replica.port()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn checksum(db: &MariaDb, table: &str) -> String {
    db.sql(&format!("CHECKSUM TABLE {TEST_DB}.{table}"))[0][1].clone()
}

fn point_replica(replica: &MariaDb, relay_port: u16, how: &str) {
    replica.sql(&format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={relay_port}, MASTER_USER='{RELAY_USER}', \
         MASTER_PASSWORD='{RELAY_PASSWORD}', MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1, {how}; START SLAVE"
    ));
}

#[test]
fn mariadb_replicas_follow_the_relay_by_gtid_and_by_position() {
    let source = MariaDb::start(MariaDbOpts::default().max_binlog_size("16K"));
    let first = source.binlog_files()[0].0.clone();
    let (srv, relay_port) = relay_server();
    let id = start_copy_task(&srv, &source, "relay-src");
    grant(&srv, id);
    let load = LoadGenerator::start(&source, "relayed", 7);

    let by_gtid = MariaDb::start(MariaDbOpts::default().replica(21));
    let by_pos = MariaDb::start(MariaDbOpts::default().replica(22));
    point_replica(&by_gtid, relay_port, "MASTER_USE_GTID=slave_pos");
    point_replica(&by_pos, relay_port, &format!("MASTER_USE_GTID=no, MASTER_LOG_FILE='{first}', MASTER_LOG_POS=4"));
    // Both follow while the source writes and rotates.
    wait_for_files(&source, 4);
    load.stop();
    flush_and_catch_up(&srv, &source, id);
    for r in [&by_gtid, &by_pos] {
        wait_synced(r, &source);
        assert_eq!(checksum(r, "relayed"), checksum(&source, "relayed"), "replica {}", r.port());
        assert_eq!(checksum(r, "relayed_myisam"), checksum(&source, "relayed_myisam"));
    }

    // Each connected replica is visible, with what it was sent.
    let (status, page) = srv.get(&format!("/api/tasks/{id}/replicas"));
    assert_eq!(status, 200, "{page}");
    let mut seen: Vec<(u64, String, String)> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| {
            assert!(c["bytes_sent"].as_u64().unwrap_or(0) > 0, "{c}");
            assert_eq!(c["user"], RELAY_USER, "{c}");
            (c["server_id"].as_u64().unwrap_or(0), c["mode"].as_str().unwrap_or("").to_string(), c["file"].to_string())
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen.iter().map(|s| (s.0, s.1.as_str())).collect::<Vec<_>>(),
        vec![(21, "gtid"), (22, "position")],
        "{page}"
    );
    let metrics = srv.get_raw("/metrics");
    let text = &metrics.body;
    assert!(text.contains(&format!("binlog_server_relay_clients{{task=\"{id}\"}} 2")), "relay client gauge");
    assert!(text.contains(&format!("binlog_server_relay_bytes_sent_total{{task=\"{id}\"}}")), "relay bytes counter");
    // The replicas waited for new durable checkpoints while the load ran: how long each waited
    // for its bytes after one was published is timed.
    let waited = crate::common::metric_sample(text, "binlog_server_relay_send_delay_seconds_count ");
    assert!(waited.is_some_and(|n| n > 0.0), "relay send delays observed: {waited:?}");

    // A restarted replica resumes by GTID; writes made meanwhile arrive through the relay.
    by_gtid.sql("STOP SLAVE");
    let load = LoadGenerator::start(&source, "relayed", 8);
    // Some of the load lands while the replica is stopped.
    let stopped_at = by_gtid.query_value("SELECT @@gtid_slave_pos");
    let deadline = Instant::now() + DEADLINE;
    while source.gtid_binlog_pos() == stopped_at {
        assert!(Instant::now() < deadline, "the source took no write");
        std::thread::sleep(Duration::from_millis(50));
    }
    by_gtid.sql("START SLAVE");
    load.stop();
    flush_and_catch_up(&srv, &source, id);
    wait_synced(&by_gtid, &source);
    wait_synced(&by_pos, &source);
    assert_eq!(checksum(&by_gtid, "relayed"), checksum(&source, "relayed"));
    assert_eq!(checksum(&by_pos, "relayed"), checksum(&source, "relayed"));

    // The source dies: what binlog-server fsynced before still reaches a replica that was
    // stopped meanwhile, by GTID, from the relay alone.
    by_gtid.sql("STOP SLAVE");
    source.sql("INSERT INTO relayed (k, v) VALUES (1, 'written before the source died')");
    wait_caught_up(&srv, &source, id);
    let last = source.gtid_binlog_pos();
    let want = checksum(&source, "relayed");
    let mut source = source;
    source.kill();
    by_gtid.sql("START SLAVE");
    let deadline = Instant::now() + DEADLINE;
    while by_gtid.query_value("SELECT @@gtid_slave_pos") != last {
        assert!(Instant::now() < deadline, "the replica did not reach {last}: {:?}", slave_status(&by_gtid));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(checksum(&by_gtid, "relayed"), want);

    // A GTID the archive does not hold: 1236, naming it.
    let lost = MariaDb::start(MariaDbOpts::default().replica(23));
    lost.sql("SET GLOBAL gtid_slave_pos='0-1-999999'");
    point_replica(&lost, relay_port, "MASTER_USE_GTID=slave_pos");
    let deadline = Instant::now() + DEADLINE;
    let st = loop {
        let st = slave_status(&lost);
        if st.get("Last_IO_Errno").is_some_and(|e| e != "0") {
            break st;
        }
        assert!(Instant::now() < deadline, "no IO error on the replica: {st:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(st["Last_IO_Errno"], "1236", "{st:?}");
    assert!(st["Last_IO_Error"].contains("0-1-999999"), "the message names the GTID: {st:?}");
}

/// Runs `mariadb-binlog --read-from-remote-server --raw --to-last-log` into `dir`.
fn remote_raw(port: u16, user: &str, password: &str, first: &str, dir: &Path) {
    let mut cmd = Command::new(require_binary("mariadb-binlog"));
    cmd.args(["--no-defaults", "--read-from-remote-server", "--raw", "--to-last-log", "--host=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--user={user}"))
        .env("MYSQL_PWD", password)
        .arg(format!("--result-file={}/", dir.display()))
        .arg(first);
    let out = output_with_deadline(&mut cmd, Duration::from_secs(120), "mariadb-binlog");
    assert!(out.status.success(), "mariadb-binlog on port {port}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn mariadb_binlog_reads_the_same_bytes_from_the_relay_as_from_the_source() {
    let source = MariaDb::start(MariaDbOpts::default().max_binlog_size("16K"));
    let first = source.binlog_files()[0].0.clone();
    let (srv, relay_port) = relay_server();
    let id = start_copy_task(&srv, &source, "relay-raw");
    grant(&srv, id);
    let load = LoadGenerator::start(&source, "raw", 3);
    wait_for_files(&source, 3);
    load.stop();
    // Files read in many chunks (the relay reads the next while it sends one), with events that
    // straddle chunk boundaries, and one event larger than a chunk (a single 600 KB row).
    source.sql(&format!("CREATE TABLE {TEST_DB}.wide (id INT AUTO_INCREMENT PRIMARY KEY, v LONGTEXT)"));
    source.sql(&format!("INSERT INTO {TEST_DB}.wide (v) SELECT REPEAT(MD5(seq), 1 + seq % 97) FROM seq_1_to_1500"));
    source.sql(&format!("INSERT INTO {TEST_DB}.wide (v) VALUES (REPEAT('L', 600000))"));
    source.sql(&format!("INSERT INTO {TEST_DB}.wide (v) SELECT REPEAT(MD5(seq), 1 + seq % 89) FROM seq_1_to_1500"));
    flush_and_catch_up(&srv, &source, id);

    let names = |d: &Path| {
        let mut v: Vec<String> =
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    // MariaDB may still append to its newest file after the task caught up (the asynchronous
    // BINLOG_CHECKPOINT event after a rotation), so the two reads are repeated, each after the
    // task caught up again, until they agree; a difference that persists fails at the deadline.
    let deadline = Instant::now() + DEADLINE;
    let (_from_source, from_relay, files) = loop {
        wait_caught_up(&srv, &source, id);
        let (from_source, from_relay) = (temp_dir("raw-source-"), temp_dir("raw-relay-"));
        remote_raw(source.port(), REPL_USER, REPL_PASSWORD, &first, from_source.path());
        remote_raw(relay_port, RELAY_USER, RELAY_PASSWORD, &first, from_relay.path());
        let files = names(from_source.path());
        let differs = if names(from_relay.path()) != files {
            Some(format!("source {files:?}, relay {:?}", names(from_relay.path())))
        } else {
            files.iter().find_map(|f| {
                let a = std::fs::read(from_source.path().join(f)).unwrap();
                let b = std::fs::read(from_relay.path().join(f)).unwrap();
                (a != b).then(|| format!("{f}: {} bytes from the source, {} from the relay", a.len(), b.len()))
            })
        };
        match differs {
            None => break (from_source, from_relay, files),
            Some(d) => assert!(Instant::now() < deadline, "{d}"),
        }
    };
    assert!(files.len() >= 3, "{files:?}");
    let largest = files.iter().map(|f| std::fs::metadata(from_relay.path().join(f)).unwrap().len()).max();
    assert!(largest.is_some_and(|n| n > 4 * 256 * 1024), "a file of several read chunks was served: {largest:?}");
    // The sealed ones are also the source's own files, byte for byte.
    for f in &files[..files.len() - 1] {
        let on_source = std::fs::read(source.binlog_dir().join(f)).unwrap();
        assert!(on_source == std::fs::read(from_relay.path().join(f)).unwrap(), "{f} differs from the source's file");
    }
}

#[test]
fn wrong_passwords_get_1045_and_unknown_queries_an_error_on_a_live_connection() {
    let source = MariaDb::start(MariaDbOpts::default());
    let (srv, relay_port) = relay_server_with(fast_server_opts().env("BINLOG_SERVER_RELAY_FAILURE_BURST", "2"));
    let id = start_copy_task(&srv, &source, "relay-auth");
    grant(&srv, id);
    // The relay tells the source's server id from the archive's first file.
    wait_caught_up(&srv, &source, id);
    let client = |user: &str, password: &str| {
        let mut cmd = Command::new(require_binary("mariadb"));
        cmd.args(["--no-defaults", "-h127.0.0.1", &format!("-P{relay_port}"), "--batch", "--skip-column-names"])
            .arg(format!("-u{user}"))
            .env("MYSQL_PWD", password)
            .args(["-e", "SELECT @@server_id"]);
        let out = output_with_deadline(&mut cmd, Duration::from_secs(30), "mariadb");
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // A client library (mysql_async): an unknown query is an error, and the same connection
    // answers the next one.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        use mysql_async::prelude::Queryable;
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(relay_port)
            .user(Some(RELAY_USER))
            .pass(Some(RELAY_PASSWORD));
        let mut conn = mysql_async::Conn::new(opts).await.expect("the relay user logs in");
        let err = conn.query_drop("SHOW PROCESSLIST").await.expect_err("an unknown query fails");
        assert!(err.to_string().contains("1235") && err.to_string().contains("SHOW PROCESSLIST"), "{err}");
        let id: Option<u32> = conn.query_first("SELECT @@server_id").await.expect("the connection survives");
        assert_eq!(id, Some(1), "the source's server id");
        conn.disconnect().await.expect("COM_QUIT");
    });
    assert_eq!(client(RELAY_USER, RELAY_PASSWORD).0.trim(), "1", "the mariadb client logs in too");
    let (_, err) = client(RELAY_USER, "Wr0ng-guess-77");
    assert!(err.contains("ERROR 1045"), "{err}");
    let (_, err) = client("nobody", RELAY_PASSWORD);
    assert!(err.contains("ERROR 1045"), "{err}");
    // relay.failure_burst=2 spent: this address is refused, even with the right password.
    let (out, err) = client(RELAY_USER, RELAY_PASSWORD);
    assert!(err.contains("1129") && err.contains("too many failed relay logins") && out.is_empty(), "{out} {err}");
    let log = srv.log_text();
    assert!(
        log.contains("relay query not answered") && log.contains("SHOW PROCESSLIST"),
        "the unknown query is logged"
    );
    assert!(!log.contains(RELAY_PASSWORD) && !log.contains("Wr0ng-guess-77"), "a password is never logged");
}

#[test]
fn mariadb_binlog_stop_never_tails_the_relay_live() {
    let source = MariaDb::start(MariaDbOpts::default().max_binlog_size("16K"));
    let first = source.binlog_files()[0].0.clone();
    let (srv, relay_port) = relay_server();
    let id = start_copy_task(&srv, &source, "relay-tail");
    grant(&srv, id);
    wait_caught_up(&srv, &source, id);
    let out = temp_dir("raw-tail-");
    let mut tail = spawn_stop_never_tail(relay_port, RELAY_USER, RELAY_PASSWORD, out.path(), &first);
    // Written while the tail is connected: it arrives live, file after file.
    let load = LoadGenerator::start(&source, "tailed", 5);
    wait_for_files(&source, 4);
    load.stop();
    flush_and_catch_up(&srv, &source, id);
    let sealed: Vec<String> = source.binlog_files().iter().rev().skip(1).rev().map(|(n, _)| n.clone()).collect();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let same = sealed.iter().all(|f| {
            let theirs = std::fs::read(source.binlog_dir().join(f)).unwrap();
            std::fs::read(out.path().join(f)).is_ok_and(|ours| ours == theirs)
        });
        if same {
            break;
        }
        let exited = tail.try_wait().expect("try_wait");
        if Instant::now() >= deadline || exited.is_some() {
            let _ = tail.kill();
            let out_tail = tail.wait_with_output().expect("the tail's output");
            let differs: Vec<String> = sealed
                .iter()
                .filter(|f| {
                    let theirs = std::fs::read(source.binlog_dir().join(f)).unwrap();
                    std::fs::read(out.path().join(f)).map_or(true, |ours| ours != theirs)
                })
                .map(|f| {
                    let len = std::fs::metadata(out.path().join(f)).map_or(0, |m| m.len());
                    format!("{f} ({len} bytes here)")
                })
                .collect();
            panic!(
                "the live tail did not deliver every sealed file byte-identical: {differs:?}; exited: {exited:?}; \
                 stderr: {}",
                String::from_utf8_lossy(&out_tail.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = tail.kill();
    let _ = tail.wait();
}

/// `mariadb-binlog --read-from-remote-server --raw --to-last-log` with extra client options;
/// returns (success, stderr).
pub(crate) fn remote_raw_with(port: u16, first: &str, dir: &Path, extra: &[String]) -> (bool, String) {
    let mut cmd = Command::new(require_binary("mariadb-binlog"));
    cmd.args(["--no-defaults", "--read-from-remote-server", "--raw", "--to-last-log", "--host=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--user={RELAY_USER}"))
        .env("MYSQL_PWD", RELAY_PASSWORD)
        .args(extra)
        .arg(format!("--result-file={}/", dir.display()))
        .arg(first);
    let out = output_with_deadline(&mut cmd, Duration::from_secs(120), "mariadb-binlog");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn over_tls_a_replica_and_mariadb_binlog_follow_the_relay_and_a_wrong_ca_or_plain_tcp_is_refused() {
    let certs = temp_dir("binlog-it-relay-tls-");
    let (cert, key) = crate::tls_listener::self_signed(certs.path(), "relay");
    let (other_ca, _) = crate::tls_listener::self_signed(certs.path(), "other");
    let source = MariaDb::start(MariaDbOpts::default().max_binlog_size("16K"));
    let first = source.binlog_files()[0].0.clone();
    let (srv, relay_port) = relay_server_with(
        fast_server_opts()
            .env("BINLOG_SERVER_RELAY_TLS_CERT_FILE", cert.display().to_string())
            .env("BINLOG_SERVER_RELAY_TLS_KEY_FILE", key.display().to_string()),
    );
    let id = start_copy_task(&srv, &source, "relay-tls");
    grant(&srv, id);
    let load = LoadGenerator::start(&source, "tls_relayed", 5);
    wait_for_files(&source, 3);
    load.stop();
    flush_and_catch_up(&srv, &source, id);

    // A replica that trusts the relay's certificate replicates through it.
    let replica = MariaDb::start(MariaDbOpts::default().replica(31));
    let ca = |path: &Path| format!("MASTER_USE_GTID=slave_pos, MASTER_SSL=1, MASTER_SSL_CA='{}'", path.display());
    point_replica(&replica, relay_port, &ca(&cert));
    wait_synced(&replica, &source);
    assert_eq!(checksum(&replica, "tls_relayed"), checksum(&source, "tls_relayed"));
    assert_eq!(slave_status(&replica)["Master_SSL_Allowed"], "Yes");

    // One that trusts another CA does not connect.
    let wrong = MariaDb::start(MariaDbOpts::default().replica(32));
    point_replica(&wrong, relay_port, &ca(&other_ca));
    let deadline = Instant::now() + DEADLINE;
    let st = loop {
        let st = slave_status(&wrong);
        if st.get("Last_IO_Errno").is_some_and(|e| e != "0") {
            break st;
        }
        assert!(Instant::now() < deadline, "no IO error on the replica with the wrong CA: {st:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(st["Last_IO_Errno"], "2026", "an SSL connection error: {st:?}");
    assert_eq!(wrong.query_value("SELECT @@gtid_slave_pos"), "", "nothing replicated");

    // mariadb-binlog --ssl reads the same bytes as from the source.
    let (from_source, from_relay) = (temp_dir("tls-raw-source-"), temp_dir("tls-raw-relay-"));
    remote_raw(source.port(), REPL_USER, REPL_PASSWORD, &first, from_source.path());
    let (ok, err) = remote_raw_with(
        relay_port,
        &first,
        from_relay.path(),
        &["--ssl".to_string(), format!("--ssl-ca={}", cert.display())],
    );
    assert!(ok, "mariadb-binlog --ssl: {err}");
    for f in source.binlog_files().iter().map(|(n, _)| n).take(2) {
        let a = std::fs::read(from_source.path().join(f)).unwrap();
        let b = std::fs::read(from_relay.path().join(f)).unwrap_or_else(|e| panic!("{f} over TLS: {e}"));
        assert!(a == b, "{f}: {} bytes from the source, {} through the TLS relay", a.len(), b.len());
    }

    // Without TLS the relay says why and serves nothing.
    let plain = temp_dir("tls-raw-plain-");
    let (ok, err) = remote_raw_with(relay_port, &first, plain.path(), &["--skip-ssl".to_string()]);
    assert!(!ok && err.contains("TLS connections only"), "{err}");
}

#[test]
fn a_bad_relay_certificate_or_half_a_tls_setting_stops_the_start_up_naming_it() {
    let dir = temp_dir("binlog-it-relay-tls-bad-");
    let (cert, _) = crate::tls_listener::self_signed(dir.path(), "only");
    let missing_key = dir.path().join("missing.key");
    let data = dir.path().join("data").display().to_string();
    let relay = format!("127.0.0.1:{}", free_port());
    let cert_s = cert.display().to_string();
    let key_s = missing_key.display().to_string();
    let base = [
        ("BINLOG_SERVER_DATA_DIR", data.as_str()),
        ("BINLOG_SERVER_LISTEN_ADDR", "127.0.0.1:0"),
        ("BINLOG_SERVER_RELAY_LISTEN_ADDR", relay.as_str()),
        ("BINLOG_SERVER_RELAY_TLS_CERT_FILE", cert_s.as_str()),
    ];
    let mut bad_key = base.to_vec();
    bad_key.push(("BINLOG_SERVER_RELAY_TLS_KEY_FILE", key_s.as_str()));
    let (code, out, err) = crate::common::server::run_cli(&["serve"], &bad_key);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("relay.tls") && err.contains(&key_s), "names the setting and the file: {err}");
    let (code, out, err) = crate::common::server::run_cli(&["serve"], &base);
    assert_eq!(code, 2, "a configuration error: {out}{err}");
    assert!(err.contains("relay.tls.key_file") && err.contains("set both"), "{err}");
}

/// Reads one MySQL packet (header and payload) from a blocking reader.
fn read_mysql_packet(r: &mut impl std::io::Read) -> Vec<u8> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head).expect("a packet header");
    let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).expect("a packet payload");
    payload
}

/// A MySQL packet: 3-byte length, sequence id, payload.
fn mysql_packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    p.push(seq);
    p.extend_from_slice(payload);
    p
}

/// A client that sends its TLS ClientHello in the same segment as its SSL request (clients do
/// not wait for an answer to it, and the relay's packet reader may read both at once): the
/// handshake still completes, and the login inside TLS gets its answer (here 1045).
#[test]
fn a_client_hello_in_the_same_segment_as_the_ssl_request_is_not_lost() {
    use std::io::{Read, Write};
    use std::sync::Arc;
    const SSL: u32 = 0x0800;
    const CAPS: u32 = 0x0200 | 0x8000 | 0x0008_0000 | SSL; // PROTOCOL_41, SECURE_CONNECTION, PLUGIN_AUTH
    let certs = temp_dir("binlog-it-relay-tls-segment-");
    let (cert, key) = crate::tls_listener::self_signed(certs.path(), "relay");
    let (_srv, port) = relay_server_with(
        fast_server_opts()
            .env("BINLOG_SERVER_RELAY_TLS_CERT_FILE", cert.display().to_string())
            .env("BINLOG_SERVER_RELAY_TLS_KEY_FILE", key.display().to_string()),
    );
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to the relay");
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let greeting = read_mysql_packet(&mut tcp);
    let version_end = greeting.iter().position(|&b| b == 0).expect("a version string");
    let low = u16::from_le_bytes([greeting[version_end + 14], greeting[version_end + 15]]);
    assert_ne!(u32::from(low) & SSL, 0, "the greeting offers TLS");

    // The certificate is checked by the test above (a real replica with MASTER_SSL_CA); here it is
    // the byte stream that matters, and webpki refuses a self-signed certificate as a leaf.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut ssl_request = CAPS.to_le_bytes().to_vec();
    ssl_request.extend_from_slice(&(1u32 << 24).to_le_bytes());
    ssl_request.push(45);
    ssl_request.resize(32, 0);
    let mut segment = mysql_packet(1, &ssl_request);
    tls.write_tls(&mut segment).expect("the ClientHello");
    tcp.write_all(&segment).expect("one write: SSL request and ClientHello");
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp).unwrap_or_else(|e| panic!("the TLS handshake with the relay: {e}"));
    }

    let mut response = ssl_request.clone();
    response.extend_from_slice(b"nobody\0");
    response.push(0);
    response.extend_from_slice(b"mysql_native_password\0");
    tls.writer().write_all(&mysql_packet(2, &response)).unwrap();
    let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
    stream.flush().unwrap();
    let answer = read_mysql_packet(&mut stream);
    assert_eq!(answer[0], 0xFF, "an error packet inside TLS: {answer:?}");
    assert_eq!(u16::from_le_bytes([answer[1], answer[2]]), 1045, "{}", String::from_utf8_lossy(&answer));
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
}

/// Accepts any server certificate (signatures are still checked): for a test about bytes.
#[derive(Debug)]
struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `bytes_sent` of each relay client of task `id`, by the server id it registered with.
fn bytes_sent_by_server_id(srv: &Server, id: i64) -> std::collections::BTreeMap<u64, u64> {
    let (status, page) = srv.get(&format!("/api/tasks/{id}/replicas"));
    assert_eq!(status, 200, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|c| Some((c["server_id"].as_u64()?, c["bytes_sent"].as_u64().unwrap_or(0))))
        .collect()
}

/// Ten real replicas on one task under load all converge, and one frozen with SIGSTOP holds
/// back nobody: while it is frozen, the task keeps copying from the source and the nine others
/// keep applying, far past what the frozen one's socket buffers can hold (the relay gives each
/// client its own bounded buffer and its own backpressure). Resumed, it catches up too.
#[test]
fn ten_replicas_converge_and_a_frozen_one_holds_back_nobody() {
    const REPLICAS: u32 = 10;
    const FROZEN: u32 = 40; // the server id of the replica that gets frozen
    let source = MariaDb::start(MariaDbOpts::default().max_binlog_size("4M"));
    let (srv, relay_port) = relay_server();
    let id = start_copy_task(&srv, &source, "relay-fanout");
    grant(&srv, id);
    source
        .sql(&format!("CREATE TABLE {TEST_DB}.fanout (id INT AUTO_INCREMENT PRIMARY KEY, v MEDIUMTEXT) ENGINE=InnoDB"));
    let load = LoadGenerator::start(&source, "fanned", 11);
    // Started side by side: ten installs one after the other would take minutes on two cores.
    let replicas: Vec<MariaDb> = std::thread::scope(|s| {
        let started: Vec<_> =
            (0..REPLICAS).map(|i| s.spawn(move || MariaDb::start(MariaDbOpts::default().replica(31 + i)))).collect();
        started.into_iter().map(|h| h.join().expect("starting a replica")).collect()
    });
    for r in &replicas {
        point_replica(r, relay_port, "MASTER_USE_GTID=slave_pos");
    }
    let frozen = replicas.iter().find(|r| r.opts().server_id == FROZEN).expect("the replica to freeze");
    let others: Vec<&MariaDb> = replicas.iter().filter(|r| r.opts().server_id != FROZEN).collect();
    // All ten follow the load first.
    load.stop();
    flush_and_catch_up(&srv, &source, id);
    for r in &replicas {
        wait_synced(r, &source);
    }
    // Listed once each has registered (a replica may still be between its login and its dump).
    let listed = crate::common::poll_until_or(DEADLINE, || {
        let listed = bytes_sent_by_server_id(&srv, id);
        if listed.len() == REPLICAS as usize { Ok(()) } else { Err(listed) }
    });
    if let Err(listed) = listed {
        // Say which are missing and what their I/O threads report, so a failure can be read.
        let (_, page) = srv.get(&format!("/api/tasks/{id}/replicas"));
        let missing: Vec<String> = replicas
            .iter()
            .filter(|r| !listed.contains_key(&u64::from(r.opts().server_id)))
            .map(|r| {
                let st = slave_status(r);
                let pick = |k: &str| st.get(k).cloned().unwrap_or_default();
                format!(
                    "server id {}: io {} ({}), errno {} {:?}, sql {}",
                    r.opts().server_id,
                    pick("Slave_IO_Running"),
                    pick("Slave_IO_State"),
                    pick("Last_IO_Errno"),
                    pick("Last_IO_Error"),
                    pick("Slave_SQL_Running")
                )
            })
            .collect();
        panic!(
            "timed out after {DEADLINE:?} waiting for ten relay clients listed with their server ids; missing: \
             {missing:?}; the listing: {page}\n{}",
            srv.diagnostics()
        );
    }
    crate::common::poll_until(DEADLINE, "the relay client gauge at 10", || {
        let metrics = srv.get_raw("/metrics").body;
        metrics.contains(&format!("binlog_server_relay_clients{{task=\"{id}\"}} 10")).then_some(())
    });

    // Freeze one, then write far more than its socket buffers hold (about 48 MiB of binlog).
    let pid = frozen.pid().expect("the frozen replica's pid");
    crate::common::send_signal(pid, "STOP");
    let before = bytes_sent_by_server_id(&srv, id);
    let frozen_at = Instant::now();
    for _ in 0..12 {
        source.sql(&format!("INSERT INTO {TEST_DB}.fanout (v) SELECT REPEAT(MD5(seq), 128) FROM seq_1_to_1000"));
    }
    // The task and the nine others keep up while it is frozen.
    let checkpoint = flush_and_catch_up(&srv, &source, id);
    for r in &others {
        wait_synced(r, &source);
    }
    let kept_up_in = frozen_at.elapsed();
    let during = bytes_sent_by_server_id(&srv, id);
    let sent = |m: &std::collections::BTreeMap<u64, u64>, sid: u32| m.get(&u64::from(sid)).copied().unwrap_or(0);
    // A replica that reconnected meanwhile starts a new count: never below zero.
    let frozen_sent = sent(&during, FROZEN).saturating_sub(sent(&before, FROZEN));
    let least_other = others
        .iter()
        .map(|r| sent(&during, r.opts().server_id).saturating_sub(sent(&before, r.opts().server_id)))
        .min();
    let least_other = least_other.expect("nine others");
    eprintln!(
        "frozen replica: {frozen_sent} bytes sent while frozen; the others at least {least_other}; the task and the \
         nine others caught up in {kept_up_in:.1?} (checkpoint {checkpoint:?})"
    );
    // The case holds only if the frozen one really fell behind: it could not take it all.
    assert!(
        least_other > 40 * 1024 * 1024 && frozen_sent + 16 * 1024 * 1024 < least_other,
        "the frozen replica was sent {frozen_sent} bytes, the others at least {least_other}: it did not fall behind"
    );
    assert!(frozen.pid().is_some(), "the frozen replica is still there");

    // Resumed, it catches up, and every replica holds what the source holds.
    crate::common::send_signal(pid, "CONT");
    wait_synced(frozen, &source);
    for r in &replicas {
        for table in ["fanned", "fanned_myisam", "fanout"] {
            assert_eq!(checksum(r, table), checksum(&source, table), "replica {} table {table}", r.opts().server_id);
        }
    }
}

/// A replica following the relay by GTID stays fed across a source switchover the task follows
/// (the primary killed, its replica promoted, the proxy moved): writes on the new primary reach it
/// through the relay, and its data ends equal to the new primary's.
#[test]
fn a_replica_by_gtid_follows_the_task_across_a_source_switchover() {
    use crate::common::replication::{fail_over, primary_replica_proxy, start_gtid_task_via, wait_following};
    let (mut primary, promoted, proxy) = primary_replica_proxy("16K");
    let (srv, relay_port) = relay_server();
    let id = start_gtid_task_via(&srv, proxy.port(), "relay-switchover");
    grant(&srv, id);
    let downstream = MariaDb::start(MariaDbOpts::default().replica(51));
    point_replica(&downstream, relay_port, "MASTER_USE_GTID=slave_pos");
    primary.sql(&format!("CREATE TABLE {TEST_DB}.sw (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT) ENGINE=InnoDB"));
    for _ in 0..8 {
        primary.sql(&format!("INSERT INTO {TEST_DB}.sw (v) SELECT REPEAT('p', 200) FROM seq_1_to_20"));
    }
    promoted.sync_with(&primary);
    wait_caught_up(&srv, &primary, id);
    wait_synced(&downstream, &primary);

    fail_over(&mut primary, &promoted, &proxy);
    for _ in 0..8 {
        promoted.sql(&format!("INSERT INTO {TEST_DB}.sw (v) SELECT REPEAT('r', 200) FROM seq_1_to_20"));
    }
    wait_following(&srv, id, "mariadb-2-0");
    wait_caught_up(&srv, &promoted, id);
    wait_synced(&downstream, &promoted);
    assert_eq!(checksum(&downstream, "sw"), checksum(&promoted, "sw"), "the downstream replica after the switchover");
    let st = slave_status(&downstream);
    assert_eq!(st.get("Slave_IO_Running").map(String::as_str), Some("Yes"), "{st:?}");
}

/// A sealed file that retention removed from local disk (the catalog says so, the bucket holds
/// a verified copy) is served from the bucket: `mariadb-binlog --raw` through the relay still
/// gets every file byte-identical to the source's. Retention's own step (days old) is played by
/// hand with the server stopped: the local file removed, `local_deleted_at` set.
#[test]
fn a_file_retention_removed_locally_is_served_from_the_bucket() {
    use crate::common::s3::S3Server;
    let s3 = S3Server::start(false);
    let source = MariaDb::start(MariaDbOpts::default().max_binlog_size("16K"));
    let first = source.binlog_files()[0].0.clone();
    let (mut srv, relay_port) = relay_server_with(
        s3.upload_env(fast_server_opts())
            .env("BINLOG_SERVER_UPLOAD_RETRY_INITIAL_SEC", "1")
            .env("BINLOG_SERVER_UPLOAD_RETRY_MAX_SEC", "2"),
    );
    let id = start_copy_task(&srv, &source, "relay-bucket");
    grant(&srv, id);
    let load = LoadGenerator::start(&source, "from_bucket", 4);
    wait_for_files(&source, 3);
    load.stop();
    flush_and_catch_up(&srv, &source, id);
    // The first file sealed, uploaded and verified.
    crate::common::poll_until(DEADLINE, &format!("{first} to be uploaded and verified"), || {
        srv.files(id)
            .iter()
            .any(|f| f.name == first && f.upload.state == UploadState::Uploaded && f.upload.verified)
            .then_some(())
    });
    srv.stop();
    let local = srv.data_dir().join(id.to_string()).join("mariadb-1-0").join(&first);
    std::fs::remove_file(&local).unwrap_or_else(|e| panic!("removing {}: {e}", local.display()));
    let sqlite3 = crate::common::find_binary("sqlite3").expect("sqlite3 CLI (scripts/setup-deps.sh test installs it)");
    let sql = format!(
        "UPDATE binlog_files SET local_deleted_at = CURRENT_TIMESTAMP WHERE task_id = {id} AND file_name = '{first}'"
    );
    let out = output_with_deadline(
        Command::new(sqlite3).arg(srv.data_dir().join("meta.db")).arg(&sql),
        DEADLINE,
        "sqlite3 UPDATE",
    );
    assert!(out.status.success(), "sqlite3: {}", String::from_utf8_lossy(&out.stderr));
    srv.restart();
    wait_caught_up(&srv, &source, id);

    let from_relay = temp_dir("raw-bucket-");
    remote_raw(relay_port, RELAY_USER, RELAY_PASSWORD, &first, from_relay.path());
    let sealed: Vec<String> = source.binlog_files().iter().rev().skip(1).rev().map(|(n, _)| n.clone()).collect();
    assert!(sealed.len() >= 3 && sealed[0] == first, "{sealed:?}");
    for f in &sealed {
        let theirs = std::fs::read(source.binlog_dir().join(f)).unwrap();
        let ours = std::fs::read(from_relay.path().join(f)).unwrap_or_else(|e| panic!("{f} from the relay: {e}"));
        assert!(ours == theirs, "{f}: {} bytes from the relay, {} on the source", ours.len(), theirs.len());
    }
    assert!(!local.exists(), "the local copy was not brought back: it was served from the bucket");
    let fetch_dir = srv.data_dir().join(".relay-fetch");
    let left: Vec<_> = std::fs::read_dir(&fetch_dir).map(|d| d.flatten().collect()).unwrap_or_default();
    assert!(left.is_empty(), "downloads are unlinked once open: {left:?}");
}

/// A copy task of `source` served through the relay, `table` created and filled with `row`,
/// and a real replica (server id 31) following it by GTID, synced: (server, task id, replica).
fn replica_through_the_relay(source: &MariaDb, name: &str, table: &str, row: &str) -> (Server, i64, MariaDb) {
    let (srv, relay_port) = relay_server();
    let id = start_copy_task(&srv, source, name);
    grant(&srv, id);
    source.sql(&format!(
        "CREATE TABLE {TEST_DB}.{table} (k INT PRIMARY KEY, v TEXT) ENGINE=InnoDB; \
         INSERT INTO {TEST_DB}.{table} VALUES {row}"
    ));
    wait_caught_up(&srv, source, id);
    let replica = MariaDb::start(MariaDbOpts::default().replica(31));
    point_replica(&replica, relay_port, "MASTER_USE_GTID=slave_pos");
    wait_synced(&replica, source);
    (srv, id, replica)
}

/// Waits until `replica` has taken `n` more heartbeats, its I/O thread running without an
/// error all along.
fn take_idle_heartbeats(replica: &MariaDb, n: u64, what: &str) {
    let heartbeats = || replica.status_value("Slave_received_heartbeats").parse::<u64>().unwrap_or(0);
    let before = heartbeats();
    crate::common::poll_until(DEADLINE, what, || {
        let st = slave_status(replica);
        assert_eq!(st.get("Last_IO_Errno").map(String::as_str), Some("0"), "the replica stopped ({what}): {st:?}");
        assert_eq!(st.get("Slave_IO_Running").map(String::as_str), Some("Yes"), "{what}: {st:?}");
        (heartbeats() >= before + n).then_some(())
    });
}

/// A source with `binlog_checksum=NONE` (the configuration issue 14 was about) behind the relay: a
/// replica (which asks for CRC32, its own default) must take the relay's idle heartbeats as it
/// takes its source's, without a checksum the files do not have, and go on replicating.
#[test]
fn a_replica_of_a_checksum_none_source_takes_the_relays_idle_heartbeats() {
    let source = MariaDb::start(MariaDbOpts::default().arg("--binlog-checksum=NONE"));
    assert_eq!(source.query_value("SELECT @@global.binlog_checksum"), "NONE");
    let (_srv, _id, replica) = replica_through_the_relay(&source, "relay-none", "quiet", "(1, 'before the replica')");

    // Idle: nothing to send but heartbeats (MASTER_HEARTBEAT_PERIOD=1). Three taken, no error.
    take_idle_heartbeats(&replica, 3, "three idle heartbeats taken by the replica");

    // And it still follows.
    source.sql(&format!("INSERT INTO {TEST_DB}.quiet VALUES (2, 'after the heartbeats')"));
    wait_synced(&replica, &source);
    assert_eq!(checksum(&replica, "quiet"), checksum(&source, "quiet"));
}

/// A replica that follows the relay live across a rotation of the source (the relay sends the
/// artificial ROTATE and the new file's header events as they become durable) takes the idle
/// heartbeats that follow, in the new file: no checksum or heartbeat error stops it.
#[test]
fn a_replica_following_live_across_a_rotation_takes_the_idle_heartbeats_after_it() {
    let source = MariaDb::start(MariaDbOpts::default());
    let (srv, id, replica) =
        replica_through_the_relay(&source, "relay-live-rotate", "rot", "(0, 'before the replica')");
    for round in 1..=3 {
        // Rotated while the replica waits at the end of the open file.
        source.sql(&format!("INSERT INTO {TEST_DB}.rot VALUES ({round}, 'before the rotation'); FLUSH BINARY LOGS"));
        wait_caught_up(&srv, &source, id);
        take_idle_heartbeats(&replica, 2, &format!("two idle heartbeats after rotation {round}"));
    }
    source.sql(&format!("INSERT INTO {TEST_DB}.rot VALUES (100, 'after the heartbeats')"));
    wait_synced(&replica, &source);
    assert_eq!(checksum(&replica, "rot"), checksum(&source, "rot"));
}
