//! TLS on the relay listener (`relay.tls.*`): the certificate is loaded at start-up (a bad file
//! stops it, naming the file), and a connection is upgraded the way a MySQL/MariaDB server does
//! it: the greeting offers CLIENT_SSL, the client answers with an SSL request, the TLS handshake
//! follows, then the handshake response arrives inside TLS. What to answer is decided by
//! `proto::client_hello`; this file only moves the stream.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::RelayTlsSettings;
use crate::source::SourceError;
use crate::source::packet::PacketIo;
use crate::tls_cert::{ReloadingCert, TlsError};

/// The settings relay certificate errors name.
pub const RELAY_TLS: &str = "relay.tls";

/// A relay client's transport: plain TCP, or TCP upgraded to TLS.
pub enum RelayStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<Rewound>>),
    /// Only while the connection is being upgraded.
    Upgrading,
}

/// The acceptor for `relay.tls.*`, `None` when the relay serves plain TCP. The certificate is
/// kept so SIGHUP can load it again (`ReloadingCert::reload`).
pub fn acceptor(settings: &RelayTlsSettings) -> Result<Option<(Arc<ReloadingCert>, TlsAcceptor)>, TlsError> {
    if !settings.enabled() {
        return Ok(None);
    }
    let cert = ReloadingCert::load(RELAY_TLS, Path::new(&settings.cert_file), Path::new(&settings.key_file))?;
    let config = cert.server_config()?;
    Ok(Some((cert, TlsAcceptor::from(Arc::new(config)))))
}

/// Runs the TLS handshake on a connection whose client sent the SSL request; the packet
/// sequence carries on inside TLS. The client does not wait for an answer to its SSL request:
/// its ClientHello may already be in the packet reader's buffer, and is handed to the handshake
/// first. On error the connection is left unusable.
pub async fn upgrade(io: &mut PacketIo<RelayStream>, acceptor: &TlsAcceptor, max: usize) -> Result<(), SourceError> {
    let taken = std::mem::replace(io, PacketIo::new(RelayStream::Upgrading, max));
    let (stream, seq, unread) = taken.into_parts_with_unread();
    let RelayStream::Plain(tcp) = stream else {
        return Err(SourceError::Protocol("a second SSL request on a TLS connection".into()));
    };
    let tls = acceptor
        .accept(Rewound { head: unread, inner: tcp })
        .await
        .map_err(|e| SourceError::Protocol(format!("TLS handshake failed: {e}")))?;
    *io = PacketIo::from_parts(RelayStream::Tls(Box::new(tls)), seq, max);
    Ok(())
}

/// A TCP stream with bytes already read from it put back in front.
pub struct Rewound {
    head: Bytes,
    inner: TcpStream,
}

impl AsyncRead for Rewound {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.head.is_empty() {
            let n = this.head.len().min(buf.remaining());
            buf.put_slice(&this.head.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl RelayStream {
    pub fn is_tls(&self) -> bool {
        matches!(self, RelayStream::Tls(_))
    }
}

impl AsyncRead for RelayStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RelayStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            RelayStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            RelayStream::Upgrading => Poll::Ready(Err(io::Error::other("transport is being upgraded"))),
        }
    }
}

impl AsyncWrite for RelayStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            RelayStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            RelayStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            RelayStream::Upgrading => Poll::Ready(Err(io::Error::other("transport is being upgraded"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RelayStream::Plain(s) => Pin::new(s).poll_flush(cx),
            RelayStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            RelayStream::Upgrading => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RelayStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            RelayStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            RelayStream::Upgrading => Poll::Ready(Ok(())),
        }
    }
}
