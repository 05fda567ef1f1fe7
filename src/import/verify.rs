//! Verification of one binlog file offered for import: every event's framing, its CRC32 when the
//! file's format description says events carry one, and the `log_pos` chain (each event starts
//! where the one before it ended), with the transaction boundaries and the GTID state tracked as
//! the replication stream tracks them.
//!
//! This reuses `binlog::stream::StreamTracker` (the checks a fetched stream passes) and
//! `binlog::summary::SummaryBuilder` (the catalog facts): a file is fed to them as if a source
//! sent it from position 4, and anything a real file cannot contain (a gap, a re-sent event, an
//! artificial event, events after the ROTATE that ends it) refuses it. Pure: no I/O beyond the
//! `Read` it is handed, never a panic on bad input.

use std::fmt;
use std::io::{self, Read};

use bytes::Bytes;

use crate::binlog::Flavor;
use crate::binlog::event::{self, ChecksumAlg, EventHeader, Fde, HEADER_LEN, types};
use crate::binlog::gtid::Uuid;
use crate::binlog::name::BinlogFileName;
use crate::binlog::stream::{GtidTracker, LocalFiles, Seen, StreamError, StreamTracker, WriteOp};
use crate::binlog::summary::{FileSummary, SummaryBuilder, for_each_event};

/// Why a file is refused: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    /// Offset in the file of the event (or byte) at fault.
    pub offset: u64,
    pub reason: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at offset {}: {}", self.offset, self.reason)
    }
}

/// How the verified part of a file ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// With a ROTATE to `next`: the source closed the file, it is complete.
    Rotate { next: BinlogFileName },
    /// With a STOP: the source shut down after it.
    Stop,
    /// With neither: the source was still writing it (or crashed).
    Open,
}

/// A file that passed: what it holds, as far as its last complete transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub flavor: Flavor,
    pub server_version: String,
    /// The server id of the format description: the server that wrote the file.
    pub server_id: u32,
    /// Whether events carry a CRC32 (each one was checked).
    pub has_crc: bool,
    /// MySQL: the uuid of the transactions this server originated (GTID events under its own
    /// server id), when the file has any.
    pub own_uuid: Option<String>,
    /// MariaDB: the GTID domain of the transactions this server originated, when it has any.
    pub own_domain: Option<u32>,
    /// Offset (and source position: a whole file) after the last complete transaction: the
    /// bytes to keep.
    pub end: u64,
    /// The file's length as read.
    pub len: u64,
    /// Set when `end < len`: why the tail is left out.
    pub truncated: Option<String>,
    pub ending: Ending,
    /// The catalog facts up to `end` (times, GTID state before and after).
    pub summary: FileSummary,
}

/// An artificial ROTATE to `name` without a CRC32: what a source sends first in a dump, so the
/// tracker knows which file the events belong to.
fn announce(name: &BinlogFileName) -> Bytes {
    let size = (HEADER_LEN + 8 + name.as_str().len()) as u32;
    let mut ev = Vec::with_capacity(size as usize);
    ev.extend_from_slice(&0u32.to_le_bytes());
    ev.push(types::ROTATE);
    ev.extend_from_slice(&0u32.to_le_bytes());
    ev.extend_from_slice(&size.to_le_bytes());
    ev.extend_from_slice(&0u32.to_le_bytes());
    ev.extend_from_slice(&event::flags::ARTIFICIAL.to_le_bytes());
    ev.extend_from_slice(&4u64.to_le_bytes());
    ev.extend_from_slice(name.as_str().as_bytes());
    Bytes::from(ev)
}

/// Folds a file's events, in order, into a verdict.
pub struct Verifier {
    name: BinlogFileName,
    tracker: Option<StreamTracker>,
    summary: SummaryBuilder,
    fde: Option<(Fde, u32)>,
    own_uuid: Option<String>,
    own_domain: Option<u32>,
    /// The last transaction boundary: position, GTID state there, how the file ends there.
    boundary: (u64, Option<String>, Ending),
    boundaries: u64,
    /// The file's ROTATE was seen: nothing may follow it.
    rotated: bool,
    /// Where the last whole event ends.
    events_end: u64,
    ops: Vec<WriteOp>,
}

impl Verifier {
    pub fn new(name: BinlogFileName) -> Self {
        Verifier {
            name,
            tracker: None,
            summary: SummaryBuilder::new(&[], None),
            fde: None,
            own_uuid: None,
            own_domain: None,
            boundary: (4, None, Ending::Open),
            boundaries: 0,
            rotated: false,
            events_end: 4,
            ops: Vec::new(),
        }
    }

    /// One whole event, found at `offset` in the file.
    pub fn on_event(&mut self, offset: u64, ev: &[u8]) -> Result<(), VerifyError> {
        let fail = |reason: String| VerifyError { offset, reason };
        if self.rotated {
            return Err(fail("an event follows the ROTATE that ends the file".into()));
        }
        let h = EventHeader::parse(ev).map_err(|e| fail(e.to_string()))?;
        if self.tracker.is_none() {
            self.start(offset, &h, ev)?;
        } else if let Some((fde, _)) = &self.fde
            && fde.checksum == ChecksumAlg::Absent
            && event::verify_crc32(ev).is_ok()
        {
            // Whether an FDE announces checksums depends on its server version text: a damaged
            // version ("10.5" read as "0.5") would switch every CRC check off. A server that old
            // never ends an event with the CRC32 of the rest of it.
            return Err(VerifyError {
                offset: 4,
                reason: format!(
                    "the format description (server version {:?}) announces no checksums, but the event at \
                     {offset} carries a CRC32: it is damaged",
                    fde.server_version
                ),
            });
        }
        let tracker = self.tracker.as_mut().expect("started above");
        self.ops.clear();
        let seen = tracker.on_event(Bytes::copy_from_slice(ev), &mut self.ops).map_err(|e| fail(describe(e)))?;
        if !matches!(seen, Seen::Written { .. }) {
            return Err(fail(format!(
                "type {} is not an event of a binlog file (artificial or heartbeat)",
                h.type_code
            )));
        }
        for op in &self.ops {
            match op {
                WriteOp::Create { start_pos: 4, .. } | WriteOp::Append { .. } => {}
                WriteOp::Seal { .. } => self.rotated = true,
                WriteOp::Create { .. } | WriteOp::Rebase { .. } => {
                    return Err(fail("the log_pos chain does not start at the file's first event".into()));
                }
            }
        }
        let (count, has_crc, state) = (tracker.boundary_count(), tracker.has_crc(), tracker.gtid().snapshot());
        let end = offset + ev.len() as u64;
        self.events_end = end;
        self.summary.on_events(ev, end);
        self.note_origin(&h, ev);
        if count != self.boundaries {
            self.boundaries = count;
            let ending = match h.type_code {
                types::ROTATE => {
                    let (_, next) = event::parse_rotate(ev, has_crc).map_err(|e| fail(e.to_string()))?;
                    Ending::Rotate { next }
                }
                types::STOP => Ending::Stop,
                _ => Ending::Open,
            };
            // Counted as the writer counts them: at each transaction boundary (a checkpoint).
            self.summary.commit(end, state.as_deref());
            self.boundary = (end, state, ending);
        }
        Ok(())
    }

    /// The first event must be the format description at offset 4: it says the flavor (the
    /// tracker renders GTID states by it) and the server that wrote the file.
    fn start(&mut self, offset: u64, h: &EventHeader, ev: &[u8]) -> Result<(), VerifyError> {
        let fail = |reason: String| VerifyError { offset, reason };
        if offset != 4 || h.type_code != types::FORMAT_DESCRIPTION {
            return Err(fail(format!("the first event is of type {}, not a format description", h.type_code)));
        }
        let fde = Fde::parse(ev).map_err(|e| fail(e.to_string()))?;
        let flavor =
            if fde.server_version.to_ascii_lowercase().contains("mariadb") { Flavor::Mariadb } else { Flavor::Mysql };
        let mut tracker = StreamTracker::new(LocalFiles::default(), GtidTracker::new(flavor, None), false);
        let mut ops = Vec::new();
        tracker.on_event(announce(&self.name), &mut ops).map_err(|e| fail(describe(e)))?;
        self.tracker = Some(tracker);
        self.fde = Some((fde, h.server_id));
        Ok(())
    }

    /// The transactions the writing server originated name it: MySQL's uuid, MariaDB's domain.
    fn note_origin(&mut self, h: &EventHeader, ev: &[u8]) {
        let Some((fde, server_id)) = &self.fde else { return };
        if h.server_id != *server_id {
            return;
        }
        let crc = fde.checksum.has_crc();
        match h.type_code {
            types::GTID if self.own_uuid.is_none() => {
                if let Ok((uuid, _)) = event::parse_mysql_gtid(ev, crc) {
                    self.own_uuid = Some(uuid_text(&uuid));
                }
            }
            types::GTID_TAGGED if self.own_uuid.is_none() => {
                if let Ok((uuid, _, _)) = event::parse_tagged_gtid(ev, crc) {
                    self.own_uuid = Some(uuid_text(&uuid));
                }
            }
            types::MARIA_GTID if self.own_domain.is_none() => {
                if let Ok(g) = event::parse_mariadb_gtid(ev, crc) {
                    self.own_domain = Some(g.gtid.domain);
                }
            }
            _ => {}
        }
    }

    /// The verdict for a file of `len` bytes: up to its last complete transaction.
    pub fn finish(mut self, len: u64) -> Result<Verified, VerifyError> {
        let Some((fde, server_id)) = self.fde.take() else {
            return Err(VerifyError { offset: 4, reason: "no complete format description event".into() });
        };
        let (end, _, ending) = self.boundary;
        let truncated = if end == len {
            None
        } else if self.events_end < len {
            Some(format!(
                "torn event at offset {}: the file is kept up to its last complete transaction, at {end} ({} bytes left out)",
                self.events_end,
                len - end
            ))
        } else {
            Some(format!(
                "incomplete transaction from offset {end}: the file is kept up to there ({} bytes left out)",
                len - end
            ))
        };
        Ok(Verified {
            flavor: if fde.server_version.to_ascii_lowercase().contains("mariadb") {
                Flavor::Mariadb
            } else {
                Flavor::Mysql
            },
            server_version: fde.server_version.clone(),
            server_id,
            has_crc: fde.checksum.has_crc(),
            own_uuid: self.own_uuid,
            own_domain: self.own_domain,
            end,
            len,
            truncated,
            ending,
            summary: self.summary.summary().clone(),
        })
    }
}

fn uuid_text(u: &Uuid) -> String {
    u.to_string().to_ascii_lowercase()
}

fn describe(e: StreamError) -> String {
    match e {
        StreamError::Gap { expected, got, .. } => {
            format!("log_pos chain broken: the event should start at {expected} but its log_pos says {got}")
        }
        other => other.to_string(),
    }
}

/// Counts the bytes a reader hands out.
struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
}

/// Verifies the file `name` read whole from `r`. The outer error is an I/O failure of `r`.
pub fn verify(name: BinlogFileName, r: impl Read) -> io::Result<Result<Verified, VerifyError>> {
    let mut r = Counting { inner: r, n: 0 };
    let mut v = Verifier::new(name);
    let mut failed = None;
    let walked = for_each_event(&mut r, |offset, ev| match v.on_event(offset, ev) {
        Ok(()) => true,
        Err(e) => {
            failed = Some(e);
            false
        }
    });
    match walked {
        Err(e) if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof => {
            return Ok(Err(VerifyError { offset: 0, reason: "not a binlog file (no magic number)".into() }));
        }
        Err(e) => return Err(e),
        Ok(()) => {}
    }
    if let Some(e) = failed {
        return Ok(Err(e));
    }
    // Whatever `for_each_event` left unread (a garbage size field) is part of the length.
    io::copy(&mut r, &mut io::sink())?;
    Ok(v.finish(r.n))
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
