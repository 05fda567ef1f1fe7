//! Every parser in `binlog::event` on arbitrary bytes, and `FileEvents` over arbitrary file bytes.
//!
//! The input is a binlog file (the seeds are the real fixture files): when it does not start
//! with the magic, the magic is put in front. Every event `FileEvents` yields goes through every
//! body parser with and without a CRC; so does the whole input taken as one event, raw and with
//! its size field (and CRC) made consistent.
//!
//! Checks: no panic; `FileEvents` yields contiguous, in-bounds events whose size field equals
//! their length and reports `torn_at` exactly when bytes are left over; a yielded event always
//! has a parseable header; a CRC made valid verifies (also after clearing the in-use flag); an
//! accepted ROTATE names a safe file; an accepted FDE has the v4 header length; a query text
//! lies inside the event body.
#![no_main]

mod common;

use binlog_server::binlog::event::{self, EventHeader, Fde, FileEvents, HEADER_LEN, MAGIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file: std::borrow::Cow<[u8]> = if data.starts_with(&MAGIC) {
        data.into()
    } else {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(data);
        v.into()
    };

    // The whole input as one event, as received and made consistent.
    every_parser(data, 13);
    if data.len() >= HEADER_LEN {
        let mut ev = data.to_vec();
        common::fix_size(&mut ev);
        common::fix_crc(&mut ev);
        EventHeader::parse(&ev).expect("size field fixed");
        if ev.len() >= HEADER_LEN + 4 {
            event::verify_crc32(&ev).expect("CRC fixed");
        }
        if ev.len() >= HEADER_LEN + 4 && ev[4] == event::types::FORMAT_DESCRIPTION {
            let mut cleared = ev.clone();
            event::clear_in_use_flag(&mut cleared);
            event::verify_crc32(&cleared).expect("clearing the in-use flag keeps an FDE's CRC valid");
        }
        every_parser(&ev, 13);
    }

    let mut it = FileEvents::new(&file).expect("magic present");
    let mut expected_off = 4usize;
    let mut phl = 13;
    for (off, ev) in it.by_ref() {
        assert_eq!(off, expected_off, "events are contiguous");
        assert!(ev.len() >= HEADER_LEN && off + ev.len() <= file.len());
        assert_eq!(&file[off..off + ev.len()], ev);
        let h = EventHeader::parse(ev).expect("FileEvents yields events whose size field is their length");
        assert_eq!(h.event_size as usize, ev.len());
        if let Ok(fde) = Fde::parse(ev) {
            phl = fde.post_header_len(event::types::QUERY).unwrap_or(13);
        }
        every_parser(ev, phl);
        expected_off = off + ev.len();
    }
    match it.torn_at {
        None => assert_eq!(expected_off, file.len(), "no torn tail reported but bytes are left"),
        Some(at) => assert!(at == expected_off && at < file.len(), "torn_at {at} vs end of last event {expected_off}"),
    }
});

fn every_parser(ev: &[u8], phl: usize) {
    if let Ok(h) = EventHeader::parse(ev) {
        assert_eq!(h.event_size as usize, ev.len());
        let _ = h.is_artificial();
        if let Some(start) = h.start_pos() {
            assert!(start + u64::from(h.event_size) == u64::from(h.log_pos));
        }
    }
    if let Ok(fde) = Fde::parse(ev) {
        assert_eq!(usize::from(fde.header_len), HEADER_LEN);
        for t in 0..=255u8 {
            let _ = fde.post_header_len(t);
        }
        let _ = (fde.self_has_crc(), fde.checksum.has_crc());
    }
    let _ = event::verify_crc32(ev);
    for crc in [false, true] {
        if let Ok(b) = event::body(ev, crc) {
            assert!(b.len() + HEADER_LEN <= ev.len());
        }
        if let Ok((_pos, name)) = event::parse_rotate(ev, crc) {
            let n = name.as_str();
            assert!(!n.is_empty() && !n.contains('/') && n != "." && n != "..", "unsafe name {n:?}");
        }
        for p in [phl, 13, 19] {
            if let Ok(q) = event::query_text(ev, crc, p) {
                let body = event::body(ev, crc).expect("query_text succeeded");
                assert!(q.len() <= body.len().saturating_sub(p), "query text outside the body");
                let _ = event::classify_query(q);
            }
            if let Ok(prefix) = event::statement_prefix(ev, crc, p) {
                assert!(prefix.len() <= event::STATEMENT_PREFIX_LEN, "a statement prefix past its bound");
                let _ = event::classify_query(&prefix);
            }
        }
        let _ = event::parse_mysql_gtid(ev, crc);
        let _ = event::parse_tagged_gtid(ev, crc);
        let _ = event::parse_mariadb_gtid(ev, crc);
        if let Ok(set) = event::parse_previous_gtids(ev, crc) {
            let _ = set.to_string();
            let _ = set.encode();
        }
        let _ = event::parse_mariadb_gtid_list(ev, crc);
    }
    let _ = event::classify_query(ev);
}
