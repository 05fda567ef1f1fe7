//! A fake MySQL/MariaDB source: a small server-side speaker of the client/server protocol for
//! tests that need a source to behave as no real server here will (a MySQL 8 that asks for
//! `caching_sha2_password` full authentication without TLS, an impostor, a broken server, a
//! source that lies in its binlog stream). It is the attacker or the broken peer of a test,
//! never a stand-in for MySQL: replication itself is tested against a real `mariadbd`.
//!
//! Playing a replication source takes three steps: [`Session::accept_login`] (any
//! credentials), [`Session::serve_until_dump`] (answers a replica's set-up queries about
//! itself, its `SET`s and `COM_REGISTER_SLAVE`, until `COM_BINLOG_DUMP`), then events built
//! with [`events`] (a [`events::Binlog`] keeps their positions right, or wrong on purpose) sent
//! with [`Session::send_event`], or raw frames with [`Session::write_frame`].
//!
//! A `FakeSource` listens on an ephemeral loopback port and runs a *script* (a closure over a
//! [`Session`]) for every connection, on a thread of its own. Everything a client sends is
//! recorded, per connection, so a test can assert what left binlog-server. The listener stops
//! when the `FakeSource` drops.
//!
//! ```ignore
//! let fake = FakeSource::start(|s: &mut Session| {
//!     s.greet(&Greeting::default())?;
//!     let hello = s.read_handshake_response()?;
//!     s.send_err(1045, "28000", &format!("Access denied for user '{}'", hello.user))
//! });
//! // point a task at 127.0.0.1:fake.port(), then:
//! let sessions = fake.wait_sessions(1, Duration::from_secs(30));
//! ```

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::poll_until;

/// Capability flags (the protocol's names) a script may combine in a [`Greeting`].
pub mod caps {
    pub const LONG_PASSWORD: u32 = 0x0000_0001;
    pub const LONG_FLAG: u32 = 0x0000_0004;
    pub const CONNECT_WITH_DB: u32 = 0x0000_0008;
    pub const PROTOCOL_41: u32 = 0x0000_0200;
    pub const SSL: u32 = 0x0000_0800;
    pub const TRANSACTIONS: u32 = 0x0000_2000;
    pub const SECURE_CONNECTION: u32 = 0x0000_8000;
    pub const MULTI_RESULTS: u32 = 0x0002_0000;
    pub const PLUGIN_AUTH: u32 = 0x0008_0000;
    pub const CONNECT_ATTRS: u32 = 0x0010_0000;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x0020_0000;

    /// What a MySQL 8 server without TLS announces (the parts a replica client looks at).
    pub const MYSQL8_PLAIN: u32 = LONG_PASSWORD
        | LONG_FLAG
        | CONNECT_WITH_DB
        | PROTOCOL_41
        | TRANSACTIONS
        | SECURE_CONNECTION
        | MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_CLIENT_DATA;
}

/// The server's first packet (protocol 10 handshake).
#[derive(Debug, Clone)]
pub struct Greeting {
    pub server_version: String,
    pub connection_id: u32,
    pub capabilities: u32,
    /// The authentication plugin the server proposes.
    pub auth_plugin: String,
    /// 20 bytes, no NUL (the scramble the client hashes with, and XORs into an RSA payload).
    pub nonce: [u8; 20],
}

impl Default for Greeting {
    /// A MySQL 8.0 without TLS proposing `caching_sha2_password`.
    fn default() -> Self {
        let mut nonce = [0u8; 20];
        for (i, b) in nonce.iter_mut().enumerate() {
            // Printable and never NUL, like a real server's scramble; varies between runs.
            *b = b'A' + ((rand_byte() as usize + i * 7) % 26) as u8;
        }
        Greeting {
            server_version: "8.0.40-fake".into(),
            connection_id: 7,
            capabilities: caps::MYSQL8_PLAIN,
            auth_plugin: "caching_sha2_password".into(),
            nonce,
        }
    }
}

fn rand_byte() -> u8 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    (h.finish() & 0xff) as u8
}

impl Greeting {
    /// A MariaDB 10.11 proposing `mysql_native_password`.
    pub fn mariadb() -> Self {
        Greeting {
            server_version: "5.5.5-10.11.99-MariaDB-fake".into(),
            auth_plugin: "mysql_native_password".into(),
            ..Greeting::default()
        }
    }
}

/// What a fake replication source says about itself (`SELECT @@... AS name` of a replica).
#[derive(Debug, Clone)]
pub struct SourceFacts {
    pub version: String,
    pub server_id: u32,
    pub domain_id: u32,
    /// `@@global.binlog_checksum`: `CRC32` or `NONE`.
    pub checksum: String,
}

impl Default for SourceFacts {
    fn default() -> Self {
        SourceFacts { version: "10.11.99-MariaDB-fake".into(), server_id: 1, domain_id: 0, checksum: "CRC32".into() }
    }
}

impl SourceFacts {
    /// The value of a column a replica asks for by its alias.
    fn value(&self, alias: &str) -> Option<String> {
        Some(match alias {
            "version" => self.version.clone(),
            "server_id" => self.server_id.to_string(),
            "domain_id" => self.domain_id.to_string(),
            "log_bin" => "1".into(),
            "checksum" => self.checksum.clone(),
            "pos" => String::new(),
            _ => return None,
        })
    }
}

/// What a `COM_BINLOG_DUMP` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpRequest {
    pub pos: u32,
    pub flags: u16,
    pub server_id: u32,
    pub file: String,
}

/// What the client answered to the greeting (HandshakeResponse41).
#[derive(Debug, Clone, Default)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub user: String,
    /// The scramble (or whatever the client put there).
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
}

/// What happened on one connection: every packet the client sent (payloads, in order) and how
/// the script ended (`Err` text, or `None` when it returned `Ok`).
#[derive(Debug, Clone, Default)]
pub struct SessionLog {
    pub received: Vec<Vec<u8>>,
    /// Set once the script has returned.
    pub finished: bool,
    pub error: Option<String>,
}

/// One client connection, as a script sees it.
pub struct Session {
    stream: TcpStream,
    seq: u8,
    log: Arc<Mutex<SessionLog>>,
    greeting: Option<Greeting>,
}

impl Session {
    /// Sends one packet with the current sequence id.
    pub fn write_packet(&mut self, payload: &[u8]) -> io::Result<()> {
        assert!(payload.len() < 0xFF_FFFF, "the fake source sends small packets only");
        let len = payload.len() as u32;
        let mut frame = Vec::with_capacity(payload.len() + 4);
        frame.extend_from_slice(&len.to_le_bytes()[..3]);
        frame.push(self.seq);
        frame.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.stream.write_all(&frame)
    }

    /// Reads one packet (recorded in the session's log); the next write follows its sequence.
    pub fn read_packet(&mut self) -> io::Result<Vec<u8>> {
        let mut head = [0u8; 4];
        self.stream.read_exact(&mut head)?;
        let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload)?;
        self.seq = head[3].wrapping_add(1);
        self.lock().received.push(payload.clone());
        Ok(payload)
    }

    /// A new command phase: the client's next packet starts at sequence 0.
    pub fn reset_seq(&mut self) {
        self.seq = 0;
    }

    /// Sends the protocol 10 handshake.
    pub fn greet(&mut self, g: &Greeting) -> io::Result<()> {
        let mut p = vec![10u8];
        p.extend_from_slice(g.server_version.as_bytes());
        p.push(0);
        p.extend_from_slice(&g.connection_id.to_le_bytes());
        p.extend_from_slice(&g.nonce[..8]);
        p.push(0);
        p.extend_from_slice(&(g.capabilities as u16).to_le_bytes());
        p.push(45); // utf8mb4_general_ci
        p.extend_from_slice(&2u16.to_le_bytes()); // SERVER_STATUS_AUTOCOMMIT
        p.extend_from_slice(&((g.capabilities >> 16) as u16).to_le_bytes());
        p.push(21); // length of the auth plugin data, with its NUL
        p.extend_from_slice(&[0u8; 10]);
        p.extend_from_slice(&g.nonce[8..]);
        p.push(0);
        p.extend_from_slice(g.auth_plugin.as_bytes());
        p.push(0);
        self.greeting = Some(g.clone());
        self.write_packet(&p)
    }

    /// The greeting this session sent (its nonce, to undo a client's XOR).
    pub fn greeting(&self) -> Option<&Greeting> {
        self.greeting.as_ref()
    }

    /// Reads and parses the client's HandshakeResponse41.
    pub fn read_handshake_response(&mut self) -> io::Result<HandshakeResponse> {
        let p = self.read_packet()?;
        parse_handshake_response(&p).ok_or_else(|| io::Error::other("malformed handshake response"))
    }

    /// Sends an OK packet.
    pub fn send_ok(&mut self) -> io::Result<()> {
        self.write_packet(&[0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00])
    }

    /// Sends an ERR packet with an SQL state.
    pub fn send_err(&mut self, code: u16, state: &str, message: &str) -> io::Result<()> {
        let mut p = vec![0xFF];
        p.extend_from_slice(&code.to_le_bytes());
        p.push(b'#');
        p.extend_from_slice(&state.as_bytes()[..5]);
        p.extend_from_slice(message.as_bytes());
        self.write_packet(&p)
    }

    /// Whether the client closed the connection: waits up to `timeout` for EOF (any bytes the
    /// client still sends are recorded as one more "packet" of raw bytes).
    pub fn client_hung_up(&mut self, timeout: Duration) -> bool {
        let _ = self.stream.set_read_timeout(Some(timeout));
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) => true,
            Ok(n) => {
                self.lock().received.push(buf[..n].to_vec());
                false
            }
            Err(_) => false,
        }
    }

    /// Greets with `g`, takes whatever credentials come, and answers OK.
    pub fn accept_login(&mut self, g: &Greeting) -> io::Result<HandshakeResponse> {
        self.greet(g)?;
        let hello = self.read_handshake_response()?;
        self.send_ok()?;
        Ok(hello)
    }

    /// Plays a replication source through a replica's set-up: answers its queries about the
    /// source (`facts`), acknowledges its `SET`s and `COM_REGISTER_SLAVE`, and returns its
    /// `COM_BINLOG_DUMP`. The events that follow carry on this sequence.
    pub fn serve_until_dump(&mut self, facts: &SourceFacts) -> io::Result<DumpRequest> {
        loop {
            let cmd = self.read_packet()?;
            match cmd.first() {
                Some(0x03) => {
                    let sql = String::from_utf8_lossy(&cmd[1..]).into_owned();
                    self.answer_query(&sql, facts)?;
                }
                Some(0x15) => self.send_ok()?,
                Some(0x12) if cmd.len() >= 11 => {
                    return Ok(DumpRequest {
                        pos: u32::from_le_bytes(cmd[1..5].try_into().expect("4 bytes")),
                        flags: u16::from_le_bytes([cmd[5], cmd[6]]),
                        server_id: u32::from_le_bytes(cmd[7..11].try_into().expect("4 bytes")),
                        file: String::from_utf8_lossy(&cmd[11..]).into_owned(),
                    });
                }
                Some(0x01) => return Err(io::Error::other("the client quit before asking for the binlog")),
                other => self.send_err(1047, "08S01", &format!("unknown command {other:?}"))?,
            }
        }
    }

    fn answer_query(&mut self, sql: &str, facts: &SourceFacts) -> io::Result<()> {
        let upper = sql.trim_start().to_ascii_uppercase();
        if upper.starts_with("SET ") {
            return self.send_ok();
        }
        if upper.starts_with("SELECT ") {
            // `SELECT @@a AS x, @@b AS y`: one row, a value per alias.
            let columns: Vec<String> =
                sql.split(',').filter_map(|part| part.rsplit_once(" AS ").map(|(_, a)| a.trim().to_string())).collect();
            let row: Vec<Option<String>> = columns.iter().map(|c| facts.value(c)).collect();
            return self.send_result_set(&columns, &[row]);
        }
        self.send_err(1064, "42000", &format!("the fake source does not answer {sql:?}"))
    }

    /// Sends a text result set: column count, definitions, EOF, rows, EOF.
    pub fn send_result_set(&mut self, columns: &[String], rows: &[Vec<Option<String>>]) -> io::Result<()> {
        self.write_packet(&lenenc(columns.len() as u64))?;
        for name in columns {
            let mut def = Vec::new();
            for part in ["def", "", "", "", name.as_str(), name.as_str()] {
                def.extend(lenenc(part.len() as u64));
                def.extend_from_slice(part.as_bytes());
            }
            def.push(0x0c);
            def.extend_from_slice(&45u16.to_le_bytes()); // utf8mb4_general_ci
            def.extend_from_slice(&1024u32.to_le_bytes());
            def.push(0xfd); // VAR_STRING
            def.extend_from_slice(&[0, 0, 0, 0, 0]); // flags, decimals, filler
            self.write_packet(&def)?;
        }
        self.write_packet(&[0xfe, 0, 0, 0x02, 0])?;
        for row in rows {
            let mut p = Vec::new();
            for value in row {
                match value {
                    Some(v) => {
                        p.extend(lenenc(v.len() as u64));
                        p.extend_from_slice(v.as_bytes());
                    }
                    None => p.push(0xfb),
                }
            }
            self.write_packet(&p)?;
        }
        self.write_packet(&[0xfe, 0, 0, 0x02, 0])
    }

    /// Sends one binlog event in a packet of its own (the 0x00 marker, then the event).
    pub fn send_event(&mut self, event: &[u8]) -> io::Result<()> {
        let mut p = Vec::with_capacity(event.len() + 1);
        p.push(0x00);
        p.extend_from_slice(event);
        self.write_packet(&p)
    }

    /// Writes one frame with the current sequence id and whatever `length` field (24 bits) the
    /// test wants, followed by `payload`: the tool for lies about lengths and 16 MiB chunks.
    pub fn write_frame(&mut self, length: u32, payload: &[u8]) -> io::Result<()> {
        let mut head = length.to_le_bytes()[..3].to_vec();
        head.push(self.seq);
        self.seq = self.seq.wrapping_add(1);
        self.stream.write_all(&head)?;
        self.stream.write_all(payload)
    }

    /// Writes bytes as they are (no framing).
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Keeps the connection open, sending nothing, until the client hangs up or `timeout`
    /// passes (a source stalled mid-packet); says whether the client hung up.
    pub fn stall(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            if self.client_hung_up(left.max(Duration::from_millis(1))) {
                return true;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SessionLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A length-encoded integer.
fn lenenc(n: u64) -> Vec<u8> {
    match n {
        0..=0xFA => vec![n as u8],
        0xFB..=0xFFFF => [&[0xFC][..], &(n as u16).to_le_bytes()].concat(),
        0x1_0000..=0xFF_FFFF => [&[0xFD][..], &(n as u32).to_le_bytes()[..3]].concat(),
        _ => [&[0xFE][..], &n.to_le_bytes()].concat(),
    }
}

fn parse_handshake_response(p: &[u8]) -> Option<HandshakeResponse> {
    let capabilities = u32::from_le_bytes(p.get(..4)?.try_into().ok()?);
    let mut rest = p.get(32..)?; // caps, max packet, charset, 23 filler bytes
    let cstr = |r: &mut &[u8]| -> Option<String> {
        let end = r.iter().position(|&b| b == 0)?;
        let s = String::from_utf8_lossy(&r[..end]).into_owned();
        *r = &r[end + 1..];
        Some(s)
    };
    let user = cstr(&mut rest)?;
    let auth_response = if capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        let (&first, tail) = rest.split_first()?;
        let (len, tail) = match first {
            0..=0xFA => (first as usize, tail),
            0xFC => (u16::from_le_bytes(tail.get(..2)?.try_into().ok()?) as usize, &tail[2..]),
            _ => return None,
        };
        let data = tail.get(..len)?.to_vec();
        rest = &tail[len..];
        data
    } else {
        let (&len, tail) = rest.split_first()?;
        let data = tail.get(..len as usize)?.to_vec();
        rest = &tail[len as usize..];
        data
    };
    let database = if capabilities & caps::CONNECT_WITH_DB != 0 && !rest.is_empty() { cstr(&mut rest) } else { None };
    let auth_plugin = if capabilities & caps::PLUGIN_AUTH != 0 && !rest.is_empty() { cstr(&mut rest) } else { None };
    Some(HandshakeResponse { capabilities, user, auth_response, database, auth_plugin })
}

type Script = dyn Fn(&mut Session) -> io::Result<()> + Send + Sync;

/// A listening fake source; stops listening when dropped.
pub struct FakeSource {
    port: u16,
    sessions: Arc<Mutex<Vec<Arc<Mutex<SessionLog>>>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeSource {
    /// Listens on 127.0.0.1 (ephemeral port) and runs `script` for every connection.
    pub fn start(script: impl Fn(&mut Session) -> io::Result<()> + Send + Sync + 'static) -> FakeSource {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind the fake source");
        let port = listener.local_addr().expect("local addr").port();
        let sessions: Arc<Mutex<Vec<Arc<Mutex<SessionLog>>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let acceptor = {
            let (sessions, stop) = (sessions.clone(), stop.clone());
            thread::Builder::new()
                .name(format!("fake-source-{port}"))
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = conn else { continue };
                        let log = Arc::new(Mutex::new(SessionLog::default()));
                        sessions.lock().unwrap_or_else(|p| p.into_inner()).push(log.clone());
                        let script = script.clone();
                        thread::spawn(move || {
                            // A script that waits on a silent client must not hang the test.
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                            let mut s = Session { stream, seq: 0, log: log.clone(), greeting: None };
                            let result = script(&mut s);
                            let _ = s.stream.shutdown(Shutdown::Both);
                            let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
                            l.error = result.err().map(|e| e.to_string());
                            l.finished = true;
                        });
                    }
                })
                .expect("spawn the fake source's acceptor")
        };
        FakeSource { port, sessions, stop, acceptor: Some(acceptor) }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A copy of every session so far (finished or not), oldest first.
    pub fn sessions(&self) -> Vec<SessionLog> {
        let all = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).clone()).collect()
    }

    /// Waits until at least `n` sessions have finished their script; returns them all.
    pub fn wait_sessions(&self, n: usize, timeout: Duration) -> Vec<SessionLog> {
        poll_until(timeout, &format!("{n} finished session(s) on the fake source at port {}", self.port), || {
            let all = self.sessions();
            (all.iter().filter(|s| s.finished).count() >= n).then_some(all)
        })
    }
}

impl Drop for FakeSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// Binlog v4 events as a MariaDB source sends them, for scripts that lie in their stream.
pub mod events {
    pub const QUERY: u8 = 2;
    pub const ROTATE: u8 = 4;
    pub const FORMAT_DESCRIPTION: u8 = 15;
    pub const PREVIOUS_GTIDS: u8 = 35;
    pub const MARIA_GTID: u8 = 162;
    pub const MARIA_GTID_LIST: u8 = 163;
    /// The header flag of events the source made up (the dump's first ROTATE).
    pub const ARTIFICIAL: u16 = 0x0020;
    pub const HEADER_LEN: usize = 19;

    /// An event: the 19-byte header (timestamp 1700000000, server id 1, the size of what
    /// follows, `log_pos`, `flags`), the body, and its CRC32.
    pub fn event(type_code: u8, log_pos: u32, flags: u16, body: &[u8]) -> Vec<u8> {
        let size = (HEADER_LEN + body.len() + 4) as u32;
        let mut ev = Vec::with_capacity(size as usize);
        ev.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        ev.push(type_code);
        ev.extend_from_slice(&1u32.to_le_bytes());
        ev.extend_from_slice(&size.to_le_bytes());
        ev.extend_from_slice(&log_pos.to_le_bytes());
        ev.extend_from_slice(&flags.to_le_bytes());
        ev.extend_from_slice(body);
        with_crc(ev)
    }

    /// Appends the CRC32 of `ev`.
    fn with_crc(mut ev: Vec<u8>) -> Vec<u8> {
        let crc = crc32fast::hash(&ev);
        ev.extend_from_slice(&crc.to_le_bytes());
        ev
    }

    /// `ev` with its size field saying `size` and its CRC32 recomputed: a lie only the size tells.
    pub fn claiming_size(ev: &[u8], size: u32) -> Vec<u8> {
        let mut ev = ev[..ev.len() - 4].to_vec();
        ev[9..13].copy_from_slice(&size.to_le_bytes());
        with_crc(ev)
    }

    /// The artificial ROTATE that opens a dump: "continue in `name` at `pos`" (any bytes).
    pub fn artificial_rotate(name: &[u8], pos: u64) -> Vec<u8> {
        let mut body = pos.to_le_bytes().to_vec();
        body.extend_from_slice(name);
        event(ROTATE, 0, ARTIFICIAL, &body)
    }

    /// A format description of a MariaDB 10.11 with CRC32 checksums, ending at `log_pos`,
    /// with the given binlog version and header length.
    pub fn fde(binlog_version: u16, header_len: u8, log_pos: u32) -> Vec<u8> {
        let mut body = binlog_version.to_le_bytes().to_vec();
        let mut version = [0u8; 50];
        version[..16].copy_from_slice(b"10.11.99-MariaDB");
        body.extend_from_slice(&version);
        body.extend_from_slice(&0u32.to_le_bytes()); // created
        body.push(header_len);
        let mut post_header = vec![0u8; 171];
        post_header[usize::from(QUERY) - 1] = 13;
        post_header[usize::from(ROTATE) - 1] = 8;
        body.extend_from_slice(&post_header);
        body.push(1); // checksum algorithm: CRC32
        event(FORMAT_DESCRIPTION, log_pos, 0, &body)
    }

    /// The size of [`fde`]'s event.
    pub fn fde_len() -> u32 {
        fde(4, 19, 0).len() as u32
    }

    /// The body of a QUERY event running `sql` (no schema, no status variables).
    pub fn query_body(sql: &str) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&7u32.to_le_bytes()); // thread id
        body.extend_from_slice(&0u32.to_le_bytes()); // exec time
        body.push(0); // schema length
        body.extend_from_slice(&0u16.to_le_bytes()); // error code
        body.extend_from_slice(&0u16.to_le_bytes()); // status variables length
        body.push(0); // the schema's NUL
        body.extend_from_slice(sql.as_bytes());
        body
    }

    /// A binlog file as the fake streams it: positions follow the events sent, unless a test
    /// says otherwise.
    pub struct Binlog {
        /// Where the next event starts in the source's file.
        pub pos: u32,
    }

    impl Binlog {
        /// The opening of a dump from `name`:4: the artificial rotate and the file's FDE.
        pub fn open(name: &str) -> (Binlog, Vec<Vec<u8>>) {
            let fde_end = 4 + fde_len();
            let opening = vec![artificial_rotate(name.as_bytes(), 4), fde(4, 19, fde_end)];
            (Binlog { pos: fde_end }, opening)
        }

        /// The next event, at the current position (its `log_pos` is its end); moves on.
        pub fn next(&mut self, type_code: u8, body: &[u8]) -> Vec<u8> {
            let size = (HEADER_LEN + body.len() + 4) as u32;
            let ev = event(type_code, self.pos + size, 0, body);
            self.pos += size;
            ev
        }

        /// An event claiming to start at `start` (its `log_pos` is `start` + its size); the
        /// file's position does not move.
        pub fn at(&self, start: u32, type_code: u8, body: &[u8]) -> Vec<u8> {
            let size = (HEADER_LEN + body.len() + 4) as u32;
            event(type_code, start.wrapping_add(size), 0, body)
        }
    }
}
