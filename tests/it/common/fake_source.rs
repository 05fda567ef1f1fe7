//! A fake MySQL/MariaDB source: a small server-side speaker of the client/server protocol for
//! tests that need a source to behave as no real server here will (a MySQL 8 that asks for
//! `caching_sha2_password` full authentication without TLS, an impostor, a broken server). It
//! is the attacker or the broken peer of a test, never a stand-in for MySQL: replication itself
//! is tested against a real `mariadbd`.
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

    fn lock(&self) -> std::sync::MutexGuard<'_, SessionLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
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
