//! The tail of a local binlog file past its last persisted checkpoint, read back after a crash:
//! how far it holds complete transactions whose events are framed, `log_pos`-chained and
//! CRC-valid (when the file has checksums), and the GTID state there.
//!
//! The checkpoint in the metadata store lags the fsync (it is written every
//! `writer.checkpoint_interval_ms`), while a semi-sync ack follows the fsync at once: a crash can
//! leave acknowledged transactions past the stored checkpoint. Recovery keeps what this scan
//! finds complete and cuts only what follows, as MySQL's relay-log recovery does. The rules are
//! the stream's own: the events go through `StreamTracker`, which placed every checkpoint while
//! streaming, so a boundary found here is one the stream would have checkpointed.
//!
//! Pure: reads only the bytes it is handed, never panics on bad input; decides nothing about
//! files (that is `reconcile::plan`).

use bytes::Bytes;

use crate::binlog::event::{EventHeader, Fde, HEADER_LEN, types};
use crate::binlog::name::BinlogFileName;
use crate::binlog::stream::{GtidTracker, LocalFiles, OpenFile, StreamTracker};

/// Where the scan starts.
#[derive(Debug, Clone)]
pub struct TailStart {
    pub name: BinlogFileName,
    /// The tail is the whole file (created after the checkpoint's file was sealed): its first
    /// event is the format description at position 4. Otherwise the tail follows a transaction
    /// boundary (the checkpoint) at `pos`.
    pub whole_file: bool,
    /// Our file's offset of the tail's first byte, and the source position there.
    pub offset: u64,
    pub pos: u64,
    /// The GTID state at `pos` (the checkpoint's).
    pub gtid: GtidTracker,
}

/// What the tail holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    pub name: BinlogFileName,
    /// Our file's length up to the end of the last complete transaction (the offset the scan
    /// started from when there is none).
    pub len: u64,
    /// The source position there, and the GTID state.
    pub pos: u64,
    pub gtid: Option<String>,
    /// Transaction boundaries passed (header events count as their own).
    pub boundaries: u64,
    /// Why the scan stopped before the end of the bytes, when it did (a torn or garbage tail).
    pub stopped: Option<String>,
}

/// Reads `tail` (our file's bytes from `start.offset` to its end) as far as it holds complete,
/// verified transactions. `fde` is the file's first event (its format description: whether the
/// events carry a CRC32), ignored for a whole-file scan, whose tail begins with it.
pub fn scan(fde: &[u8], tail: &[u8], start: TailStart) -> Tail {
    let mut out = Tail {
        name: start.name.clone(),
        len: start.offset,
        pos: start.pos,
        gtid: start.gtid.snapshot(),
        boundaries: 0,
        stopped: None,
    };
    let mut tracker = if start.whole_file {
        // The format description, at the head of the tail, sets the checksum.
        StreamTracker::new(LocalFiles::default(), start.gtid, false).reading_file_from_start(start.name.clone())
    } else {
        let crc = match Fde::parse(fde) {
            Ok(f) => f.checksum.has_crc(),
            Err(e) => {
                out.stopped = Some(format!("the file's format description cannot be read: {e}"));
                return out;
            }
        };
        let open =
            OpenFile { name: start.name.clone(), start_pos: start.pos, end_pos: start.pos, has_transactions: true };
        let mut t = StreamTracker::new(LocalFiles { open: Some(open), ..LocalFiles::default() }, start.gtid, crc);
        // As the source re-sends it on a resume: it sets the checksum and the post-header lengths.
        if let Err(e) = t.on_event(Bytes::copy_from_slice(fde), &mut Vec::new()) {
            out.stopped = Some(format!("the file's format description is refused: {e}"));
            return out;
        }
        t
    };
    let mut at = 0usize;
    let mut pos = start.pos;
    let mut ops = Vec::new();
    while at < tail.len() {
        let rest = &tail[at..];
        let offset = start.offset + at as u64;
        let size = if rest.len() >= HEADER_LEN {
            u32::from_le_bytes([rest[9], rest[10], rest[11], rest[12]]) as usize
        } else {
            0
        };
        if size < HEADER_LEN || size > rest.len() {
            out.stopped = Some(format!("an incomplete event at offset {offset} ({} bytes left)", rest.len()));
            break;
        }
        let ev = &rest[..size];
        // The log_pos chain: each event ends where its header says, right after the previous one.
        match EventHeader::parse(ev) {
            Ok(h) if u64::from(h.log_pos) == pos + size as u64 => {}
            Ok(h) => {
                out.stopped = Some(format!(
                    "the event at offset {offset} ends at position {} where {} was expected",
                    h.log_pos,
                    pos + size as u64
                ));
                break;
            }
            Err(e) => {
                out.stopped = Some(format!("the event at offset {offset}: {e}"));
                break;
            }
        }
        let before = tracker.boundary_count();
        ops.clear();
        if let Err(e) = tracker.on_event(Bytes::copy_from_slice(ev), &mut ops) {
            out.stopped = Some(format!("the event at offset {offset} is refused: {e}"));
            break;
        }
        at += size;
        pos += size as u64;
        if tracker.boundary_count() > before {
            out.len = start.offset + at as u64;
            out.pos = pos;
            out.gtid = tracker.gtid().snapshot();
            out.boundaries += tracker.boundary_count() - before;
        }
        if ev[4] == types::ROTATE {
            // The file ends with its rotate; nothing of this file can follow it.
            if at < tail.len() {
                out.stopped = Some(format!("{} bytes follow the file's rotate event", tail.len() - at));
            }
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::Flavor;
    use crate::binlog::event::FileEvents;
    use crate::binlog::gtid::StartGtid;
    use crate::binlog::{fixture, maria_checksum_fixture};

    fn name(s: &str) -> BinlogFileName {
        BinlogFileName::parse(s).expect("name")
    }

    /// The end offsets of a file's events, and whether each ends a transaction, as the stream
    /// found them (the reference the scan must agree with).
    fn boundaries(data: &[u8], flavor: Flavor, file: &str) -> Vec<(u64, bool)> {
        let mut t = StreamTracker::new(LocalFiles::default(), GtidTracker::new(flavor, None), false)
            .reading_file_from_start(name(file));
        let mut out = Vec::new();
        for (off, ev) in FileEvents::new(data).expect("magic") {
            let before = t.boundary_count();
            t.on_event(Bytes::copy_from_slice(ev), &mut Vec::new()).expect("a valid file");
            out.push(((off + ev.len()) as u64, t.boundary_count() > before));
        }
        out
    }

    fn first_event(data: &[u8]) -> &[u8] {
        FileEvents::new(data).expect("magic").next().expect("an FDE").1
    }

    /// Scans `data` (a file fetched from position 4) from `from`, a boundary, with the bytes
    /// cut at `cut` and `garbage` appended.
    fn scan_at(
        data: &[u8],
        file: &str,
        flavor: Flavor,
        from: u64,
        gtid: Option<&str>,
        cut: usize,
        garbage: &[u8],
    ) -> Tail {
        let mut tail = data[from as usize..cut].to_vec();
        tail.extend_from_slice(garbage);
        let gtid = gtid.map(|g| StartGtid::parse(flavor, g).expect("gtid"));
        let start = TailStart {
            name: name(file),
            whole_file: from == 4,
            offset: from,
            pos: from,
            gtid: GtidTracker::new(flavor, gtid.as_ref()),
        };
        scan(first_event(data), &tail, start)
    }

    /// For every cut of real files (checksums on and off, MariaDB and MySQL), from every
    /// boundary: the scan keeps exactly up to the last boundary before the cut.
    #[test]
    fn every_cut_keeps_exactly_the_complete_transactions() {
        let files = [
            (maria_checksum_fixture("mysql-bin.000001"), "mysql-bin.000001", Flavor::Mariadb),
            (maria_checksum_fixture("mysql-bin.000002"), "mysql-bin.000002", Flavor::Mariadb),
            (fixture("mariadb-bin.000001"), "mariadb-bin.000001", Flavor::Mariadb),
            (fixture("binlog_transaction_with_GTID.000001"), "binlog.000001", Flavor::Mysql),
        ];
        for (data, file, flavor) in &files {
            let bounds = boundaries(data, *flavor, file);
            let starts: Vec<u64> =
                std::iter::once(4).chain(bounds.iter().filter(|(_, b)| *b).map(|(e, _)| *e)).collect();
            for &from in &starts {
                for cut in from as usize..=data.len() {
                    let got = scan_at(data, file, *flavor, from, None, cut, &[]);
                    let want =
                        bounds.iter().filter(|(e, b)| *b && *e > from && *e <= cut as u64).map(|(e, _)| *e).next_back();
                    assert_eq!(got.len, want.unwrap_or(from), "{file}: from {from}, cut at {cut}: {got:?}");
                    assert_eq!(got.pos, got.len, "a file fetched from 4: positions are offsets");
                    let at_event_end = cut as u64 == from || bounds.iter().any(|(e, _)| *e == cut as u64);
                    assert_eq!(got.stopped.is_some(), !at_event_end, "{file}: cut {cut}: {got:?}");
                }
            }
        }
    }

    /// What a crash can leave of a file written with O_DIRECT (`writer.direct_io`): the bytes
    /// of the last flush, whatever they end with, then zeros up to the next 4 KiB boundary. For
    /// every such end, the scan keeps exactly the complete transactions before it.
    #[test]
    fn zero_padding_to_the_next_block_after_any_cut_keeps_exactly_the_complete_transactions() {
        for (data, file, flavor) in [
            (maria_checksum_fixture("mysql-bin.000002"), "mysql-bin.000002", Flavor::Mariadb),
            (fixture("mariadb-bin.000001"), "mariadb-bin.000001", Flavor::Mariadb),
            (fixture("binlog_transaction_with_GTID.000001"), "binlog.000001", Flavor::Mysql),
        ] {
            let bounds = boundaries(&data, flavor, file);
            let from = bounds.iter().find(|(_, b)| *b).map(|(e, _)| *e).expect("a boundary");
            for cut in from as usize..=data.len() {
                let padding = vec![0u8; cut.div_ceil(4096) * 4096 - cut];
                let got = scan_at(&data, file, flavor, from, None, cut, &padding);
                let want =
                    bounds.iter().filter(|(e, b)| *b && *e > from && *e <= cut as u64).map(|(e, _)| *e).next_back();
                assert_eq!(got.len, want.unwrap_or(from), "{file}: cut at {cut}, {} zeros: {got:?}", padding.len());
                if !padding.is_empty() {
                    assert!(got.stopped.is_some(), "{file}: cut at {cut}: the padding is no event: {got:?}");
                }
            }
        }
    }

    #[test]
    fn garbage_a_bad_crc_or_a_broken_position_chain_ends_the_tail() {
        let data = maria_checksum_fixture("mysql-bin.000002");
        let file = "mysql-bin.000002";
        let bounds: Vec<u64> =
            boundaries(&data, Flavor::Mariadb, file).into_iter().filter(|(_, b)| *b).map(|(e, _)| e).collect();
        let (a, b) = (bounds[bounds.len() - 3], bounds[bounds.len() - 2]);
        struct Row {
            what: &'static str,
            bytes: Vec<u8>,
            want: u64,
        }
        let mut flipped = data.clone();
        flipped[b as usize - 6] ^= 0x40; // inside the last event of the transaction ending at b
        let mut chained = data.clone();
        let lp = b as usize + crate::binlog::event::LOG_POS_OFFSET;
        chained[lp..lp + 4].copy_from_slice(&1u32.to_le_bytes());
        let mut zeros = data[..b as usize].to_vec();
        zeros.extend_from_slice(&[0u8; 4096]);
        let rows = vec![
            Row { what: "the whole file", bytes: data.clone(), want: data.len() as u64 },
            Row { what: "a CRC mismatch in the second transaction", bytes: flipped, want: a },
            Row { what: "an event whose log_pos breaks the chain", bytes: chained, want: b },
            Row { what: "zeros after a transaction (a crash's unwritten blocks)", bytes: zeros, want: b },
        ];
        for row in rows {
            let got = scan_at(&row.bytes, file, Flavor::Mariadb, a, None, row.bytes.len(), &[]);
            assert_eq!(got.len, row.want, "{}: {got:?}", row.what);
            assert_eq!(got.stopped.is_some(), row.want != row.bytes.len() as u64, "{}: {got:?}", row.what);
        }
    }

    #[test]
    fn the_gtid_state_follows_the_kept_transactions() {
        let data = fixture("mariadb-bin.000001");
        let file = "mariadb-bin.000001";
        let from = 4;
        let got = scan_at(&data, file, Flavor::Mariadb, from, Some("0-1-0"), data.len(), &[]);
        let mut t = StreamTracker::new(
            LocalFiles::default(),
            GtidTracker::new(Flavor::Mariadb, Some(&StartGtid::parse(Flavor::Mariadb, "0-1-0").unwrap())),
            false,
        )
        .reading_file_from_start(name(file));
        for (_, ev) in FileEvents::new(&data).unwrap() {
            t.on_event(Bytes::copy_from_slice(ev), &mut Vec::new()).unwrap();
        }
        assert_eq!(got.gtid, t.gtid().snapshot(), "the state the stream reached at the file's end");
        assert!(got.boundaries > 1, "{got:?}");
        let mysql = fixture("binlog_transaction_with_GTID.000001");
        let got = scan_at(&mysql, "binlog.000001", Flavor::Mysql, 4, None, mysql.len(), &[]);
        assert!(
            got.gtid.as_deref().is_some_and(|g| g.contains(':')),
            "MySQL: from the previous-GTIDs event on: {got:?}"
        );
    }

    #[test]
    fn an_unreadable_format_description_keeps_nothing() {
        let data = maria_checksum_fixture("mysql-bin.000002");
        let tail = &data[200..];
        let start = TailStart {
            name: name("mysql-bin.000002"),
            whole_file: false,
            offset: 200,
            pos: 200,
            gtid: GtidTracker::new(Flavor::Mariadb, None),
        };
        let got = scan(&[1, 2, 3], tail, start);
        assert_eq!((got.len, got.boundaries), (200, 0));
        assert!(got.stopped.is_some_and(|s| s.contains("format description")));
    }
}
