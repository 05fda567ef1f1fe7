//! One relay client: greeting, login (mysql_native_password, caching_sha2_password's fast path,
//! the auth switch), then commands until it quits or a dump ends. Decisions come from `proto`,
//! `auth`, `query` and `plan`; this file only moves bytes and logs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use slog::{Logger, debug, info, o, warn};
use tokio::net::TcpStream;

use crate::binlog::event::{EventHeader, Fde};
use crate::domain::{Flavor, TaskId};
use crate::meta::{Checkpoint, FileRecord, StoreError};
use crate::relay::auth::UserHashes;
use crate::relay::clients::{ClientGuard, RelayClient};
use crate::relay::codes::*;
use crate::relay::proto::ClientHello;
use crate::relay::query::{Answer, Facts, Session};
use crate::relay::tls::{self, RelayStream};
use crate::relay::{RelayContext, dump, plan, proto};
use crate::source::SourceError;
use crate::source::packet::PacketIo;

/// How long a client has to log in.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest command a client may send (queries and dump requests are small).
const MAX_CLIENT_PACKET: usize = 1 << 20;

pub type Io = PacketIo<RelayStream>;

/// Serves one connection to its end; never panics on what a client sends.
pub async fn handle(ctx: Arc<RelayContext>, tcp: TcpStream, peer: SocketAddr) {
    let log = ctx.log.new(o!("client" => peer.to_string()));
    let mut io = PacketIo::new(RelayStream::Plain(tcp), MAX_CLIENT_PACKET);
    match run(&ctx, &mut io, peer, &log).await {
        Ok(()) => debug!(log, "relay client left"),
        Err(e) => debug!(log, "relay connection ended"; "error" => %e),
    }
}

fn nonce() -> [u8; 20] {
    // Printable bytes, as servers send: some clients treat the nonce as a C string.
    let mut rng = rand::rng();
    std::array::from_fn(|_| rng.random_range(0x21u8..0x7f))
}

async fn send_err(io: &mut Io, code: u16, state: &str, message: &str) -> Result<(), SourceError> {
    io.write_packet(&proto::err(code, state, message)).await
}

async fn run(ctx: &RelayContext, io: &mut Io, peer: SocketAddr, log: &Logger) -> Result<(), SourceError> {
    if let Err(wait) = ctx.failures.peek(peer.ip(), Instant::now()) {
        let msg = format!(
            "Host '{}' is blocked because of too many failed relay logins; retry in {} s",
            peer.ip(),
            wait.as_secs() + 1
        );
        return send_err(io, ER_HOST_IS_BLOCKED, "HY000", &msg).await;
    }
    let data_dir = ctx.data_dir.clone();
    let greet = ctx.store.call(move |s| greeting_flavor(s, &data_dir)).await.unwrap_or(Greeting::default());
    let scramble = nonce();
    let plugin = match greet.flavor {
        Flavor::Mariadb => "mysql_native_password",
        Flavor::Mysql => "caching_sha2_password",
    };
    let connection_id = ctx.connection_id();
    io.write_packet(&proto::greeting(&greet.version, connection_id, &scramble, plugin, ctx.tls.is_some())).await?;
    let task = match tokio::time::timeout(LOGIN_TIMEOUT, login(ctx, io, peer, &scramble, log)).await {
        Ok(r) => r?,
        Err(_) => return send_err(io, ER_HANDSHAKE_ERROR, "08S01", "Bad handshake: login timed out").await,
    };
    let Some((task, user)) = task else { return Ok(()) };
    let client = ctx.clients.register(RelayClient {
        connection_id,
        task_id: task.0,
        server_id: None,
        address: peer.to_string(),
        user: user.clone(),
        mode: "connected".into(),
        file: None,
        pos: None,
        bytes_sent: 0,
        connected_since: chrono::Utc::now(),
    });
    let log = log.new(o!("task_id" => task.0, "relay_user" => user));
    io.write_packet(&proto::ok()).await?;
    commands(ctx, io, task, &log, &client).await
}

/// Reads the handshake response and checks the password; `None` once refused (and answered).
async fn login(
    ctx: &RelayContext,
    io: &mut Io,
    peer: SocketAddr,
    scramble: &[u8; 20],
    log: &Logger,
) -> Result<Option<(TaskId, String)>, SourceError> {
    let mut pkt = io.read_packet().await?;
    let resp = loop {
        match proto::client_hello(&pkt, ctx.tls.is_some(), io.stream_mut().is_tls()) {
            Ok(ClientHello::Response(r)) => break r,
            Ok(ClientHello::SslRequest) => {
                let acceptor = ctx.tls.as_ref().expect("an SSL request is taken only when TLS is offered");
                if let Err(e) = tls::upgrade(io, acceptor, MAX_CLIENT_PACKET).await {
                    info!(log, "relay: TLS handshake failed"; "error" => %e);
                    return Ok(None);
                }
                pkt = io.read_packet().await?;
            }
            Err(e) => {
                warn!(log, "relay: bad handshake"; "error" => %e);
                send_err(io, ER_HANDSHAKE_ERROR, "08S01", &format!("Bad handshake: {e}")).await?;
                return Ok(None);
            }
        }
    };
    let name = resp.user.clone();
    let found = match ctx.store.call(move |s| s.find_relay_user(&name)).await {
        Ok(u) => u,
        Err(e) => {
            warn!(log, "relay login: metadata store unavailable"; "error" => %e);
            send_err(io, ER_SERVER_ERROR, "HY000", "binlog-server relay: metadata store unavailable, retry later")
                .await?;
            return Ok(None);
        }
    };
    // An unknown user goes through the same exchange against a hash nobody has: the answer
    // never tells which of name and password was wrong.
    let hashes =
        found.as_ref().map(|u| u.hashes.clone()).unwrap_or_else(|| UserHashes::from_password(&scramble_text(scramble)));
    let used_password = !resp.auth.is_empty();
    let ok = match resp.plugin.as_deref().unwrap_or("mysql_native_password") {
        "mysql_native_password" if resp.auth.len() == 20 => hashes.check_native(scramble, &resp.auth),
        "caching_sha2_password" if resp.auth.len() == 32 => {
            let good = hashes.check_sha2(scramble, &resp.auth);
            if good {
                io.write_packet(&proto::FAST_AUTH_OK).await?;
            }
            good
        }
        _ if !used_password => false,
        _ => {
            // Another plugin (or data of the wrong size): ask for mysql_native_password.
            let fresh = nonce();
            io.write_packet(&proto::auth_switch("mysql_native_password", &fresh)).await?;
            let answer = io.read_packet().await?;
            hashes.check_native(&fresh, &answer)
        }
    };
    match found {
        Some(u) if ok => {
            info!(log, "relay login"; "relay_user" => &u.name, "task_id" => u.task_id.0);
            Ok(Some((u.task_id, u.name)))
        }
        _ => {
            let _ = ctx.failures.check(peer.ip(), Instant::now());
            warn!(log, "relay login refused"; "relay_user" => &resp.user);
            let msg = format!(
                "Access denied for user '{}'@'{}' (using password: {})",
                resp.user,
                peer.ip(),
                if used_password { "YES" } else { "NO" }
            );
            send_err(io, ER_ACCESS_DENIED, "28000", &msg).await?;
            Ok(None)
        }
    }
}

/// A throwaway password for the unknown-user path (never matches a real scramble).
fn scramble_text(s: &[u8; 20]) -> String {
    format!("unknown-user-{}", String::from_utf8_lossy(s))
}

async fn commands(
    ctx: &RelayContext,
    io: &mut Io,
    task: TaskId,
    log: &Logger,
    client: &ClientGuard,
) -> Result<(), SourceError> {
    let mut session = Session::default();
    loop {
        io.reset_seq();
        let pkt = match io.read_packet().await {
            Ok(p) => p,
            Err(_) => return Ok(()),
        };
        let Some(&cmd) = pkt.first() else { continue };
        match cmd {
            0x01 => return Ok(()),                               // COM_QUIT
            0x0e | 0x02 => io.write_packet(&proto::ok()).await?, // COM_PING, COM_INIT_DB
            0x03 => {
                let sql = String::from_utf8_lossy(&pkt[1..]).into_owned();
                let facts = match load_archive(ctx, task).await {
                    Ok(a) => a.facts(),
                    Err(e) => {
                        warn!(log, "relay: cannot read the archive"; "error" => %e);
                        send_err(io, ER_SERVER_ERROR, "HY000", "binlog-server relay: metadata store unavailable")
                            .await?;
                        continue;
                    }
                };
                match crate::relay::query::answer(&sql, &mut session, &facts) {
                    Answer::Ok => io.write_packet(&proto::ok()).await?,
                    Answer::Rows { columns, rows } => {
                        let mut out = Vec::new();
                        for p in proto::result_set(&columns, &rows) {
                            io.frame_into(&p, &mut out);
                        }
                        io.write_framed(&out).await?;
                    }
                    Answer::Error { code, state, message } => {
                        let shown: String = sql.chars().take(200).collect();
                        info!(log, "relay query not answered"; "query" => shown, "code" => code, "error" => &message);
                        send_err(io, code, state, &message).await?;
                    }
                }
            }
            0x15 => {
                // COM_REGISTER_SLAVE: the replica's server id, for the log.
                let server_id = pkt.get(1..5).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0);
                info!(log, "replica registered"; "replica_server_id" => server_id);
                client.update(|c| c.server_id = Some(server_id));
                io.write_packet(&proto::ok()).await?;
            }
            0x12 => {
                let Some(req) = dump::DumpRequest::parse(&pkt) else {
                    return send_err(io, ER_MASTER_FATAL_ERROR_READING_BINLOG, "HY000", "malformed COM_BINLOG_DUMP")
                        .await;
                };
                return dump::run(ctx, io, task, &session, req, log, client).await;
            }
            0x1e => {
                // COM_BINLOG_DUMP_GTID: MySQL auto-positioning (SOURCE_AUTO_POSITION=1).
                let req = match dump::DumpRequest::parse_gtid(&pkt) {
                    Ok(r) => r,
                    Err(why) => return send_err(io, ER_MASTER_FATAL_ERROR_READING_BINLOG, "HY000", &why).await,
                };
                return dump::run(ctx, io, task, &session, req, log, client).await;
            }
            other => {
                info!(log, "relay command not supported"; "command" => other);
                send_err(io, ER_UNKNOWN_COM_ERROR, "08S01", "Unknown command").await?;
            }
        }
    }
}

/// What the greeting announces before the client says who it is: the flavor and source
/// version of the tasks the relay serves (MariaDB when they differ).
#[derive(Debug, Clone)]
struct Greeting {
    flavor: Flavor,
    version: String,
}

impl Default for Greeting {
    fn default() -> Self {
        Greeting { flavor: Flavor::Mariadb, version: "5.5.5-10.11.0-MariaDB-binlog-server".into() }
    }
}

fn greeting_flavor(store: &crate::meta::Store, data_dir: &std::path::Path) -> Result<Greeting, StoreError> {
    let tasks = store.relay_task_ids()?;
    let mut flavor = None;
    // MySQL: the oldest server version among the served tasks' newest files (a replica must
    // not expect more of the relay than of any source behind it).
    let mut mysql_version: Option<((u32, u32, u32), String)> = None;
    for id in &tasks {
        let f = store.get_task(*id)?.spec.source.flavor;
        flavor = match flavor {
            None => Some(f),
            Some(prev) if prev == f => Some(f),
            Some(_) => Some(Flavor::Mariadb),
        };
        if f == Flavor::Mysql
            && let Some(last) = store.list_files(*id)?.last()
        {
            let path = crate::layout::DataLayout::new(data_dir).binlog_file(
                *id,
                &last.source_identity,
                last.file_name.as_str(),
            );
            if let Ok((fde, _)) = read_fde(&path) {
                let v = version_triple(&fde.server_version);
                if mysql_version.as_ref().is_none_or(|(m, _)| v < *m) {
                    mysql_version = Some((v, fde.server_version.clone()));
                }
            }
        }
    }
    let flavor = flavor.unwrap_or(Flavor::Mariadb);
    let base = match (flavor, mysql_version) {
        (Flavor::Mariadb, _) => "10.11.0-MariaDB".to_string(),
        (Flavor::Mysql, Some((_, v))) => v,
        (Flavor::Mysql, None) => "8.0.0".to_string(),
    };
    let version = format!("{base}-binlog-server");
    Ok(Greeting { flavor, version: if flavor == Flavor::Mariadb { format!("5.5.5-{version}") } else { version } })
}

/// `8.4.3-log` -> (8, 4, 3).
fn version_triple(v: &str) -> (u32, u32, u32) {
    let mut it = v.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// A task's archive as a dump sees it now.
pub struct Archive {
    pub flavor: Flavor,
    /// Files of the durable checkpoint's source, oldest first.
    pub files: Vec<FileRecord>,
    pub durable: Option<Checkpoint>,
    /// The newest file's FDE and the source's server id (from its header).
    pub fde: Option<(Fde, u32)>,
    pub task_dir: std::path::PathBuf,
}

impl Archive {
    pub fn path(&self, f: &FileRecord) -> std::path::PathBuf {
        crate::layout::DataLayout::binlog_file_in(&self.task_dir, &f.source_identity, f.file_name.as_str())
    }

    pub fn facts(&self) -> Facts {
        let (version, server_id, checksum) = match &self.fde {
            Some((fde, sid)) => (
                format!("{}-binlog-server", fde.server_version),
                *sid,
                if fde.checksum.has_crc() { "CRC32" } else { "NONE" },
            ),
            None => ("binlog-server".into(), 0, "NONE"),
        };
        // `mariadb-{server_id}-{gtid_domain_id}` (see `SourceIdentity`).
        let domain = self
            .durable
            .as_ref()
            .and_then(|c| c.source_identity.strip_prefix("mariadb-"))
            .and_then(|r| r.rsplit('-').next())
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        let mut binlogs: Vec<(String, u64)> = Vec::new();
        for f in &self.files {
            if let Some(len) = plan::readable_len(f, self.durable.as_ref()) {
                binlogs.push((f.file_name.to_string(), plan::source_pos(f, len)));
            }
        }
        Facts {
            flavor: self.flavor,
            version,
            server_id,
            binlog_checksum: checksum,
            gtid_domain_id: domain,
            gtid_state: self.durable.as_ref().and_then(|c| c.gtid_set.clone()).unwrap_or_default(),
            gtid_purged: match self.flavor {
                Flavor::Mysql => self.files.first().and_then(|f| f.summary.gtid_start.clone()).unwrap_or_default(),
                Flavor::Mariadb => String::new(),
            },
            server_uuid: self
                .durable
                .as_ref()
                .map(|c| c.source_identity.clone())
                .filter(|i| !i.starts_with("mariadb-")),
            binlogs,
            now_unix: chrono::Utc::now().timestamp(),
        }
    }
}

/// Loads the task's archive: the catalog, the durable checkpoint (the writer's, else the
/// stored one, which is never ahead of it) and the newest file's FDE.
pub async fn load_archive(ctx: &RelayContext, task: TaskId) -> Result<Archive, StoreError> {
    let published = ctx.hub.subscribe(task).borrow().clone().map(|p| p.checkpoint);
    let task_dir = crate::layout::DataLayout::new(&ctx.data_dir).task_dir(task);
    let dir = task_dir.clone();
    ctx.store
        .call(move |s| {
            let flavor = s.get_task(task)?.spec.source.flavor;
            let durable = match published {
                Some(cp) => Some(cp),
                None => s.get_checkpoint(task)?.map(|(c, _)| c),
            };
            let files = plan::served_files(s.list_files(task)?, durable.as_ref());
            let mut archive = Archive { flavor, files, durable, fde: None, task_dir: dir };
            archive.fde = newest_fde(&archive.files, |f| read_fde(&archive.path(f)));
            Ok(archive)
        })
        .await
}

/// The FDE of the newest file that has one on local disk (with the server id in its header).
/// A file the writer has just created holds only the magic bytes until the batch that created
/// it appends the FDE: answering "NONE" for `@@global.binlog_checksum` from such a file told a
/// CRC32 replica that the stream had no checksums (its heartbeats then failed verification).
pub fn newest_fde<E>(files: &[FileRecord], read: impl Fn(&FileRecord) -> Result<(Fde, u32), E>) -> Option<(Fde, u32)> {
    files.iter().rev().find_map(|f| read(f).ok())
}

/// The FDE (first event) of a local file, and the server id in its header.
pub fn read_fde(path: &std::path::Path) -> std::io::Result<(Fde, u32)> {
    let bytes = read_fde_bytes(path)?;
    let fde = Fde::parse(&bytes).map_err(std::io::Error::other)?;
    let h = EventHeader::parse(&bytes).map_err(std::io::Error::other)?;
    Ok((fde, h.server_id))
}

/// The raw bytes of a local file's FDE (at offset 4).
pub fn read_fde_bytes(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    read_fde_at(&f).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The FDE event of an open binlog file (after its 4-byte magic).
pub fn read_fde_at(f: &std::fs::File) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 4 + 19];
    f.read_exact_at(&mut head, 0)?;
    let size = u32::from_le_bytes([head[4 + 9], head[4 + 10], head[4 + 11], head[4 + 12]]) as usize;
    if !(19..=64 * 1024).contains(&size) {
        return Err(std::io::Error::other("no FDE at offset 4"));
    }
    let mut ev = vec![0u8; size];
    f.read_exact_at(&mut ev, 4)?;
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::event::MAGIC;
    use crate::meta::FileState;
    use crate::relay::plan::tests::file;

    /// The facts a replica is told (`@@global.binlog_checksum`, the server id, the version) come
    /// from the newest file whose FDE is on disk: a file the writer has just created holds only
    /// the magic bytes until its batch appends the FDE, and answering NONE from it made a CRC32
    /// replica take heartbeats without a CRC and stop ("event checksum verification failed").
    #[test]
    fn the_newest_fde_skips_a_file_whose_fde_is_not_written_yet() {
        let dir = tempfile::tempdir().unwrap();
        // A real CRC32 file of MariaDB 10.11, and a new one holding only the magic.
        let crc32 = crate::binlog::maria_checksum_fixture("mysql-bin.000002");
        std::fs::write(dir.path().join("mysql-bin.000002"), &crc32).unwrap();
        std::fs::write(dir.path().join("mysql-bin.000003"), MAGIC).unwrap();
        let read = |f: &FileRecord| read_fde(&dir.path().join(f.file_name.as_str()));
        let files = vec![
            file("mysql-bin.000002", FileState::Sealed, crc32.len() as u64, None),
            file("mysql-bin.000003", FileState::Open, 4, None),
        ];
        let (fde, server_id) = newest_fde(&files, read).expect("the sealed file's FDE");
        assert!(fde.checksum.has_crc(), "CRC32, from mysql-bin.000002");
        assert_eq!(server_id, 1);
        // Once the new file has its FDE, it is the one.
        let none = crate::binlog::maria_checksum_fixture("mysql-bin.000003");
        std::fs::write(dir.path().join("mysql-bin.000003"), &none).unwrap();
        let (fde, _) = newest_fde(&files, read).expect("the new file's FDE");
        assert!(!fde.checksum.has_crc(), "NONE, from mysql-bin.000003");
        // No file with an FDE: none.
        assert!(newest_fde(&files[1..2], |_| read_fde(&dir.path().join("missing"))).is_none());
    }
}
