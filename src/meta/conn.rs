//! Connections to the metadata database: the DSN, the two-backend diesel connection, the pool,
//! and the migrations (applied automatically for SQLite, only by `migrate up` for MySQL).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::mysql::MysqlConnection;
use diesel::r2d2::{self, ManageConnection};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::meta::StoreError;
use crate::secret::Secret;

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const MYSQL_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/mysql");

/// Where the metadata lives.
#[derive(Clone, PartialEq)]
pub enum MetaDsn {
    Sqlite(PathBuf),
    Mysql(Secret),
}

impl MetaDsn {
    /// Parses `meta_dsn`: empty means `{data_dir}/meta.db`.
    pub fn parse(dsn: &str, data_dir: &Path) -> Result<MetaDsn, String> {
        let dsn = dsn.trim();
        if dsn.is_empty() {
            return Ok(MetaDsn::Sqlite(crate::layout::DataLayout::new(data_dir).meta_db()));
        }
        if let Some(path) = dsn.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, e.g. sqlite:///var/lib/binlog-server/meta.db".into());
            }
            return Ok(MetaDsn::Sqlite(PathBuf::from(path)));
        }
        if dsn.starts_with("mysql://") || dsn.starts_with("mariadb://") {
            let normalized = dsn.replacen("mariadb://", "mysql://", 1);
            let url = url::Url::parse(&normalized).map_err(|e| format!("not a valid URL: {e}"))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err("mysql:// DSN needs a host".into());
            }
            if url.path().trim_start_matches('/').is_empty() {
                return Err(
                    "mysql:// DSN needs a database name, e.g. mysql://meta:PASS@127.0.0.1:3306/binlog_meta".into()
                );
            }
            return Ok(MetaDsn::Mysql(Secret::new(normalized)));
        }
        if dsn.contains("@tcp(") {
            return Err("Go-style DSN (user:pass@tcp(host:port)/db) is not supported; \
                        write it as mysql://user:pass@host:port/db"
                .into());
        }
        Err("must be empty (embedded SQLite), sqlite://PATH or mysql://USER:PASS@HOST:PORT/DB".into())
    }

    pub fn is_mysql(&self) -> bool {
        matches!(self, MetaDsn::Mysql(_))
    }
}

/// Shows the DSN with its password replaced by `***`.
impl fmt::Display for MetaDsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaDsn::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            MetaDsn::Mysql(s) => match url::Url::parse(s.expose()) {
                Ok(mut u) => {
                    if u.password().is_some() {
                        let _ = u.set_password(Some("***"));
                    }
                    write!(f, "{u}")
                }
                Err(_) => f.write_str("mysql://***"),
            },
        }
    }
}

impl fmt::Debug for MetaDsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One connection to either backend; queries are written once against it.
#[derive(diesel::MultiConnection)]
pub enum MetaConnection {
    Sqlite(SqliteConnection),
    Mysql(MysqlConnection),
}

/// Whether a commit must be on disk when it returns (SQLite; a MySQL store's commits are as
/// durable as that server's settings make them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The write-ahead log is synced before the commit returns (`synchronous = FULL`): what the
    /// API answered, the catalog's files, seals, uploads and imports, relay users.
    /// Unsynced, a power cut can take a commit back after it returned: in the default set-up the
    /// database shares the data dir's disk, and a file whose catalog row a cut took is a file
    /// the next start removes as unknown.
    Synced,
    /// The commit may be lost to a power cut (never half applied): it is synced with the next
    /// `Synced` commit or WAL checkpoint (`synchronous = NORMAL`). Only for the writer's
    /// periodic checkpoint, which can fall behind but never run ahead of the data: crash
    /// recovery rebuilds it from the files' durable tails. An fsync per checkpoint would be five
    /// a second per streaming task.
    Lazy,
}

impl MetaConnection {
    /// Sets how this connection's commits reach the disk, until it is set again.
    pub fn set_durability(&mut self, d: Durability) -> Result<(), diesel::result::Error> {
        match self {
            MetaConnection::Sqlite(c) => c.batch_execute(match d {
                Durability::Synced => "PRAGMA synchronous = FULL;",
                Durability::Lazy => "PRAGMA synchronous = NORMAL;",
            }),
            MetaConnection::Mysql(_) => Ok(()),
        }
    }
}

/// Per-connection session settings beyond what every connection gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnTuning {
    /// MySQL/MariaDB: a transaction left idle this long has its connection closed by the server,
    /// which rolls it back and frees its row locks (MariaDB's `idle_transaction_timeout`; MySQL
    /// has no such variable and ignores it). Cluster mode sets it to the lease TTL: a node frozen
    /// (SIGSTOP, a stalled VM) between a lease fence check and its commit would otherwise keep
    /// that lease row locked for as long as it stays frozen, and no other node could take the
    /// task over (and a node waiting for that lock would stop renewing its own leases).
    pub idle_transaction_timeout_sec: Option<u64>,
}

/// Opens connections for the pool, with the per-connection settings each backend needs.
#[derive(Debug, Clone)]
pub struct MetaConnManager {
    dsn: MetaDsn,
    tuning: ConnTuning,
    /// SQLite: how the file is opened.
    open: SqliteOpen,
}

/// How a SQLite connection opens the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SqliteOpen {
    /// Read-write, never created: a running server's pool. A file deleted under it must not
    /// come back empty (`meta::guard` notices and stops the server).
    Existing,
    /// Read-only (`doctor`): nothing is written, neither the database nor its WAL (a read-write
    /// connection that is the last to close folds the WAL into the database and deletes it).
    ReadOnly,
}

impl ManageConnection for MetaConnManager {
    type Connection = MetaConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<MetaConnection, r2d2::Error> {
        match &self.dsn {
            MetaDsn::Sqlite(path) => {
                let url = match self.open {
                    SqliteOpen::Existing => sqlite_uri(path, "rw"),
                    SqliteOpen::ReadOnly => sqlite_uri(path, "ro"),
                };
                let mut c = SqliteConnection::establish(&url).map_err(r2d2::Error::ConnectionError)?;
                if self.open == SqliteOpen::ReadOnly {
                    c.batch_execute("PRAGMA busy_timeout = 15000;").map_err(r2d2::Error::QueryError)?;
                    return Ok(MetaConnection::Sqlite(c));
                }
                // WAL lets readers run beside the writer. FULL syncs the log at every commit: a
                // commit that returned survives a power cut. Each checkout sets it again
                // (`Durability`): only the periodic checkpoint commits unsynced.
                c.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA busy_timeout = 15000; PRAGMA foreign_keys = ON;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(MetaConnection::Sqlite(c))
            }
            MetaDsn::Mysql(url) => {
                let mut c = MysqlConnection::establish(url.expose()).map_err(|e| {
                    // The C client's message never contains the password; the URL would.
                    r2d2::Error::ConnectionError(e)
                })?;
                c.batch_execute("SET time_zone = '+00:00'").map_err(r2d2::Error::QueryError)?;
                if let Some(sec) = self.tuning.idle_transaction_timeout_sec {
                    // MySQL has no such variable (error 1193): `Store::idle_transaction_timeout`
                    // lets the caller find out and say so.
                    let _ = c.batch_execute(&format!("SET SESSION idle_transaction_timeout = {sec}"));
                }
                Ok(MetaConnection::Mysql(c))
            }
        }
    }

    fn is_valid(&self, conn: &mut MetaConnection) -> Result<(), r2d2::Error> {
        diesel::sql_query("SELECT 1").execute(conn).map(|_| ()).map_err(r2d2::Error::QueryError)
    }

    /// A connection left inside a transaction, or whose transaction manager is in an error state
    /// (a COMMIT that failed on a full disk, say), must not go back into the pool: a later
    /// caller would read an old snapshot through it, or fail every transaction.
    fn has_broken(&self, conn: &mut MetaConnection) -> bool {
        use diesel::r2d2::R2D2Connection;
        std::thread::panicking() || conn.is_broken()
    }
}

pub type MetaPool = r2d2::Pool<MetaConnManager>;

/// A SQLite URI that opens `path` with `mode` (`rw`: read-write, `ro`: read-only); neither
/// creates the file.
fn sqlite_uri(path: &Path, mode: &str) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?mode=");
    uri.push_str(mode);
    uri
}

/// One connection outside any pool, for `doctor`, which must change nothing: opened on this
/// thread and closed when dropped (a pool's background threads could still hold one when a
/// short command exits). A SQLite database with a WAL beside it (a crash, or a server still
/// running) is opened read-only (`mode=ro`): a read-write connection closing last would fold
/// the WAL into the database and delete it. Without a WAL it is opened read-write and never
/// created: a read-only connection would have to create the WAL and its index, and could not
/// remove them, while a read-write one removes what it created.
pub fn connect_without_writing(dsn: &MetaDsn) -> Result<MetaConnection, StoreError> {
    let open = match dsn {
        MetaDsn::Sqlite(path) if !wal_path(path).exists() => SqliteOpen::Existing,
        _ => SqliteOpen::ReadOnly,
    };
    MetaConnManager { dsn: dsn.clone(), tuning: ConnTuning::default(), open }
        .connect()
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to metadata database {dsn}: {e}")))
}

/// `meta.db-wal` beside `meta.db`.
fn wal_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

pub fn build_pool(dsn: &MetaDsn, size: u32, tuning: ConnTuning) -> Result<MetaPool, StoreError> {
    if let MetaDsn::Sqlite(path) = dsn
        && let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create directory {} for the metadata database: {e}",
                parent.display()
            ))
        })?;
    }
    if let MetaDsn::Sqlite(path) = dsn
        && !path.exists()
    {
        // Created here, once, empty (SQLite's way to start a database); the pool's connections
        // then only open what exists. Only when it is not there: opening and closing the file
        // in a process whose SQLite connections hold it releases their POSIX locks (a second
        // pool, `Store::with_own_pool`, did: another process, the sqlite3 CLI, then took the
        // WAL for abandoned and read the database without the commits in it).
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path).map_err(|e| {
            StoreError::Unavailable(format!("cannot create the metadata database {}: {e}", path.display()))
        })?;
        // Its name survives a power cut before the first commit does (SQLite syncs its log's
        // folder once, not the database's): a name the cut took would make the next start a
        // first start, every task forgotten.
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::File::open(folder).and_then(|d| d.sync_all()).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot fsync {} after creating the metadata database: {e}",
                folder.display()
            ))
        })?;
    }
    r2d2::Pool::builder()
        .max_size(size)
        .connection_timeout(Duration::from_secs(15))
        .test_on_check_out(dsn.is_mysql())
        .build(MetaConnManager { dsn: dsn.clone(), tuning, open: SqliteOpen::Existing })
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to metadata database {dsn}: {e}")))
}

/// Migration state of a database against the migrations this binary carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub applied: Vec<String>,
    pub pending: Vec<String>,
    /// Applied versions this binary does not know (the schema is newer than the binary).
    pub unknown: Vec<String>,
}

impl MigrationStatus {
    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty()
    }
}

fn mig_err(e: impl fmt::Display) -> StoreError {
    StoreError::Migration(e.to_string())
}

fn has_migrations_table(conn: &mut MetaConnection) -> Result<bool, StoreError> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let sql = match conn {
        MetaConnection::Sqlite(_) => {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '__diesel_schema_migrations'"
        }
        MetaConnection::Mysql(_) => {
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = '__diesel_schema_migrations'"
        }
    };
    let rows: Vec<Count> = diesel::sql_query(sql).load(conn)?;
    Ok(rows.first().is_some_and(|c| c.n > 0))
}

fn status_of<DB, C>(c: &mut C, source: EmbeddedMigrations, has_table: bool) -> Result<MigrationStatus, StoreError>
where
    DB: diesel::backend::Backend,
    C: MigrationHarness<DB>,
    EmbeddedMigrations: diesel::migration::MigrationSource<DB>,
{
    use diesel::migration::MigrationSource;
    let known: Vec<String> =
        source.migrations().map_err(mig_err)?.iter().map(|m| m.name().version().to_string()).collect();
    // Without the bookkeeping table nothing is applied; asking diesel would create it, and a
    // status check must not write.
    let mut applied: Vec<String> = if has_table {
        c.applied_migrations().map_err(mig_err)?.iter().map(|v| v.to_string()).collect()
    } else {
        Vec::new()
    };
    applied.sort();
    let pending = known.iter().filter(|k| !applied.contains(k)).cloned().collect();
    let unknown = applied.iter().filter(|a| !known.contains(a)).cloned().collect();
    Ok(MigrationStatus { applied, pending, unknown })
}

/// Reads the migration state without writing anything.
pub fn migration_status(conn: &mut MetaConnection) -> Result<MigrationStatus, StoreError> {
    let has_table = has_migrations_table(conn)?;
    match conn {
        MetaConnection::Sqlite(c) => status_of(c, SQLITE_MIGRATIONS, has_table),
        MetaConnection::Mysql(c) => status_of(c, MYSQL_MIGRATIONS, has_table),
    }
}

/// Applies every pending migration; returns the versions applied.
pub fn migrate_up(conn: &mut MetaConnection) -> Result<Vec<String>, StoreError> {
    let done = match conn {
        MetaConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map_err(mig_err)?,
        MetaConnection::Mysql(c) => c.run_pending_migrations(MYSQL_MIGRATIONS).map_err(mig_err)?,
    };
    Ok(done.iter().map(|v| v.to_string()).collect())
}

/// Reverts the most recent migration; returns its version.
pub fn migrate_down(conn: &mut MetaConnection) -> Result<Option<String>, StoreError> {
    if !has_migrations_table(conn)? {
        return Ok(None);
    }
    let applied = migration_status(conn)?.applied;
    if applied.is_empty() {
        return Ok(None);
    }
    let v = match conn {
        MetaConnection::Sqlite(c) => c.revert_last_migration(SQLITE_MIGRATIONS).map_err(mig_err)?,
        MetaConnection::Mysql(c) => c.revert_last_migration(MYSQL_MIGRATIONS).map_err(mig_err)?,
    };
    Ok(Some(v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_parsing_and_redaction() {
        let d = Path::new("/var/data");
        assert_eq!(MetaDsn::parse("", d).unwrap(), MetaDsn::Sqlite(PathBuf::from("/var/data/meta.db")));
        assert_eq!(MetaDsn::parse("sqlite:///x/m.db", d).unwrap(), MetaDsn::Sqlite(PathBuf::from("/x/m.db")));
        let m = MetaDsn::parse("mysql://meta:s3cr3t@127.0.0.1:3306/binlog_meta", d).unwrap();
        assert!(m.is_mysql());
        let shown = m.to_string();
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
        assert!(MetaDsn::parse("meta:pw@tcp(127.0.0.1:3306)/db", d).unwrap_err().contains("mysql://"));
        assert!(MetaDsn::parse("mysql://meta:pw@127.0.0.1:3306/", d).is_err());
        assert!(MetaDsn::parse("postgres://x", d).is_err());
    }

    #[test]
    fn the_pool_never_creates_a_deleted_database_again() {
        assert_eq!(sqlite_uri(Path::new("/a b/50%?#.db"), "rw"), "file:/a b/50%25%3f%23.db?mode=rw");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd %?# name").join("meta.db");
        let dsn = MetaDsn::Sqlite(path.clone());
        let pool = build_pool(&dsn, 1, ConnTuning::default()).unwrap();
        diesel::sql_query("CREATE TABLE t (x INTEGER)").execute(&mut *pool.get().unwrap()).unwrap();
        drop(pool);
        std::fs::remove_file(&path).unwrap();
        let manager = MetaConnManager { dsn: dsn.clone(), tuning: ConnTuning::default(), open: SqliteOpen::Existing };
        assert!(manager.connect().is_err(), "a pool connection must not create the file");
        assert!(!path.exists());
    }

    /// A crash leaves the WAL beside the database; a read-write connection closing last would
    /// fold it into the database and delete it. `doctor`'s read-only one changes neither.
    #[test]
    fn a_read_only_connection_leaves_the_database_and_its_wal_as_they_are() {
        let live = tempfile::tempdir().unwrap();
        let dsn = MetaDsn::Sqlite(live.path().join("meta.db"));
        let pool = build_pool(&dsn, 1, ConnTuning::default()).unwrap();
        let mut conn = pool.get().unwrap();
        diesel::sql_query("PRAGMA wal_autocheckpoint = 0").execute(&mut *conn).unwrap();
        diesel::sql_query("CREATE TABLE t (x INTEGER)").execute(&mut *conn).unwrap();
        diesel::sql_query("INSERT INTO t VALUES (1), (2)").execute(&mut *conn).unwrap();
        // The crash image: the files as they are while the connection is open.
        let image = tempfile::tempdir().unwrap();
        for name in ["meta.db", "meta.db-wal"] {
            std::fs::copy(live.path().join(name), image.path().join(name)).unwrap();
        }
        drop(conn);
        drop(pool);
        let read = |name: &str| std::fs::read(image.path().join(name)).unwrap();
        let (db, wal) = (read("meta.db"), read("meta.db-wal"));
        assert!(!wal.is_empty(), "the image holds a WAL");
        let image_dsn = MetaDsn::Sqlite(image.path().join("meta.db"));
        let mut ro = connect_without_writing(&image_dsn).unwrap();
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let n: Vec<N> = diesel::sql_query("SELECT count(*) AS n FROM t").load(&mut ro).unwrap();
        assert_eq!(n[0].n, 2, "the rows in the WAL are read");
        assert!(diesel::sql_query("INSERT INTO t VALUES (3)").execute(&mut ro).is_err(), "read-only");
        drop(ro);
        assert_eq!(read("meta.db"), db, "the database is unchanged");
        assert_eq!(read("meta.db-wal"), wal, "the WAL is still there, unchanged");

        // Without a WAL (a clean stop), nothing is added either.
        let clean = tempfile::tempdir().unwrap();
        std::fs::copy(live.path().join("meta.db"), clean.path().join("meta.db")).unwrap();
        let listing = || {
            let mut names: Vec<String> = std::fs::read_dir(clean.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let before = (listing(), std::fs::read(clean.path().join("meta.db")).unwrap());
        let mut conn = connect_without_writing(&MetaDsn::Sqlite(clean.path().join("meta.db"))).unwrap();
        let _: Vec<N> = diesel::sql_query("SELECT count(*) AS n FROM t").load(&mut conn).unwrap();
        drop(conn);
        assert_eq!((listing(), std::fs::read(clean.path().join("meta.db")).unwrap()), before, "no file added");
    }
}
