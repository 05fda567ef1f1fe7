//! A real `mariadbd` per test: fresh datadir in a temp dir, ephemeral port, binary log on.
//!
//! Set-up SQL (the `repl` user, the `test` database) runs with `sql_log_bin=0`, so a fresh
//! server's binary log holds no transactions and `@@gtid_binlog_pos` starts empty. SQL helpers go
//! through the `mariadb` CLI client over TCP (as root, no password) and panic with the client's
//! stderr. The process is killed by PID when the `MariaDb` drops; it never touches the machine's
//! own MariaDB service.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{
    append_file, file_len, file_tail, free_port, is_root, kill_and_reap, output_with_deadline, poll_until, read_from,
    require_binary, send_signal, temp_dir, wait_child,
};

/// The replication user every `MariaDb` has (`'repl'@'%'`).
pub const REPL_USER: &str = "repl";
/// The password of [`REPL_USER`].
pub const REPL_PASSWORD: &str = "repl-Secret-1";
/// The database every `MariaDb` has; `sql()` runs in it.
pub const TEST_DB: &str = "test";

/// Privileges a binlog-streaming replica needs on 10.11: dump the binlog (REPLICATION SLAVE),
/// SHOW BINARY LOGS / SHOW MASTER STATUS (BINLOG MONITOR, formerly REPLICATION CLIENT),
/// SHOW SLAVE STATUS (SLAVE MONITOR), and reading server state (SELECT).
pub const REPL_PRIVILEGES: &str = "REPLICATION SLAVE, BINLOG MONITOR, SLAVE MONITOR, SELECT";

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
const PORT_ATTEMPTS: usize = 5;
const LOG_TAIL_LINES: usize = 40;
const REPLICA_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start a `MariaDb`; `Default` is a binlog-enabled primary (ROW, CRC32).
#[derive(Debug, Clone)]
pub struct MariaDbOpts {
    /// `--log-bin=<datadir>/mariadb-bin` when true, `--skip-log-bin` when false.
    pub log_bin: bool,
    /// `--max-binlog-size`, default `1M` so tests see rotations quickly.
    pub max_binlog_size: String,
    /// `--server-id`, default 1.
    pub server_id: u32,
    /// `--gtid-domain-id`, default 0.
    pub gtid_domain_id: u32,
    /// `--max-allowed-packet`, default `64M`.
    pub max_allowed_packet: String,
    /// Appended last, so they override the options above (`--binlog-checksum=NONE`, ...).
    pub extra_args: Vec<String>,
}

impl Default for MariaDbOpts {
    fn default() -> Self {
        MariaDbOpts {
            log_bin: true,
            max_binlog_size: "1M".into(),
            server_id: 1,
            gtid_domain_id: 0,
            max_allowed_packet: "64M".into(),
            extra_args: Vec::new(),
        }
    }
}

impl MariaDbOpts {
    /// Starts the server without a binary log (`@@log_bin = 0`).
    pub fn without_log_bin(mut self) -> Self {
        self.log_bin = false;
        self
    }

    /// Sets `--max-binlog-size` (`"4096"`, `"1M"`, ...; the server's minimum is 4096).
    pub fn max_binlog_size(mut self, size: impl Into<String>) -> Self {
        self.max_binlog_size = size.into();
        self
    }

    /// Sets `--server-id`.
    pub fn server_id(mut self, id: u32) -> Self {
        self.server_id = id;
        self
    }

    /// Sets `--gtid-domain-id`.
    pub fn gtid_domain_id(mut self, id: u32) -> Self {
        self.gtid_domain_id = id;
        self
    }

    /// Sets `--max-allowed-packet`.
    pub fn max_allowed_packet(mut self, size: impl Into<String>) -> Self {
        self.max_allowed_packet = size.into();
        self
    }

    /// A failover candidate: `--server-id=<server_id>` and `--log-slave-updates` (the
    /// transactions it applies are in its own binlog, with their original GTIDs), in the same
    /// GTID domain as the primary.
    pub fn replica(self, server_id: u32) -> Self {
        self.server_id(server_id).arg("--log-slave-updates")
    }

    /// A semi-sync primary: `rpl_semi_sync_master_enabled=ON`, `wait_point=AFTER_SYNC` (a
    /// commit returns only after a semi-sync replica acknowledged it), and `timeout_ms` before
    /// a commit gives up waiting and the source falls back to asynchronous.
    pub fn semi_sync_primary(self, timeout_ms: u64) -> Self {
        self.arg("--rpl-semi-sync-master-enabled=ON")
            .arg("--rpl-semi-sync-master-wait-point=AFTER_SYNC")
            .arg(format!("--rpl-semi-sync-master-timeout={timeout_ms}"))
    }

    /// Appends a free-form `mariadbd` argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }
}

/// `SHOW MASTER STATUS`: the file being written and the position of its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterStatus {
    pub file: String,
    pub position: u64,
}

/// Why a start attempt did not produce a ready server.
enum LaunchError {
    /// Another process bound the port between `free_port()` and mariadbd's bind.
    PortTaken,
}

/// A running `mariadbd` owned by one test.
pub struct MariaDb {
    opts: MariaDbOpts,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    mariadbd: PathBuf,
    client: PathBuf,
    /// Set once a panic message already carries the log tail, so `Drop` does not repeat it.
    log_reported: bool,
}

impl MariaDb {
    /// Initialises a datadir, starts `mariadbd` on an ephemeral port and waits until it answers
    /// SQL, then creates the `repl` user and the `test` database.
    pub fn start(opts: MariaDbOpts) -> MariaDb {
        let dir = temp_dir("binlog-it-mariadb-");
        let mut db = MariaDb {
            opts,
            dir,
            port: 0,
            child: None,
            mariadbd: require_binary("mariadbd"),
            client: require_binary("mariadb"),
            log_reported: false,
        };
        db.install_datadir();
        db.launch_on_free_port();
        db.create_users();
        db
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Always `127.0.0.1`: the server binds only loopback.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The temp dir holding the datadir, the socket and the server's log.
    pub fn root_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's datadir.
    pub fn datadir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where the binary log files and their index live (the datadir).
    /// The server's own tmpdir (see `install_datadir`).
    fn tmp_dir(&self) -> PathBuf {
        let dir = self.root_dir().join("tmp");
        std::fs::create_dir_all(&dir).expect("mariadb tmpdir");
        dir
    }

    pub fn binlog_dir(&self) -> PathBuf {
        self.datadir()
    }

    /// The binlog base name: files are `mariadb-bin.000001`, ...
    pub fn binlog_basename(&self) -> &'static str {
        "mariadb-bin"
    }

    /// The server's stderr log (kept across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("mariadbd.err")
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log_path(), lines)
    }

    /// The stacks of the server's threads by `gdb` (for a test's failure message), or why there
    /// are none.
    pub fn thread_stacks(&self) -> String {
        let Some(pid) = self.pid() else { return "no stacks: mariadbd is not running".into() };
        super::thread_stacks(pid, "mariadbd")
    }

    /// The PID of the running server; `None` after `stop()`/`kill()`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The options this server was started with.
    pub fn opts(&self) -> &MariaDbOpts {
        &self.opts
    }

    /// `mysql://root@127.0.0.1:<port>/test`.
    pub fn root_dsn(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/{TEST_DB}", self.port)
    }

    /// `mysql://repl:<password>@127.0.0.1:<port>`.
    pub fn repl_dsn(&self) -> String {
        format!("mysql://{REPL_USER}:{REPL_PASSWORD}@127.0.0.1:{}", self.port)
    }

    /// Runs SQL as root in the `test` database; one `Vec<String>` per row (`NULL` as "NULL").
    /// Panics with the client's stderr when the statement fails.
    pub fn sql(&self, sql: &str) -> Vec<Vec<String>> {
        self.sql_as("root", "", sql)
    }

    /// Runs SQL as `user` over TCP; panics with the client's stderr when it fails.
    pub fn sql_as(&self, user: &str, password: &str, sql: &str) -> Vec<Vec<String>> {
        self.try_sql_as(user, password, sql)
            .unwrap_or_else(|e| panic!("SQL as {user} on port {} failed: {e}\n  SQL: {sql}", self.port))
    }

    /// Like [`MariaDb::sql_as`], but returns the client's error text instead of panicking
    /// (for tests that expect a statement or a login to fail).
    pub fn try_sql_as(&self, user: &str, password: &str, sql: &str) -> Result<Vec<Vec<String>>, String> {
        let out = self.client_output(user, password, Some(TEST_DB), sql);
        parse_client_output(&out)
    }

    /// The first column of the first row; panics when there is no row.
    pub fn query_value(&self, sql: &str) -> String {
        let rows = self.sql(sql);
        rows.first().and_then(|row| row.first()).cloned().unwrap_or_else(|| panic!("no row from: {sql}"))
    }

    /// A `SHOW GLOBAL STATUS` value (`Rpl_semi_sync_master_clients`, ...); panics when absent.
    pub fn status_value(&self, name: &str) -> String {
        let rows = self.sql(&format!("SHOW GLOBAL STATUS LIKE '{name}'"));
        rows.first().and_then(|r| r.get(1)).cloned().unwrap_or_else(|| panic!("no status variable {name}"))
    }

    /// `SHOW BINARY LOGS` as `(file name, size)`.
    pub fn binlog_files(&self) -> Vec<(String, u64)> {
        self.sql("SHOW BINARY LOGS")
            .into_iter()
            .map(|row| {
                let size = row
                    .get(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected SHOW BINARY LOGS row {row:?}"));
                (row[0].clone(), size)
            })
            .collect()
    }

    /// `SHOW MASTER STATUS`; `None` when the binary log is off.
    pub fn master_status(&self) -> Option<MasterStatus> {
        let rows = self.sql("SHOW MASTER STATUS");
        let row = rows.first()?;
        let position = row
            .get(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected SHOW MASTER STATUS row {row:?}"));
        Some(MasterStatus { file: row[0].clone(), position })
    }

    /// `@@gtid_binlog_pos` (empty on a fresh server).
    pub fn gtid_binlog_pos(&self) -> String {
        self.query_value("SELECT @@gtid_binlog_pos")
    }

    /// Makes this server a GTID replica of `primary` (as the `repl` user, from its binlog's
    /// start, `MASTER_USE_GTID=slave_pos`) and starts replicating. Start the replica with
    /// [`MariaDbOpts::replica`] so that it logs what it applies, as a failover candidate does.
    pub fn replicate_from(&self, primary: &MariaDb) {
        self.sql(&format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='{REPL_USER}', \
             MASTER_PASSWORD='{REPL_PASSWORD}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE",
            primary.port()
        ));
    }

    /// Like [`MariaDb::replicate_from`], through the named connection `name` (MariaDB
    /// multi-source replication): one server can replicate several primaries, each in its own
    /// GTID domain.
    pub fn replicate_from_as(&self, name: &str, primary: &MariaDb) {
        self.sql(&format!(
            "CHANGE MASTER '{name}' TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='{REPL_USER}', \
             MASTER_PASSWORD='{REPL_PASSWORD}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE '{name}'",
            primary.port()
        ));
    }

    /// Waits until this replica has applied everything `primary` has binlogged so far; panics
    /// with the replica's `SHOW SLAVE STATUS` when it does not within the deadline.
    pub fn sync_with(&self, primary: &MariaDb) {
        let pos = primary.gtid_binlog_pos();
        let waited = self.query_value(&format!("SELECT MASTER_GTID_WAIT('{pos}', {})", REPLICA_SYNC_TIMEOUT.as_secs()));
        if waited != "0" {
            panic!(
                "replica on port {} did not reach {pos} within {REPLICA_SYNC_TIMEOUT:?}: {:?}",
                self.port,
                self.sql("SHOW SLAVE STATUS")
            );
        }
    }

    /// Stops the replica threads (the server falls behind its primary from here on).
    pub fn stop_replica(&self) {
        self.sql("STOP SLAVE");
    }

    /// A failover's promotion: replication stops and the primary is forgotten; the server takes
    /// writes of its own (`gtid_slave_pos` is kept, as in a real promotion).
    pub fn promote(&self) {
        self.sql("STOP SLAVE; RESET SLAVE ALL");
    }

    /// `FLUSH BINARY LOGS`: closes the current file and starts the next one.
    pub fn flush_binary_logs(&self) {
        self.sql("FLUSH BINARY LOGS");
    }

    /// Whether the process is still running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Clean shutdown: SIGTERM, then wait (with a deadline) for the process to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        send_signal(child.id(), "TERM");
        if wait_child(&mut child, STOP_TIMEOUT).is_none() {
            kill_and_reap(&mut child);
            panic!(
                "mariadbd (pid {}) did not shut down within {STOP_TIMEOUT:?} of SIGTERM; killed it\n{}",
                child.id(),
                self.reported_log_tail()
            );
        }
    }

    /// SIGKILL (a crash): no flush, no clean shutdown. The PID is reaped when this returns.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// Stops the server if it runs (cleanly), then starts it again on the same datadir and port.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        if let Err(LaunchError::PortTaken) = self.launch(port) {
            panic!(
                "restarting mariadbd: port {port} was taken by another process meanwhile\n{}",
                self.reported_log_tail()
            );
        }
    }

    /// The log tail for a panic message; `Drop` then does not print it a second time.
    fn reported_log_tail(&mut self) -> String {
        self.log_reported = true;
        self.log_tail(LOG_TAIL_LINES)
    }

    fn install_datadir(&self) {
        let install_db = require_binary("mariadb-install-db");
        let mut cmd = Command::new(&install_db);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.datadir().display()))
            // Own tmpdir: a starting mariadbd removes stray #sql files in its tmpdir, and a
            // shared /tmp would let parallel instances delete each other's temporary tables.
            .arg(format!("--tmpdir={}", self.tmp_dir().display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg("--skip-name-resolve")
            // Only skips its check that the host name or localhost resolves (a root without
            // /etc/hosts, e.g. debootstrap's, fails it); grants are by IP anyway.
            .arg("--force")
            // Passed through to the bootstrap mariadbd; the same InnoDB sizes as at run time.
            .arg("--innodb-buffer-pool-size=32M")
            .arg("--innodb-log-file-size=16M");
        if is_root() {
            cmd.arg("--user=root");
        }
        let out = output_with_deadline(&mut cmd, READY_TIMEOUT, "mariadb-install-db");
        if !out.status.success() {
            panic!(
                "mariadb-install-db failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn launch_on_free_port(&mut self) {
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            match self.launch(port) {
                Ok(()) => return,
                Err(LaunchError::PortTaken) => {
                    eprintln!("mariadbd: port {port} raced (attempt {attempt}), trying another");
                }
            }
        }
        panic!("mariadbd could not bind a free port in {PORT_ATTEMPTS} attempts\n{}", self.reported_log_tail());
    }

    fn server_args(&self, port: u16) -> Vec<String> {
        let root = self.dir.path();
        let o = &self.opts;
        let mut args = vec![
            "--no-defaults".to_string(),
            format!("--datadir={}", self.datadir().display()),
            format!("--socket={}", root.join("sock").display()),
            format!("--tmpdir={}", self.tmp_dir().display()),
            format!("--pid-file={}", root.join("mariadbd.pid").display()),
            format!("--port={port}"),
            "--bind-address=127.0.0.1".into(),
        ];
        if o.log_bin {
            args.push(format!("--log-bin={}", self.binlog_dir().join(self.binlog_basename()).display()));
        } else {
            args.push("--skip-log-bin".into());
        }
        args.extend([
            "--binlog-format=ROW".to_string(),
            "--binlog-checksum=CRC32".into(),
            format!("--max-binlog-size={}", o.max_binlog_size),
            format!("--server-id={}", o.server_id),
            format!("--gtid-domain-id={}", o.gtid_domain_id),
            format!("--max-allowed-packet={}", o.max_allowed_packet),
            "--innodb-buffer-pool-size=32M".into(),
            "--innodb-log-file-size=16M".into(),
            "--skip-name-resolve".into(),
        ]);
        if is_root() {
            args.push("--user=root".into());
        }
        args.extend(o.extra_args.iter().cloned());
        args
    }

    /// Spawns mariadbd on `port` and polls until it answers SQL as *this* server.
    fn launch(&mut self, port: u16) -> Result<(), LaunchError> {
        let log = self.log_path();
        let log_start = file_len(&log);
        let child = Command::new(&self.mariadbd)
            .args(self.server_args(port))
            .stdin(Stdio::null())
            .stdout(append_file(&log))
            .stderr(append_file(&log))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.mariadbd.display()));
        self.port = port;
        self.child = Some(child);

        // Another test's mariadbd that took our raced port would also answer `SELECT 1`:
        // asking for @@datadir tells the two apart.
        let expected_datadir = format!("{}/", self.datadir().display());
        let what = format!("mariadbd on port {port} to accept SQL");
        poll_until(READY_TIMEOUT, &what, || {
            let child = self.child.as_mut().expect("child was just spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let new_log = read_from(&log, log_start).unwrap_or_default();
                if new_log.contains("Bind on TCP/IP port") || new_log.contains("Address already") {
                    return Some(Err(LaunchError::PortTaken));
                }
                panic!("mariadbd exited during start-up ({status})\n{}", self.reported_log_tail());
            }
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
            let out = self.client_output("root", "", None, "SELECT @@datadir");
            let rows = parse_client_output(&out).ok()?;
            (rows.first()?.first()? == &expected_datadir).then_some(Ok(()))
        })
    }

    fn create_users(&self) {
        let host = hostname();
        let mut sql = String::from("SET SESSION sql_log_bin = 0;\n");
        // mariadb-install-db may create anonymous users; ''@'localhost' would shadow repl@'%'.
        sql.push_str("DROP USER IF EXISTS ''@'localhost';\n");
        if !host.is_empty() {
            writeln!(sql, "DROP USER IF EXISTS ''@'{host}';").expect("write to String");
        }
        writeln!(
            sql,
            "CREATE USER '{REPL_USER}'@'%' IDENTIFIED BY '{REPL_PASSWORD}';\n\
             GRANT {REPL_PRIVILEGES} ON *.* TO '{REPL_USER}'@'%';\n\
             CREATE DATABASE IF NOT EXISTS {TEST_DB};"
        )
        .expect("write to String");
        let out = self.client_output("root", "", None, &sql);
        if let Err(e) = parse_client_output(&out) {
            panic!("creating the repl user and test database failed: {e}");
        }
    }

    /// A client session that stays open, reading SQL from its stdin (stdin, stdout and stderr
    /// piped; no reconnect): for a test that holds a transaction open while it looks elsewhere.
    pub fn session(&self, user: &str, password: &str, db: Option<&str>) -> std::process::Child {
        self.client_command(user, password, db)
            .arg("--skip-reconnect")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the mariadb client")
    }

    fn client_output(&self, user: &str, password: &str, db: Option<&str>, sql: &str) -> Output {
        let mut cmd = self.client_command(user, password, db);
        cmd.arg("-e").arg(sql);
        output_with_deadline(&mut cmd, CLIENT_TIMEOUT, "the mariadb client")
    }

    fn client_command(&self, user: &str, password: &str, db: Option<&str>) -> Command {
        let mut cmd = Command::new(&self.client);
        cmd.arg("--no-defaults")
            .arg("-h127.0.0.1")
            .arg(format!("-P{}", self.port))
            .arg(format!("-u{user}"))
            .arg("--batch")
            .arg("--skip-column-names")
            .arg("--connect-timeout=10");
        if !password.is_empty() {
            // Through the environment, not argv: `ps` would show the password.
            cmd.env("MYSQL_PWD", password);
        } else {
            cmd.env_remove("MYSQL_PWD");
        }
        if let Some(db) = db {
            cmd.arg(format!("--database={db}"));
        }
        cmd
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
        if std::thread::panicking() && !self.log_reported {
            eprintln!(
                "--- mariadbd log ({}), last {LOG_TAIL_LINES} lines ---\n{}",
                self.log_path().display(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
    }
}

/// Rows of `--batch --skip-column-names` output, or the client's stderr when it failed.
fn parse_client_output(out: &Output) -> Result<Vec<Vec<String>>, String> {
    if !out.status.success() {
        return Err(format!(
            "mariadb client exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(stdout.lines().map(|line| line.split('\t').map(str::to_string).collect()).collect())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}
