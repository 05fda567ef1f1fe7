//! One client connection to the source: TCP, optional TLS upgrade, authentication
//! (mysql_native_password, caching_sha2_password, MariaDB's client_ed25519), and the few
//! text-protocol commands a replica needs before it asks for the binlog. Packet types and
//! password scrambles come from `mysql_common`, the protocol crate under mysql_async; the
//! transport is ours so the binlog bytes can be read raw.
//!
//! The password itself leaves only over TLS, or encrypted under a key the operator pinned
//! (`source.server_public_key`): never under an RSA key the server hands out, which an
//! impostor on the path (or a server the task was pointed at) could have made.

use std::time::Duration;

use bytes::Bytes;
use mysql_common::constants::{CapabilityFlags, StatusFlags};
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin, AuthSwitchRequest, HandshakePacket, HandshakeResponse, SslRequest};
use mysql_common::proto::MySerialize;
use tokio::net::TcpStream;

use crate::domain::TlsMode;
use crate::secret::Secret;
use crate::source::packet::{PacketIo, Transport};
use crate::source::{SourceError, tls};

/// utf8mb4_general_ci: understood by every server we talk to.
const COLLATION: u8 = 45;
/// What we announce as our own max packet size.
const CLIENT_MAX_PACKET: u32 = 1 << 30;
/// The largest packet accepted before the binlog stream starts (greeting, authentication,
/// query replies: a real server's are a few hundred bytes; a result row is one packet). A
/// hostile server's 16 MiB greeting is refused from its first four bytes.
pub const COMMAND_MAX_PACKET: usize = 1 << 20;
const COMMAND_LIMIT: &str = "for a greeting, an authentication step or a query reply";
/// How many authentication round trips (plugin switches, extra data) a server may ask for.
const MAX_AUTH_ROUNDS: usize = 8;

/// Why a caching_sha2_password full authentication without TLS stops here (a permanent error).
const FULL_AUTH_WITHOUT_TLS: &str = "the source asks for the password itself (caching_sha2_password full \
    authentication) on a connection without TLS, and binlog-server does not encrypt it under a key the server \
    sends (an impostor could send its own): use TLS (source.tls_mode required, verify_ca or verify_identity) or \
    pin the source's RSA public key in source.server_public_key (MySQL: SHOW STATUS LIKE \
    'Caching_sha2_password_rsa_public_key')";

/// How to reach and authenticate to a source.
#[derive(Debug, Clone)]
pub struct ConnectParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
    pub tls_mode: TlsMode,
    pub tls_ca_file: Option<String>,
    /// `replication.tls_ca_dir`: the only place `tls_ca_file` is read from.
    pub tls_ca_dir: Option<std::path::PathBuf>,
    /// PEM, checked when the task was written (`source::rsa`).
    pub server_public_key: Option<String>,
    /// For the TCP connect and authentication together, and again for each command before
    /// the binlog stream (a server that stops answering a query must not hold the task).
    pub connect_timeout: Duration,
    /// The largest binlog event packet (`replication.max_event_bytes` + 1), from the dump on.
    pub max_packet: usize,
}

/// An authenticated connection.
pub struct SourceConn {
    pub(crate) io: PacketIo<Transport>,
    server_version: String,
    connection_id: u32,
    capabilities: CapabilityFlags,
    tls: bool,
    /// How long a command may wait for its reply.
    command_timeout: Duration,
    /// The packet limit once the binlog stream flows.
    max_event_packet: usize,
}

/// The source's socket as another thread sees it (a duplicated descriptor: the socket stays open
/// while a handle is held, even after the connection is dropped). Its only use is one write of a
/// framed semi-sync ack while the stream task writes nothing (it waits for the answer to the
/// batch that ack belongs to), so the two never interleave bytes.
#[derive(Debug, Clone)]
pub struct AckSocket(std::sync::Arc<std::net::TcpStream>);

impl AckSocket {
    fn of(stream: &TcpStream) -> Option<AckSocket> {
        use std::os::fd::AsFd as _;
        stream.as_fd().try_clone_to_owned().ok().map(|fd| AckSocket(std::sync::Arc::new(fd.into())))
    }

    /// Writes as much of `frame` as the socket takes without waiting (it is non-blocking, as
    /// tokio keeps it) and answers how many bytes went out: all of them unless the send buffer
    /// is full or the connection failed, where the stream task sends the rest itself and meets
    /// the error there (`SourceConn::send_semi_sync_ack`).
    pub fn send_now(&self, frame: &[u8]) -> usize {
        use std::io::Write as _;
        let mut sent = 0;
        while sent < frame.len() {
            match (&*self.0).write(&frame[sent..]) {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        sent
    }
}

/// A text result set: column names and rows of nullable strings.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    /// The value of `column` in the first row.
    pub fn first(&self, column: &str) -> Option<&str> {
        let i = self.columns.iter().position(|c| c.eq_ignore_ascii_case(column))?;
        self.rows.first()?.get(i)?.as_deref()
    }
}

impl SourceConn {
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    pub fn connection_id(&self) -> u32 {
        self.connection_id
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn is_mariadb(&self) -> bool {
        self.server_version.to_ascii_lowercase().contains("mariadb")
    }

    /// Connects, upgrades to TLS as the mode asks, and authenticates; all within the timeout.
    pub async fn connect(p: &ConnectParams) -> Result<SourceConn, SourceError> {
        tokio::time::timeout(p.connect_timeout, Self::connect_inner(p))
            .await
            .map_err(|_| SourceError::Timeout(format!("connecting to {}:{}", p.host, p.port)))?
    }

    async fn connect_inner(p: &ConnectParams) -> Result<SourceConn, SourceError> {
        let ca_file = p.tls_ca_file.as_deref().map(|name| tls::CaFile { dir: p.tls_ca_dir.as_deref(), name });
        let tls_config = tls::client_config(p.tls_mode, ca_file).map_err(SourceError::Tls)?;
        let tcp = TcpStream::connect((p.host.as_str(), p.port)).await.map_err(SourceError::Io)?;
        tcp.set_nodelay(true).map_err(SourceError::Io)?;
        let mut io = PacketIo::new(Transport::Plain(tcp), COMMAND_MAX_PACKET);
        io.set_max_payload(COMMAND_MAX_PACKET, COMMAND_LIMIT);

        let first = io.read_packet().await?;
        if first.first() == Some(&0xFF) {
            return Err(parse_err_packet(&first));
        }
        let hs: HandshakePacket<'_> =
            ParseBuf(&first).parse(()).map_err(|e| SourceError::Protocol(format!("malformed server greeting: {e}")))?;
        if hs.protocol_version() != 10 {
            return Err(SourceError::Protocol(format!("unsupported protocol version {}", hs.protocol_version())));
        }
        let server_version = hs.server_version_str().into_owned();
        let version = parse_server_version(hs.server_version_ref()).unwrap_or((5, 7, 0));
        let server_caps = hs.capabilities();
        let nonce = hs.nonce();
        let plugin_name =
            hs.auth_plugin_name_str().map(|s| s.into_owned()).unwrap_or_else(|| "mysql_native_password".into());
        let connection_id = hs.connection_id();

        let wanted = CapabilityFlags::CLIENT_PROTOCOL_41
            | CapabilityFlags::CLIENT_SECURE_CONNECTION
            | CapabilityFlags::CLIENT_PLUGIN_AUTH
            | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
            | CapabilityFlags::CLIENT_LONG_PASSWORD
            | CapabilityFlags::CLIENT_LONG_FLAG
            | CapabilityFlags::CLIENT_TRANSACTIONS
            | CapabilityFlags::CLIENT_MULTI_RESULTS;
        if !server_caps.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
            return Err(SourceError::Unsupported(format!("server {server_version} predates protocol 4.1")));
        }
        let mut caps = wanted & server_caps;

        let use_tls = match (p.tls_mode, server_caps.contains(CapabilityFlags::CLIENT_SSL)) {
            (TlsMode::Disabled, _) => false,
            (TlsMode::Preferred, has) => has,
            (_, true) => true,
            (mode, false) => {
                return Err(SourceError::Tls(format!(
                    "tls_mode is {mode} but the server at {}:{} does not offer TLS",
                    p.host, p.port
                )));
            }
        };
        if use_tls {
            caps |= CapabilityFlags::CLIENT_SSL;
            let mut req = Vec::new();
            SslRequest::new(caps, CLIENT_MAX_PACKET, COLLATION).serialize(&mut req);
            io.write_packet(&req).await?;
            let config = tls_config
                .clone()
                .ok_or_else(|| SourceError::Tls("TLS requested without a TLS configuration".into()))?;
            let name = tls::server_name(&p.host).map_err(SourceError::Tls)?;
            let (stream, seq) = io.into_parts();
            let Transport::Plain(tcp) = stream else {
                return Err(SourceError::Protocol("TLS upgrade on a non-plain transport".into()));
            };
            let tls_stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await
                .map_err(|e| SourceError::Tls(format!("TLS handshake with {}:{} failed: {e}", p.host, p.port)))?;
            io = PacketIo::from_parts(Transport::Tls(Box::new(tls_stream)), seq, COMMAND_MAX_PACKET);
            io.set_max_payload(COMMAND_MAX_PACKET, COMMAND_LIMIT);
        }

        let mut conn = SourceConn {
            io,
            server_version,
            connection_id,
            capabilities: caps,
            tls: use_tls,
            command_timeout: p.connect_timeout,
            max_event_packet: p.max_packet.max(COMMAND_MAX_PACKET),
        };
        conn.authenticate(p, version, caps, &plugin_name, &nonce).await?;
        Ok(conn)
    }

    async fn authenticate(
        &mut self,
        p: &ConnectParams,
        version: (u16, u16, u16),
        caps: CapabilityFlags,
        plugin_name: &str,
        nonce: &[u8],
    ) -> Result<(), SourceError> {
        let password = p.password.expose();
        let plugin = plugin_for(plugin_name)?;
        let data = auth_data(&plugin, password, nonce)?;
        let mut resp = Vec::new();
        HandshakeResponse::new(
            Some(data.as_slice()),
            version,
            Some(p.user.as_bytes()),
            None::<&[u8]>,
            Some(plugin.clone()),
            caps,
            None,
            CLIENT_MAX_PACKET,
        )
        .serialize(&mut resp);
        self.io.write_packet(&resp).await?;

        let mut current_plugin = plugin.into_owned();
        let mut current_nonce = nonce.to_vec();
        // A server may switch plugins and exchange more data; bound the dance.
        for _ in 0..MAX_AUTH_ROUNDS {
            let pkt = self.io.read_packet().await?;
            match pkt.first() {
                Some(0x00) => return Ok(()),
                Some(0xFF) => return Err(parse_err_packet(&pkt)),
                Some(0xFE) => {
                    let switch: AuthSwitchRequest<'_> = ParseBuf(&pkt)
                        .parse(())
                        .map_err(|e| SourceError::Protocol(format!("malformed auth switch request: {e}")))?;
                    current_plugin = switch.auth_plugin().into_owned();
                    current_nonce = switch.plugin_data().to_vec();
                    // The nonce of a switch request may carry a trailing NUL.
                    if current_nonce.last() == Some(&0) {
                        current_nonce.pop();
                    }
                    let name = String::from_utf8_lossy(current_plugin.as_bytes()).into_owned();
                    let plugin = plugin_for(&name)?;
                    let data = auth_data(&plugin, password, &current_nonce)?;
                    self.io.write_packet(&data).await?;
                }
                Some(0x01) => {
                    let more = &pkt[1..];
                    if !matches!(current_plugin, AuthPlugin::CachingSha2Password) {
                        return Err(SourceError::Protocol("unexpected auth-more-data packet".into()));
                    }
                    match more.first() {
                        Some(0x03) => {} // fast authentication succeeded; OK follows
                        Some(0x04) => {
                            // Full authentication: the password itself, over TLS or encrypted
                            // under the pinned key.
                            if self.tls {
                                let mut clear = password.as_bytes().to_vec();
                                clear.push(0);
                                self.io.write_packet(&clear).await?;
                            } else if let Some(pem) = &p.server_public_key {
                                let encrypted = rsa_encrypt(password, &current_nonce, pem.as_bytes())?;
                                self.io.write_packet(&encrypted).await?;
                            } else {
                                return Err(SourceError::Tls(FULL_AUTH_WITHOUT_TLS.into()));
                            }
                        }
                        _ => {
                            // Public key sent unasked (a response to an earlier 0x02).
                            return Err(SourceError::Protocol("unexpected caching_sha2_password exchange".into()));
                        }
                    }
                }
                _ => {
                    return Err(SourceError::Protocol("unexpected packet during authentication".into()));
                }
            }
        }
        Err(SourceError::Protocol(format!(
            "authentication did not finish after {MAX_AUTH_ROUNDS} exchanges (the server keeps switching plugins \
             or asking for more data)"
        )))
    }

    /// Sends a text command and expects OK (rows, if any, are read and dropped).
    pub async fn execute(&mut self, sql: &str) -> Result<(), SourceError> {
        self.query(sql).await.map(|_| ())
    }

    /// Sends a text query and reads its result set (empty for statements without rows), within
    /// the command timeout.
    pub async fn query(&mut self, sql: &str) -> Result<Rows, SourceError> {
        let timeout = self.command_timeout;
        tokio::time::timeout(timeout, self.query_inner(sql)).await.map_err(|_| {
            SourceError::Timeout(format!("waiting {timeout:?} for the source to answer {:?}", short(sql)))
        })?
    }

    async fn query_inner(&mut self, sql: &str) -> Result<Rows, SourceError> {
        let mut cmd = Vec::with_capacity(sql.len() + 1);
        cmd.push(0x03); // COM_QUERY
        cmd.extend_from_slice(sql.as_bytes());
        self.io.reset_seq();
        self.io.write_packet(&cmd).await?;
        let mut result = self.read_result().await?;
        // Drain further result sets (none are expected; stay in sync if a server sends one).
        while result.1 {
            result = self.read_result().await?;
        }
        Ok(result.0)
    }

    /// Reads one result; the bool says whether more results follow.
    async fn read_result(&mut self) -> Result<(Rows, bool), SourceError> {
        let head = self.io.read_packet().await?;
        match head.first() {
            Some(0x00) => return Ok((Rows::default(), ok_more_results(&head))),
            Some(0xFF) => return Err(parse_err_packet(&head)),
            None => return Err(SourceError::Protocol("empty response".into())),
            _ => {}
        }
        let mut p = &head[..];
        let ncols = read_lenenc_int(&mut p).ok_or_else(|| SourceError::Protocol("bad column count".into()))? as usize;
        if ncols == 0 || ncols > 4096 {
            return Err(SourceError::Protocol(format!("unreasonable column count {ncols}")));
        }
        let mut columns = Vec::with_capacity(ncols);
        for _ in 0..ncols {
            let def = self.io.read_packet().await?;
            columns.push(column_name(&def)?);
        }
        let eof = self.io.read_packet().await?;
        if !is_eof(&eof) {
            return Err(SourceError::Protocol("expected EOF after column definitions".into()));
        }
        let mut rows = Vec::new();
        loop {
            let pkt = self.io.read_packet().await?;
            if is_eof(&pkt) {
                let more = eof_more_results(&pkt);
                return Ok((Rows { columns, rows }, more));
            }
            if pkt.first() == Some(&0xFF) {
                return Err(parse_err_packet(&pkt));
            }
            let mut p = &pkt[..];
            let mut row = Vec::with_capacity(ncols);
            for _ in 0..ncols {
                if p.first() == Some(&0xFB) {
                    p = &p[1..];
                    row.push(None);
                } else {
                    let v = read_lenenc_bytes(&mut p).ok_or_else(|| SourceError::Protocol("truncated row".into()))?;
                    row.push(Some(String::from_utf8_lossy(v).into_owned()));
                }
            }
            rows.push(row);
        }
    }

    /// Sends a raw command packet (sequence restarts at 0).
    pub async fn send_command(&mut self, payload: &[u8]) -> Result<(), SourceError> {
        self.io.reset_seq();
        self.io.write_packet(payload).await
    }

    /// Reads a packet and expects OK, within the command timeout.
    pub async fn expect_ok(&mut self) -> Result<(), SourceError> {
        let timeout = self.command_timeout;
        let pkt = tokio::time::timeout(timeout, self.io.read_packet()).await.map_err(|_| {
            SourceError::Timeout(format!("waiting {timeout:?} for the source to acknowledge a command"))
        })??;
        match pkt.first() {
            Some(0x00) => Ok(()),
            Some(0xFF) => Err(parse_err_packet(&pkt)),
            _ => Err(SourceError::Protocol("expected OK".into())),
        }
    }

    /// From now on packets are binlog events: accept them up to `replication.max_event_bytes`.
    pub fn enter_binlog_stream(&mut self) {
        self.io.set_max_payload(self.max_event_packet, "replication.max_event_bytes");
    }

    /// The source accepted us as a semi-sync replica: every event packet now carries the
    /// semi-sync header (see `PacketIo::expect_semi_sync`).
    pub fn expect_semi_sync(&mut self) {
        self.io.expect_semi_sync();
    }

    /// Sends a framed semi-sync ack ([`crate::source::semisync::ack_frame`]), or the rest of one
    /// that [`AckSocket::send_now`] could not send whole, within the command timeout. Called
    /// between reads (`read_packet` is cancel-safe), so an ack never waits for the next event.
    pub async fn send_semi_sync_ack(&mut self, frame: &[u8]) -> Result<(), SourceError> {
        let timeout = self.command_timeout;
        tokio::time::timeout(timeout, self.io.write_framed(frame)).await.map_err(|_| {
            SourceError::Timeout(format!("sending a semi-sync ack: the source took no data for {timeout:?}"))
        })?
    }

    /// A second handle on this connection's socket, for a semi-sync ack sent by another thread
    /// (the writer's, right after its fsync). `None` over TLS (the ack must go through the TLS
    /// stream) or when the descriptor cannot be duplicated.
    pub fn ack_socket(&self) -> Option<AckSocket> {
        match self.io.stream() {
            Transport::Plain(s) => AckSocket::of(s),
            Transport::Tls(_) | Transport::Upgrading => None,
        }
    }

    /// Reads the next packet of a binlog stream.
    pub async fn read_packet(&mut self) -> Result<Bytes, SourceError> {
        self.io.read_packet().await
    }

    /// When bytes last arrived from the source.
    pub fn last_activity(&self) -> std::time::Instant {
        self.io.last_activity()
    }

    /// Whether the next packet is already buffered.
    pub fn has_buffered_packet(&self) -> bool {
        self.io.has_buffered_packet()
    }

    pub fn capabilities(&self) -> CapabilityFlags {
        self.capabilities
    }

    /// Politely ends the session (COM_QUIT), ignoring errors: the socket closes anyway.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(1), self.send_command(&[0x01])).await;
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.io.stream_mut().shutdown()).await;
    }
}

/// The beginning of a statement, for an error message.
fn short(sql: &str) -> &str {
    let end = sql.char_indices().nth(60).map_or(sql.len(), |(i, _)| i);
    &sql[..end]
}

fn plugin_for(name: &str) -> Result<AuthPlugin<'static>, SourceError> {
    match name {
        "mysql_native_password" => Ok(AuthPlugin::MysqlNativePassword),
        "caching_sha2_password" => Ok(AuthPlugin::CachingSha2Password),
        "client_ed25519" => Ok(AuthPlugin::Ed25519),
        other => Err(SourceError::Unsupported(format!(
            "authentication plugin {:?} is not supported (use mysql_native_password, \
             caching_sha2_password or ed25519)",
            short(other)
        ))),
    }
}

fn auth_data(plugin: &AuthPlugin<'_>, password: &str, nonce: &[u8]) -> Result<Vec<u8>, SourceError> {
    if password.is_empty() {
        return Ok(Vec::new());
    }
    // The scrambles expect the 20-byte nonce; anything else is a broken or hostile server.
    if nonce.len() < 20 {
        return Err(SourceError::Protocol(format!("authentication nonce of {} bytes (expected 20)", nonce.len())));
    }
    let data = plugin
        .gen_data(Some(password), &nonce[..20])
        .ok_or_else(|| SourceError::Protocol("cannot compute authentication data".into()))?;
    let mut out = Vec::new();
    data.serialize(&mut out);
    Ok(out)
}

/// caching_sha2_password without TLS: (password + NUL) XOR nonce, RSA-OAEP under the pinned key.
fn rsa_encrypt(password: &str, nonce: &[u8], pem: &[u8]) -> Result<Vec<u8>, SourceError> {
    let mut clear = password.as_bytes().to_vec();
    clear.push(0);
    if nonce.is_empty() {
        return Err(SourceError::Protocol("empty nonce".into()));
    }
    for (i, b) in clear.iter_mut().enumerate() {
        *b ^= nonce[i % nonce.len()];
    }
    let pem = pem.to_vec();
    // mysql_common panics on a malformed key or a password too long for it. The pinned key was
    // checked when it was stored; this is the last guard, not the check.
    std::panic::catch_unwind(move || mysql_common::crypto::encrypt(&clear, &pem)).map_err(|_| {
        SourceError::Tls("cannot encrypt the password under source.server_public_key (key too short for it?)".into())
    })
}

/// Parses an ERR packet (with or without the SQL state marker).
pub fn parse_err_packet(pkt: &[u8]) -> SourceError {
    if pkt.len() < 3 {
        return SourceError::Protocol("truncated error packet".into());
    }
    let code = u16::from_le_bytes([pkt[1], pkt[2]]);
    let mut rest = &pkt[3..];
    let mut state = String::new();
    if rest.first() == Some(&b'#') && rest.len() >= 6 {
        state = String::from_utf8_lossy(&rest[1..6]).into_owned();
        rest = &rest[6..];
    }
    // The text comes from the server: keep what an operator reads, not what a hostile one sends.
    let message = String::from_utf8_lossy(&rest[..rest.len().min(MAX_ERROR_MESSAGE)]).into_owned();
    SourceError::Server { code, state, message }
}

/// The longest server error text kept (MySQL's own are at most 512 bytes).
const MAX_ERROR_MESSAGE: usize = 512;

fn is_eof(pkt: &[u8]) -> bool {
    pkt.first() == Some(&0xFE) && pkt.len() < 9
}

fn eof_more_results(pkt: &[u8]) -> bool {
    pkt.len() >= 5
        && StatusFlags::from_bits_truncate(u16::from_le_bytes([pkt[3], pkt[4]]))
            .contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS)
}

fn ok_more_results(pkt: &[u8]) -> bool {
    let mut p = &pkt[1..];
    if read_lenenc_int(&mut p).is_none() || read_lenenc_int(&mut p).is_none() || p.len() < 2 {
        return false;
    }
    StatusFlags::from_bits_truncate(u16::from_le_bytes([p[0], p[1]])).contains(StatusFlags::SERVER_MORE_RESULTS_EXISTS)
}

/// Reads a length-encoded integer, advancing the slice.
pub fn read_lenenc_int(p: &mut &[u8]) -> Option<u64> {
    let (&first, rest) = p.split_first()?;
    let len = match first {
        0..=0xFA => {
            *p = rest;
            return Some(u64::from(first));
        }
        0xFC => 2,
        0xFD => 3,
        0xFE => 8,
        _ => return None,
    };
    if rest.len() < len {
        return None;
    }
    let mut le = [0u8; 8];
    le[..len].copy_from_slice(&rest[..len]);
    *p = &rest[len..];
    Some(u64::from_le_bytes(le))
}

fn read_lenenc_bytes<'a>(p: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = read_lenenc_int(p)? as usize;
    if p.len() < len {
        return None;
    }
    let (v, rest) = p.split_at(len);
    *p = rest;
    Some(v)
}

/// The `name` of a column definition (catalog, schema, table, org_table, name, ...).
fn column_name(def: &[u8]) -> Result<String, SourceError> {
    let mut p = def;
    for _ in 0..4 {
        read_lenenc_bytes(&mut p).ok_or_else(|| SourceError::Protocol("truncated column definition".into()))?;
    }
    let name = read_lenenc_bytes(&mut p).ok_or_else(|| SourceError::Protocol("truncated column definition".into()))?;
    Ok(String::from_utf8_lossy(name).into_owned())
}

/// `major.minor.patch` at the start of a greeting's server version (ASCII digits: 1-2, 1-2, 1-3,
/// as MySQL writes them). mysql_common's `server_version_parsed` panics on a version its regex
/// matches with non-ASCII digits (`\d` is Unicode there), which a hostile source can send: found
/// by the fuzz campaign (`handshake`).
pub fn parse_server_version(v: &[u8]) -> Option<(u16, u16, u16)> {
    let mut parts = [0u16; 3];
    let mut rest = v;
    for (i, max_digits) in [2usize, 2, 3].into_iter().enumerate() {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > max_digits {
            return None;
        }
        parts[i] = rest[..digits].iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        rest = &rest[digits..];
        if i < 2 {
            rest = rest.strip_prefix(b".")?;
        }
    }
    Some((parts[0], parts[1], parts[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's thread writes a semi-sync ack through this handle: it must never block there
    /// (a source that stops reading would hold the writer, and every task on its thread), and a
    /// frame the socket takes whole arrives as it was.
    #[test]
    fn an_ack_socket_sends_what_the_socket_takes_and_never_blocks() {
        use std::io::Read as _;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = rt.block_on(TcpStream::connect(addr)).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        let socket = AckSocket::of(&stream).expect("a plain socket can be shared");

        let frame = crate::source::semisync::ack_frame(
            &crate::binlog::name::BinlogFileName::parse("mariadb-bin.000003").unwrap(),
            4242,
        );
        assert_eq!(socket.send_now(&frame), frame.len(), "a small frame goes out whole");
        let mut got = vec![0u8; frame.len()];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(got, frame);

        // A peer that reads nothing: the write takes what fits and returns, it does not wait.
        let big = vec![7u8; 64 << 20];
        let started = std::time::Instant::now();
        let n = socket.send_now(&big);
        assert!(n > 0 && n < big.len(), "a partial write of a frame the buffers cannot hold: {n}");
        assert!(started.elapsed() < Duration::from_secs(5), "returned without waiting for the peer");
    }

    #[test]
    fn server_versions_parse_without_panicking_on_unicode_digits() {
        type Version = Option<(u16, u16, u16)>;
        let cases: [(&[u8], Version); 8] = [
            (b"10.11.19-MariaDB-0+deb12u1-log", Some((10, 11, 19))),
            (b"8.0.40", Some((8, 0, 40))),
            (b"5.5.5-10.6.1-MariaDB", Some((5, 5, 5))),
            (b"9.6.0-commercial", Some((9, 6, 0))),
            ("\u{0661}.1.1".as_bytes(), None), // ARABIC-INDIC DIGIT ONE: mysql_common panicked here
            (b"100.1.1", None),
            (b"8.0", None),
            (b"", None),
        ];
        for (v, want) in cases {
            assert_eq!(parse_server_version(v), want, "{:?}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn lenenc_integers() {
        let mut p: &[u8] = &[0xFA, 0xFC, 0x34, 0x12, 0xFD, 1, 2, 3, 0xFE, 1, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(read_lenenc_int(&mut p), Some(0xFA));
        assert_eq!(read_lenenc_int(&mut p), Some(0x1234));
        assert_eq!(read_lenenc_int(&mut p), Some(0x030201));
        assert_eq!(read_lenenc_int(&mut p), Some(1));
        assert!(p.is_empty());
        let mut short: &[u8] = &[0xFC, 1];
        assert_eq!(read_lenenc_int(&mut short), None);
        let mut bad: &[u8] = &[0xFF];
        assert_eq!(read_lenenc_int(&mut bad), None);
    }

    #[test]
    fn error_packets_with_and_without_state() {
        let mut pkt = vec![0xFF, 0x15, 0x04, b'#'];
        pkt.extend_from_slice(b"28000Access denied for user");
        match parse_err_packet(&pkt) {
            SourceError::Server { code, state, message } => {
                assert_eq!(code, 1045);
                assert_eq!(state, "28000");
                assert_eq!(message, "Access denied for user");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_err_packet(&[0xFF]), SourceError::Protocol(_)));
    }

    #[test]
    fn a_server_error_text_is_kept_short() {
        let mut pkt = vec![0xFF, 0x15, 0x04, b'#'];
        pkt.extend_from_slice(b"28000");
        pkt.extend(std::iter::repeat_n(b'x', 1 << 20));
        match parse_err_packet(&pkt) {
            SourceError::Server { message, .. } => assert_eq!(message.len(), MAX_ERROR_MESSAGE),
            other => panic!("{other:?}"),
        }
        let long_plugin = "p".repeat(10_000);
        let err = plugin_for(&long_plugin).unwrap_err().to_string();
        assert!(err.len() < 300, "{err}");
    }

    #[test]
    fn short_nonce_is_refused_not_panicked_on() {
        let err = auth_data(&AuthPlugin::MysqlNativePassword, "pw", b"short").unwrap_err();
        assert!(matches!(err, SourceError::Protocol(_)));
    }

    #[test]
    fn garbage_rsa_key_is_an_error() {
        assert!(rsa_encrypt("pw", b"01234567890123456789", b"not a key").is_err());
    }

    #[test]
    fn native_scramble_matches_the_documented_formula() {
        // SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password))).
        use sha1::{Digest, Sha1};
        let sha1 = |d: &[u8]| Sha1::digest(d).to_vec();
        let nonce = b"abcdefghijklmnopqrst";
        let data = auth_data(&AuthPlugin::MysqlNativePassword, "secret", nonce).unwrap();
        let h1 = sha1(b"secret");
        let h2 = sha1(&h1);
        let mut cat = nonce.to_vec();
        cat.extend_from_slice(&h2);
        let h3 = sha1(&cat);
        let expected: Vec<u8> = h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(data, expected);
    }

    #[test]
    fn sha256_scramble_matches_the_documented_formula() {
        // XOR(SHA256(password), SHA256(SHA256(SHA256(password)), nonce)).
        use sha2::{Digest, Sha256};
        let nonce = b"abcdefghijklmnopqrst";
        let data = auth_data(&AuthPlugin::CachingSha2Password, "secret", nonce).unwrap();
        let h1 = Sha256::digest(b"secret");
        let h2 = Sha256::digest(h1);
        let mut hasher = Sha256::new();
        hasher.update(h2);
        hasher.update(nonce);
        let h3 = hasher.finalize();
        let expected: Vec<u8> = h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(data, expected);
    }
}
