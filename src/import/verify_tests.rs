use super::*;
use crate::binlog::event::FileEvents;
use crate::binlog::summary::summarize;
use crate::binlog::{fixture, maria_checksum_fixture};

fn name(n: &str) -> BinlogFileName {
    BinlogFileName::parse(n).unwrap()
}

fn check(n: &str, data: &[u8]) -> Result<Verified, VerifyError> {
    verify(name(n), data).expect("reading memory cannot fail")
}

/// The offsets where each whole event ends.
fn event_ends(data: &[u8]) -> Vec<u64> {
    FileEvents::new(data).unwrap().map(|(at, ev)| (at + ev.len()) as u64).collect()
}

/// Real files of real servers, whole: accepted, kept whole, of the flavor their FDE names, with
/// the summary `summarize` rebuilds from the same bytes (one parser, two ways in).
#[test]
fn real_files_pass_whole_with_the_catalog_summary() {
    // (file, flavor, events carry a CRC32, how it ends): as `inspect_binlog.py` reports them
    // (checksum_alg, the last event's type).
    let table: &[(&str, Flavor, bool, &str)] = &[
        ("mariadb-bin.000001", Flavor::Mariadb, true, "open"),
        ("binlog_transaction_with_GTID.000001", Flavor::Mysql, true, "stop"),
        ("binlog_transaction_with_GTID_TAG.000001", Flavor::Mysql, true, "rotate"),
        ("transaction_compression.000001", Flavor::Mysql, true, "rotate"),
        ("json.binlog.000001", Flavor::Mysql, true, "open"),
        ("bug27213339-bin.000001", Flavor::Mysql, true, "stop"),
        ("binlog_transaction.000001", Flavor::Mysql, false, "rotate"),
        ("vector.binlog", Flavor::Mysql, true, "stop"),
        ("mysql-enum-string-set.000001", Flavor::Mysql, true, "open"),
    ];
    for &(file, flavor, crc, ending) in table {
        let data = fixture(file);
        let v = check("bin.000001", &data).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(v.flavor, flavor, "{file}");
        assert_eq!(v.has_crc, crc, "{file}");
        let found = match v.ending {
            Ending::Rotate { .. } => "rotate",
            Ending::Stop => "stop",
            Ending::Open => "open",
        };
        assert_eq!(found, ending, "{file}");
        assert_eq!((v.end, v.len, v.truncated.as_deref()), (data.len() as u64, data.len() as u64, None), "{file}");
        let rebuilt = summarize(&data[..], 4, 4, data.len() as u64, None).unwrap();
        assert_eq!(v.summary, rebuilt, "{file}");
    }
}

/// MariaDB 10.11 files (NONE, CRC32, NONE ending with STOP) name their server and domain.
#[test]
fn mariadb_files_name_their_server_and_domain() {
    for (file, crc) in [("mysql-bin.000001", false), ("mysql-bin.000002", true), ("mysql-bin.000003", false)] {
        let data = maria_checksum_fixture(file);
        let v = check(file, &data).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!((v.flavor, v.has_crc, v.server_id, v.own_domain), (Flavor::Mariadb, crc, 1, Some(0)), "{file}");
        assert_eq!(v.end, data.len() as u64, "{file}");
        assert!(v.summary.gtid_end.is_some() && v.summary.last_gtid.is_some(), "{file}");
    }
    // The first two files were closed by a rotate; the third by a clean shutdown.
    assert!(matches!(check("x.1", &maria_checksum_fixture("mysql-bin.000001")).unwrap().ending, Ending::Rotate { .. }));
    assert_eq!(check("x.3", &maria_checksum_fixture("mysql-bin.000003")).unwrap().ending, Ending::Stop);
}

/// One flipped byte anywhere in a checksummed file is refused, with the offset of the event
/// it is in, or (a size field now pointing past the end) reads as a torn tail that is left out.
#[test]
fn every_flipped_byte_of_a_checksummed_file_is_caught() {
    for file in ["binlog_transaction_with_GTID_TAG.000001", "mariadb-bin.000001"] {
        let data = fixture(file);
        let ends = event_ends(&data);
        for at in 0..data.len() {
            let mut bad = data.clone();
            bad[at] ^= 0x20;
            match check("bin.000001", &bad) {
                Err(e) => {
                    // The offset named is the start of the event holding the byte (or 0/4).
                    let start = std::iter::once(4).chain(ends.iter().copied()).rfind(|&s| s as usize <= at);
                    assert!(
                        e.offset == 0 || Some(e.offset) == start || e.offset <= at as u64,
                        "{file} byte {at}: offset {}",
                        e.offset
                    );
                }
                Ok(v) => {
                    assert!(v.truncated.is_some() && v.end <= at as u64, "{file}: flipped byte {at} accepted: {v:?}")
                }
            }
        }
    }
}

/// A copy cut anywhere keeps exactly its complete transactions, and says what it left out.
#[test]
fn a_truncated_copy_keeps_its_last_complete_transaction() {
    for file in ["mariadb-bin.000001", "json.binlog.000001", "bug27213339-bin.000001"] {
        let data = fixture(file);
        let whole = check("bin.000001", &data).unwrap();
        let mut ends_seen = Vec::new();
        // From the end of the format description on (a cut inside it leaves no file at all).
        let fde_end = event_ends(&data)[0] as usize;
        assert!(check("bin.000001", &data[..fde_end - 1]).is_err(), "{file}");
        for cut in fde_end..data.len() {
            let v = check("bin.000001", &data[..cut]).unwrap_or_else(|e| panic!("{file} cut at {cut}: {e}"));
            assert!(v.end <= cut as u64 && v.len == cut as u64, "{file} cut {cut}");
            assert_eq!(v.truncated.is_some(), v.end != cut as u64, "{file} cut {cut}");
            // What is kept is itself a whole file, with the same facts.
            let again = check("bin.000001", &data[..v.end as usize]).unwrap();
            assert_eq!((again.end, again.truncated, &again.summary), (v.end, None, &v.summary), "{file} cut {cut}");
            ends_seen.push(v.end);
        }
        // Cuts inside a transaction fall back to its start: fewer kept ends than cuts.
        ends_seen.dedup();
        assert!(ends_seen.len() < data.len() - fde_end, "{file}");
        assert!(ends_seen.iter().all(|&e| e <= whole.end), "{file}");
    }
}

/// A missing or repeated event breaks the log_pos chain; events after the ROTATE, a second
/// format description (a relay log), or no magic are refused.
#[test]
fn a_broken_chain_or_a_foreign_layout_is_refused() {
    let data = fixture("bug27213339-bin.000001");
    let events: Vec<(usize, Vec<u8>)> = FileEvents::new(&data).unwrap().map(|(at, e)| (at, e.to_vec())).collect();
    let join = |skip: Option<usize>, twice: Option<usize>| {
        let mut out = event::MAGIC.to_vec();
        for (i, (_, e)) in events.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            out.extend_from_slice(e);
            if Some(i) == twice {
                out.extend_from_slice(e);
            }
        }
        out
    };
    let e = check("bin.000001", &join(Some(10), None)).unwrap_err();
    assert_eq!(e.offset, events[11].0 as u64 - events[10].1.len() as u64);
    assert!(e.reason.contains("log_pos"), "{e}");
    let e = check("bin.000001", &join(None, Some(10))).unwrap_err();
    assert_eq!(e.offset, (events[11].0) as u64);

    // After a ROTATE nothing may follow.
    let mut rotated = fixture("binlog_transaction.000001");
    let (_, first) = FileEvents::new(&data).unwrap().nth(1).unwrap();
    let at = rotated.len() as u64;
    rotated.extend_from_slice(first);
    assert_eq!(check("bin.000001", &rotated).unwrap_err().offset, at);

    // A relay log holds a second format description.
    assert!(check("relay.000001", &fixture("bug33029-slave-relay-bin.000001")).is_err());
    assert_eq!(check("x.1", b"not a binlog").unwrap_err().offset, 0);
    assert_eq!(check("x.1", b"").unwrap_err().offset, 0);
    assert!(check("x.1", &fixture("binlog_truncated_event.000001")).is_err());
}
