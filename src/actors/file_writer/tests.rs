use super::*;
use crate::domain::TaskErrorCode;
use crate::meta::UploadInfo;
use crate::retry::FailureClass;

fn record(name: &str, size: u64, sealed: bool, upload: UploadInfo) -> FileRecord {
    FileRecord {
        task_id: 1,
        source_identity: "srv-1".into(),
        file_name: BinlogFileName::parse(name).expect("name"),
        state: if sealed { FileState::Sealed } else { FileState::Open },
        start_pos: 4,
        header_len: 4,
        end_pos: sealed.then_some(size),
        size,
        sha256: None,
        created_at: chrono::Utc::now(),
        sealed_at: None,
        upload,
        summary: Default::default(),
    }
}

/// A writer for `task`, prepared for source "srv-1" (MariaDB, no GTID mode) on an empty data dir.
fn prepared(task: TaskId, data_dir: &Path, store: Store, report: Recipient<WriterEvent>, interval: Duration) -> Writer {
    let log = Logger::root(slog::Discard, slog::o!());
    let mut writer = Writer::new(task, data_dir, store, log, report, interval);
    writer
        .prepare(Prepare { identity: SourceIdentity::from_stored("srv-1"), gtid_mode: false, flavor: Flavor::Mariadb })
        .unwrap();
    writer
}

/// A SQLite metadata store in `dir` holding one task named `name`.
fn store_with_task(dir: &Path, name: &str) -> (Store, crate::domain::Task) {
    let dsn = crate::meta::MetaDsn::Sqlite(dir.join("meta.db"));
    let store = Store::open(&dsn, 2, crate::clock::system()).unwrap();
    let task = store.create_task(&crate::domain::test_spec(name, name)).unwrap();
    (store, task)
}

/// Takes the writer's reports and drops them (the tests here look at the disk and the store).
struct Probe;

impl Actor for Probe {
    type Context = Context<Self>;
}

impl Handler<WriterEvent> for Probe {
    type Result = ();

    fn handle(&mut self, _: WriterEvent, _: &mut Context<Self>) {}
}

#[test]
fn a_checkpoint_inside_a_sealed_file_is_refused_and_the_file_is_left_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let (store, task) = store_with_task(tmp.path(), "sealed");
    let sealed = FileRecord { task_id: task.id.0, ..record("bin.000001", 1000, true, UploadInfo::default()) };
    store.insert_file(&sealed).unwrap();
    // A damaged catalog: the checkpoint points into the middle of a sealed file.
    let cp = Checkpoint {
        source_identity: "srv-1".into(),
        file: BinlogFileName::parse("bin.000001").unwrap(),
        pos: 500,
        gtid_set: None,
    };
    store.save_checkpoint(task.id, &cp).unwrap();
    let dir = data_dir.join(task.id.0.to_string()).join("srv-1");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("bin.000001"), vec![7u8; 1000]).unwrap();

    actix::System::new().block_on(async {
        let log = Logger::root(slog::Discard, slog::o!());
        let report = Probe.start().recipient();
        let mut writer = Writer::new(task.id, &data_dir, store, log, report, Duration::from_secs(1));
        let err = writer
            .prepare(Prepare {
                identity: SourceIdentity::from_stored("srv-1"),
                gtid_mode: false,
                flavor: Flavor::Mariadb,
            })
            .expect_err("a checkpoint inside a sealed file is refused");
        assert!(err.to_string().contains("is sealed at"), "{err}");
        assert_eq!(err.classify(), FailureClass::permanent(TaskErrorCode::LocalStorageError), "the task fails, loudly");
    });
    assert_eq!(fs::metadata(dir.join("bin.000001")).unwrap().len(), 1000, "the sealed file is left whole");
}

/// Batches as the pump cuts them from the fixture `mariadb-bin.000001` (source "srv-1"): the ops
/// of the events up to each transaction boundary, and that boundary as the checkpoint.
fn fixture_batches() -> Vec<WriteBatch> {
    use crate::binlog::stream::{GtidTracker, LocalFiles, StreamTracker};

    let data = crate::binlog::fixture("mariadb-bin.000001");
    let events = crate::binlog::stream::tests::stream_from_start("mariadb-bin.000001", &data);
    let mut tracker = StreamTracker::new(LocalFiles::default(), GtidTracker::new(Flavor::Mariadb, None), true);
    let (mut batches, mut ops, mut seen) = (Vec::new(), Vec::new(), 0);
    for ev in events {
        tracker.on_event(ev, &mut ops).unwrap();
        if tracker.boundary_count() != seen {
            seen = tracker.boundary_count();
            let b = tracker.boundary().expect("a boundary");
            let checkpoint = Checkpoint {
                source_identity: "srv-1".into(),
                file: b.file.clone(),
                pos: b.pos,
                gtid_set: tracker.gtid().snapshot(),
            };
            let ops = std::mem::take(&mut ops);
            batches.push(WriteBatch { ops, checkpoint: Some(checkpoint), received: None, after_durable: None });
        }
    }
    batches
}

/// What a semi-sync ack sent from the writer's thread relies on: `after_durable` runs once, after
/// the batch's bytes are written and fsynced (here: in the file, up to the checkpoint), before
/// the answer; and never for a batch that failed or has no checkpoint.
#[test]
fn after_durable_runs_once_the_checkpoint_is_written_and_never_for_a_failed_batch() {
    use std::sync::{Arc, Mutex};

    let tmp = tempfile::tempdir().unwrap();
    let (store, task) = store_with_task(tmp.path(), "after");
    let mut batches = fixture_batches().into_iter();
    // What each hook saw when it ran: the length of the open file then.
    let ran: Arc<Mutex<Vec<u64>>> = Arc::default();
    let hook = |path: PathBuf| {
        let ran = Arc::clone(&ran);
        Some(AfterDurable::new(move || ran.lock().unwrap().push(fs::metadata(&path).map(|m| m.len()).unwrap_or(0))))
    };

    actix::System::new().block_on(async {
        let data_dir = tmp.path().join("data");
        let mut writer = prepared(task.id, &data_dir, store.clone(), Probe.start().recipient(), Duration::from_secs(1));
        let file = data_dir.join(task.id.0.to_string()).join("srv-1").join("mariadb-bin.000001");
        for _ in 0..2 {
            let mut batch = batches.next().unwrap();
            let cp = batch.checkpoint.clone().unwrap();
            batch.after_durable = hook(file.clone());
            let before = ran.lock().unwrap().len();
            assert_eq!(writer.write_batch(batch).unwrap().as_ref(), Some(&cp));
            let seen = ran.lock().unwrap().clone();
            assert_eq!(seen.len(), before + 1, "ran once, before the answer");
            assert!(seen[before] >= cp.pos, "ran with the file written up to the checkpoint: {seen:?} / {cp:?}");
        }
        // No checkpoint in the batch: nothing became durable that a hook could wait for.
        let mut batch = batches.next().unwrap();
        batch.checkpoint = None;
        batch.after_durable = hook(file.clone());
        writer.write_batch(batch).unwrap();
        assert_eq!(ran.lock().unwrap().len(), 2, "no checkpoint, no run");
        // A failed batch (the writer poisoned by an earlier fsync failure): never run.
        writer.fsync.poisoned = true;
        let mut batch = batches.next().unwrap();
        batch.after_durable = hook(file.clone());
        assert!(matches!(writer.write_batch(batch), Err(WriterError::Poisoned)));
        assert_eq!(ran.lock().unwrap().len(), 2, "a failed batch's hook is dropped unrun");
    });
}

/// A failed fsync is never retried and nothing it covered is trusted afterwards: the batch fails
/// (permanently), the open file is cut back to the durable checkpoint (so that recovery at the
/// next start cannot read back bytes the kernel may have failed to write), later batches are
/// refused, and both a new start of this writer and a fresh one (a restarted task) resume from
/// the stored checkpoint, then write the same bytes again. The fault is a fake (the next data
/// fsync fails with EIO); `fsync::tests` shows a real failing `fdatasync` poisoning alike.
#[test]
fn a_failed_fsync_cuts_back_to_the_checkpoint_and_nothing_past_it_is_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, task) = store_with_task(tmp.path(), "eio");
    let cps: Vec<Checkpoint> = fixture_batches().iter().map(|b| b.checkpoint.clone().unwrap()).collect();
    assert!(cps.len() >= 3, "the fixture has three transactions or more");
    // The n-th batch, anew each time (a batch is consumed by the writer).
    let batch = |n: usize| fixture_batches().into_iter().nth(n).unwrap();
    let prepare =
        || Prepare { identity: SourceIdentity::from_stored("srv-1"), gtid_mode: false, flavor: Flavor::Mariadb };

    actix::System::new().block_on(async {
        let data_dir = tmp.path().join("data");
        let file = data_dir.join(task.id.0.to_string()).join("srv-1").join("mariadb-bin.000001");
        let mut writer = prepared(task.id, &data_dir, store.clone(), Probe.start().recipient(), Duration::from_secs(1));
        // The first checkpoint on a source is stored with its batch.
        assert_eq!(writer.write_batch(batch(0)).unwrap().as_ref(), Some(&cps[0]));
        let len_at_cp0 = fs::metadata(&file).unwrap().len();
        assert_eq!(store.get_checkpoint(task.id).unwrap().map(|(c, _)| c).as_ref(), Some(&cps[0]));

        writer.fsync.fail_next_data = true;
        let err = writer.write_batch(batch(1)).expect_err("the fsync failed");
        assert!(matches!(err, WriterError::Fsync { .. }), "{err:?}");
        assert_eq!(err.classify(), FailureClass::permanent(TaskErrorCode::LocalStorageError), "never retried");
        assert_eq!(fs::metadata(&file).unwrap().len(), len_at_cp0, "cut back to the durable checkpoint");
        assert_eq!(writer.durable.as_ref(), Some(&cps[0]), "the checkpoint did not move");
        assert!(matches!(writer.write_batch(batch(1)), Err(WriterError::Poisoned)), "nothing more is written");

        // A restarted task: a fresh writer's crash recovery finds nothing past the checkpoint.
        let log = Logger::root(slog::Discard, slog::o!());
        let mut fresh =
            Writer::new(task.id, &data_dir, store.clone(), log, Probe.start().recipient(), Duration::from_secs(1));
        assert_eq!(fresh.prepare(prepare()).unwrap().checkpoint.as_ref(), Some(&cps[0]));
        drop(fresh);
        // This writer's own next start reloads the stored checkpoint and writes on from it.
        assert_eq!(writer.prepare(prepare()).unwrap().checkpoint.as_ref(), Some(&cps[0]));
        assert_eq!(writer.write_batch(batch(1)).unwrap().as_ref(), Some(&cps[1]));
        assert_eq!(writer.write_batch(batch(2)).unwrap().as_ref(), Some(&cps[2]));
    });
    let data = crate::binlog::fixture("mariadb-bin.000001");
    let file = tmp.path().join("data").join(task.id.0.to_string()).join("srv-1").join("mariadb-bin.000001");
    let written = fs::read(&file).unwrap();
    assert_eq!(written.len() as u64, cps[2].pos, "written up to the last checkpoint");
    // The source's bytes again, none twice; only the FDE's in-use flag (byte 21, set in the
    // fixture, a source's open file) is never carried by a copy.
    let mut want = data[..written.len()].to_vec();
    want[21] &= !1;
    assert!(written == want, "differ at {:?}", (0..want.len()).filter(|&i| written[i] != want[i]).collect::<Vec<_>>());
}

/// A batch's answer (what a semi-sync ack and the relay wait for) does not wait for the metadata
/// write: only the first checkpoint on a source is stored inline; later ones are stored by the
/// timer's `PersistCheckpoint`, whose failure fails the next batch instead of going unnoticed.
#[test]
fn a_batch_is_answered_before_its_checkpoint_is_stored_and_the_timer_stores_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, task) = store_with_task(tmp.path(), "timer");

    let batches = fixture_batches();
    assert!(batches.len() >= 4, "the fixture has at least four transactions: {}", batches.len());
    let cps: Vec<Checkpoint> = batches.iter().map(|b| b.checkpoint.clone().unwrap()).collect();

    actix::System::new().block_on(async {
        let interval = Duration::from_secs(1);
        let data_dir = tmp.path().join("data");
        let mut writer = prepared(task.id, &data_dir, store.clone(), Probe.start().recipient(), interval);
        let mut batches = batches.into_iter();
        let stored = || store.get_checkpoint(task.id).unwrap().map(|(cp, _)| cp);

        assert!(writer.persist_idle(), "nothing durable yet: the timer has nothing to do");
        assert_eq!(writer.write_batch(batches.next().unwrap()).unwrap().as_ref(), Some(&cps[0]));
        assert_eq!(stored().as_ref(), Some(&cps[0]), "the first checkpoint on a source is stored at once");
        assert!(writer.persist_idle(), "the durable checkpoint is the stored one");
        // A persist is due (the last one is two intervals old), but it is the timer's.
        writer.last_persist = Instant::now() - 2 * interval;
        assert_eq!(writer.write_batch(batches.next().unwrap()).unwrap().as_ref(), Some(&cps[1]));
        assert_eq!(stored().as_ref(), Some(&cps[0]), "the answer did not wait for the metadata write");
        assert!(!writer.persist_idle(), "the timer has a checkpoint to store");
        writer.persist_on_timer();
        assert_eq!(stored().as_ref(), Some(&cps[1]), "the timer stored it");
        writer.last_persist = Instant::now() - 2 * interval;
        assert!(writer.persist_idle(), "stored: nothing more to do");
        assert!(writer.last_persist.elapsed() < interval, "an idle tick counts as a persist (as `persist` does)");
        // A timer far behind: the batch stores its checkpoint itself.
        writer.last_persist = Instant::now() - PERSIST_OVERDUE * interval;
        assert_eq!(writer.write_batch(batches.next().unwrap()).unwrap().as_ref(), Some(&cps[2]));
        assert_eq!(stored().as_ref(), Some(&cps[2]), "stored by the batch when the timer is overdue");

        // A timer persist that fails (the task's rows are gone) fails the next batch.
        assert_eq!(writer.write_batch(batches.next().unwrap()).unwrap().as_ref(), Some(&cps[3]));
        store.delete_task(task.id).unwrap();
        assert!(!writer.persist_idle());
        writer.persist_on_timer();
        assert!(!writer.persist_idle(), "a failed persist is retried by the timer's job, never skipped");
        let err = writer
            .write_batch(WriteBatch { ops: Vec::new(), checkpoint: None, received: None, after_durable: None })
            .expect_err("the timer's failure reaches the stream");
        assert!(matches!(err, WriterError::Store(_)), "{err:?}");
    });
}

/// The writer's `FileSealed` reports: (name, sha256).
type SealedReports = std::sync::Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

/// Keeps the writer's `FileSealed` reports.
struct Sealed(SealedReports);

impl Actor for Sealed {
    type Context = Context<Self>;
}

impl Handler<WriterEvent> for Sealed {
    type Result = ();

    fn handle(&mut self, ev: WriterEvent, _: &mut Context<Self>) {
        if let WriterEvent::FileSealed { name, sha256, .. } = ev {
            self.0.lock().unwrap().push((name.to_string(), sha256));
        }
    }
}

/// The digest recorded at sealing is the sha256 of the file on disk, whether the batch's bytes
/// were hashed inline or on a thread of their own (`hashing`), with files created, appended to
/// and sealed inside one batch and across batches; and none at all (the task reads the file
/// back) for a file a batch hashed after sealing wrote into or sealed.
#[test]
fn a_sealed_files_digest_is_that_of_its_bytes_hashed_inline_or_apart_and_none_after_sealing() {
    use crate::binlog::stream::{GtidTracker, LocalFiles, StreamTracker};
    use hashing::Hashing::{self, AfterSealing as L, Apart as A, Inline as I};

    // The fixture streamed twice, as two files: the second's artificial rotate seals the first.
    let data = crate::binlog::fixture("mariadb-bin.000001");
    let mut events = crate::binlog::stream::tests::stream_from_start("mariadb-bin.000001", &data);
    events.extend(crate::binlog::stream::tests::stream_from_start("mariadb-bin.000002", &data));
    let mut tracker = StreamTracker::new(LocalFiles::default(), GtidTracker::new(Flavor::Mariadb, None), true);
    let mut ops = Vec::new();
    for ev in events {
        tracker.on_event(ev, &mut ops).unwrap();
    }
    let seals = ops.iter().filter(|op| matches!(op, WriteOp::Seal { .. })).count();
    assert!(seals >= 1, "the stream seals a file: {seals}");
    // Three batches, cut across the ops: the first file is sealed in the second batch.
    let third = ops.len() / 3;
    let rest = ops.split_off(third);
    let mut batches = vec![ops];
    let mut rest = rest;
    let tail = rest.split_off(rest.len() / 2);
    batches.push(rest);
    batches.push(tail);

    // The files a batch hashed after sealing created, appended to or sealed: no digest for them.
    let read_back = |how: &[Hashing; 3]| {
        let mut names = std::collections::BTreeSet::new();
        let mut current: Option<String> = None;
        for (ops, how) in batches.iter().zip(how) {
            for op in ops {
                if let WriteOp::Create { name, .. } = op {
                    current = Some(name.to_string());
                }
                if *how == L && matches!(op, WriteOp::Create { .. } | WriteOp::Append { .. } | WriteOp::Seal { .. }) {
                    names.extend(current.clone());
                }
            }
        }
        names
    };

    // Per batch, inline, apart (on a thread) or after sealing: all one way, and mixed (the thread
    // continues the inline digest so far, and gives it back to the next small batch; a batch
    // hashed after sealing drops the digest of the file it continues).
    let patterns = [[I, I, I], [A, A, A], [L, L, L], [I, A, I], [A, I, A], [I, L, I], [L, I, A], [A, L, I]];
    for how in patterns {
        let none_for = read_back(&how);
        let tmp = tempfile::tempdir().unwrap();
        let (store, task) = store_with_task(tmp.path(), "hash");
        let data_dir = tmp.path().join("data");
        let seen = SealedReports::default();
        actix::System::new().block_on(async {
            let report = Sealed(seen.clone()).start().recipient();
            let mut writer = prepared(task.id, &data_dir, store, report, Duration::from_secs(1));
            for (ops, how) in batches.clone().into_iter().zip(how) {
                writer.hash_apart_min = if how == I { usize::MAX } else { 0 };
                writer.hash_large_on_write = how == A;
                assert_eq!(hashing::hashing(&ops, writer.hash_apart_min, writer.hash_large_on_write), how);
                writer.write_batch(WriteBatch { ops, checkpoint: None, received: None, after_durable: None }).unwrap();
            }
            // The reports are delivered on this system: let them arrive.
            poll(|| seen.lock().unwrap().len() == seals).await;
        });
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), seals, "{how:?}: one report per sealed file");
        for (name, sha) in seen {
            let path = data_dir.join(task.id.0.to_string()).join("srv-1").join(&name);
            let on_disk = hex::encode(Sha256::digest(fs::read(&path).unwrap()));
            let want = (!none_for.contains(&name)).then_some(on_disk);
            assert_eq!(sha, want, "{how:?}: {name}");
        }
        if how.contains(&L) {
            assert!(!none_for.is_empty(), "{how:?}: a batch hashed after sealing leaves some file to be read back");
        }
    }
}

/// Polls `f` until it holds, for at most 10 s, yielding to the actor system in between.
async fn poll(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "condition not met within 10 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A power cut right after a file's creation can keep part of its unsynced header: reading the
/// tail back is no error at any cut (the scan then finds nothing complete), and a whole header
/// comes back whole.
#[test]
fn a_tail_is_read_back_from_a_file_cut_anywhere_in_its_header() {
    use crate::binlog::event::{HEADER_LEN, MAGIC};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bin.000001");
    let size = HEADER_LEN + 11;
    let mut fde = vec![0u8; size];
    fde[4] = 15; // FORMAT_DESCRIPTION_EVENT
    fde[9..13].copy_from_slice(&(size as u32).to_le_bytes());
    let file = [&MAGIC[..], &fde, b"next event"].concat();
    for cut in [0, 3, 4, 5, 4 + HEADER_LEN - 1, 4 + HEADER_LEN, 4 + size - 1, 4 + size, file.len()] {
        std::fs::write(&path, &file[..cut]).unwrap();
        let (got_fde, tail) = read_tail(&path, 4).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let kept = cut.saturating_sub(4);
        assert_eq!(got_fde, fde[..kept.min(size)], "cut at {cut}: the format description as far as it goes");
        assert_eq!(tail, file[4.min(cut)..cut], "cut at {cut}: the tail from offset 4");
    }
    // A torn event header whose size field reads as less than a header's length (but more than
    // what is there): not trusted, no arithmetic on it.
    let mut garbage = file.clone();
    garbage[4 + 9..4 + 13].copy_from_slice(&((HEADER_LEN - 1) as u32).to_le_bytes());
    std::fs::write(&path, &garbage[..4 + HEADER_LEN - 2]).unwrap();
    let (got_fde, _) = read_tail(&path, 4).expect("a torn header with a small size");
    assert_eq!(got_fde.len(), HEADER_LEN - 2);
}
