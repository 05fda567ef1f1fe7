//! The text queries replicas and `mariadb-binlog` send before a dump, answered as a source of the
//! task's flavor would. Pure: the facts about the archive come in, an answer goes out, and the
//! session variables a replica sets (`@master_binlog_checksum`, `@slave_connect_state`, ...) are
//! remembered for the dump. A query not known here is an error answer, never a closed connection.

use std::collections::BTreeMap;

use crate::domain::Flavor;

/// What the relay tells about "its" server: the task's source as the archive shows it.
#[derive(Debug, Clone)]
pub struct Facts {
    pub flavor: Flavor,
    /// As announced in the greeting (with `-binlog-server`), without MariaDB's `5.5.5-` prefix.
    pub version: String,
    /// The source's server id (the one in its events): replicas refuse a source with their own.
    pub server_id: u32,
    /// `CRC32` or `NONE`: the newest file's setting.
    pub binlog_checksum: &'static str,
    pub gtid_domain_id: u32,
    /// The durable GTID state (MariaDB `gtid_binlog_pos`, MySQL `gtid_executed`).
    pub gtid_state: String,
    /// MySQL: what the archive's first file says came before it (its PREVIOUS_GTIDS): the
    /// transactions a replica must already have, as `gtid_purged` is on a source.
    pub gtid_purged: String,
    /// MySQL: the source's server_uuid, when known.
    pub server_uuid: Option<String>,
    /// Files a replica can read (name, bytes it may read) and the durable end.
    pub binlogs: Vec<(String, u64)>,
    pub now_unix: i64,
}

/// What a replica set in its session; the dump reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    /// User variables by lower-case name (`@master_binlog_checksum` -> `master_binlog_checksum`).
    pub vars: BTreeMap<String, String>,
}

impl Session {
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// `@master_heartbeat_period` (nanoseconds) as a duration; none or 0: no heartbeats.
    pub fn heartbeat_period(&self) -> Option<std::time::Duration> {
        let ns: u64 = self.var("master_heartbeat_period")?.trim().parse::<f64>().ok()? as u64;
        (ns > 0).then(|| std::time::Duration::from_nanos(ns))
    }

    /// Whether the replica understands checksums, and announced CRC32.
    pub fn wants_crc(&self) -> Option<bool> {
        let v = self.var("master_binlog_checksum").or_else(|| self.var("source_binlog_checksum"))?;
        Some(v.eq_ignore_ascii_case("CRC32"))
    }

    pub fn connect_state(&self) -> Option<&str> {
        self.var("slave_connect_state")
    }

    pub fn gtid_strict(&self) -> bool {
        self.var("slave_gtid_strict_mode").is_some_and(|v| v.trim() == "1")
    }
}

/// The answer to one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Rows { columns: Vec<String>, rows: Vec<Vec<Option<String>>> },
    Error { code: u16, state: &'static str, message: String },
}

pub const ER_UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;
pub const ER_NOT_SUPPORTED_YET: u16 = 1235;
pub const ER_SPECIFIC_ACCESS_DENIED: u16 = 1227;

fn unsupported(sql: &str) -> Answer {
    Answer::Error {
        code: ER_NOT_SUPPORTED_YET,
        state: "42000",
        message: format!("binlog-server relay does not answer this query: {}", shorten(sql)),
    }
}

fn shorten(sql: &str) -> String {
    let s: String = sql.chars().take(200).collect();
    if s.len() < sql.len() { format!("{s}...") } else { s }
}

/// Splits at top-level commas (not inside quotes or parentheses).
fn split_commas(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut depth = 0i32;
    for c in s.chars() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' | '`' => {
                    quote = Some(c);
                    cur.push(c);
                }
                '(' => {
                    depth += 1;
                    cur.push(c);
                }
                ')' => {
                    depth -= 1;
                    cur.push(c);
                }
                ',' if depth == 0 => parts.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            },
        }
    }
    parts.push(cur);
    parts.into_iter().map(|p| p.trim().to_string()).collect()
}

fn unquote(v: &str) -> Option<String> {
    let v = v.trim();
    for q in ['\'', '"'] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return Some(v[1..v.len() - 1].replace("\\'", "'").replace("''", "'"));
        }
    }
    None
}

/// A system variable's value, by lower-case name without `@@global.`/`@@session.`.
fn system_var(name: &str, f: &Facts) -> Option<String> {
    let mariadb = f.flavor == Flavor::Mariadb;
    Some(match name {
        "server_id" => f.server_id.to_string(),
        "version" => f.version.clone(),
        "version_comment" => "binlog-server relay".into(),
        "binlog_checksum" => f.binlog_checksum.into(),
        "log_bin" => "1".into(),
        "binlog_format" => "ROW".into(),
        "gtid_domain_id" if mariadb => f.gtid_domain_id.to_string(),
        "gtid_binlog_pos" | "gtid_current_pos" if mariadb => f.gtid_state.clone(),
        "gtid_strict_mode" if mariadb => "0".into(),
        "gtid_executed" if !mariadb => f.gtid_state.clone(),
        "gtid_purged" if !mariadb => f.gtid_purged.clone(),
        "gtid_mode" if !mariadb => if f.gtid_state.is_empty() { "OFF" } else { "ON" }.into(),
        "enforce_gtid_consistency" if !mariadb => "ON".into(),
        "server_uuid" if !mariadb => f.server_uuid.clone()?,
        "rpl_semi_sync_master_enabled" | "rpl_semi_sync_source_enabled" => "0".into(),
        "max_allowed_packet" => (1u64 << 30).to_string(),
        // What client libraries read after connecting.
        "wait_timeout" | "interactive_timeout" => "28800".into(),
        "net_read_timeout" | "net_write_timeout" => "60".into(),
        "sql_mode" => String::new(),
        "autocommit" => "1".into(),
        "tx_isolation" | "transaction_isolation" => "REPEATABLE-READ".into(),
        "character_set_client" | "character_set_connection" | "character_set_results" => "utf8mb4".into(),
        "collation_connection" => "utf8mb4_general_ci".into(),
        "socket" => String::new(),
        "time_zone" | "system_time_zone" => "SYSTEM".into(),
        "collation_server" => "utf8mb4_general_ci".into(),
        "character_set_server" => "utf8mb4".into(),
        "lower_case_table_names" => "0".into(),
        "read_only" => "1".into(),
        _ => return None,
    })
}

fn strip_scope(name: &str) -> &str {
    for p in ["global.", "session.", "local."] {
        if let Some(rest) = name.strip_prefix(p) {
            return rest;
        }
    }
    name
}

/// Evaluates one SELECT item or SET value.
fn eval(item: &str, s: &Session, f: &Facts) -> Result<Option<String>, Answer> {
    let t = item.trim();
    let l = t.to_ascii_lowercase();
    if let Some(v) = unquote(t) {
        return Ok(Some(v));
    }
    if l == "null" {
        return Ok(None);
    }
    if t.parse::<f64>().is_ok() {
        return Ok(Some(t.to_string()));
    }
    if let Some(name) = l.strip_prefix("@@") {
        let name = strip_scope(name);
        return system_var(name, f).map(Some).ok_or_else(|| Answer::Error {
            code: ER_UNKNOWN_SYSTEM_VARIABLE,
            state: "HY000",
            message: format!("Unknown system variable '{name}'"),
        });
    }
    if let Some(name) = l.strip_prefix('@') {
        return Ok(s.var(name.trim_matches('`')).map(str::to_string));
    }
    match l.replace(' ', "").as_str() {
        "unix_timestamp()" => Ok(Some(f.now_unix.to_string())),
        "version()" => Ok(Some(f.version.clone())),
        "database()" | "schema()" => Ok(None),
        "user()" | "current_user()" => Ok(Some("relay@%".into())),
        "connection_id()" => Ok(Some("1".into())),
        _ => Err(Answer::Error { code: 0, state: "", message: String::new() }),
    }
}

/// Answers one query.
pub fn answer(sql: &str, s: &mut Session, f: &Facts) -> Answer {
    let trimmed = sql.trim().trim_end_matches(';').trim();
    // Comments some clients prepend (`/* mysql-connector */ SELECT ...`).
    let body = match trimmed.strip_prefix("/*").and_then(|r| r.split_once("*/")) {
        Some((_, rest)) => rest.trim(),
        None => trimmed,
    };
    let lower = body.to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    match words.first().copied() {
        Some("set") => set(body, s, f),
        Some("select") => select(body, s, f),
        Some("show") => show(&words, body, f),
        _ if lower.is_empty() => Answer::Ok,
        _ => unsupported(body),
    }
}

fn set(body: &str, s: &mut Session, f: &Facts) -> Answer {
    let rest = body[3..].trim();
    let lower = rest.to_ascii_lowercase();
    if lower.starts_with("names ") || lower.starts_with("character set") || lower.starts_with("autocommit") {
        return Answer::Ok;
    }
    for assignment in split_commas(rest) {
        let Some((name, value)) = assignment.split_once('=') else {
            return unsupported(body);
        };
        let name = name.trim().trim_end_matches(':').trim().to_ascii_lowercase();
        if name.starts_with("@@global.") || name.starts_with("global ") {
            return Answer::Error {
                code: ER_SPECIFIC_ACCESS_DENIED,
                state: "42000",
                message: "binlog-server relay: global variables cannot be set".into(),
            };
        }
        if let Some(var) = name.strip_prefix('@').filter(|v| !v.starts_with('@')) {
            match eval(value, s, f) {
                Ok(Some(v)) => {
                    s.vars.insert(var.trim_matches('`').to_string(), v);
                }
                Ok(None) => {
                    s.vars.remove(var.trim_matches('`'));
                }
                Err(Answer::Error { code: 0, .. }) => return unsupported(body),
                Err(e) => return e,
            }
        }
        // Session system variables (`SET @@session.x=...`, `SET SESSION x=...`, `SET x=...`)
        // change nothing a dump depends on: accepted.
    }
    Answer::Ok
}

fn select(body: &str, s: &Session, f: &Facts) -> Answer {
    let mut list = body[6..].trim();
    let lower = list.to_ascii_lowercase();
    if let Some(i) = lower.rfind(" limit ") {
        list = list[..i].trim();
    }
    if list.to_ascii_lowercase().contains(" from ") {
        return unsupported(body);
    }
    let mut columns = Vec::new();
    let mut row = Vec::new();
    for item in split_commas(list) {
        // `expr AS name`.
        let (expr, name) = match item.to_ascii_lowercase().rfind(" as ") {
            Some(i) => (item[..i].to_string(), item[i + 4..].trim().trim_matches('`').to_string()),
            None => (item.clone(), item.clone()),
        };
        match eval(&expr, s, f) {
            Ok(v) => {
                columns.push(name);
                row.push(v);
            }
            Err(Answer::Error { code: 0, .. }) => return unsupported(body),
            Err(e) => return e,
        }
    }
    Answer::Rows { columns, rows: vec![row] }
}

/// The announced MySQL version as (major, minor, patch).
fn mysql_version(f: &Facts) -> (u32, u32, u32) {
    let mut it =
        f.version.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0), it.next().unwrap_or(0))
}

pub const ER_PARSE_ERROR: u16 = 1064;

/// What a server answers a statement its version does not have.
fn syntax_error(body: &str) -> Answer {
    Answer::Error {
        code: ER_PARSE_ERROR,
        state: "42000",
        message: format!("You have an error in your SQL syntax; this server version does not have '{}'", shorten(body)),
    }
}

fn show(words: &[&str], body: &str, f: &Facts) -> Answer {
    let w: Vec<&str> = words.iter().copied().filter(|w| !matches!(*w, "global" | "session")).collect();
    match w.get(1..).unwrap_or_default() {
        ["binary", "logs"] | ["master", "logs"] => Answer::Rows {
            columns: vec!["Log_name".into(), "File_size".into()],
            rows: f.binlogs.iter().map(|(n, size)| vec![Some(n.clone()), Some(size.to_string())]).collect(),
        },
        // As the MySQL version the relay announces has them: SHOW BINARY LOG STATUS came in 8.2,
        // SHOW MASTER STATUS went in 8.4 (our client picks by the version it reads).
        ["master", "status"] if f.flavor == Flavor::Mysql && mysql_version(f) >= (8, 4, 0) => syntax_error(body),
        ["binary", "log", "status"] if f.flavor == Flavor::Mariadb || mysql_version(f) < (8, 2, 0) => {
            syntax_error(body)
        }
        ["master", "status"] | ["binary", "log", "status"] => {
            let mut columns: Vec<String> =
                ["File", "Position", "Binlog_Do_DB", "Binlog_Ignore_DB"].map(String::from).into();
            let mut row = match f.binlogs.last() {
                Some((n, size)) => {
                    vec![Some(n.clone()), Some(size.to_string()), Some(String::new()), Some(String::new())]
                }
                None => return Answer::Rows { columns, rows: vec![] },
            };
            if f.flavor == Flavor::Mysql {
                columns.push("Executed_Gtid_Set".into());
                row.push(Some(f.gtid_state.clone()));
            }
            Answer::Rows { columns, rows: vec![row] }
        }
        ["variables", "like", pattern] | ["status", "like", pattern] => {
            let is_status = w[1] == "status";
            // The pattern as written (case kept), without quotes.
            let raw = body.rsplit_once(|c: char| c.is_whitespace()).map(|(_, p)| p).unwrap_or(pattern);
            let name = unquote(raw).unwrap_or_else(|| raw.to_string()).to_ascii_lowercase();
            let value = if is_status { None } else { system_var(&name, f) };
            Answer::Rows {
                columns: vec!["Variable_name".into(), "Value".into()],
                rows: value.map(|v| vec![Some(name), Some(v)]).into_iter().collect(),
            }
        }
        _ => unsupported(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(flavor: Flavor) -> Facts {
        Facts {
            flavor,
            version: "10.11.6-MariaDB-log-binlog-server".into(),
            server_id: 7,
            binlog_checksum: "CRC32",
            gtid_domain_id: 0,
            gtid_state: "0-7-42".into(),
            gtid_purged: "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-10".into(),
            server_uuid: Some("3e11fa47-71ca-11e1-9e33-c80aa9429562".into()),
            binlogs: vec![("mysql-bin.000001".into(), 1000), ("mysql-bin.000002".into(), 321)],
            now_unix: 1_700_000_000,
        }
    }

    fn one(a: &Answer) -> Option<String> {
        match a {
            Answer::Rows { rows, .. } => rows[0][0].clone(),
            other => panic!("expected rows, got {other:?}"),
        }
    }

    #[test]
    fn what_a_mariadb_replica_sends() {
        let f = facts(Flavor::Mariadb);
        let mut s = Session::default();
        assert_eq!(one(&answer("SELECT UNIX_TIMESTAMP()", &mut s, &f)).as_deref(), Some("1700000000"));
        assert_eq!(one(&answer("SELECT @@GLOBAL.SERVER_ID", &mut s, &f)).as_deref(), Some("7"));
        assert_eq!(answer("SET @master_heartbeat_period= 15000000000", &mut s, &f), Answer::Ok);
        assert_eq!(s.heartbeat_period(), Some(std::time::Duration::from_secs(15)));
        assert_eq!(answer("SET @master_binlog_checksum= @@global.binlog_checksum", &mut s, &f), Answer::Ok);
        assert_eq!(one(&answer("SELECT @master_binlog_checksum", &mut s, &f)).as_deref(), Some("CRC32"));
        assert_eq!(s.wants_crc(), Some(true));
        assert_eq!(answer("SET @mariadb_slave_capability=4", &mut s, &f), Answer::Ok);
        assert_eq!(one(&answer("SELECT @@GLOBAL.gtid_domain_id", &mut s, &f)).as_deref(), Some("0"));
        assert_eq!(answer("SET @slave_connect_state='0-7-40'", &mut s, &f), Answer::Ok);
        assert_eq!(s.connect_state(), Some("0-7-40"));
        assert_eq!(answer("SET @slave_gtid_strict_mode=1", &mut s, &f), Answer::Ok);
        assert!(s.gtid_strict());
        assert_eq!(answer("SET @slave_gtid_ignore_duplicates=0", &mut s, &f), Answer::Ok);
        assert_eq!(
            answer("SHOW VARIABLES LIKE 'rpl_semi_sync_master_enabled'", &mut s, &f),
            Answer::Rows {
                columns: vec!["Variable_name".into(), "Value".into()],
                rows: vec![vec![Some("rpl_semi_sync_master_enabled".into()), Some("0".into())]]
            }
        );
        assert_eq!(one(&answer("SELECT @@global.gtid_binlog_pos", &mut s, &f)).as_deref(), Some("0-7-42"));
    }

    #[test]
    fn what_mariadb_binlog_and_a_mysql_replica_send() {
        let f = Facts { version: "8.0.36-binlog-server".into(), ..facts(Flavor::Mysql) };
        let mut s = Session::default();
        assert_eq!(
            answer("SET @master_binlog_checksum='NONE', @source_binlog_checksum='NONE'", &mut s, &f),
            Answer::Ok
        );
        assert_eq!(s.wants_crc(), Some(false));
        assert_eq!(one(&answer("SELECT @@GLOBAL.GTID_MODE", &mut s, &f)).as_deref(), Some("ON"));
        assert_eq!(
            one(&answer("SELECT @@GLOBAL.GTID_PURGED", &mut s, &f)).as_deref(),
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-10")
        );
        assert_eq!(
            one(&answer("SELECT @@GLOBAL.SERVER_UUID", &mut s, &f)).as_deref(),
            Some("3e11fa47-71ca-11e1-9e33-c80aa9429562")
        );
        assert_eq!(
            one(&answer("select @@version_comment limit 1", &mut s, &f)).as_deref(),
            Some("binlog-server relay")
        );
        match answer("SHOW BINARY LOGS", &mut s, &f) {
            Answer::Rows { rows, .. } => assert_eq!(rows.len(), 2),
            other => panic!("{other:?}"),
        }
        match answer("SHOW MASTER STATUS", &mut s, &f) {
            Answer::Rows { columns, rows } => {
                assert_eq!(columns.len(), 5);
                assert_eq!(rows[0][0].as_deref(), Some("mysql-bin.000002"));
                assert_eq!(rows[0][1].as_deref(), Some("321"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(answer("SET NAMES utf8mb4", &mut s, &f), Answer::Ok);
        // Each status statement exists in the versions that have it.
        let status = |version: &str, sql: &str| {
            let f = Facts { version: format!("{version}-binlog-server"), ..facts(Flavor::Mysql) };
            matches!(answer(sql, &mut Session::default(), &f), Answer::Rows { .. })
        };
        assert!(status("8.0.28", "SHOW MASTER STATUS") && !status("8.0.28", "SHOW BINARY LOG STATUS"));
        assert!(status("8.2.0", "SHOW MASTER STATUS") && status("8.2.0", "SHOW BINARY LOG STATUS"));
        assert!(!status("9.6.0", "SHOW MASTER STATUS") && status("9.6.0", "SHOW BINARY LOG STATUS"));
    }

    #[test]
    fn unknown_queries_and_variables_are_errors_that_name_them() {
        let f = facts(Flavor::Mariadb);
        let mut s = Session::default();
        match answer("DROP TABLE t", &mut s, &f) {
            Answer::Error { code, message, .. } => {
                assert_eq!(code, ER_NOT_SUPPORTED_YET);
                assert!(message.contains("DROP TABLE t"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            answer("SELECT @@GLOBAL.no_such_thing", &mut s, &f),
            Answer::Error { code: ER_UNKNOWN_SYSTEM_VARIABLE, .. }
        ));
        assert!(matches!(answer("SELECT * FROM mysql.user", &mut s, &f), Answer::Error { .. }));
        assert!(matches!(answer("SET GLOBAL read_only=0", &mut s, &f), Answer::Error { .. }));
        // MySQL-only variables are unknown to a MariaDB source, as on the real one.
        assert!(matches!(answer("SELECT @@GLOBAL.SERVER_UUID", &mut s, &f), Answer::Error { .. }));
    }
}
