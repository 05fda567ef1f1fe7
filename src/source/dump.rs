//! Asking for the binlog, in each flavor's dialect: identify the source, resolve LATEST, set the
//! session variables a replica must set (checksum, heartbeat, MariaDB capability and GTID
//! state, MySQL replica uuid), register, and send COM_BINLOG_DUMP or COM_BINLOG_DUMP_GTID.

use std::fmt;
use std::time::Duration;

use crate::binlog::gtid::{GtidSet, StartGtid};
use crate::binlog::name::BinlogFileName;
use crate::domain::Flavor;
use crate::source::conn::{Rows, SourceConn};
use crate::source::{SourceError, codes, semisync};

/// Who the source is: `server_uuid` for MySQL, `server_id` + `gtid_domain_id` for MariaDB.
/// Rendered as a directory-safe string; a change means a different server (switchover).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceIdentity(String);

impl SourceIdentity {
    pub fn mysql(server_uuid: &str) -> Self {
        SourceIdentity(server_uuid.trim().to_ascii_lowercase())
    }

    pub fn mariadb(server_id: u32, domain_id: u32) -> Self {
        SourceIdentity(format!("mariadb-{server_id}-{domain_id}"))
    }

    /// Reads a stored identity (trusted: it was written by `Display`).
    pub fn from_stored(s: &str) -> Self {
        SourceIdentity(s.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SourceIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The source's `binlog_checksum` when we connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinlogChecksum {
    None,
    Crc32,
}

impl BinlogChecksum {
    /// Reads `@@global.binlog_checksum` (`NONE` or `CRC32`, any case).
    pub fn parse(value: &str) -> Result<Self, SourceError> {
        if value.eq_ignore_ascii_case("NONE") {
            Ok(BinlogChecksum::None)
        } else if value.eq_ignore_ascii_case("CRC32") {
            Ok(BinlogChecksum::Crc32)
        } else {
            Err(SourceError::Unsupported(format!("binlog_checksum {value:?} (only NONE and CRC32 exist)")))
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BinlogChecksum::None => "NONE",
            BinlogChecksum::Crc32 => "CRC32",
        }
    }

    /// Whether the first event of a dump (the artificial rotate) carries a CRC32 when we
    /// announce this setting.
    pub fn has_crc(self) -> bool {
        self == BinlogChecksum::Crc32
    }
}

/// What the source told us about itself.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub version: String,
    pub version_num: (u32, u32, u32),
    pub flavor: Flavor,
    pub server_id: u32,
    pub identity: SourceIdentity,
    /// `@@global.binlog_checksum` as read; it is also what `start_dump` announces.
    pub binlog_checksum: BinlogChecksum,
}

impl SourceInfo {
    fn at_least(&self, v: (u32, u32, u32)) -> bool {
        self.version_num >= v
    }
}

fn parse_version(v: &str) -> (u32, u32, u32) {
    let mut it = v.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn col<'a>(rows: &'a Rows, name: &str) -> Result<&'a str, SourceError> {
    rows.first(name).ok_or_else(|| SourceError::Protocol(format!("the source did not report {name}")))
}

/// Reads the source's identity and checks it can serve a binlog.
pub async fn inspect(conn: &mut SourceConn, expected: Flavor) -> Result<SourceInfo, SourceError> {
    let actual = if conn.is_mariadb() { Flavor::Mariadb } else { Flavor::Mysql };
    if actual != expected {
        return Err(SourceError::Unsupported(format!(
            "the task says flavor {expected} but the source is {} ({}); fix source.flavor",
            actual,
            conn.server_version()
        )));
    }
    let rows = match expected {
        Flavor::Mysql => {
            match conn
                .query("SELECT @@version AS version, @@server_id AS server_id, @@server_uuid AS server_uuid, @@log_bin AS log_bin, @@global.binlog_checksum AS checksum")
                .await
            {
                // Servers before 5.6 know neither server_uuid nor binlog_checksum.
                Err(SourceError::Server { code: codes::ER_UNKNOWN_SYSTEM_VARIABLE, .. }) => {
                    return Err(SourceError::Unsupported(format!(
                        "MySQL {} is too old: server_uuid/binlog_checksum are needed (5.6 or later)",
                        conn.server_version()
                    )));
                }
                other => other?,
            }
        }
        Flavor::Mariadb => {
            conn.query("SELECT @@version AS version, @@server_id AS server_id, @@gtid_domain_id AS domain_id, @@log_bin AS log_bin, @@global.binlog_checksum AS checksum")
                .await?
        }
    };
    let version = col(&rows, "version")?.to_string();
    let server_id: u32 = col(&rows, "server_id")?.parse().map_err(|_| SourceError::Protocol("bad server_id".into()))?;
    if !matches!(col(&rows, "log_bin")?, "1" | "ON") {
        return Err(SourceError::LogBinOff);
    }
    let identity = match expected {
        Flavor::Mysql => SourceIdentity::mysql(col(&rows, "server_uuid")?),
        Flavor::Mariadb => {
            let domain: u32 =
                col(&rows, "domain_id")?.parse().map_err(|_| SourceError::Protocol("bad gtid_domain_id".into()))?;
            SourceIdentity::mariadb(server_id, domain)
        }
    };
    Ok(SourceInfo {
        version_num: parse_version(&version),
        version,
        flavor: expected,
        server_id,
        identity,
        binlog_checksum: BinlogChecksum::parse(col(&rows, "checksum")?)?,
    })
}

/// The source's current end of binlog: (file, position, GTID state there).
pub async fn latest(
    conn: &mut SourceConn,
    info: &SourceInfo,
) -> Result<(BinlogFileName, u64, Option<StartGtid>), SourceError> {
    let (file, pos, rows) = master_status(conn, info).await?;
    let gtid = match info.flavor {
        Flavor::Mysql => rows
            .first("Executed_Gtid_Set")
            .map(|s| GtidSet::parse(&s.replace('\n', "")).map(StartGtid::Mysql))
            .transpose()
            .map_err(|e| SourceError::Protocol(e.to_string()))?,
        Flavor::Mariadb => {
            let r = conn.query("SELECT @@gtid_binlog_pos AS pos").await?;
            r.first("pos")
                .map(|s| StartGtid::parse(Flavor::Mariadb, s))
                .transpose()
                .map_err(|e| SourceError::Protocol(e.to_string()))?
        }
    };
    Ok((file, pos, gtid))
}

/// Binlog files the source still has, oldest first, with their sizes.
pub async fn binary_logs(conn: &mut SourceConn) -> Result<Vec<(String, u64)>, SourceError> {
    let rows = conn.query("SHOW BINARY LOGS").await?;
    let name_i = rows.columns.iter().position(|c| c.eq_ignore_ascii_case("Log_name")).unwrap_or(0);
    let size_i = rows.columns.iter().position(|c| c.eq_ignore_ascii_case("File_size")).unwrap_or(1);
    Ok(rows
        .rows
        .iter()
        .filter_map(|r| {
            let name = r.get(name_i)?.clone()?;
            let size = r.get(size_i)?.as_deref()?.parse().ok()?;
            Some((name, size))
        })
        .collect())
}

/// `SHOW MASTER STATUS` (`SHOW BINARY LOG STATUS` on MySQL 8.2+): the file the source writes,
/// its end, and the rows (for the GTID column).
async fn master_status(conn: &mut SourceConn, info: &SourceInfo) -> Result<(BinlogFileName, u64, Rows), SourceError> {
    let use_new = info.flavor == Flavor::Mysql && info.at_least((8, 2, 0));
    let rows = conn.query(if use_new { "SHOW BINARY LOG STATUS" } else { "SHOW MASTER STATUS" }).await?;
    let file = col(&rows, "File")?;
    let file = BinlogFileName::parse(file).map_err(|e| SourceError::Protocol(e.to_string()))?;
    let pos: u64 = col(&rows, "Position")?.parse().map_err(|_| SourceError::Protocol("bad Position".into()))?;
    Ok((file, pos, rows))
}

/// The binlog file the source writes now.
pub async fn current_file(conn: &mut SourceConn, info: &SourceInfo) -> Result<BinlogFileName, SourceError> {
    Ok(master_status(conn, info).await?.0)
}

/// Whether the source offers semi-sync (`semisync::support`), asked before announcing it.
pub async fn semi_sync_support(conn: &mut SourceConn) -> Result<semisync::Support, SourceError> {
    let rows = conn.query("SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_%'").await?;
    let name_i = rows.columns.iter().position(|c| c.eq_ignore_ascii_case("Variable_name")).unwrap_or(0);
    let value_i = rows.columns.iter().position(|c| c.eq_ignore_ascii_case("Value")).unwrap_or(1);
    let vars: Vec<(String, String)> = rows
        .rows
        .iter()
        .filter_map(|r| Some((r.get(name_i)?.clone()?, r.get(value_i)?.clone().unwrap_or_default())))
        .collect();
    Ok(semisync::support(&vars))
}

/// Announces us a semi-sync replica (`announce` from `Support::Active`), before the dump.
pub async fn announce_semi_sync(conn: &mut SourceConn, announce: &str) -> Result<(), SourceError> {
    conn.execute(&format!("SET {announce} = 1")).await
}

/// Where to start the dump.
#[derive(Debug, Clone, PartialEq)]
pub enum DumpFrom {
    FilePos { file: BinlogFileName, pos: u64 },
    Gtid(StartGtid),
}

/// Per-connection replica settings.
#[derive(Debug, Clone)]
pub struct ReplicaParams {
    pub server_id: u32,
    /// MySQL's `@slave_uuid` (a stable uuid per task, so the source can tell replicas apart).
    pub replica_uuid: String,
    pub heartbeat: Duration,
}

fn quote(s: &str) -> String {
    // Only ever applied to values we rendered (GTID sets, uuids): no quote can appear, but be
    // strict anyway.
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// Sets the session up as a replica and sends the dump command; the event stream follows.
pub async fn start_dump(
    conn: &mut SourceConn,
    info: &SourceInfo,
    params: &ReplicaParams,
    from: &DumpFrom,
) -> Result<(), SourceError> {
    start_dump_flagged(conn, info, params, from, 0).await
}

/// `start_dump` with more COM_BINLOG_DUMP flags (e.g. `BINLOG_DUMP_NON_BLOCK`, which the bench
/// probe uses to end at the source's last event); a MySQL GTID dump takes none.
pub async fn start_dump_flagged(
    conn: &mut SourceConn,
    info: &SourceInfo,
    params: &ReplicaParams,
    from: &DumpFrom,
    extra_flags: u16,
) -> Result<(), SourceError> {
    let new_names = info.flavor == Flavor::Mysql && info.at_least((8, 0, 26));
    // Declares us checksum-aware, so events come exactly as stored, each file's with its own
    // checksum setting. The announced value only decides whether the dump's first event (the
    // artificial rotate) carries a CRC32; later artificial rotates follow the file just left.
    // It is the value `inspect` read, not `@@global.binlog_checksum` again: the stream tracker
    // starts from that value, and a `SET GLOBAL binlog_checksum` in between must not make it
    // misread the first rotate.
    let checksum = info.binlog_checksum.as_str();
    conn.execute(&format!("SET @master_binlog_checksum = '{checksum}'")).await?;
    if new_names {
        conn.execute(&format!("SET @source_binlog_checksum = '{checksum}'")).await?;
    }
    let nanos = params.heartbeat.as_nanos().min(u128::from(u64::MAX)) as u64;
    conn.execute(&format!("SET @master_heartbeat_period = {nanos}")).await?;
    if new_names {
        conn.execute(&format!("SET @source_heartbeat_period = {nanos}")).await?;
    }
    match info.flavor {
        Flavor::Mysql => {
            conn.execute(&format!("SET @slave_uuid = {}", quote(&params.replica_uuid))).await?;
            if new_names {
                conn.execute(&format!("SET @replica_uuid = {}", quote(&params.replica_uuid))).await?;
            }
        }
        Flavor::Mariadb => {
            // Capability 4 (GTID): the source sends its events unchanged, GTID events included,
            // instead of rewriting them for an old replica.
            conn.execute("SET @mariadb_slave_capability = 4").await?;
            if let DumpFrom::Gtid(g) = from {
                conn.execute(&format!("SET @slave_connect_state = {}", quote(&g.to_string()))).await?;
                conn.execute("SET @slave_gtid_strict_mode = 0").await?;
                conn.execute("SET @slave_gtid_ignore_duplicates = 0").await?;
            }
        }
    }

    conn.send_command(&com_register_slave(params.server_id)).await?;
    conn.expect_ok().await?;

    let cmd = match (info.flavor, from) {
        (_, DumpFrom::FilePos { file, pos }) => {
            if *pos > u64::from(u32::MAX) {
                return Err(SourceError::InvalidStart(format!("position {pos} does not fit COM_BINLOG_DUMP")));
            }
            com_binlog_dump(params.server_id, dump_flags(info.flavor) | extra_flags, file.as_str(), *pos as u32)
        }
        // MariaDB takes the GTID position from @slave_connect_state and an empty file name.
        (Flavor::Mariadb, DumpFrom::Gtid(_)) => {
            com_binlog_dump(params.server_id, dump_flags(info.flavor) | extra_flags, "", 4)
        }
        (Flavor::Mysql, DumpFrom::Gtid(StartGtid::Mysql(set))) => com_binlog_dump_gtid(params.server_id, set),
        (Flavor::Mysql, DumpFrom::Gtid(StartGtid::Mariadb(_))) => {
            return Err(SourceError::InvalidStart("a MariaDB GTID position cannot start a MySQL dump".into()));
        }
    };
    conn.send_command(&cmd).await?;
    conn.enter_binlog_stream();
    Ok(())
}

/// COM_REGISTER_SLAVE with empty host/user/password: visible in SHOW SLAVE HOSTS by server_id.
pub fn com_register_slave(server_id: u32) -> Vec<u8> {
    let mut p = vec![0x15];
    p.extend_from_slice(&server_id.to_le_bytes());
    p.extend_from_slice(&[0, 0, 0]); // hostname, user, password: empty length-prefixed strings
    p.extend_from_slice(&0u16.to_le_bytes()); // port
    p.extend_from_slice(&0u32.to_le_bytes()); // replication rank
    p.extend_from_slice(&0u32.to_le_bytes()); // master id
    p
}

/// COM_BINLOG_DUMP flag `BINLOG_DUMP_NON_BLOCK`: the source ends the dump with an EOF packet at
/// its last event instead of waiting for more.
pub const BINLOG_DUMP_NON_BLOCK: u16 = 1;

/// COM_BINLOG_DUMP flags. MariaDB needs BINLOG_SEND_ANNOTATE_ROWS_EVENT (2): without it the
/// source silently leaves its ANNOTATE_ROWS events out, and our copy would have holes. (For
/// MySQL the same bit asks for heartbeat v2; we do not set it.)
pub fn dump_flags(flavor: Flavor) -> u16 {
    match flavor {
        Flavor::Mariadb => 2,
        Flavor::Mysql => 0,
    }
}

/// COM_BINLOG_DUMP: position (4 bytes), flags (2), server_id (4), file name (rest).
pub fn com_binlog_dump(server_id: u32, flags: u16, file: &str, pos: u32) -> Vec<u8> {
    let mut p = vec![0x12];
    p.extend_from_slice(&pos.to_le_bytes());
    p.extend_from_slice(&flags.to_le_bytes());
    p.extend_from_slice(&server_id.to_le_bytes());
    p.extend_from_slice(file.as_bytes());
    p
}

/// COM_BINLOG_DUMP_GTID: flags (2), server_id (4), name length (4), name, position (8),
/// data size (4), encoded GTID set. We send no file name: the source finds the position from
/// the set alone.
pub fn com_binlog_dump_gtid(server_id: u32, set: &GtidSet) -> Vec<u8> {
    const BINLOG_THROUGH_GTID: u16 = 0x04;
    let data = set.encode();
    let mut p = vec![0x1e];
    p.extend_from_slice(&BINLOG_THROUGH_GTID.to_le_bytes());
    p.extend_from_slice(&server_id.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes());
    p.extend_from_slice(&4u64.to_le_bytes());
    p.extend_from_slice(&(data.len() as u32).to_le_bytes());
    p.extend_from_slice(&data);
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::gtid::Uuid;

    #[test]
    fn dump_gtid_packet_layout() {
        let set = GtidSet::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5").unwrap();
        let p = com_binlog_dump_gtid(77, &set);
        assert_eq!(p[0], 0x1e);
        assert_eq!(u16::from_le_bytes([p[1], p[2]]), 4);
        assert_eq!(u32::from_le_bytes(p[3..7].try_into().unwrap()), 77);
        assert_eq!(u32::from_le_bytes(p[7..11].try_into().unwrap()), 0);
        assert_eq!(u64::from_le_bytes(p[11..19].try_into().unwrap()), 4);
        let size = u32::from_le_bytes(p[19..23].try_into().unwrap()) as usize;
        assert_eq!(size, p.len() - 23);
        assert_eq!(GtidSet::decode(&p[23..]).unwrap(), set);
        assert_eq!(&p[31..47], &Uuid::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562").unwrap().0);
    }

    #[test]
    fn dump_gtid_matches_mysql_common_encoding() {
        // Cross-check with the protocol crate's own serialisation of the same request.
        use mysql_common::packets::{ComBinlogDumpGtid, GnoInterval, Sid};
        use mysql_common::proto::MySerialize;
        let uuid = Uuid::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562").unwrap();
        let sid = Sid::new(uuid.0).with_interval(GnoInterval::new(1, 6)).with_interval(GnoInterval::new(9, 10));
        let theirs = ComBinlogDumpGtid::new(77)
            .with_flags(mysql_common::packets::BinlogDumpFlags::BINLOG_THROUGH_GTID)
            .with_pos(4)
            .with_sids(vec![sid]);
        let mut expected = Vec::new();
        theirs.serialize(&mut expected);
        let set = GtidSet::parse("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:9").unwrap();
        assert_eq!(com_binlog_dump_gtid(77, &set), expected);
    }

    #[test]
    fn dump_packet_layout() {
        let p = com_binlog_dump(9, 2, "mysql-bin.000003", 1234);
        assert_eq!(p[0], 0x12);
        assert_eq!(u32::from_le_bytes(p[1..5].try_into().unwrap()), 1234);
        assert_eq!(u16::from_le_bytes(p[5..7].try_into().unwrap()), 2);
        assert_eq!(u32::from_le_bytes(p[7..11].try_into().unwrap()), 9);
        assert_eq!(&p[11..], b"mysql-bin.000003");
    }

    #[test]
    fn identities() {
        assert_eq!(
            SourceIdentity::mysql(" 3E11FA47-71CA-11E1-9E33-C80AA9429562 ").as_str(),
            "3e11fa47-71ca-11e1-9e33-c80aa9429562"
        );
        assert_eq!(SourceIdentity::mariadb(1, 0).as_str(), "mariadb-1-0");
        assert_eq!(parse_version("10.11.19-MariaDB-0+deb12u1-log"), (10, 11, 19));
        assert_eq!(parse_version("8.4.3"), (8, 4, 3));
    }

    #[test]
    fn binlog_checksum_values() {
        for (value, parsed) in [("NONE", BinlogChecksum::None), ("crc32", BinlogChecksum::Crc32)] {
            assert_eq!(BinlogChecksum::parse(value).unwrap(), parsed, "{value}");
        }
        assert_eq!(BinlogChecksum::parse("CRC32").unwrap().as_str(), "CRC32");
        assert!(BinlogChecksum::Crc32.has_crc() && !BinlogChecksum::None.has_crc());
        assert!(matches!(BinlogChecksum::parse("SHA1"), Err(SourceError::Unsupported(_))));
    }
}
