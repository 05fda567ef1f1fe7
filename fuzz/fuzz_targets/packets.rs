//! `source::packet::PacketIo` over an in-memory stream, plus `parse_err_packet` and
//! `read_lenenc_int` from `source::conn`.
//!
//! Input layout: byte 0 picks `max_payload`; byte 1: bit 7 "segment encoding", bits 0-3 the
//! length n of the read schedule; n schedule bytes (per `poll_read`: how many bytes the socket
//! hands over, and whether it answers Pending first); then the byte stream. In segment encoding
//! the stream is a list of segments: a tag below 0x80 is that many literal bytes; 0x80..=0xFE a
//! run of `u16` copies of one byte; 0xFF, `B`, `d`, byte: a run of `0xFFFFFF - d` copies, so a
//! continuation packet (over 16 MiB) costs a few input bytes but stays rare (each costs ~100 ms).
//!
//! Checks: no panic; `read_packet` returns exactly what an independent model of the framing
//! returns (payloads, then the first error's kind; an event packet declaring more than the limit
//! is refused at its first chunk); it is cancel-safe (dropping the future at
//! every Pending and calling again gives the same packets); `has_buffered_packet()` true means
//! the next `read_packet` completes without touching the socket; a payload never exceeds
//! `max_payload`; `write_packet` output reads back as the same payload; `read_lenenc_int`
//! agrees with a model; `parse_err_packet` never panics and reads the code from bytes 1-2.
#![no_main]

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use binlog_server::source::SourceError;
use binlog_server::source::conn::{parse_err_packet, read_lenenc_int};
use binlog_server::source::packet::{MAX_PACKET_CHUNK, PacketIo};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const MAXES: [usize; 10] = [
    1,
    16,
    255,
    4096,
    1 << 20,
    MAX_PACKET_CHUNK - 1,
    MAX_PACKET_CHUNK,
    MAX_PACKET_CHUNK + 1,
    2 * MAX_PACKET_CHUNK + 10,
    64 << 20,
];
const VIRTUAL_CAP: usize = 40 << 20;

/// A socket: reads come from `data` in the schedule's sizes; writes go to `out`.
struct Mem {
    data: Vec<u8>,
    pos: usize,
    sched: Vec<u8>,
    calls: usize,
    last_pending: bool,
    out: Vec<u8>,
}

impl Mem {
    fn new(data: Vec<u8>, sched: &[u8]) -> Self {
        Mem { data, pos: 0, sched: sched.to_vec(), calls: 0, last_pending: false, out: Vec::new() }
    }
}

impl AsyncRead for Mem {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let s = if me.sched.is_empty() { 0 } else { me.sched[me.calls % me.sched.len()] };
        me.calls += 1;
        if (s >> 5) & 3 == 3 && !me.last_pending {
            me.last_pending = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        me.last_pending = false;
        let k = u32::from(s & 0x1f);
        // Short reads, but not so short that a 16 MiB stream takes millions of calls.
        let chunk = if k == 0 { usize::MAX } else { (1usize << (k - 1)).max(me.data.len() / 256) };
        let n = (me.data.len() - me.pos).min(buf.remaining()).min(chunk);
        buf.put_slice(&me.data[me.pos..me.pos + n]);
        me.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Mem {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Io,
    Protocol,
}

fn kind(e: &SourceError) -> Kind {
    match e {
        SourceError::Io(_) => Kind::Io,
        SourceError::Protocol(_) => Kind::Protocol,
        other => panic!("read_packet returned an unexpected error kind: {other:?}"),
    }
}

/// The framing as documented: 3-byte length, sequence id, payload; a 0xFFFFFF chunk continues.
fn model(s: &[u8], max: usize) -> (Vec<Vec<u8>>, Kind) {
    let (mut pos, mut seq, mut out, mut partial) = (0usize, 0u8, Vec::new(), None::<Vec<u8>>);
    loop {
        if s.len() - pos < 4 {
            return (out, Kind::Io);
        }
        let len = usize::from(s[pos]) | usize::from(s[pos + 1]) << 8 | usize::from(s[pos + 2]) << 16;
        if s[pos + 3] != seq || len > max {
            return (out, Kind::Protocol);
        }
        if s.len() - pos - 4 < len {
            return (out, Kind::Io);
        }
        let chunk = &s[pos + 4..pos + 4 + len];
        pos += 4 + len;
        seq = seq.wrapping_add(1);
        let last = len < MAX_PACKET_CHUNK;
        match partial.take() {
            None if last => out.push(chunk.to_vec()),
            // An event packet (0x00, then the event header) that declares more than the limit
            // is refused at its first chunk.
            None if chunk[0] == 0
                && u32::from_le_bytes([chunk[10], chunk[11], chunk[12], chunk[13]]) as usize + 1 > max =>
            {
                return (out, Kind::Protocol);
            }
            None => partial = Some(chunk.to_vec()),
            Some(mut w) => {
                if w.len() + len > max {
                    return (out, Kind::Protocol);
                }
                w.extend_from_slice(chunk);
                if last {
                    out.push(w);
                } else {
                    partial = Some(w);
                }
            }
        }
    }
}

/// Reads packets until the first error. `cancel`: drop the future at every Pending.
fn read_all(stream: &[u8], sched: &[u8], max: usize, cancel: bool) -> (Vec<Vec<u8>>, Kind) {
    let mut io = PacketIo::new(Mem::new(stream.to_vec(), sched), max);
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    let mut polls = 0u64;
    loop {
        let buffered = io.has_buffered_packet();
        let calls_before = io.stream_mut().calls;
        let result = loop {
            let mut fut = Box::pin(io.read_packet());
            let mut first = true;
            let r = loop {
                polls += 1;
                assert!(polls < 50_000_000, "read_packet makes no progress");
                match fut.as_mut().poll(&mut cx) {
                    Poll::Ready(r) => break Some(r),
                    Poll::Pending => {
                        assert!(!(buffered && first), "has_buffered_packet() but read_packet returned Pending");
                        first = false;
                        if cancel {
                            break None;
                        }
                    }
                }
            };
            drop(fut);
            if let Some(r) = r {
                break r;
            }
        };
        if buffered {
            assert_eq!(io.stream_mut().calls, calls_before, "has_buffered_packet() but read_packet read the socket");
        }
        match result {
            Ok(p) => {
                assert!(p.len() <= max, "payload of {} bytes over the limit {max}", p.len());
                out.push(p.to_vec());
            }
            Err(e) => return (out, kind(&e)),
        }
    }
}

/// The stream in segment encoding (see the module doc).
fn expand(mut s: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    while let Some((&tag, rest)) = s.split_first() {
        s = rest;
        if tag < 0x80 {
            let n = usize::from(tag).min(s.len());
            v.extend_from_slice(&s[..n]);
            s = &s[n..];
        } else if tag < 0xFF {
            if s.len() < 3 {
                break;
            }
            let n = usize::from(u16::from_le_bytes([s[0], s[1]]));
            v.resize(v.len() + n, s[2]);
            s = &s[3..];
        } else {
            if s.len() < 3 || s[0] != b'B' {
                break;
            }
            let n = (MAX_PACKET_CHUNK - usize::from(s[1])).min(VIRTUAL_CAP.saturating_sub(v.len()));
            v.resize(v.len() + n, s[2]);
            s = &s[3..];
        }
        if v.len() >= VIRTUAL_CAP {
            break;
        }
    }
    v
}

fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(r) = f.as_mut().poll(&mut cx) {
            return r;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    lenenc_and_err(data);
    let max = MAXES[usize::from(data[0]) % MAXES.len()];
    let n = usize::from(data[1] & 0x0f).min(data.len() - 2);
    let sched = &data[2..2 + n];
    let raw = &data[2 + n..];
    let stream = if data[1] & 0x80 != 0 { expand(raw) } else { raw.to_vec() };

    let expected = model(&stream, max);
    let straight = read_all(&stream, sched, max, false);
    assert!(straight == expected, "read_packet disagrees with the framing model: got {} packets, error {:?}; model {} packets, error {:?}", straight.0.len(), straight.1, expected.0.len(), expected.1);
    if !sched.is_empty() {
        let cancelled = read_all(&stream, sched, max, true);
        assert!(cancelled == straight, "read_packet is not cancel-safe");
    }

    // write_packet then read_packet gives the payload back, from any starting sequence id.
    let seq = sched.first().copied().unwrap_or(0);
    let mut w = PacketIo::from_parts(Mem::new(Vec::new(), &[]), seq, usize::MAX);
    block_on(w.write_packet(&stream)).expect("writing to memory");
    let chunks = stream.len() / MAX_PACKET_CHUNK + 1;
    assert_eq!(w.seq(), seq.wrapping_add(chunks as u8));
    let (mem, _) = w.into_parts();
    // A packet chain whose first chunk looks like an event declaring more than the limit is
    // refused at that chunk (on purpose: `hostile_source`), so the limit covers what it declares.
    let declared = match stream.get(..14) {
        Some(h) if stream.len() >= MAX_PACKET_CHUNK && h[0] == 0 => {
            u32::from_le_bytes([h[10], h[11], h[12], h[13]]) as usize + 1
        }
        _ => 0,
    };
    let mut r = PacketIo::from_parts(Mem::new(mem.out, sched), seq, stream.len().max(1).max(declared));
    let back = block_on(r.read_packet()).expect("reading back what write_packet wrote");
    assert!(back[..] == stream[..], "write_packet/read_packet round trip changed the payload");
    assert_eq!(r.seq(), seq.wrapping_add(chunks as u8));
    assert!(!r.has_buffered_packet());
});

fn lenenc_and_err(data: &[u8]) {
    let mut p = data;
    loop {
        let before = p;
        let Some(v) = read_lenenc_int(&mut p) else {
            // None only when the prefix is 0xFB/0xFF or the value is truncated; nothing consumed.
            assert_eq!(p.len(), before.len());
            let ok = match before.first() {
                None | Some(0xFB) | Some(0xFF) => true,
                Some(0xFC) => before.len() < 3,
                Some(0xFD) => before.len() < 4,
                Some(0xFE) => before.len() < 9,
                _ => false,
            };
            assert!(ok, "read_lenenc_int refused {:02x?}", &before[..before.len().min(9)]);
            break;
        };
        let (want, used) = match before[0] {
            b @ 0..=0xFA => (u64::from(b), 1),
            0xFC => (u64::from(u16::from_le_bytes([before[1], before[2]])), 3),
            0xFD => (u64::from_le_bytes([before[1], before[2], before[3], 0, 0, 0, 0, 0]), 4),
            0xFE => (u64::from_le_bytes(before[1..9].try_into().unwrap()), 9),
            b => panic!("read_lenenc_int accepted prefix {b:#x}"),
        };
        assert_eq!(v, want);
        assert_eq!(before.len() - p.len(), used);
    }
    match parse_err_packet(data) {
        SourceError::Server { code, .. } => {
            assert!(data.len() >= 3);
            assert_eq!(code, u16::from_le_bytes([data[1], data[2]]));
        }
        SourceError::Protocol(_) => assert!(data.len() < 3),
        other => panic!("parse_err_packet returned {other:?}"),
    }
    let _ = parse_err_packet(data).classify();
}
