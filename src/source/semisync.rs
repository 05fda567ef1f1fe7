//! Semi-synchronous replication, replica side, as pure code: the 2-byte header the source puts
//! in front of every event once we announced ourselves a semi-sync replica, the ack packet we
//! answer with, and the one decision: which position to acknowledge after an fsync.
//!
//! The rule ([`AckQueue::covered_by`]): an ack names the last position that asked for one and is
//! covered by the durable checkpoint (the writer's answer after its fsync), never a position
//! beyond it. An ack is a promise that the transaction survives a crash of binlog-server, so it
//! can only follow the fsync. This module never touches a socket or a file.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use crate::binlog::name::BinlogFileName;
use crate::source::SourceError;

/// First byte of the semi-sync header and of an ack packet.
pub const MAGIC: u8 = 0xEF;
/// The header's flag: the source waits for an ack of this event.
pub const FLAG_NEEDS_ACK: u8 = 0x01;
/// The header's length in front of each event.
pub const HEADER_LEN: usize = 2;

/// An event packet's body (after the 0x00 status byte) split from its semi-sync header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stripped {
    /// The source waits for an ack of this event (the end of a transaction).
    pub needs_ack: bool,
    /// The event exactly as the source stored it.
    pub event: Bytes,
}

/// Splits the semi-sync header off `body` (an event packet without its 0x00 status byte).
/// A body without the magic byte means the source and we disagree about semi-sync: an error,
/// never a guess (the event bytes would be misread by two bytes).
pub fn strip_header(body: &Bytes) -> Result<Stripped, SourceError> {
    match body.get(..HEADER_LEN) {
        Some([MAGIC, flag]) => Ok(Stripped { needs_ack: flag & FLAG_NEEDS_ACK != 0, event: body.slice(HEADER_LEN..) }),
        Some([other, _]) => Err(SourceError::Protocol(format!(
            "an event without the semi-sync header (first byte {other:#04x}, expected {MAGIC:#04x}) after the \
             source accepted @rpl_semi_sync_slave"
        ))),
        _ => Err(SourceError::Protocol(format!(
            "an event packet of {} bytes: too short for the semi-sync header",
            body.len()
        ))),
    }
}

/// The ack packet: the magic byte, the 8-byte little-endian position, the file name (no NUL).
/// It travels as a packet with sequence id 0, as the source's ack receiver expects.
fn ack_packet(file: &BinlogFileName, pos: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(1 + 8 + file.as_str().len());
    p.push(MAGIC);
    p.extend_from_slice(&pos.to_le_bytes());
    p.extend_from_slice(file.as_str().as_bytes());
    p
}

/// [`ack_packet`] framed for the wire, ready for one socket write: the 3-byte payload length and
/// sequence id 0 in front (an ack is far below the 16 MiB packet limit: always one frame).
pub fn ack_frame(file: &BinlogFileName, pos: u64) -> Vec<u8> {
    let payload = ack_packet(file, pos);
    let mut frame = Vec::with_capacity(4 + payload.len());
    crate::source::packet::push_header(&mut frame, payload.len(), 0);
    frame.extend_from_slice(&payload);
    frame
}

/// What a task that asked for semi-sync gets from this source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// Announce ourselves with this user variable (`SET @... = 1`) before the dump.
    Active { announce: &'static str },
    /// Stream asynchronously; the reason is what the task's warning event says.
    Unavailable { reason: String },
}

/// Decides from the source's `SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_%'` rows (name, value)
/// whether semi-sync can be had. The variable that exists picks the dialect: MariaDB and MySQL
/// before 8.0.26 (and a newer MySQL still running the old plugin) have
/// `rpl_semi_sync_master_enabled` and read `@rpl_semi_sync_slave`; MySQL 8.0.26+ with the
/// `semisync_source` plugin has `rpl_semi_sync_source_enabled` and reads `@rpl_semi_sync_replica`.
pub fn support(vars: &[(String, String)]) -> Support {
    let value = |name: &str| vars.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let on = |v: &str| v.eq_ignore_ascii_case("ON") || v == "1";
    for (var, announce) in [
        ("rpl_semi_sync_source_enabled", "@rpl_semi_sync_replica"),
        ("rpl_semi_sync_master_enabled", "@rpl_semi_sync_slave"),
    ] {
        match value(var) {
            Some(v) if on(v) => return Support::Active { announce },
            Some(v) => {
                return Support::Unavailable {
                    reason: format!(
                        "the source has semi-sync off ({var} = {v}); streaming asynchronously: commits on the source \
                         do not wait for this copy"
                    ),
                };
            }
            None => {}
        }
    }
    Support::Unavailable {
        reason:
            "the source has no semi-sync support (no rpl_semi_sync_master_enabled or rpl_semi_sync_source_enabled: \
                 on MySQL install the semisync_source plugin); streaming asynchronously"
                .into(),
    }
}

/// A source position: a file and an offset in it (the end of an event).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AckPos {
    pub file: BinlogFileName,
    pub pos: u64,
}

impl std::fmt::Display for AckPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.pos)
    }
}

/// The ack to send after an fsync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub at: AckPos,
    /// When each event this ack answers arrived (for the event-to-ack latency).
    pub received: Vec<Instant>,
}

/// The events that asked for an ack and were not acknowledged yet, oldest first.
///
/// Bounded by the stream's own backpressure: an event enters when it is read, and reading stops
/// while two batches wait for the writer; every fsync that moves the durable checkpoint past an
/// event removes it.
#[derive(Debug, Default)]
pub struct AckQueue {
    pending: VecDeque<(AckPos, Instant)>,
}

impl AckQueue {
    /// An event ending at `at` asked for an ack.
    pub fn asked(&mut self, at: AckPos, received: Instant) {
        self.pending.push_back((at, received));
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The ack owed once `durable` (the checkpoint the writer's fsync made durable) is known:
    /// the last asked position at or before it, covering every earlier one (the source releases
    /// all commits up to an acknowledged position: with group commit one ack answers many).
    /// Positions beyond `durable` stay pending: an ack is never ahead of the fsync.
    pub fn covered_by(&mut self, durable: &AckPos) -> Option<Ack> {
        let mut last = None;
        let mut received = Vec::new();
        while let Some((at, _)) = self.pending.front() {
            if at > durable {
                break;
            }
            let (at, t) = self.pending.pop_front().expect("front exists");
            received.push(t);
            last = Some(at);
        }
        last.map(|at| Ack { at, received })
    }
}

/// When a dump that asked for semi-sync announces it (`SET @rpl_semi_sync_slave = 1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announce {
    /// Before this dump.
    Now,
    /// Not before this dump: it streams asynchronously, and once the durable checkpoint is in
    /// this file (the source's current one when the dump began) or a later one, the dump ends
    /// and the next one, from that checkpoint, announces semi-sync.
    OnceIn(BinlogFileName),
}

/// Decides when a dump from `from` (`None`: by GTID, where the source picks the file) announces
/// semi-sync, given the source's current binlog file (`None`: it could not be asked).
///
/// Only a dump that starts in the source's current file announces it at once. One that starts
/// in an older file, or by GTID, may be refused the moment it starts (the torn tail a crashed
/// source keeps, a GTID state it lacks); a semi-sync dump refused that fast hangs MariaDB
/// 10.11's dump thread for good (it waits in `Ack_receiver::remove_slave` for an ack receiver
/// that went back to sleep before seeing it: a lost wake-up), and every later dump with our
/// server id then waits for that thread in `kill_zombie_dump_threads`, for ever. Commits only
/// wait for an ack of events in the current file, so nothing is lost by announcing it there.
pub fn announce_when(from: Option<&BinlogFileName>, current: Option<&BinlogFileName>) -> Announce {
    match (from, current) {
        (_, None) => Announce::Now,
        (Some(from), Some(current)) if from >= current => Announce::Now,
        (_, Some(current)) => Announce::OnceIn(current.clone()),
    }
}

impl Announce {
    /// Whether a dump that did not announce semi-sync should end now that `durable` (the file
    /// of the durable checkpoint) is reached, so the next one announces it.
    pub fn reached(&self, durable: &BinlogFileName) -> bool {
        match self {
            Announce::Now => false,
            Announce::OnceIn(file) => durable >= file,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> BinlogFileName {
        BinlogFileName::parse(s).unwrap()
    }

    fn at(file: &str, pos: u64) -> AckPos {
        AckPos { file: name(file), pos }
    }

    #[test]
    fn header_table() {
        let event = [0x11u8, 0x22, 0x33];
        let cases: &[(&[u8], Option<bool>)] = &[
            (&[0xEF, 0x01, 0x11, 0x22, 0x33], Some(true)),
            (&[0xEF, 0x00, 0x11, 0x22, 0x33], Some(false)),
            // Only bit 0 means "wait for me"; other bits are not ours to interpret.
            (&[0xEF, 0x03, 0x11, 0x22, 0x33], Some(true)),
            (&[0xEF, 0x02, 0x11, 0x22, 0x33], Some(false)),
            // No magic: a plain event (a source that ignored the variable) is refused.
            (&[0x11, 0x22, 0x33, 0x44, 0x55], None),
            (&[0xEF], None),
            (&[], None),
        ];
        for (body, want) in cases {
            let got = strip_header(&Bytes::copy_from_slice(body));
            match want {
                Some(needs_ack) => {
                    let s = got.unwrap_or_else(|e| panic!("{body:x?}: {e}"));
                    assert_eq!(s.needs_ack, *needs_ack, "{body:x?}");
                    assert_eq!(&s.event[..], &event, "{body:x?}: the event is the bytes after the header");
                }
                None => assert!(matches!(got, Err(SourceError::Protocol(_))), "{body:x?}: {got:?}"),
            }
        }
    }

    #[test]
    fn announce_only_from_the_sources_current_file() {
        let n = |s: &str| BinlogFileName::parse(s).unwrap();
        let (f1, f2, f10) = (n("mariadb-bin.000001"), n("mariadb-bin.000002"), n("mariadb-bin.000010"));
        let later = |f: &BinlogFileName| Announce::OnceIn(f.clone());
        let cases = [
            // In the current file (or, the source having rotated since, a later one): at once.
            (Some(&f2), Some(&f2), Announce::Now),
            (Some(&f10), Some(&f2), Announce::Now),
            // Catching up an older file (a crashed source's torn one among them): later.
            (Some(&f1), Some(&f2), later(&f2)),
            // Numbers, not text: 000002 is older than 000010.
            (Some(&f2), Some(&f10), later(&f10)),
            // By GTID the source picks the file, and may refuse at once: later.
            (None, Some(&f2), later(&f2)),
            // The current file unknown (no privilege to ask): at once, as before.
            (Some(&f1), None, Announce::Now),
            (None, None, Announce::Now),
        ];
        for (from, current, want) in cases {
            assert_eq!(announce_when(from, current), want, "from {from:?}, current {current:?}");
        }
        // The dump hands over once the durable checkpoint is in that file or a later one.
        assert!(!later(&f2).reached(&f1));
        assert!(later(&f2).reached(&f2));
        assert!(later(&f2).reached(&f10));
        assert!(!later(&f10).reached(&f2));
        assert!(!Announce::Now.reached(&f10));
    }

    #[test]
    fn support_table() {
        let vars = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let active = |announce| Support::Active { announce };
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<Support>);
        let cases: &[Case] = &[
            // MariaDB 10.3+ (built in), MySQL before 8.0.26.
            (
                &[("rpl_semi_sync_master_enabled", "ON"), ("rpl_semi_sync_slave_enabled", "OFF")],
                Some(active("@rpl_semi_sync_slave")),
            ),
            // MySQL 8.0.26+ with semisync_source.
            (&[("rpl_semi_sync_source_enabled", "ON")], Some(active("@rpl_semi_sync_replica"))),
            (&[("RPL_SEMI_SYNC_SOURCE_ENABLED", "1")], Some(active("@rpl_semi_sync_replica"))),
            // Off, or absent: asynchronous, with the reason.
            (&[("rpl_semi_sync_master_enabled", "OFF")], None),
            (&[("rpl_semi_sync_source_enabled", "OFF")], None),
            // Only the replica side is on: that is the source's own replica setting, not ours.
            (&[("rpl_semi_sync_slave_enabled", "ON")], None),
            (&[], None),
        ];
        for (rows, want) in cases {
            let got = support(&vars(rows));
            match want {
                Some(w) => assert_eq!(&got, w, "{rows:?}"),
                None => match got {
                    Support::Unavailable { reason } => assert!(reason.contains("asynchronously"), "{rows:?}: {reason}"),
                    other => panic!("{rows:?}: {other:?}"),
                },
            }
        }
        let Support::Unavailable { reason } = support(&vars(&[("rpl_semi_sync_master_enabled", "OFF")])) else {
            panic!("off")
        };
        assert!(reason.contains("rpl_semi_sync_master_enabled = OFF"), "names the variable: {reason}");
    }

    #[test]
    fn ack_packet_layout() {
        let p = ack_packet(&name("mysql-bin.000042"), 0x0102_0304_0506_0708);
        assert_eq!(p[0], 0xEF);
        assert_eq!(&p[1..9], &[0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01]);
        assert_eq!(&p[9..], b"mysql-bin.000042", "the name, without a terminating NUL");
        assert_eq!(p.len(), 1 + 8 + 16);
    }

    #[test]
    fn ack_frame_is_the_packet_behind_a_header_with_sequence_zero() {
        let file = name("mariadb-bin.000007");
        let frame = ack_frame(&file, 1234);
        let payload = ack_packet(&file, 1234);
        assert_eq!(&frame[..3], &(payload.len() as u32).to_le_bytes()[..3], "the payload's length");
        assert_eq!(frame[3], 0, "sequence id 0, as the source's ack receiver expects");
        assert_eq!(&frame[4..], &payload[..]);
        // The same bytes as the stream task's own framing of an out-of-band packet.
        let mut io = crate::source::packet::PacketIo::new(std::io::Cursor::new(Vec::<u8>::new()), 1 << 20);
        let mut framed = Vec::new();
        io.frame_into(&payload, &mut framed);
        assert_eq!(frame, framed);
    }

    #[test]
    fn ack_covers_the_last_asked_position_at_or_before_the_durable_checkpoint() {
        let t = Instant::now();
        // (asked positions, durable checkpoint, expected ack, left pending)
        type Case<'a> = (&'a [(&'a str, u64)], (&'a str, u64), Option<(&'a str, u64)>, usize);
        let cases: &[Case] = &[
            // Nothing asked: nothing to ack.
            (&[], ("b.000001", 500), None, 0),
            // Group commit: one ack for three commits, at the last one.
            (&[("b.000001", 100), ("b.000001", 200), ("b.000001", 300)], ("b.000001", 300), Some(("b.000001", 300)), 0),
            // Exactly at the checkpoint counts; one byte beyond does not.
            (&[("b.000001", 300), ("b.000001", 301)], ("b.000001", 300), Some(("b.000001", 300)), 1),
            // The checkpoint is behind every request (the fsync covered another batch).
            (&[("b.000001", 400)], ("b.000001", 350), None, 1),
            // The ack is the asked position, not the checkpoint beyond it.
            (&[("b.000001", 100)], ("b.000001", 900), Some(("b.000001", 100)), 0),
            // Across a rotation: file order first, then position.
            (&[("b.000001", 900), ("b.000002", 120)], ("b.000002", 200), Some(("b.000002", 120)), 0),
            (&[("b.000001", 900), ("b.000002", 120)], ("b.000001", 950), Some(("b.000001", 900)), 1),
            // File order is numeric, as the source's index is (000010 after 000009).
            (&[("b.000009", 900), ("b.000010", 50)], ("b.000009", 1000), Some(("b.000009", 900)), 1),
            // A checkpoint in an earlier file never acks a later file's small position.
            (&[("b.000002", 4)], ("b.000001", 5000), None, 1),
        ];
        for (asked, durable, want, left) in cases {
            let mut q = AckQueue::default();
            for (f, p) in *asked {
                q.asked(at(f, *p), t);
            }
            let got = q.covered_by(&at(durable.0, durable.1));
            assert_eq!(got.as_ref().map(|a| a.at.clone()), want.map(|(f, p)| at(f, p)), "{asked:?} / {durable:?}");
            assert_eq!(got.map(|a| a.received.len()).unwrap_or(0), asked.len() - left, "{asked:?} / {durable:?}");
            assert_eq!(q.len(), *left, "{asked:?} / {durable:?}");
        }
    }

    #[test]
    fn an_ack_is_never_sent_twice_and_never_goes_back() {
        let t = Instant::now();
        let mut q = AckQueue::default();
        q.asked(at("b.000001", 100), t);
        assert_eq!(q.covered_by(&at("b.000001", 100)).map(|a| a.at), Some(at("b.000001", 100)));
        assert_eq!(q.covered_by(&at("b.000001", 100)), None, "already acknowledged");
        q.asked(at("b.000001", 200), t);
        assert_eq!(q.covered_by(&at("b.000001", 150)), None, "an older checkpoint acks nothing new");
        assert_eq!(q.covered_by(&at("b.000001", 250)).map(|a| a.at), Some(at("b.000001", 200)));
        assert!(q.is_empty());
    }
}
