//! `import` against a real SQLite catalog and data directory, on real files: MariaDB 10.11's
//! (this repository's fixtures) and MySQL 8.0 / 9.6's (the shared fixtures), then the point-in-
//! time planner over what was imported.

use std::io::BufReader;

use super::*;
use crate::binlog::Flavor;
use crate::binlog::summary::{TxnStart, transaction_starts};
use crate::binlog::{fixture_dir, maria_checksum_fixture};
use crate::domain::{RawTaskSpec, TaskSpec};
use crate::meta::MetaDsn;
use crate::pitr::plan::{Request, Start, Stop, plan};
use crate::pitr::{CatalogFile, Location, TxnReader, load_catalog};

struct Env {
    _dir: tempfile::TempDir,
    data: PathBuf,
    store: Store,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let store = Store::open(&MetaDsn::Sqlite(data.join("meta.db")), 2, crate::clock::system()).unwrap();
    Env { _dir: dir, data, store }
}

fn spec(flavor: &str, mode: &str) -> TaskSpec {
    RawTaskSpec {
        flavor: Some(flavor.into()),
        start_mode: Some(mode.into()),
        ..crate::domain::test_raw_spec("imported", &format!("{flavor}-{mode}"))
    }
    .validate()
    .unwrap()
}

fn offer(dir: &Path, name: &str) -> Offer {
    let path = dir.join(name);
    Offer { name: BinlogFileName::parse(name).unwrap(), file: File::open(&path).unwrap(), shown: name.into() }
}

fn offer_bytes(work: &Path, name: &str, bytes: &[u8]) -> Offer {
    fs::write(work.join(name), bytes).unwrap();
    offer(work, name)
}

struct Reader;
impl TxnReader for Reader {
    fn starts(&self, f: &CatalogFile) -> io::Result<Vec<TxnStart>> {
        let Some(Location::Local { path }) = &f.location else { return Err(io::Error::other("not local")) };
        transaction_starts(BufReader::new(File::open(path)?), f.record.local_offset(f.held_end())).map(|(s, _)| s)
    }
}

#[test]
fn mariadb_files_are_placed_whole_and_catalogued_with_the_checkpoint_after_them() {
    let e = env();
    let task = e.store.create_task(&spec("mariadb", "LATEST")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let names = ["mysql-bin.000001", "mysql-bin.000002", "mysql-bin.000003"];
    let offers = names.iter().map(|n| offer_bytes(work.path(), n, &maria_checksum_fixture(n))).collect();
    let report = import(&e.store, &e.data, task.id, offers).unwrap();
    assert_eq!(report.source_identity, "mariadb-1-0");
    let rows = e.store.list_files(task.id).unwrap();
    assert_eq!(rows.iter().map(|r| r.file_name.as_str()).collect::<Vec<_>>(), names);
    for r in &rows {
        let ours = fs::read(r.local_path(&e.data)).unwrap();
        assert_eq!(ours, maria_checksum_fixture(r.file_name.as_str()), "{} is the source's file", r.file_name);
        assert_eq!(r.size, ours.len() as u64);
        assert!(r.summary.gtid_end.is_some() && r.summary.first_event_at.is_some(), "{r:?}");
    }
    // Two files closed by a rotate are sealed (hashed, so the upload worker takes them); the
    // last one, closed by a STOP, is left open for the task to continue.
    assert_eq!(
        rows.iter().map(|r| r.state).collect::<Vec<_>>(),
        [FileState::Sealed, FileState::Sealed, FileState::Open]
    );
    assert!(rows[..2].iter().all(|r| r.sha256.is_some()));
    let (cp, _) = e.store.get_checkpoint(task.id).unwrap().unwrap();
    assert_eq!(
        (cp.file.as_str(), cp.pos, cp.gtid_set),
        ("mysql-bin.000003", rows[2].size, rows[2].summary.gtid_end.clone())
    );
    assert!(!DataLayout::new(&e.data).import_staging(task.id).exists());

    // The same files again overlap; nothing changes.
    let again = vec![offer(work.path(), "mysql-bin.000003")];
    assert!(matches!(
        import(&e.store, &e.data, task.id, again),
        Err(ImportError::Lineage(Refusal::AlreadyHeld { .. }))
    ));
    assert_eq!(e.store.list_files(task.id).unwrap().len(), 3);
}

#[test]
fn a_refused_file_leaves_neither_a_file_nor_a_row() {
    let e = env();
    let task = e.store.create_task(&spec("mariadb", "ARCHIVE_ONLY")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut bad = maria_checksum_fixture("mysql-bin.000002");
    let n = bad.len();
    bad[n - 30] ^= 0x40;
    let offers = vec![
        offer_bytes(work.path(), "mysql-bin.000001", &maria_checksum_fixture("mysql-bin.000001")),
        offer_bytes(work.path(), "mysql-bin.000002", &bad),
    ];
    match import(&e.store, &e.data, task.id, offers) {
        Err(ImportError::Refused { file, error }) => {
            assert_eq!(file, "mysql-bin.000002");
            assert!(error.offset > 4 && error.reason.contains("CRC32"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.store.list_files(task.id).unwrap().is_empty());
    assert!(e.store.get_checkpoint(task.id).unwrap().is_none());
    assert!(!DataLayout::new(&e.data).task_dir(task.id).exists(), "no task folder");
    assert!(!DataLayout::new(&e.data).import_staging(task.id).exists());
    // A running task is not imported into (an archive-only one never runs: checked by state).
    let live = e.store.create_task(&spec("mariadb", "LATEST")).unwrap();
    let _ = e.store.transition(
        live.id,
        crate::meta::Transition::to(crate::domain::TaskState::Starting, crate::domain::Mover::Operator),
    );
    let offers = vec![offer_bytes(work.path(), "mysql-bin.000001", &maria_checksum_fixture("mysql-bin.000001"))];
    assert!(matches!(import(&e.store, &e.data, live.id, offers), Err(ImportError::Active(_))));
}

/// The planner over imported MySQL files: by GTID (tagged ones included) and by time, the plan's
/// offsets are the transaction starts of the files as the fixtures hold them.
#[test]
fn replay_plans_start_and_stop_inside_imported_mysql_files() {
    let mut by_time = 0;
    for file in [
        "mysql-enum-string-set.000001",
        "binlog_transaction_with_GTID_TAG.000001",
        "binlog_transaction_with_GTID.000001",
    ] {
        let e = env();
        let task = e.store.create_task(&spec("mysql", "ARCHIVE_ONLY")).unwrap();
        let report = import(&e.store, &e.data, task.id, vec![offer(&fixture_dir(), file)]).unwrap();
        let catalog = load_catalog(&e.store, &e.data, task.id).unwrap();
        assert_eq!(catalog.len(), 1);
        let rec = &catalog[0].record;
        assert_eq!(rec.state, FileState::Sealed, "an archive-only task seals every file");
        let data = fs::read(fixture_dir().join(file)).unwrap();
        let (starts, _) = transaction_starts(&data[..], data.len() as u64).unwrap();
        assert!(!starts.is_empty(), "{file}");
        let last = starts.last().unwrap();
        let gtid = last.gtid.as_ref().unwrap().to_string();
        assert!(report.source_identity.len() == 36, "a server uuid: {}", report.source_identity);

        // Everything before the last transaction, by GTID, after a snapshot taken where the file
        // begins (its PREVIOUS_GTIDS).
        let snapshot = rec.summary.gtid_start.clone().unwrap_or_default();
        let p = plan(
            Flavor::Mysql,
            &catalog,
            &Request {
                start: Start::GtidSet(snapshot.clone()),
                stop: Stop::Gtid(gtid.clone()),
                start_source: None,
                stop_source: None,
            },
            &Reader,
        )
        .unwrap_or_else(|e| panic!("{file}: {e:?}"));
        assert_eq!(p.stop_position, Some(last.offset), "{file}: stop before {gtid}");
        assert!(p.command.contains(&format!("--stop-position={}", last.offset)), "{}", p.command);
        assert!(p.command.starts_with("TZ=UTC mysqlbinlog") || p.command.starts_with("mysqlbinlog"), "{}", p.command);

        // From a time after the first event on, when the file spans more than a second.
        let (first_t, last_t) = (rec.summary.first_event_at.unwrap(), rec.summary.last_event_at.unwrap());
        if last_t > first_t {
            let t = chrono::DateTime::from_timestamp(i64::from(first_t) + 1, 0).unwrap();
            let p = plan(
                Flavor::Mysql,
                &catalog,
                &Request { start: Start::Datetime(t), stop: Stop::Gtid(gtid), start_source: None, stop_source: None },
                &Reader,
            )
            .unwrap_or_else(|e| panic!("{file} by time: {e:?}"));
            assert_eq!((p.start_datetime, p.stop_position), (Some(t), Some(last.offset)), "{file}");
            assert!(p.command.contains("--start-datetime="), "{}", p.command);
            by_time += 1;
        }
    }
    assert!(by_time > 0, "one of the files spans more than a second");
}

#[test]
fn an_interrupted_imports_uncatalogued_copies_are_its_leftovers_only_while_its_staging_exists() {
    let e = env();
    let task = e.store.create_task(&spec("mariadb", "ARCHIVE_ONLY")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let first = vec![offer_bytes(work.path(), "mysql-bin.000001", &maria_checksum_fixture("mysql-bin.000001"))];
    import(&e.store, &e.data, task.id, first).unwrap();
    let rows = e.store.list_files(task.id).unwrap();
    let disk = |d: &str, n: &str| (d.to_string(), n.to_string());
    let on_disk = [disk("mariadb-1-0", "mysql-bin.000001"), disk("mariadb-1-0", "mysql-bin.000002"), disk("x", "y")];
    // (staging folder exists, what is left over)
    let table: [(bool, Vec<&(String, String)>); 2] = [(true, vec![&on_disk[1], &on_disk[2]]), (false, vec![])];
    for (staging, want) in table {
        assert_eq!(leftovers(staging, &rows, &on_disk), want, "staging={staging}");
    }

    // A killed import: its staging folder and the second file renamed in without its row.
    let folder = e.data.join(task.id.to_string()).join("mariadb-1-0");
    fs::write(folder.join("mysql-bin.000002"), maria_checksum_fixture("mysql-bin.000002")).unwrap();
    fs::create_dir_all(DataLayout::new(&e.data).import_staging(task.id)).unwrap();
    // Another import holds the task: this one is refused, nothing touched.
    let held = try_lock(&e.data, task.id).unwrap().expect("free");
    let again = vec![offer_bytes(work.path(), "mysql-bin.000002", &maria_checksum_fixture("mysql-bin.000002"))];
    assert!(matches!(import(&e.store, &e.data, task.id, again), Err(ImportError::Busy(_))));
    assert!(try_lock(&e.data, task.id).unwrap().is_none(), "one holder at a time");
    assert!(folder.join("mysql-bin.000002").exists());
    drop(held);
    let removed = recover_interrupted(&e.store, &e.data, task.id).unwrap();
    assert_eq!(removed, vec!["mariadb-1-0/mysql-bin.000002".to_string()]);
    assert!(!folder.join("mysql-bin.000002").exists() && folder.join("mysql-bin.000001").exists());
    assert!(!DataLayout::new(&e.data).import_staging(task.id).exists());
    assert!(recover_interrupted(&e.store, &e.data, task.id).unwrap().is_empty(), "nothing left to undo");
}
