//! The relay: the *source* side of the replication protocol, so that real replicas and
//! `mariadb-binlog --read-from-remote-server` read a task's archive instead of the primary
//! (docs/guide/relay.md).
//!
//! Pure parts, table-tested: `auth` (password hashes and scramble checks), `proto` (packets),
//! `query` (the queries replicas send), `plan` (where a dump starts, how far a file may be read,
//! which GTID groups are skipped), `events` (the events a source makes up). The I/O is thin:
//! `session` (one client: greeting, login, commands), `tls` (the upgrade to TLS) and `dump`
//! (file bytes to the socket).
//!
//! What it must never do: serve a byte past the durable checkpoint (`plan::readable_len`, fed
//! by `hub`, which the writer publishes only after fsync); write anything under `data_dir`; log
//! or return a password or a stored hash. It runs on its own thread, so a slow client never
//! slows replication from the source: each client has its own socket buffers and backpressure.

pub use crate::relay_auth as auth;
pub mod clients;
pub mod dump;
pub mod events;
pub mod hub;
pub mod plan;
pub mod proto;
pub mod query;
pub mod session;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use slog::{Logger, info, warn};

pub use hub::CheckpointHub;

use crate::config::RelaySettings;
use crate::meta::Store;
use crate::rate_limit::RateLimiter;

/// Server error codes the relay answers with.
pub mod codes {
    pub const ER_ACCESS_DENIED: u16 = 1045;
    pub const ER_HOST_IS_BLOCKED: u16 = 1129;
    pub const ER_HANDSHAKE_ERROR: u16 = 1043;
    pub const ER_UNKNOWN_COM_ERROR: u16 = 1047;
    pub const ER_MASTER_FATAL_ERROR_READING_BINLOG: u16 = 1236;
    pub const ER_SERVER_ERROR: u16 = 1105;
}

/// What every relay connection shares.
pub struct RelayContext {
    pub store: Store,
    pub hub: CheckpointHub,
    pub data_dir: PathBuf,
    pub log: Logger,
    /// Failed logins per client address (`relay.failure_per_minute`, `relay.failure_burst`).
    pub failures: Arc<RateLimiter>,
    /// Who is connected (the API's `/replicas`, the relay metrics).
    pub clients: clients::Clients,
    /// `relay.tls.*`: offered in the greeting, and then required.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The bucket (upload enabled): a sealed file retention removed from local disk is served
    /// from its verified copy there.
    pub objects: Option<Arc<crate::upload::ObjectStore>>,
    next_connection_id: AtomicU32,
}

impl RelayContext {
    pub fn new(
        store: Store,
        hub: CheckpointHub,
        clients: clients::Clients,
        data_dir: PathBuf,
        settings: &RelaySettings,
        log: Logger,
    ) -> Self {
        RelayContext {
            store,
            hub,
            clients,
            data_dir,
            log,
            tls: None,
            objects: None,
            failures: RateLimiter::new(f64::from(settings.failure_per_minute.max(1)) / 60.0, settings.failure_burst),
            next_connection_id: AtomicU32::new(1),
        }
    }

    /// Serves TLS with this acceptor (`relay::tls::acceptor`).
    pub fn with_tls(mut self, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        self.tls = tls;
        self
    }

    pub fn with_objects(mut self, objects: Option<Arc<crate::upload::ObjectStore>>) -> Self {
        self.objects = objects;
        self
    }

    fn connection_id(&self) -> u32 {
        self.next_connection_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

/// Binds the relay listener (so that a taken port fails start-up) and serves it on its own
/// thread until the process ends.
pub fn start(addr: SocketAddr, ctx: RelayContext) -> std::io::Result<actix::Arbiter> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let bound = std_listener.local_addr()?;
    let ctx = Arc::new(ctx);
    info!(ctx.log, "relay listening"; "addr" => %bound);
    let arbiter = actix::Arbiter::new();
    arbiter.spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                warn!(ctx.log, "relay listener unusable"; "error" => %e);
                return;
            }
        };
        loop {
            match listener.accept().await {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    actix::spawn(session::handle(ctx.clone(), tcp, peer));
                }
                Err(e) => {
                    // EMFILE and friends: say so, and let the next accept try again.
                    warn!(ctx.log, "relay accept failed"; "error" => %e);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(arbiter)
}
