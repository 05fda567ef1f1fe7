//! `binlog::gtid`: `GtidSet::decode`/`encode`, `GtidSet::parse`/`Display`,
//! `MariadbGtidState::parse`/`Display`, `decode_varlen`/`encode_varlen`, and the set algebra the
//! stream tracker drives with GTIDs from the network.
//!
//! The first byte picks the mode; the rest is its input. Checks (besides "never panics"):
//! - decode: `decode(encode(x)) == x` whenever `decode` accepts the bytes, and the encoding of
//!   `x` is stable (`encode(decode(encode(x))) == encode(x)`);
//! - parse: `parse(x.to_string()) == x` and `decode(x.encode()) == x`;
//! - MariaDB state: `parse(s.to_string()) == s`;
//! - varlen: `decode(encode(v)) == v` and re-encoding never needs more bytes than were read;
//! - algebra: after `add(g)` the set contains `g`; a union contains both operands.
//!
//! With `BINLOG_FUZZ_STRICT=1`, a decoded set must also survive the text round trip
//! (`parse(decode(b).to_string()) == decode(b)`): the stream tracker renders the GTID state it
//! decoded from the source as the checkpoint's text, which is parsed again at the next start.
#![no_main]

mod common;

use binlog_server::binlog::gtid::{GtidSet, MAX_GNO, MariadbGtidState, Uuid, decode_varlen, encode_varlen};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 5 {
        0 => decoded(rest),
        1 => parsed(rest),
        2 => mariadb(rest),
        3 => varlen(rest),
        _ => algebra(rest),
    }
});

fn decoded(bytes: &[u8]) {
    let Ok(x) = GtidSet::decode(bytes) else { return };
    let text = x.to_string();
    let enc = x.encode();
    let y = GtidSet::decode(&enc).unwrap_or_else(|e| panic!("encode output does not decode: {e}; set {text}"));
    assert_eq!(y, x, "decode(encode(x)) != x for {text}");
    assert_eq!(y.encode(), enc, "encoding not stable for {text}");
    let _ = (x.is_empty(), x.has_tags(), x.entries().count());
    if common::strict() {
        match GtidSet::parse(&text) {
            Ok(p) => assert_eq!(p, x, "text round trip of a decoded set: {text}"),
            Err(e) => panic!("a decoded set prints as text that does not parse: {text:?}: {e}"),
        }
    }
}

fn parsed(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let Ok(x) = GtidSet::parse(text) else { return };
    let printed = x.to_string();
    let again = GtidSet::parse(&printed).unwrap_or_else(|e| panic!("{printed:?} (from {text:?}) does not parse: {e}"));
    assert_eq!(again, x, "parse(to_string(x)) != x for {text:?}");
    let dec = GtidSet::decode(&x.encode()).unwrap_or_else(|e| panic!("encoding of {printed} does not decode: {e}"));
    assert_eq!(dec, x, "decode(encode(x)) != x for {text:?}");
}

fn mariadb(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let Ok(s) = MariadbGtidState::parse(text) else { return };
    let printed = s.to_string();
    let again =
        MariadbGtidState::parse(&printed).unwrap_or_else(|e| panic!("{printed:?} (from {text:?}) does not parse: {e}"));
    assert_eq!(again, s);
}

fn varlen(bytes: &[u8]) {
    let mut buf = bytes;
    while !buf.is_empty() {
        let before = buf.len();
        let Ok(v) = decode_varlen(&mut buf) else { return };
        let read = before - buf.len();
        assert!((1..=9).contains(&read), "varlen consumed {read} bytes");
        let mut enc = Vec::new();
        encode_varlen(v, &mut enc);
        assert!(enc.len() <= read, "{v} re-encodes to {} bytes but was read from {read}", enc.len());
        let mut s = enc.as_slice();
        assert_eq!(decode_varlen(&mut s).expect("own encoding decodes"), v);
        assert!(s.is_empty(), "decode of own encoding left bytes");
    }
    // Any u64 taken directly, too.
    for chunk in bytes.chunks_exact(8) {
        let v = u64::from_le_bytes(chunk.try_into().unwrap());
        let mut enc = Vec::new();
        encode_varlen(v, &mut enc);
        let mut s = enc.as_slice();
        assert_eq!(decode_varlen(&mut s).expect("own encoding decodes"), v);
        assert!(s.is_empty());
    }
}

/// Ops of 10 bytes: kind, uuid index, tag index, and a transaction number (7 bytes, plus "near
/// the top" variants so the u64 limit is reached).
fn algebra(bytes: &[u8]) {
    const TAGS: [&str; 3] = ["", "a", "tag_b"];
    let uuid = |i: u8| Uuid([i % 3; 16]);
    let mut sets = [GtidSet::new(), GtidSet::new()];
    for op in bytes.chunks_exact(10) {
        let (u, tag) = (uuid(op[1]), TAGS[usize::from(op[2]) % TAGS.len()]);
        let raw = u64::from_le_bytes([op[3], op[4], op[5], op[6], op[7], op[8], op[9], 0]);
        // Transaction numbers in the domain every parser accepts (1..=MAX_GNO), near its top too.
        let gno = match op[0] >> 4 {
            0 => MAX_GNO - (raw & 0xff),
            1 => MAX_GNO - 16 + (raw & 0xf),
            _ => raw.max(1),
        };
        let which = usize::from(op[0] & 1);
        match (op[0] >> 1) & 3 {
            0 | 1 => {
                sets[which].add(u, tag, gno);
                if gno < u64::MAX {
                    assert!(sets[which].contains(&u, tag, gno), "add({gno}) then not contained");
                }
            }
            2 => {
                let other = sets[1 - which].clone();
                let before = sets[which].clone();
                sets[which].union_with(&other);
                for probe in [gno, gno.wrapping_add(1), gno.wrapping_sub(1)] {
                    let want = before.contains(&u, tag, probe) || other.contains(&u, tag, probe);
                    assert_eq!(sets[which].contains(&u, tag, probe), want, "union at {probe}");
                }
            }
            _ => {
                let _ = sets[which].to_string();
                let enc = sets[which].encode();
                let dec = GtidSet::decode(&enc).expect("own encoding decodes");
                assert_eq!(dec.to_string(), sets[which].to_string());
            }
        }
    }
}
