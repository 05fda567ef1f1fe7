//! Proves the harness itself: a real mariadbd with the binlog settings tests rely on, the `repl`
//! user over TCP, clean and crash stops, and the server binary's start/health/restart cycle.

use std::time::Duration;

use crate::common::mariadb::{MariaDb, MariaDbOpts, REPL_PASSWORD, REPL_USER};
use crate::common::server::{Server, ServerOpts, run_cli};
use crate::common::{pid_exists, poll_until};

#[test]
fn mariadb_starts_with_row_binlog_and_crc32() {
    let db = MariaDb::start(MariaDbOpts::default());
    let rows = db.sql("SELECT @@log_bin, @@binlog_format, @@binlog_checksum, @@server_id");
    assert_eq!(rows, vec![vec!["1", "ROW", "CRC32", "1"]]);
    assert_eq!(db.gtid_binlog_pos(), "", "set-up SQL must stay out of the binlog");
    let files = db.binlog_files();
    assert_eq!(files.len(), 1, "a fresh server has one binlog file: {files:?}");
    assert!(db.binlog_dir().join(&files[0].0).is_file(), "{} not in {}", files[0].0, db.binlog_dir().display());
}

#[test]
fn mariadb_binlog_grows_and_rotates() {
    let db = MariaDb::start(MariaDbOpts::default().server_id(7).gtid_domain_id(3));
    let before = db.master_status().expect("binlog is on");

    db.sql("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(64))");
    db.sql("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')");
    let after = db.master_status().expect("binlog is on");
    assert_eq!(after.file, before.file);
    assert!(after.position > before.position, "writes must advance the position: {before:?} -> {after:?}");
    assert_eq!(db.gtid_binlog_pos(), "3-7-2");
    assert_eq!(db.query_value("SELECT COUNT(*) FROM t"), "3");

    let files_before = db.binlog_files();
    db.flush_binary_logs();
    let files_after = db.binlog_files();
    assert_eq!(
        files_after.len(),
        files_before.len() + 1,
        "FLUSH BINARY LOGS adds a file: {files_before:?} -> {files_after:?}"
    );
    assert_eq!(db.master_status().expect("binlog is on").file, files_after.last().expect("at least one file").0);
}

#[test]
fn mariadb_repl_user_connects_over_tcp() {
    let db = MariaDb::start(MariaDbOpts::default());
    let status = db.sql_as(REPL_USER, REPL_PASSWORD, "SHOW MASTER STATUS");
    assert_eq!(status.len(), 1, "SHOW MASTER STATUS as repl: {status:?}");
    assert_eq!(status[0][0], db.master_status().expect("binlog is on").file);
    let user = db.sql_as(REPL_USER, REPL_PASSWORD, "SELECT CURRENT_USER()");
    assert_eq!(user, vec![vec!["repl@%"]], "anonymous users must not shadow repl");

    let wrong = db.try_sql_as(REPL_USER, "wrong-password", "SELECT 1");
    assert!(wrong.as_ref().is_err_and(|e| e.contains("Access denied")), "a wrong password must be refused: {wrong:?}");
}

#[test]
fn mariadb_without_log_bin() {
    let db = MariaDb::start(MariaDbOpts::default().without_log_bin());
    assert_eq!(db.query_value("SELECT @@log_bin"), "0");
    assert_eq!(db.master_status(), None);
}

#[test]
fn mariadb_kill_stop_and_restart() {
    let mut db = MariaDb::start(MariaDbOpts::default());
    db.sql("CREATE TABLE t (id INT PRIMARY KEY)");
    db.sql("INSERT INTO t VALUES (1)");
    let port = db.port();

    db.restart();
    assert_eq!(db.port(), port, "restart keeps the port");
    assert_eq!(db.query_value("SELECT COUNT(*) FROM t"), "1");

    let pid = db.pid().expect("running");
    db.kill();
    assert!(!pid_exists(pid), "pid {pid} must be gone after kill()");
    assert!(db.pid().is_none());

    // Crash recovery: InnoDB keeps the committed row, the next start opens a new binlog file.
    db.restart();
    assert_eq!(db.query_value("SELECT COUNT(*) FROM t"), "1");
    let pid = db.pid().expect("running");
    db.stop();
    assert!(!pid_exists(pid), "pid {pid} must be gone after stop()");
}

#[test]
fn mariadb_instances_are_independent() {
    let a = MariaDb::start(MariaDbOpts::default().server_id(1));
    let b = MariaDb::start(MariaDbOpts::default().server_id(2));
    assert_ne!(a.port(), b.port());
    assert_eq!(a.query_value("SELECT @@server_id"), "1");
    assert_eq!(b.query_value("SELECT @@server_id"), "2");
}

#[test]
fn poll_until_returns_the_value() {
    let mut calls = 0;
    let v = poll_until(Duration::from_secs(5), "the third call", || {
        calls += 1;
        (calls == 3).then_some(calls)
    });
    assert_eq!(v, 3);
}

#[test]
#[should_panic(expected = "timed out after")]
fn poll_until_panics_with_what_on_timeout() {
    poll_until(Duration::from_millis(50), "something that never happens", || None::<()>);
}

#[test]
fn server_starts_answers_and_restarts() {
    let mut server = Server::start(ServerOpts::default());
    let health = server.get_raw("/healthz");
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));

    let (status, tasks) = server.get("/api/tasks");
    assert_eq!(status, 200, "GET /api/tasks: {tasks}");
    // A 4xx is a value to assert on, not a Rust error.
    let (status, body) = server.get("/api/no-such-route");
    assert_eq!(status, 404, "unknown route: {body}");
    assert!(server.log_path().is_file(), "BINLOG_SERVER_LOG_FILE must be honoured: {}", server.diagnostics());

    let (port, pid) = (server.port(), server.pid());
    server.restart();
    assert!(!pid_exists(pid), "the old pid {pid} must be gone after restart");
    assert_ne!(server.pid(), pid);
    assert_eq!(server.port(), port, "restart keeps a free port");
    assert_eq!(server.get_raw("/healthz").status, 200);

    let pid = server.pid();
    server.kill9();
    assert!(!pid_exists(pid), "pid {pid} must be gone after kill9()");
    server.restart();
    assert_eq!(server.get_raw("/healthz").body, "ok");
    let status = server.stop();
    assert!(status.success(), "SIGTERM must exit cleanly: {status}\n{}", server.diagnostics());
}

#[test]
fn server_takes_a_config_file_and_extra_env() {
    let server = Server::start(
        ServerOpts::default().config_yaml("log:\n  format: json\n").env("BINLOG_SERVER_META_POOL_SIZE", "2"),
    );
    assert_eq!(server.get_raw("/healthz").status, 200);
    let log = poll_until(Duration::from_secs(10), "a line in the server log", || {
        let text = server.log_text();
        (!text.trim().is_empty()).then_some(text)
    });
    let first = log.lines().next().expect("a non-empty log has a line");
    assert!(
        serde_json::from_str::<serde_json::Value>(first).is_ok(),
        "log.format: json from the config file must apply: {first}"
    );
    assert!(
        server.data_dir().read_dir().expect("data dir").next().is_some(),
        "the server must use BINLOG_SERVER_DATA_DIR ({})",
        server.data_dir().display()
    );
}

#[test]
fn run_cli_reports_exit_code_and_output() {
    let (code, stdout, stderr) = run_cli(&["--version"], &[]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("binlog-server"), "{stdout}");

    let dir = tempfile::tempdir().expect("temp dir");
    let (code, stdout, stderr) = run_cli(
        &["serve"],
        &[("BINLOG_SERVER_DATA_DIR", dir.path().to_str().expect("utf-8 path")), ("BINLOG_SERVER_NO_SUCH_KEY", "1")],
    );
    assert_ne!(code, 0, "an unknown key must fail: {stdout}{stderr}");
    assert!(stderr.contains("BINLOG_SERVER_NO_SUCH_KEY"), "the error names the variable: {stderr}");
}

#[test]
fn server_restart_moves_off_a_taken_port() {
    let mut server = Server::start(ServerOpts::default());
    let old_port = server.port();
    server.stop();
    // Stands in for another process that grabbed the port while the server was down.
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", old_port)).expect("bind the freed port");
    server.restart();
    assert_ne!(server.port(), old_port);
    assert_eq!(server.get_raw("/healthz").body, "ok");
}

#[test]
fn fake_source_speaks_enough_protocol_for_a_real_client() {
    use crate::common::fake_source::{FakeSource, Greeting};
    let fake = FakeSource::start(|s| {
        s.greet(&Greeting::default())?;
        let hello = s.read_handshake_response()?;
        assert_eq!(hello.auth_plugin.as_deref(), Some("caching_sha2_password"), "{hello:?}");
        s.send_err(1045, "28000", &format!("Access denied for user '{}'", hello.user))
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(fake.port())
        .user(Some("probe"))
        .pass(Some("pw"));
    let err = rt.block_on(mysql_async::Conn::new(opts)).expect_err("the fake denies access");
    assert!(err.to_string().contains("Access denied for user 'probe'"), "{err}");
    let sessions = fake.wait_sessions(1, Duration::from_secs(30));
    assert_eq!(sessions[0].error, None, "the script ran to its end: {sessions:?}");
    assert_eq!(sessions[0].received.len(), 1, "one packet, the handshake response: {sessions:?}");
}
