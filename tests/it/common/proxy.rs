//! A small TCP proxy in front of a source, for faults and failovers: cut every live connection,
//! turn them into a blackhole (bytes are read and dropped, the sockets stay open), move the
//! target to another server (a failover behind a virtual IP or a DNS name, as a task sees it), or
//! rewrite bytes the source sends (a marker replaced by bytes of the same length, as a damaged
//! link or a faulty middlebox would).
//!
//! New connections after a cut, a blackhole or a move are forwarded normally, to the current
//! target; a rewrite applies to every connection until it is turned off. Threads only: one
//! acceptor, two pumps per connection; everything is shut down when the `Proxy` drops.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

/// `(marker, replacement)`: every occurrence of the marker in the source's bytes is replaced.
type Rewrite = Arc<Mutex<Option<(Vec<u8>, Vec<u8>)>>>;

/// A TCP proxy on 127.0.0.1 (ephemeral port) to a target that can move.
pub struct Proxy {
    port: u16,
    target: Arc<Mutex<SocketAddr>>,
    conns: Arc<Mutex<Vec<ProxyConn>>>,
    accepted: Arc<AtomicUsize>,
    rewrite: Rewrite,
    rewritten: Arc<AtomicUsize>,
    closing: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

struct ProxyConn {
    client: TcpStream,
    upstream: TcpStream,
    blackhole: Arc<AtomicBool>,
    /// Set by the first pump that ends (either side closed).
    closed: Arc<AtomicBool>,
}

impl ProxyConn {
    fn close(&self) {
        // Errors mean the socket is already closed.
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards every connection to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let target = Arc::new(Mutex::new(target));
        let conns: Arc<Mutex<Vec<ProxyConn>>> = Arc::default();
        let accepted = Arc::new(AtomicUsize::new(0));
        let closing = Arc::new(AtomicBool::new(false));
        let rewrite: Rewrite = Arc::default();
        let rewritten = Arc::new(AtomicUsize::new(0));
        let (target2, conns2, accepted2, closing2) = (target.clone(), conns.clone(), accepted.clone(), closing.clone());
        let (rewrite2, rewritten2) = (rewrite.clone(), rewritten.clone());
        let acceptor = thread::Builder::new()
            .name("proxy-accept".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if closing2.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let to = *target2.lock().expect("proxy lock");
                    // The target is down: refuse the client the way the server itself would.
                    let Ok(upstream) = TcpStream::connect(to) else { continue };
                    accepted2.fetch_add(1, Ordering::SeqCst);
                    let conn = ProxyConn {
                        client: client.try_clone().expect("clone socket"),
                        upstream: upstream.try_clone().expect("clone socket"),
                        blackhole: Arc::default(),
                        closed: Arc::default(),
                    };
                    let up =
                        Direction { blackhole: conn.blackhole.clone(), closed: conn.closed.clone(), rewrite: None };
                    let down = Direction { rewrite: Some((rewrite2.clone(), rewritten2.clone())), ..up.clone() };
                    pump(client.try_clone().expect("clone socket"), upstream.try_clone().expect("clone socket"), up);
                    pump(upstream, client, down);
                    let mut conns = conns2.lock().expect("proxy lock");
                    conns.retain(|c| !c.closed.load(Ordering::SeqCst));
                    conns.push(conn);
                }
            })
            .expect("spawn the proxy");
        Proxy { port, target, conns, accepted, rewrite, rewritten, closing, acceptor: Some(acceptor) }
    }

    /// The port clients connect to (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Shuts down both sockets of every connection; returns how many were still open.
    pub fn cut_all(&self) -> usize {
        let conns = std::mem::take(&mut *self.conns.lock().expect("proxy lock"));
        let open = conns.iter().filter(|c| !c.closed.load(Ordering::SeqCst)).count();
        conns.iter().for_each(ProxyConn::close);
        open
    }

    /// Every open connection stops forwarding, in both directions, and stays open; returns how
    /// many there were.
    pub fn blackhole_all(&self) -> usize {
        let conns = self.conns.lock().expect("proxy lock");
        let open: Vec<&ProxyConn> = conns.iter().filter(|c| !c.closed.load(Ordering::SeqCst)).collect();
        open.iter().for_each(|c| c.blackhole.store(true, Ordering::SeqCst));
        open.len()
    }

    /// A failover: new connections go to `target` from now on, and every live connection (to
    /// the old target) is cut, so clients reconnect and land on the new one. Returns how many
    /// connections were cut.
    pub fn move_to(&self, target: SocketAddr) -> usize {
        *self.target.lock().expect("proxy lock") = target;
        self.cut_all()
    }

    /// From now on, every occurrence of `marker` in what the source sends is replaced by
    /// `replacement` (same length), on every connection. While a rewrite is on, a tail of what
    /// was read that could be the beginning of a marker is held back until more arrives (a marker
    /// may span two reads).
    pub fn rewrite(&self, marker: &[u8], replacement: &[u8]) {
        assert_eq!(marker.len(), replacement.len(), "a rewrite keeps the stream's length");
        assert!(!marker.is_empty(), "an empty marker");
        *self.rewrite.lock().expect("proxy lock") = Some((marker.to_vec(), replacement.to_vec()));
    }

    /// Ends the rewrite: bytes pass unchanged again.
    pub fn stop_rewriting(&self) {
        *self.rewrite.lock().expect("proxy lock") = None;
    }

    /// How many markers were rewritten so far.
    pub fn rewritten(&self) -> usize {
        self.rewritten.load(Ordering::SeqCst)
    }

    /// Connections accepted (and connected upstream) so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::SeqCst);
        // Wakes the acceptor up so it sees `closing`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        self.cut_all();
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// What one direction of a connection does with the bytes it reads.
#[derive(Clone)]
struct Direction {
    blackhole: Arc<AtomicBool>,
    closed: Arc<AtomicBool>,
    /// Only the source-to-client direction rewrites.
    rewrite: Option<(Rewrite, Arc<AtomicUsize>)>,
}

/// Copies `from` -> `to` on a thread until either side closes; while the connection is a
/// blackhole the bytes are read and dropped. At the end both sockets are shut down.
fn pump(mut from: TcpStream, mut to: TcpStream, dir: Direction) {
    thread::Builder::new()
        .name("proxy-pump".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            // Bytes read but not yet forwarded (a possible marker's beginning).
            let mut held: Vec<u8> = Vec::new();
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                if dir.blackhole.load(Ordering::SeqCst) {
                    continue;
                }
                held.extend_from_slice(&buf[..n]);
                let rule = dir.rewrite.as_ref().and_then(|(r, count)| Some((r.lock().ok()?.clone()?, count)));
                let keep = match rule {
                    Some(((marker, replacement), count)) => {
                        let mut at = 0;
                        while let Some(i) = held[at..].windows(marker.len()).position(|w| w == marker.as_slice()) {
                            held[at + i..at + i + marker.len()].copy_from_slice(&replacement);
                            count.fetch_add(1, Ordering::SeqCst);
                            at += i + marker.len();
                        }
                        // Hold back only a tail that could begin a marker completed by the
                        // next read; anything else (a handshake, a heartbeat) passes at once.
                        (1..marker.len()).rev().find(|&k| held.ends_with(&marker[..k])).unwrap_or(0)
                    }
                    None => 0,
                };
                let send = held.len() - keep;
                if to.write_all(&held[..send]).is_err() {
                    break;
                }
                held.drain(..send);
            }
            dir.closed.store(true, Ordering::SeqCst);
            let _ = from.shutdown(Shutdown::Both);
            let _ = to.shutdown(Shutdown::Both);
        })
        .expect("spawn a proxy pump");
}
