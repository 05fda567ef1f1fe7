//! Helpers shared by the fuzz targets (each target uses a subset).
#![allow(dead_code)]

use binlog_server::binlog::event::{FLAGS_OFFSET, HEADER_LEN, types};

/// `BINLOG_FUZZ_STRICT=1` turns on the semantic invariants that go beyond "never panics" in the
/// targets that have them (see README.md); read once.
pub fn strict() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var("BINLOG_FUZZ_STRICT").is_ok_and(|v| !v.is_empty() && v != "0"))
}

/// Makes the event's size field agree with its length (so `EventHeader::parse` accepts it and
/// the body parsers are reached).
pub fn fix_size(ev: &mut [u8]) {
    if ev.len() >= HEADER_LEN {
        let n = ev.len() as u32;
        ev[9..13].copy_from_slice(&n.to_le_bytes());
    }
}

/// Rewrites the trailing CRC32 so `verify_crc32` accepts the event (for an FDE, computed with
/// the in-use flag cleared, as `verify_crc32` does). A hostile source can always do this.
pub fn fix_crc(ev: &mut [u8]) {
    if ev.len() < HEADER_LEN + 4 {
        return;
    }
    let n = ev.len() - 4;
    let mut h = crc32fast::Hasher::new();
    if ev[4] == types::FORMAT_DESCRIPTION {
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&ev[..HEADER_LEN]);
        head[FLAGS_OFFSET] &= !1;
        h.update(&head);
        h.update(&ev[HEADER_LEN..n]);
    } else {
        h.update(&ev[..n]);
    }
    let crc = h.finalize();
    ev[n..].copy_from_slice(&crc.to_le_bytes());
}
