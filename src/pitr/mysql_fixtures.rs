//! The window and the planner across MySQL-flavor switchovers, on real MySQL binlog files
//! (`../shared/fixtures/mysql-binlogs`): GTID sets with server UUIDs, PREVIOUS_GTIDS as the
//! state a file begins with, real transaction offsets. Only MariaDB can run here, so a MySQL
//! failover end to end waits for the relay; these tests take the catalog a MySQL switchover
//! leaves and check what the window says and which commands the plan runs.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;

use chrono::Utc;

use crate::binlog::fixture_dir;
use crate::binlog::gtid::GtidSet;
use crate::binlog::name::BinlogFileName;
use crate::binlog::summary::{self, Gtid, TxnStart};
use crate::domain::Flavor;
use crate::meta::{FileRecord, FileState};
use crate::pitr::plan::{Request, Start, Stop, plan};
use crate::pitr::window::{BreakReason, window};
use crate::pitr::{CatalogFile, Location, TxnReader};

const RESERVED: &str = "binlog_56_gtid_reserved_word.000001"; // 11111111-...:1-6, PREVIOUS_GTIDS empty
const U: &str = "11111111-1111-1111-1111-111111111111";

/// Reads transaction starts from the fixture file a catalog row points at.
struct FixtureReader;
impl TxnReader for FixtureReader {
    fn starts(&self, f: &CatalogFile) -> io::Result<Vec<TxnStart>> {
        let Some(Location::Local { path }) = &f.location else { return Err(io::Error::other("not local")) };
        let limit = f.record.local_offset(f.held_end());
        summary::transaction_starts(BufReader::new(File::open(path)?), limit).map(|(s, _)| s)
    }
}

fn path(name: &str) -> PathBuf {
    fixture_dir().join(name)
}

fn starts(name: &str) -> Vec<TxnStart> {
    let data = std::fs::read(path(name)).unwrap();
    summary::transaction_starts(&data[..], data.len() as u64).unwrap().0
}

/// A sealed catalog row of source `identity` for fixture `name`, held up to local offset
/// `limit` (a transaction boundary), its summary read from the bytes as the catalog would.
fn held(identity: &str, name: &str, limit: Option<u64>) -> CatalogFile {
    let data = std::fs::read(path(name)).unwrap();
    let limit = limit.unwrap_or(data.len() as u64);
    let summary = summary::summarize(&data[..], 4, 4, limit, None).unwrap();
    CatalogFile {
        location: Some(Location::Local { path: path(name) }),
        record: FileRecord {
            task_id: 1,
            source_identity: identity.into(),
            file_name: BinlogFileName::parse(name).unwrap(),
            state: FileState::Sealed,
            start_pos: 4,
            header_len: 4,
            end_pos: Some(limit),
            size: limit,
            sha256: None,
            created_at: Utc::now(),
            sealed_at: None,
            upload: Default::default(),
            summary,
        },
    }
}

fn req(start: Start, stop: Stop) -> Request {
    Request { start, stop, start_source: None, stop_source: None }
}

#[test]
fn a_new_primary_repeating_the_old_ones_transactions_is_joined_at_its_first_new_one() {
    // The old primary's file as held when the task switched: its first four transactions. The
    // new primary (log_replica_updates) has the same transactions in its own binlog, and more.
    let tx = starts(RESERVED);
    assert_eq!(tx.len(), 6);
    let old = held("old-primary", RESERVED, Some(tx[4].offset));
    let new = held("new-primary", RESERVED, None);
    assert_eq!(old.record.summary.gtid_end.as_deref(), Some(format!("{U}:1-4").as_str()));
    assert_eq!(new.record.summary.gtid_start.as_deref(), Some(""), "PREVIOUS_GTIDS of the new primary's file");
    let catalog = vec![old, new];

    let w = window(Flavor::Mysql, &catalog, &FixtureReader);
    assert!(w.continuous, "{w:?}");
    assert_eq!(w.switchovers.len(), 1);
    assert!(w.switchovers[0].repeats, "the new primary's file begins with 1-4 again");
    assert_eq!(w.gtid_set.as_deref(), Some(format!("{U}:1-6").as_str()));

    // From a snapshot at 1-2 to just before 6: 3-4 from the old files, 5 from the new ones.
    let p = plan(
        Flavor::Mysql,
        &catalog,
        &req(Start::GtidSet(format!("{U}:1-2")), Stop::Gtid(format!("{U}:6"))),
        &FixtureReader,
    )
    .unwrap();
    let segs: Vec<(&str, Option<u64>, Option<u64>)> =
        p.segments.iter().map(|s| (s.source_identity.as_str(), s.start_position, s.stop_position)).collect();
    assert_eq!(
        segs,
        [("old-primary", Some(tx[2].offset), None), ("new-primary", Some(tx[4].offset), Some(tx[5].offset))]
    );
    let f = path(RESERVED).display().to_string();
    assert_eq!(
        p.command,
        format!(
            "{{ mysqlbinlog --start-position={} {f} && mysqlbinlog --start-position={} --stop-position={} {f}; }}",
            tx[2].offset, tx[4].offset, tx[5].offset
        )
    );
    assert!(p.segments.iter().all(|s| s.exclude_gtids.is_none()));
}

#[test]
fn transactions_the_new_primary_lacks_are_a_break_named_by_uuid() {
    // The old primary wrote 7f6766f1-...:1 and aaaaaaaa-...:1; the new primary's binlog (empty
    // PREVIOUS_GTIDS) has aaaaaaaa-...:2 and ef5292c1-...:1 only: both of the old ones are lost.
    let catalog = vec![
        held("old-primary", "rpl_atomic_ddl_rollback_table.000001", None),
        held("new-primary", "rpl_atomic_ddl_rollback_view.000001", None),
    ];
    let lost = "7f6766f1-daa1-11e7-86f3-340286faf52d:1,aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa:1";
    let w = window(Flavor::Mysql, &catalog, &FixtureReader);
    assert!(!w.continuous && w.switchovers.is_empty(), "{w:?}");
    assert_eq!(w.breaks[0].reason, BreakReason::SourceSwitchover);
    assert_eq!(w.breaks[0].missing_gtids.as_deref(), Some(lost));
    assert!(w.breaks[0].detail.contains(&format!("the new source lacks {lost}")), "{:?}", w.breaks[0]);

    let e = plan(
        Flavor::Mysql,
        &catalog,
        &req(Start::GtidSet(String::new()), Stop::Gtid("ef5292c1-daa1-11e7-9082-340286faf52d:1".into())),
        &FixtureReader,
    )
    .unwrap_err()
    .0;
    assert!(e.contains("SourceSwitchover") && e.contains(&format!("(missing: {lost})")), "{e}");
}

#[test]
fn a_new_primary_with_history_the_archive_never_held_is_a_break() {
    // The new primary's file begins (PREVIOUS_GTIDS) with 55778904-...:1-13:mytag:1-2: none of
    // that is in the old primary's files (006c2cf2-...:1-3), and the new one lacks those.
    let catalog = vec![
        held("old-primary", "binlog_transaction_with_GTID.000001", None),
        held("new-primary", "binlog_transaction_with_GTID_TAG.000001", None),
    ];
    let w = window(Flavor::Mysql, &catalog, &FixtureReader);
    let b = &w.breaks[0];
    assert_eq!(b.reason, BreakReason::SourceSwitchover);
    let missing = GtidSet::parse(b.missing_gtids.as_deref().unwrap()).unwrap();
    let want =
        GtidSet::parse("006c2cf2-b1ea-11e4-9057-8c705a3d3e78:1-3,55778904-0299-11f1-b1b8-4ef0c4956feb:1-13:mytag:1-2")
            .unwrap();
    assert_eq!(missing, want);
    assert!(b.detail.contains("the archive lacks 55778904-0299-11f1-b1b8-4ef0c4956feb:1-13:mytag:1-2"), "{b:?}");
}

/// MySQL GTID sets are sets: a new primary may log a copy of an applied transaction after one
/// of its own (parallel appliers). The segment starts at its first new transaction and leaves
/// the later copies out with `--exclude-gtids`.
#[test]
fn later_copies_are_left_out_with_exclude_gtids() {
    struct Order(Vec<(u64, Gtid)>);
    impl TxnReader for Order {
        fn starts(&self, f: &CatalogFile) -> io::Result<Vec<TxnStart>> {
            if f.record.source_identity == "old-primary" {
                return FixtureReader.starts(f);
            }
            Ok(self
                .0
                .iter()
                .map(|(offset, g)| TxnStart { offset: *offset, timestamp: 0, gtid: Some(g.clone()) })
                .collect())
        }
    }
    let tx = starts(RESERVED);
    let catalog = vec![held("old-primary", RESERVED, Some(tx[4].offset)), held("new-primary", RESERVED, None)];
    let g = |n: u64| Gtid::parse(Flavor::Mysql, &format!("{U}:{n}")).unwrap();
    // The new primary's file, as its (made-up) order: 1, 2, 3, 5, 4, 6.
    let reader = Order(vec![(100, g(1)), (200, g(2)), (300, g(3)), (400, g(5)), (500, g(4)), (600, g(6))]);
    let p =
        plan(Flavor::Mysql, &catalog, &req(Start::GtidSet(format!("{U}:1-2")), Stop::Gtid(format!("{U}:6"))), &reader)
            .unwrap();
    let new = &p.segments[1];
    assert_eq!((new.start_position, new.stop_position), (Some(400), Some(600)));
    assert_eq!(new.exclude_gtids.as_deref(), Some(format!("{U}:4").as_str()));
    assert!(new.command.contains(&format!("--exclude-gtids={U}:4 ")), "{}", new.command);
}
