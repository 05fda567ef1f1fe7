//! `StreamTracker::on_event`, the whole per-event state machine, fed a sequence of arbitrary
//! events; starting from nothing, from a `LocalFiles` with an open file, or with sealed files.
//!
//! Input layout (what `seed.sh` writes):
//! - byte 0, flags: bit 0 the stream has CRC32s before any FDE (`crc` of `StreamTracker::new`);
//!   bit 1 MariaDB flavor (else MySQL); bit 2 make each event's size field equal its length;
//!   bit 3 make each event's CRC32 valid whenever the tracker expects one (a hostile source can
//!   always do both); bits 4-5 local state: 0 nothing, 1 `f.000001` open, 2 `f.000001` open and
//!   `f.000000` sealed, 3 `f.000001` sealed; bit 6 start with a known (empty) GTID state;
//!   bit 7 go on after a refused event (the replication actor drops the tracker and reconnects
//!   instead, so a crash that needs this bit is only reachable by other callers);
//! - bytes 1..5: the open file's durable end position (u32 LE); byte 5 bit 0: it holds
//!   transactions;
//! - then events, each as a u16 LE length and that many bytes (the last may be short).
//!
//! Checks: no panic, ever. With `BINLOG_FUZZ_STRICT=1` also: a refused event leaves no write op
//! behind (`docs/architecture.md`: nothing of a refused event is written); the GTID state the
//! checkpoint would store parses again (`StartGtid::parse`, as the next connection does), to
//! the same state the tracker holds.
#![no_main]

mod common;

use std::collections::BTreeSet;

use binlog_server::binlog::event::{Fde, types};
use binlog_server::binlog::gtid::{GtidSet, MariadbGtidState, StartGtid};
use binlog_server::binlog::name::BinlogFileName;
use binlog_server::binlog::stream::{GtidTracker, LocalFiles, OpenFile, StreamTracker, WriteOp};
use binlog_server::domain::Flavor;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let flags = data[0];
    let crc = flags & 1 != 0;
    let flavor = if flags & 2 != 0 { Flavor::Mariadb } else { Flavor::Mysql };
    let (fix_size, fix_crc) = (flags & 4 != 0, flags & 8 != 0);
    let name = |s: &str| BinlogFileName::parse(s).expect("valid name");
    let open = OpenFile {
        name: name("f.000001"),
        start_pos: 4,
        end_pos: u64::from(u32::from_le_bytes([data[1], data[2], data[3], data[4]])),
        has_transactions: data[5] & 1 != 0,
    };
    let local = match (flags >> 4) & 3 {
        0 => LocalFiles::default(),
        1 => LocalFiles { open: Some(open), sealed: BTreeSet::new() },
        2 => LocalFiles { open: Some(open), sealed: [name("f.000000")].into_iter().collect() },
        _ => LocalFiles { open: None, sealed: [name("f.000001")].into_iter().collect() },
    };
    let start = (flags & 0x40 != 0).then(|| match flavor {
        Flavor::Mysql => StartGtid::Mysql(GtidSet::new()),
        Flavor::Mariadb => StartGtid::Mariadb(MariadbGtidState::default()),
    });
    let mut t = StreamTracker::new(local, GtidTracker::new(flavor, start.as_ref()), crc);

    let mut ops: Vec<WriteOp> = Vec::new();
    let mut rest = &data[6..];
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let mut ev = rest[2..2 + len].to_vec();
        rest = &rest[2 + len..];
        if fix_size {
            common::fix_size(&mut ev);
        }
        if fix_crc {
            // What `on_event` verifies: an FDE's own CRC when its version has one, else the
            // stream's CRC when the tracker expects one.
            let is_fde = ev.get(4) == Some(&types::FORMAT_DESCRIPTION);
            if (is_fde && Fde::parse(&ev).is_ok_and(|f| f.self_has_crc())) || (!is_fde && t.has_crc()) {
                common::fix_crc(&mut ev);
            }
        }
        let before = ops.len();
        let result = t.on_event(Bytes::from(ev), &mut ops);
        // Everything the replication actor and the API read afterwards.
        let snapshot = t.gtid().snapshot();
        let _ = (t.gtid().current(), t.boundary(), t.boundary_count(), t.stats(), t.next_pos(), t.current_file());
        if common::strict() {
            if let Err(e) = &result {
                assert_eq!(ops.len(), before, "refused event ({e}) left write ops: {:?}", &ops[before..]);
            }
            if let Some(text) = &snapshot {
                // The checkpoint text must parse again, to the very state the tracker holds (a
                // different one would make the next connection skip or re-fetch transactions).
                match StartGtid::parse(flavor, text) {
                    Err(e) => panic!("checkpoint GTID state {text:?} does not parse again: {e}"),
                    Ok(parsed) => {
                        let held = t.gtid().current().expect("a snapshot means the state is known");
                        assert_eq!(canon(&parsed), canon(&held), "checkpoint text {text:?} parses to another GTID state");
                    }
                }
            }
        }
        if result.is_err() {
            if flags & 0x80 == 0 {
                return;
            }
            ops.truncate(before);
        }
        if ops.len() > 4096 {
            ops.clear();
        }
    }
});

/// A GTID state as plain data (empty entries dropped), to compare two states by content.
fn canon(g: &StartGtid) -> Vec<(String, String, Vec<(u64, u64)>)> {
    match g {
        StartGtid::Mysql(set) => {
            set.entries().map(|(u, tag, iv)| (u.to_string(), tag.to_string(), iv.iter().collect())).collect()
        }
        StartGtid::Mariadb(state) => {
            state.iter().map(|m| (m.domain.to_string(), m.server_id.to_string(), vec![(m.seq, 0)])).collect()
        }
    }
}
