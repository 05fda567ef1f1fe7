//! The metadata store on MariaDB: the service never creates or upgrades that schema itself (it
//! refuses an unmigrated or newer one, naming what to do), `migrate` does, the store keeps its
//! contract there, and the service runs on it across restarts. The DSN's password never shows.

use std::time::Duration;

use serde_json::json;

use binlog_server::api::dto::TaskPage;
use binlog_server::domain::TaskState;
use binlog_server::meta::{MetaDsn, Store, StoreError};
use binlog_server::secret::Secret;

use crate::common::mariadb::{MariaDb, MariaDbOpts, REPL_PASSWORD, REPL_USER};
use crate::common::poll_until;
use crate::common::replication::wait_caught_up;
use crate::common::server::{Server, ServerOpts, run_cli, spec_part};
use crate::common::{free_port, temp_dir};

const META_DB: &str = "meta";
const META_USER: &str = "meta_owner";
/// Distinctive, so any appearance in output is a leak.
const META_PASSWORD: &str = "Meta-Canary-5e1d7a";

/// A MariaDB with an empty `meta` database and a user that owns it.
struct MetaDb {
    db: MariaDb,
    dsn: String,
    /// Data dir of CLI runs (kept alive for the test).
    cli_dir: tempfile::TempDir,
}

impl MetaDb {
    fn start() -> MetaDb {
        // The meta database stays out of the binlog: tasks in these tests stream this server's
        // binlog, and their own checkpoint writes would otherwise feed it.
        let db = MariaDb::start(MariaDbOpts::default().arg(format!("--binlog-ignore-db={META_DB}")));
        db.sql(&format!(
            "CREATE DATABASE {META_DB}; \
             CREATE USER '{META_USER}'@'%' IDENTIFIED BY '{META_PASSWORD}'; \
             GRANT ALL ON {META_DB}.* TO '{META_USER}'@'%'"
        ));
        let dsn = format!("mysql://{META_USER}:{META_PASSWORD}@127.0.0.1:{}/{META_DB}", db.port());
        MetaDb { db, dsn, cli_dir: temp_dir("binlog-it-meta-cli-") }
    }

    /// Tables in the `meta` database, sorted.
    fn tables(&self) -> Vec<String> {
        self.db
            .sql(&format!(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = '{META_DB}' ORDER BY table_name"
            ))
            .into_iter()
            .map(|row| row[0].clone())
            .collect()
    }

    /// The environment of a CLI run against this meta database (`meta_dsn` from the
    /// environment; a loopback listen address and a data dir in the sandbox).
    fn cli_env(&self) -> Vec<(String, String)> {
        vec![
            ("BINLOG_SERVER_META_DSN".into(), self.dsn.clone()),
            ("BINLOG_SERVER_LISTEN_ADDR".into(), format!("127.0.0.1:{}", free_port())),
            ("BINLOG_SERVER_DATA_DIR".into(), self.cli_dir.path().join("data").display().to_string()),
        ]
    }

    /// Runs the binary; asserts the DSN's password is in neither output.
    fn cli(&self, args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (code, stdout, stderr) = run_cli(args, &env);
        let what = format!("binlog-server {}", args.join(" ").replace(META_PASSWORD, "<password>"));
        assert!(!stdout.contains(META_PASSWORD), "{what}: stdout shows the meta DSN's password: {stdout}");
        assert!(!stderr.contains(META_PASSWORD), "{what}: stderr shows the meta DSN's password: {stderr}");
        (code, stdout, stderr)
    }

    /// `binlog-server migrate <action>` with `meta_dsn` from the environment; asserts success.
    fn migrate(&self, action: &str) -> String {
        self.migrate_exits(action, 0)
    }

    /// `migrate <action>`, which must exit with `expected` (`status`: 3 pending, 4 schema ahead).
    fn migrate_exits(&self, action: &str, expected: i32) -> String {
        let (code, stdout, stderr) = self.cli(&["migrate", action], &self.cli_env());
        assert_eq!(code, expected, "migrate {action}: stdout {stdout:?}, stderr {stderr:?}\n{}", self.db.log_tail(20));
        stdout
    }

    fn open_store(&self) -> Result<Store, StoreError> {
        Store::open(&MetaDsn::Mysql(Secret::new(self.dsn.clone())), 2, binlog_server::clock::system())
    }
}

/// The tables the migrations create (besides diesel's bookkeeping table).
const SCHEMA_TABLES: [&str; 6] =
    ["binlog_files", "checkpoints", "cluster_nodes", "task_events", "task_leases", "tasks"];

#[test]
fn an_unmigrated_database_is_refused_and_left_untouched() {
    let meta = MetaDb::start();
    assert!(meta.tables().is_empty(), "a fresh meta database is empty: {:?}", meta.tables());

    let (code, stdout, stderr) = meta.cli(&["serve"], &meta.cli_env());
    assert_ne!(code, 0, "serve must refuse an unmigrated MySQL meta store: stdout {stdout:?}, stderr {stderr:?}");
    assert!(stderr.contains("binlog-server migrate up"), "the refusal names the command to run: {stderr}");
    assert!(stderr.contains("not migrated"), "the refusal says why: {stderr}");
    assert_eq!(meta.tables(), Vec::<String>::new(), "serve must not create anything in the meta database");

    // A status check reads only.
    let stdout = meta.migrate_exits("status", 3);
    assert!(stdout.contains("pending") && stdout.contains("NOT up to date"), "status: {stdout}");
    assert_eq!(meta.tables(), Vec::<String>::new(), "migrate status must not create anything");

    // The library refuses the same way.
    let err = meta.open_store().expect_err("Store::open on an unmigrated MySQL database");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Migration(_)), "a migration error: {msg}");
    assert!(msg.contains("migrate up") && !msg.contains(META_PASSWORD), "{msg}");
    assert_eq!(meta.tables(), Vec::<String>::new(), "Store::open must not create anything");
}

#[test]
fn migrate_up_status_and_down_on_mariadb() {
    let meta = MetaDb::start();
    let stdout = meta.migrate("up");
    assert!(stdout.contains("applied"), "up applies the migrations: {stdout}");
    assert!(stdout.contains(&format!("mysql://{META_USER}:***@127.0.0.1:")), "output names the DSN redacted: {stdout}");
    let tables = meta.tables();
    for t in SCHEMA_TABLES.iter().chain(&["__diesel_schema_migrations"]) {
        assert!(tables.iter().any(|n| n == t), "after up, {t} exists: {tables:?}");
    }

    let stdout = meta.migrate("status");
    assert!(stdout.contains("applied  ") && !stdout.contains("pending"), "status after up: {stdout}");
    assert!(stdout.contains(": up to date"), "status says up to date: {stdout}");
    let stdout = meta.migrate("up");
    assert!(stdout.contains("schema is up to date"), "a second up is a no-op: {stdout}");

    // down reverts the last migration (its SQL must run on MariaDB); repeated, it removes the
    // whole schema; up brings it back.
    let stdout = meta.migrate("down");
    assert!(stdout.contains("reverted"), "down: {stdout}");
    assert!(meta.tables().iter().any(|n| n == "tasks"), "one down reverts only the last migration");
    for _ in 0..20 {
        if !meta.tables().iter().any(|n| n == "tasks") {
            break;
        }
        let stdout = meta.migrate("down");
        assert!(stdout.contains("reverted"), "down: {stdout}");
    }
    let tables = meta.tables();
    assert!(!tables.iter().any(|n| n == "tasks"), "after every down, the schema is gone: {tables:?}");
    let stdout = meta.migrate_exits("status", 3);
    assert!(stdout.contains("NOT up to date"), "after down: {stdout}");
    meta.migrate("up");
    let stdout = meta.migrate("status");
    assert!(stdout.contains(": up to date"), "after up again: {stdout}");
}

/// The spelling of README and of the service's refusal: `migrate up --meta-dsn DSN`.
#[test]
fn migrate_up_with_the_meta_dsn_flag_as_documented() {
    let meta = MetaDb::start();
    let mut env = meta.cli_env();
    env.retain(|(k, _)| k != "BINLOG_SERVER_META_DSN");
    let (code, stdout, stderr) = meta.cli(&["migrate", "up", "--meta-dsn", &meta.dsn], &env);
    assert_eq!(code, 0, "migrate up --meta-dsn <dsn>: stdout {stdout:?}, stderr {stderr:?}");
    assert!(stdout.contains("applied"), "{stdout}");
    let (code, stdout, stderr) = meta.cli(&["migrate", "status", "--meta-dsn", &meta.dsn], &env);
    assert_eq!(code, 0, "migrate status --meta-dsn <dsn>: stdout {stdout:?}, stderr {stderr:?}");
    assert!(stdout.contains(": up to date"), "{stdout}");
    assert!(meta.tables().iter().any(|t| t == "tasks"), "the flag's database was migrated: {:?}", meta.tables());
}

#[test]
fn the_store_keeps_its_contract_on_mariadb() {
    let meta = MetaDb::start();
    meta.migrate("up");
    let store = meta.open_store().unwrap_or_else(|e| panic!("Store::open on the migrated database: {e}"));
    assert!(!format!("{store:?}").contains(META_PASSWORD), "Store's Debug shows the DSN redacted: {store:?}");
    binlog_server::meta::contract::run_contract(&store);
    binlog_server::meta::contract::run_lease_contract(&store);
}

fn wait_running(srv: &Server, id: i64) {
    srv.wait_for_state(id, TaskState::Running);
}

#[test]
fn the_service_runs_on_a_migrated_mariadb_store_across_restarts() {
    let meta = MetaDb::start();
    meta.migrate("up");
    let mut srv = Server::start(
        ServerOpts::default()
            .env("BINLOG_SERVER_META_DSN", &meta.dsn)
            .env("BINLOG_SERVER_REPLICATION_RETRY_INITIAL_MS", "100")
            .env("BINLOG_SERVER_REPLICATION_RETRY_MAX_MS", "1000")
            .env("BINLOG_SERVER_REPLICATION_HEARTBEAT_PERIOD_MS", "200"),
    );

    // The source is the same MariaDB (its `test` database); the task streams its binlog.
    let body = json!({
        "name": "on mysql meta", "cluster_key": "mysql-meta",
        "source": {"host": "127.0.0.1", "port": meta.db.port(), "user": REPL_USER, "password": REPL_PASSWORD, "flavor": "mariadb"},
        "start": {"mode": "FILE_POS", "file": format!("{}.000001", meta.db.binlog_basename()), "pos": 4},
    });
    let created = srv.create(&body);
    let id = created.id;
    assert_eq!(srv.task(id), created, "GET returns what POST returned");
    assert_eq!(meta.db.query_value(&format!("SELECT COUNT(*) FROM {META_DB}.tasks")), "1", "the task is in MariaDB");
    assert!(!srv.data_dir().join("meta.db").exists(), "no SQLite store when meta_dsn is MySQL");

    srv.start_task(id);
    wait_running(&srv, id);
    meta.db.sql("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)");
    wait_caught_up(&srv, &meta.db, id);
    let cp = srv.checkpoint(id);
    let stored_pos = meta.db.query_value(&format!("SELECT pos FROM {META_DB}.checkpoints WHERE task_id = {id}"));
    assert_eq!(cp.pos.map(|p| p.to_string()), Some(stored_pos), "the checkpoint is stored in MariaDB: {cp:?}");

    for (round, how) in ["graceful restart", "kill -9"].iter().enumerate() {
        if round == 0 {
            let exit = srv.stop();
            assert!(exit.success(), "SIGTERM must exit cleanly: {exit}\n{}", srv.diagnostics());
        } else {
            srv.kill9();
        }
        srv.restart();
        assert_eq!(srv.get_as::<TaskPage>("/api/tasks").total, 1, "after {how}");
        let now = srv.task(id);
        assert_eq!(spec_part(&now), spec_part(&created), "after {how}: the task is unchanged");
        wait_running(&srv, id);
        meta.db.sql(&format!("INSERT INTO t VALUES ({})", round + 2));
        wait_caught_up(&srv, &meta.db, id);
    }

    let log = srv.log_text();
    assert!(log.contains("metadata store ready"), "the log covers start-up: {}", srv.diagnostics());
    assert!(!log.contains(META_PASSWORD), "the server log shows the meta DSN's password");
    let console = std::fs::read_to_string(srv.console_path()).unwrap_or_default();
    assert!(!console.contains(META_PASSWORD), "the console output shows the meta DSN's password");
}

#[test]
fn a_schema_newer_than_the_binary_is_refused() {
    const FUTURE: &str = "99991231235959";
    let meta = MetaDb::start();
    meta.migrate("up");
    meta.db.sql(&format!("INSERT INTO {META_DB}.__diesel_schema_migrations (version) VALUES ('{FUTURE}')"));

    let (code, stdout, stderr) = meta.cli(&["serve"], &meta.cli_env());
    assert_ne!(code, 0, "serve must refuse a newer schema: stdout {stdout:?}, stderr {stderr:?}");
    assert!(stderr.contains("newer than this binary"), "the refusal says the binary is older: {stderr}");
    assert!(stderr.contains(FUTURE), "the refusal names the unknown migration: {stderr}");
    assert!(stderr.contains("upgrade binlog-server"), "the refusal says what to do: {stderr}");

    let stdout = meta.migrate_exits("status", 4);
    assert!(stdout.contains(&format!("unknown  {FUTURE}")), "status lists the unknown version: {stdout}");
    assert!(stdout.contains("NOT up to date"), "status: {stdout}");
    let err = meta.open_store().expect_err("Store::open on a newer schema");
    assert!(err.to_string().contains("newer than this binary"), "{err}");
    let versions = meta.db.sql(&format!("SELECT version FROM {META_DB}.__diesel_schema_migrations"));
    assert!(versions.iter().any(|r| r[0] == FUTURE), "the refusal changes nothing: {versions:?}");
}

/// A node frozen between a lease fence check and its commit (SIGSTOP, a stalled VM) keeps the
/// lease row locked. Another node's claim of that task gives up after `CLAIM_LOCK_WAIT_SEC` with
/// `StoreError::Locked` instead of InnoDB's 50 s (while it waited, its own leases would go
/// unrenewed: the cluster test `a_node_frozen_past_its_ttl_...` failed so in CI), its other work
/// goes on, and a session tuned as cluster mode tunes its connections has its idle transaction
/// ended by the database after the TTL, so the claim then succeeds.
#[test]
fn a_lease_row_locked_by_a_frozen_node_neither_holds_up_a_claim_nor_outlives_the_ttl() {
    use binlog_server::meta::ConnTuning;
    use binlog_server::meta::leases::CLAIM_LOCK_WAIT_SEC;
    use std::io::Write;
    use std::time::Instant;

    const TTL_SEC: u64 = 3;
    let meta = MetaDb::start();
    meta.migrate("up");
    let dsn = MetaDsn::Mysql(Secret::new(meta.dsn.clone()));
    let tuning = ConnTuning { idle_transaction_timeout_sec: Some(TTL_SEC) };
    let tuned = Store::open_tuned(&dsn, 2, binlog_server::clock::system(), tuning).expect("open tuned");
    let plain = meta.open_store().expect("open");
    assert_eq!(tuned.idle_transaction_timeout().expect("read"), Some(TTL_SEC), "cluster mode's session setting");
    assert_eq!(plain.idle_transaction_timeout().expect("read"), Some(0), "untouched outside cluster mode");

    let spec = |key: &str| crate::common::test_spec(key).validate().expect("valid spec");
    let frozen_task = plain.create_task(&spec("frozen")).expect("create").id;
    let own_task = plain.create_task(&spec("own")).expect("create").id;
    // node-a holds the task under a lease about to expire; node-b holds another one.
    plain.acquire_lease(frozen_task, "node-a", 500).expect("acquire").expect("free");
    plain.acquire_lease(own_task, "node-b", 60_000).expect("acquire").expect("free");

    // node-a's session, tuned as cluster mode tunes it, runs its fence check and freezes before
    // the commit: the client stays connected and silent.
    let mut frozen = meta.db.session(META_USER, META_PASSWORD, Some(META_DB));
    let mut stdin = frozen.stdin.take().expect("piped");
    writeln!(
        stdin,
        "SET SESSION idle_transaction_timeout = {TTL_SEC}; BEGIN; \
         UPDATE task_leases SET fence_checks = fence_checks + 1 WHERE task_id = {};",
        frozen_task.0
    )
    .expect("write to the client");
    stdin.flush().expect("flush");
    poll_until(Duration::from_secs(10), "the frozen session to hold the lease row locked", || {
        let n: usize = meta.db.query_value("SELECT COUNT(*) FROM information_schema.innodb_trx").parse().ok()?;
        (n >= 1).then_some(())
    });
    // Past the lease's expiry, node-b claims it: the row is locked, so it is told so, promptly.
    poll_until(Duration::from_secs(10), "node-a's lease to expire", || {
        (!plain.get_lease(frozen_task).expect("read").expect("leased").live).then_some(())
    });
    let asked = Instant::now();
    let err = tuned.acquire_lease(frozen_task, "node-b", 60_000).expect_err("the row is locked");
    let waited = asked.elapsed();
    assert!(matches!(err, StoreError::Locked(_)), "{err:?}");
    assert!(
        waited < Duration::from_secs(u64::from(CLAIM_LOCK_WAIT_SEC) + 3),
        "a claim of a locked row waited {waited:?}, not about {CLAIM_LOCK_WAIT_SEC} s"
    );
    // The connection went back to the pool with the server's default lock wait, and node-b's
    // own lease still renews.
    assert_eq!(tuned.renew_leases("node-b", &[own_task], 60_000).expect("renew"), vec![(own_task, 1)]);
    // The database ends the frozen transaction after it idled for the TTL; the claim succeeds.
    let took =
        poll_until(Duration::from_secs(TTL_SEC + 10), "node-b to take the task once the lock is gone", || match tuned
            .acquire_lease(frozen_task, "node-b", 60_000)
        {
            Ok(Some(a)) => Some(a),
            Ok(None) => panic!("the expired lease was refused"),
            Err(StoreError::Locked(_)) => None,
            Err(e) => panic!("claim: {e}"),
        });
    assert_eq!((took.epoch, took.previous_owner.as_deref()), (2, Some("node-a")));
    // The frozen node's change was rolled back, and when it wakes its commit fails.
    assert_eq!(
        meta.db
            .query_value(&format!("SELECT fence_checks FROM {META_DB}.task_leases WHERE task_id = {}", frozen_task.0)),
        "0"
    );
    writeln!(stdin, "COMMIT;").expect("write to the client");
    drop(stdin);
    let out = frozen.wait_with_output().expect("client exits");
    assert!(!out.status.success(), "the frozen session's COMMIT succeeded: {}", String::from_utf8_lossy(&out.stderr));
}
