//! MySQL protocol packet framing: 3-byte length, 1-byte sequence id, payload; payloads of
//! 16 MiB - 1 and more continue in the following packets.
//!
//! Reads are buffered (one `read` call fetches as much as the socket has, up to the buffer's
//! spare capacity) and payloads come out as `Bytes` that share the read buffer, so a stream of
//! small events costs neither a syscall nor an allocation per event. A payload larger than the
//! current limit is an error, never an unbounded allocation: the limit is small while the
//! connection is set up (greeting, authentication, query replies) and `replication.max_event_bytes`
//! once the binlog stream flows, and an event that declares more than that is refused from its
//! first chunk, before its bytes are gathered.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::source::SourceError;

/// Largest payload of a single packet; a payload of exactly this size continues.
pub const MAX_PACKET_CHUNK: usize = 0xFF_FFFF;

/// A packet's 4-byte header: the payload length (3 bytes, little-endian, at most
/// [`MAX_PACKET_CHUNK`]) and the sequence id.
pub fn push_header(out: &mut Vec<u8>, len: usize, seq: u8) {
    debug_assert!(len <= MAX_PACKET_CHUNK);
    out.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
    out.push(seq);
}

/// How much the read buffer asks the socket for at a time.
const READ_CHUNK: usize = 256 * 1024;

/// The transport: plain TCP, or TCP upgraded to TLS.
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only during the TLS upgrade.
    Upgrading,
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Transport::Upgrading => Poll::Ready(Err(io::Error::other("transport is being upgraded"))),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Transport::Upgrading => Poll::Ready(Err(io::Error::other("transport is being upgraded"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Transport::Upgrading => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Transport::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

/// Reads and writes packets over a transport.
pub struct PacketIo<S = Transport> {
    stream: S,
    rbuf: BytesMut,
    seq: u8,
    max_payload: usize,
    /// What the limit is, for the error message (the setting that raises it, if any).
    limit_name: &'static str,
    eof: bool,
    /// A payload of 16 MiB or more being reassembled. Kept here, not on the stack, so that
    /// `read_packet` can be cancelled (by `select!`) and resumed without losing bytes.
    partial: Option<BytesMut>,
    /// When bytes last arrived (liveness is about bytes, not whole packets: a 1 GiB event takes
    /// a while).
    last_activity: std::time::Instant,
    /// A semi-sync stream (see [`Self::expect_semi_sync`]).
    semi_sync: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> PacketIo<S> {
    pub fn new(stream: S, max_payload: usize) -> Self {
        PacketIo {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            seq: 0,
            max_payload,
            limit_name: "replication.max_event_bytes",
            eof: false,
            partial: None,
            last_activity: std::time::Instant::now(),
            semi_sync: false,
        }
    }

    /// Changes the largest payload accepted from now on; `name` says what the limit is (the
    /// setting that raises it, or the phase it is for) in the error a larger payload gets.
    pub fn set_max_payload(&mut self, max_payload: usize, name: &'static str) {
        self.max_payload = max_payload;
        self.limit_name = name;
    }

    /// From now on event packets carry the 2-byte semi-sync header (`source::semisync`): the
    /// event's declared size sits two bytes further, a packet may be two bytes longer than the
    /// event limit, and the source restarts its sequence ids after each event that asks for an
    /// ack (its acks and our events interleave, so the ids cannot stay in step), so the first
    /// chunk of a packet may carry any id. Chunks of one long packet must still follow each other.
    pub fn expect_semi_sync(&mut self) {
        if !self.semi_sync {
            self.semi_sync = true;
            self.max_payload = self.max_payload.saturating_add(crate::source::semisync::HEADER_LEN);
        }
    }

    pub fn stream(&self) -> &S {
        &self.stream
    }

    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Starts a new command: the client's next packet carries sequence id 0.
    pub fn reset_seq(&mut self) {
        self.seq = 0;
    }

    pub fn seq(&self) -> u8 {
        self.seq
    }

    /// When bytes last arrived from the source.
    pub fn last_activity(&self) -> std::time::Instant {
        self.last_activity
    }

    /// Bytes already read from the socket but not yet returned as packets.
    pub fn buffered(&self) -> usize {
        self.rbuf.len()
    }

    /// Whether a complete packet is already buffered (no socket read needed for the next one).
    pub fn has_buffered_packet(&self) -> bool {
        if self.partial.is_some() || self.rbuf.len() < 4 {
            return false;
        }
        let len = u32::from_le_bytes([self.rbuf[0], self.rbuf[1], self.rbuf[2], 0]) as usize;
        len < MAX_PACKET_CHUNK && self.rbuf.len() >= 4 + len
    }

    async fn fill(&mut self, need: usize) -> Result<(), SourceError> {
        while self.rbuf.len() < need {
            if self.eof {
                return Err(SourceError::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "source closed the connection",
                )));
            }
            let want = (need - self.rbuf.len()).max(READ_CHUNK);
            if self.rbuf.capacity() - self.rbuf.len() < want {
                self.rbuf.reserve(want);
            }
            let n = self.stream.read_buf(&mut self.rbuf).await.map_err(SourceError::Io)?;
            if n == 0 {
                self.eof = true;
            } else {
                self.last_activity = std::time::Instant::now();
            }
        }
        Ok(())
    }

    /// Reads the next logical packet (reassembling continuation packets).
    ///
    /// Cancel-safe: if the future is dropped before it completes, no byte is lost and the next
    /// call continues where this one stopped.
    pub async fn read_packet(&mut self) -> Result<Bytes, SourceError> {
        loop {
            let chunk = self.read_chunk().await?;
            let last = chunk.len() < MAX_PACKET_CHUNK;
            match self.partial.take() {
                None if last => return Ok(chunk),
                None => {
                    if let Some(declared) = declared_event_size(&chunk, self.semi_sync)
                        && declared.saturating_add(self.event_offset()) > self.max_payload
                    {
                        return Err(SourceError::Protocol(format!(
                            "an event declares {declared} bytes, more than the limit of {} bytes ({})",
                            self.max_payload.saturating_sub(self.event_offset()),
                            self.limit_name
                        )));
                    }
                    let mut whole = BytesMut::with_capacity(self.size_hint(&chunk));
                    whole.extend_from_slice(&chunk);
                    self.partial = Some(whole);
                }
                Some(mut whole) => {
                    if whole.len() + chunk.len() > self.max_payload {
                        return Err(SourceError::Protocol(format!(
                            "a packet chain longer than the limit of {} bytes ({})",
                            self.max_payload, self.limit_name
                        )));
                    }
                    whole.extend_from_slice(&chunk);
                    if last {
                        return Ok(whole.freeze());
                    }
                    self.partial = Some(whole);
                }
            }
        }
    }

    /// Where the event starts in an event packet: after the status byte (and the semi-sync
    /// header).
    fn event_offset(&self) -> usize {
        1 + if self.semi_sync { crate::source::semisync::HEADER_LEN } else { 0 }
    }

    /// The capacity to reserve for a payload that continues past its first chunk. A binlog
    /// event packet (0x00, then the 19-byte event header) says its own size, so the buffer is
    /// allocated once at the right size: growing it by doubling would briefly hold about three
    /// times a 1 GiB event. Other payloads grow as needed.
    fn size_hint(&self, first: &[u8]) -> usize {
        if let Some(event_size) = declared_event_size(first, self.semi_sync) {
            let total = event_size.saturating_add(self.event_offset());
            if total >= first.len() && total <= self.max_payload {
                return total;
            }
        }
        (first.len() * 2).min(self.max_payload)
    }

    /// One wire packet. Cancel-safe: nothing is consumed until the whole packet is buffered.
    async fn read_chunk(&mut self) -> Result<Bytes, SourceError> {
        self.fill(4).await?;
        let len = u32::from_le_bytes([self.rbuf[0], self.rbuf[1], self.rbuf[2], 0]) as usize;
        let seq = self.rbuf[3];
        if self.semi_sync && self.partial.is_none() {
            // A semi-sync source may restart its ids at a packet's first chunk (see
            // `expect_semi_sync`): follow it.
            self.seq = seq;
        }
        if seq != self.seq {
            return Err(SourceError::Protocol(format!("packet out of order: sequence {seq}, expected {}", self.seq)));
        }
        if len > self.max_payload {
            return Err(SourceError::Protocol(format!(
                "a packet of {len} bytes exceeds the limit of {} bytes ({})",
                self.max_payload, self.limit_name
            )));
        }
        self.fill(4 + len).await?;
        self.seq = self.seq.wrapping_add(1);
        self.rbuf.advance(4);
        Ok(self.rbuf.split_to(len).freeze())
    }

    /// Writes one logical packet (splitting it if needed) and flushes.
    pub async fn write_packet(&mut self, payload: &[u8]) -> Result<(), SourceError> {
        let mut out = Vec::with_capacity(payload.len() + 4);
        self.frame_into(payload, &mut out);
        self.write_framed(&out).await
    }

    /// Appends one logical packet, framed with the next sequence ids, to `out` (for writing
    /// many packets in one call with [`Self::write_framed`]).
    pub fn frame_into(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let mut rest = payload;
        loop {
            let n = rest.len().min(MAX_PACKET_CHUNK);
            push_header(out, n, self.seq);
            self.seq = self.seq.wrapping_add(1);
            out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if n < MAX_PACKET_CHUNK {
                break;
            }
        }
    }

    /// [`Self::frame_into`] of the payload `status` followed by `body` (a binlog event packet is
    /// the status byte 0x00, then the event), without first copying the two into one buffer:
    /// the relay frames every event it serves this way, straight from the bytes read from disk.
    pub fn frame_with_status_into(&mut self, status: u8, body: &[u8], out: &mut Vec<u8>) {
        let total = 1 + body.len();
        out.reserve(total + 4 * (total / MAX_PACKET_CHUNK + 1));
        let mut rest = body;
        let mut first = true;
        loop {
            let room = MAX_PACKET_CHUNK - usize::from(first);
            let n = rest.len().min(room);
            let chunk = n + usize::from(first);
            push_header(out, chunk, self.seq);
            self.seq = self.seq.wrapping_add(1);
            if first {
                out.push(status);
                first = false;
            }
            out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if chunk < MAX_PACKET_CHUNK {
                break;
            }
        }
    }

    /// Writes bytes framed by [`Self::frame_into`] and flushes.
    pub async fn write_framed(&mut self, framed: &[u8]) -> Result<(), SourceError> {
        self.stream.write_all(framed).await.map_err(SourceError::Io)?;
        self.stream.flush().await.map_err(SourceError::Io)
    }

    /// Gives the stream back (the TLS upgrade needs it); only valid with an empty read buffer.
    pub fn into_parts(self) -> (S, u8) {
        (self.stream, self.seq)
    }

    /// Gives the stream back with the bytes read past the last packet: a server upgrading to
    /// TLS hands them to its handshake (a client sends its ClientHello right behind the SSL
    /// request, often in the same segment).
    pub fn into_parts_with_unread(self) -> (S, u8, Bytes) {
        (self.stream, self.seq, self.rbuf.freeze())
    }

    pub fn from_parts(stream: S, seq: u8, max_payload: usize) -> Self {
        let mut io = PacketIo::new(stream, max_payload);
        io.seq = seq;
        io
    }
}

/// The size a binlog event packet (0x00, then the 19-byte event header) declares for its
/// event, when the payload looks like one.
fn declared_event_size(first: &[u8], semi_sync: bool) -> Option<usize> {
    // The size field is at offset 9 of the event header, behind the status byte (and the
    // semi-sync header).
    let at = 1 + 9 + if semi_sync { crate::source::semisync::HEADER_LEN } else { 0 };
    (first.first() == Some(&0x00) && first.len() >= at + 4)
        .then(|| u32::from_le_bytes([first[at], first[at + 1], first[at + 2], first[at + 3]]) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        v.push(seq);
        v.extend_from_slice(payload);
        v
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn reads_small_packets_and_checks_sequence() {
        rt().block_on(async {
            let (mut a, b) = duplex(1 << 20);
            let mut data = frame(0, b"hello");
            data.extend(frame(1, b"world"));
            data.extend(frame(7, b"bad"));
            a.write_all(&data).await.unwrap();
            let mut io = PacketIo::new(b, 1 << 20);
            assert_eq!(&io.read_packet().await.unwrap()[..], b"hello");
            assert!(io.has_buffered_packet());
            assert_eq!(&io.read_packet().await.unwrap()[..], b"world");
            assert!(matches!(io.read_packet().await, Err(SourceError::Protocol(_))));
        });
    }

    #[test]
    fn reassembles_payloads_over_16_mib() {
        rt().block_on(async {
            let total = MAX_PACKET_CHUNK + 1000;
            // Not an event packet (those start with 0x00 and declare their size).
            let payload: Vec<u8> = (0..total).map(|i| (i % 251) as u8 + 1).collect();
            let (mut a, b) = duplex(64 << 20);
            let writer = tokio::spawn(async move {
                let mut w = PacketIo::new(&mut a, 64 << 20);
                w.write_packet(&payload).await.unwrap();
                payload
            });
            let mut io = PacketIo::new(b, 64 << 20);
            let got = io.read_packet().await.unwrap();
            let payload = writer.await.unwrap();
            assert_eq!(got.len(), total);
            assert!(got[..] == payload[..]);
            assert_eq!(io.seq(), 2);
        });
    }

    #[test]
    fn framing_with_a_status_byte_is_framing_the_joined_payload() {
        // Sizes around the 16 MiB chunk limit, where the status byte moves the split point.
        let m = MAX_PACKET_CHUNK;
        for len in [0, 1, 19, m - 2, m - 1, m, m + 1, 2 * m - 1, 2 * m] {
            let body: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let mut joined = vec![0x00];
            joined.extend_from_slice(&body);
            let (mut a, mut b) = (PacketIo::new(duplex(64).0, 1), PacketIo::new(duplex(64).0, 1));
            a.seq = 250;
            b.seq = 250;
            let (mut want, mut got) = (Vec::new(), vec![0xAA]);
            a.frame_into(&joined, &mut want);
            b.frame_with_status_into(0x00, &body, &mut got);
            assert_eq!(got.len(), want.len() + 1, "len {len}");
            assert!(got[1..] == want[..], "len {len}: the bytes differ");
            assert_eq!(got[0], 0xAA, "appends, keeps what was there");
            assert_eq!(a.seq, b.seq, "len {len}: sequence ids");
        }
    }

    #[test]
    fn exact_multiple_of_chunk_ends_with_empty_packet() {
        rt().block_on(async {
            let payload = vec![7u8; MAX_PACKET_CHUNK];
            let (mut a, b) = duplex(64 << 20);
            let mut w = PacketIo::new(&mut a, 64 << 20);
            w.write_packet(&payload).await.unwrap();
            drop(w);
            let mut io = PacketIo::new(b, 64 << 20);
            assert_eq!(io.read_packet().await.unwrap().len(), MAX_PACKET_CHUNK);
        });
    }

    #[test]
    fn an_event_declaring_more_than_the_limit_is_refused_at_its_first_chunk() {
        rt().block_on(async {
            // A continuing packet (16 MiB - 1) whose event header declares 4 GiB - 1 bytes.
            let mut payload = vec![0u8; MAX_PACKET_CHUNK];
            payload[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
            let (mut a, b) = duplex(64 << 20);
            let writer = tokio::spawn(async move { a.write_all(&frame(0, &payload)).await.map(|_| a) });
            let mut io = PacketIo::new(b, 32 << 20);
            let err = io.read_packet().await.unwrap_err().to_string();
            assert!(err.contains("declares 4294967295 bytes") && err.contains("replication.max_event_bytes"), "{err}");
            assert!(io.partial.is_none(), "nothing was gathered");
            drop(writer.await.unwrap().unwrap());
        });
    }

    #[test]
    fn the_limit_names_the_phase_it_belongs_to() {
        rt().block_on(async {
            let (mut a, b) = duplex(1 << 20);
            // The header of a 16 MiB greeting: refused from its four bytes.
            a.write_all(&[0xFF, 0xFF, 0xFF, 0]).await.unwrap();
            let mut io = PacketIo::new(b, 1 << 30);
            io.set_max_payload(1 << 20, "for a greeting");
            let err = io.read_packet().await.unwrap_err().to_string();
            assert!(err.contains("16777215 bytes exceeds the limit of 1048576 bytes (for a greeting)"), "{err}");
        });
    }

    #[test]
    fn refuses_oversized_packets_and_truncation() {
        rt().block_on(async {
            let (mut a, b) = duplex(1 << 20);
            a.write_all(&frame(0, &[1u8; 2000])).await.unwrap();
            let mut io = PacketIo::new(b, 1000);
            assert!(matches!(io.read_packet().await, Err(SourceError::Protocol(_))));

            let (mut a, b) = duplex(1 << 20);
            let f = frame(0, b"truncated payload");
            a.write_all(&f[..10]).await.unwrap();
            drop(a);
            let mut io = PacketIo::new(b, 1 << 20);
            assert!(matches!(io.read_packet().await, Err(SourceError::Io(_))));
        });
    }

    #[test]
    fn a_semi_sync_stream_follows_the_sources_sequence_restarts() {
        rt().block_on(async {
            let (mut a, b) = duplex(1 << 20);
            // Event with seq 5, then (after an ack request) the source restarts at 1.
            let mut data = frame(5, b"\x00\xef\x01e1");
            data.extend(frame(1, b"\x00\xef\x00e2"));
            data.extend(frame(2, b"\x00\xef\x00e3"));
            a.write_all(&data).await.unwrap();
            let mut io = PacketIo::new(b, 1 << 20);
            io.seq = 5;
            io.expect_semi_sync();
            assert_eq!(&io.read_packet().await.unwrap()[..], b"\x00\xef\x01e1");
            // An ack goes out as a frame of its own (sequence id 0, `semisync::ack_frame`) and
            // leaves the read side's sequence alone.
            io.write_framed(b"\x04\x00\x00\x00\xefack").await.unwrap();
            assert_eq!(io.seq, 6);
            assert_eq!(&io.read_packet().await.unwrap()[..], b"\x00\xef\x00e2");
            assert_eq!(&io.read_packet().await.unwrap()[..], b"\x00\xef\x00e3");
            let mut got = [0u8; 8];
            a.read_exact(&mut got).await.unwrap();
            assert_eq!(got, *b"\x04\x00\x00\x00\xefack");
        });
    }

    #[test]
    fn without_semi_sync_a_sequence_restart_is_refused() {
        rt().block_on(async {
            let (mut a, b) = duplex(1 << 20);
            let mut data = frame(0, b"\x00e1");
            data.extend(frame(0, b"\x00e2"));
            a.write_all(&data).await.unwrap();
            let mut io = PacketIo::new(b, 1 << 20);
            io.read_packet().await.unwrap();
            assert!(matches!(io.read_packet().await, Err(SourceError::Protocol(_))));
        });
    }

    #[test]
    fn a_semi_sync_event_declares_its_size_two_bytes_further() {
        let mut first = vec![0u8; 40];
        first[10..14].copy_from_slice(&111u32.to_le_bytes());
        first[12..16].copy_from_slice(&222u32.to_le_bytes());
        assert_eq!(declared_event_size(&first, true), Some(222));
        let mut plain = vec![0u8; 40];
        plain[10..14].copy_from_slice(&111u32.to_le_bytes());
        assert_eq!(declared_event_size(&plain, false), Some(111));
        assert_eq!(declared_event_size(&first[..15], true), None, "too short for a header");
    }
}
