//! Upload of sealed files to a real S3-compatible server (moto), and retention.
//!
//! Each check of the bucket goes through boto3 (`common::s3`), not through our client.

use std::time::Duration;

use binlog_server::api::dto::{FileDto, RetryUploadDto, UploadFailurePage};
use binlog_server::domain::TaskState;
use binlog_server::meta::{FileState, UploadState};
use serde_json::json;

use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::poll_until;
use crate::common::replication::{
    WAIT, fast_server_opts, flush_and_catch_up, local_dir, source_identity, start_copy_task, wait_running,
};
use crate::common::s3::S3Server;
use crate::common::server::{Server, ServerOpts};

/// Upload settings for tests: 5 MiB parts (S3's minimum) above 5 MiB, quick retries.
fn upload_opts(s3: &S3Server) -> ServerOpts {
    s3.upload_env(fast_server_opts())
        .env("BINLOG_SERVER_UPLOAD_PART_SIZE_MB", "5")
        .env("BINLOG_SERVER_UPLOAD_MULTIPART_THRESHOLD_MB", "5")
        .env("BINLOG_SERVER_UPLOAD_RETRY_INITIAL_SEC", "1")
        .env("BINLOG_SERVER_UPLOAD_RETRY_MAX_SEC", "2")
        .env("BINLOG_SERVER_UPLOAD_REQUEST_TIMEOUT_SEC", "2")
}

fn sealed(files: &[FileDto]) -> Vec<&FileDto> {
    files.iter().filter(|f| f.state == FileState::Sealed).collect()
}

/// Polls until every sealed file of the task is UPLOADED and verified; returns the files.
fn wait_all_uploaded(srv: &Server, id: i64, at_least: usize) -> Vec<FileDto> {
    poll_until(WAIT, &format!("every sealed file of task {id} (at least {at_least}) to be uploaded"), || {
        let fs = srv.files(id);
        let s = sealed(&fs);
        (s.len() >= at_least && s.iter().all(|f| f.upload.state == UploadState::Uploaded && f.upload.verified))
            .then_some(fs)
    })
}

/// Every sealed file's object equals the local file and the source's file, byte for byte.
fn assert_objects_match(srv: &Server, db: &MariaDb, s3: &S3Server, id: i64, files: &[FileDto]) -> usize {
    let dir = local_dir(srv, id, db);
    let identity = source_identity(db);
    let mut n = 0;
    for f in sealed(files) {
        let name = f.name.as_str();
        let key = f.upload.object_key.as_deref().unwrap_or_else(|| panic!("{name} has no object key: {f:?}"));
        assert_eq!(key, format!("it/upload-{id}/{identity}/{name}"), "object key layout");
        let object = s3.get(key);
        let local = std::fs::read(dir.join(name)).expect("local file");
        let source = std::fs::read(db.binlog_dir().join(name)).expect("source file");
        assert!(
            object == local,
            "{key}: the object differs from the local file ({} vs {} bytes)",
            object.len(),
            local.len()
        );
        assert!(object == source, "{key}: the object differs from the source's file");
        let (_, sha) = s3.head(key);
        assert_eq!(Some(sha.as_str()), f.sha256.as_deref(), "{key}: sha256 metadata");
        n += 1;
    }
    n
}

fn create_upload_task(srv: &Server, db: &MariaDb) -> i64 {
    // The cluster_key names the objects: `it/upload-<id>/...`; ids start at 1 in a fresh server.
    let id = start_copy_task(srv, db, "upload-1");
    assert_eq!(id, 1, "the first task of a fresh server");
    wait_running(srv, id);
    id
}

/// `GET /api/tasks/{id}/upload-failures` items.
fn upload_failures(srv: &Server, id: i64) -> Vec<FileDto> {
    srv.get_as::<UploadFailurePage>(&format!("/api/tasks/{id}/upload-failures")).items
}

fn metric(srv: &Server, family: &str, id: i64) -> Option<f64> {
    let text = srv.get_raw("/metrics").body;
    let prefix = format!("{family}{{task=\"{id}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}

#[test]
fn sealed_files_reach_the_bucket_byte_identical_and_big_ones_go_multipart() {
    let s3 = S3Server::start(false);
    // Files rotate at 64 MiB here (the harness default is 1 MiB), so one can hold 12 MiB.
    let db = MariaDb::start(MariaDbOpts::default().max_binlog_size("64M"));
    let srv = Server::start(upload_opts(&s3));
    let id = create_upload_task(&srv, &db);

    db.sql("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB");
    db.sql("INSERT INTO t (b) VALUES (REPEAT('s', 1000))");
    flush_and_catch_up(&srv, &db, id);
    // About 12 MiB in one file: three 5 MiB parts (5 + 5 + 2).
    for i in 0..12 {
        db.sql(&format!("INSERT INTO t (b) VALUES (REPEAT('{}', 1048576))", (b'a' + i) as char));
    }
    flush_and_catch_up(&srv, &db, id);
    db.sql("INSERT INTO t (b) VALUES ('after')");
    flush_and_catch_up(&srv, &db, id);

    let fs = wait_all_uploaded(&srv, id, 3);
    let n = assert_objects_match(&srv, &db, &s3, id, &fs);
    assert!(n >= 3, "{n} objects compared");

    let key_of = |f: &FileDto| f.upload.object_key.clone().unwrap_or_else(|| panic!("no object key: {f:?}"));
    let big = sealed(&fs).into_iter().max_by_key(|f| f.size).expect("a sealed file");
    assert!(big.size > 10 << 20, "the big file: {big:?}");
    let (parts, _) = s3.head(&key_of(big));
    assert!(parts >= 3, "a {}-byte file goes up in at least 3 parts, not {parts}", big.size);
    let small = sealed(&fs).into_iter().min_by_key(|f| f.size).expect("a sealed file");
    assert_eq!(s3.head(&key_of(small)).0, 0, "a small file is one PUT");
    assert_eq!(s3.multipart_uploads(), 0, "no unfinished multipart upload is left behind");
    // The open file is not uploaded.
    let open: Vec<&FileDto> = fs.iter().filter(|f| f.state == FileState::Open).collect();
    assert!(open.iter().all(|f| f.upload.state == UploadState::LocalOnly), "{open:?}");
    assert_eq!(metric(&srv, "binlog_server_upload_backlog_files", id), Some(0.0));
    assert!(srv.log_text().contains("file uploaded and verified"), "{}", srv.diagnostics());
    assert!(!srv.log_text().contains(&s3.secret_key), "the secret key is never logged");

    // A file only the bucket still holds (local copy gone) is still served for recovery.
    let dir = local_dir(&srv, id, &db);
    let name = small.name.as_str();
    std::fs::remove_file(dir.join(name)).unwrap();
    let (status, _, body) = crate::common::pitr::get_bytes(&srv, &format!("/api/tasks/{id}/files/{name}"));
    assert_eq!(status, 200, "download of a bucket-only file: {}", String::from_utf8_lossy(&body));
    assert!(
        body == std::fs::read(db.binlog_dir().join(name)).unwrap(),
        "{name} from the bucket equals the source's file"
    );
    let (status, window) = srv.get(&format!("/api/tasks/{id}/window"));
    assert_eq!(status, 200, "{window}");
    assert_eq!(window["breaks"], json!([]), "a file in the bucket is no break: {window}");
}

#[test]
fn replication_keeps_running_while_s3_hangs_and_the_backlog_drains_after() {
    let s3 = S3Server::start(false);
    let db = MariaDb::start(MariaDbOpts::default());
    let srv = Server::start(upload_opts(&s3));
    let id = create_upload_task(&srv, &db);
    db.sql("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(100)) ENGINE=InnoDB");

    s3.pause();
    for i in 0..4 {
        db.sql(&format!("INSERT INTO t (v) VALUES ('during the outage {i}')"));
        flush_and_catch_up(&srv, &db, id);
    }
    // Replication went on (the copy is caught up above) and the task is RUNNING; the files wait.
    assert_eq!(srv.task(id).state, TaskState::Running);
    let backlog = poll_until(WAIT, "the upload backlog metric to show the waiting files", || {
        metric(&srv, "binlog_server_upload_backlog_files", id).filter(|n| *n >= 4.0)
    });
    let fs = srv.files(id);
    assert!(sealed(&fs).iter().all(|f| f.upload.state != UploadState::Uploaded), "nothing can be uploaded: {fs:?}");
    let failures = poll_until(WAIT, "a failed upload to be reported", || {
        let items = upload_failures(&srv, id);
        (!items.is_empty()).then_some(items)
    });
    let reason = failures[0].upload.last_error.clone().unwrap_or_default();
    assert!(!reason.is_empty(), "the failure says why: {:?}", failures[0]);
    assert!(
        metric(&srv, "binlog_server_upload_failures_total", id).unwrap_or(0.0) >= 1.0,
        "failed attempts are counted"
    );

    s3.resume();
    let fs = wait_all_uploaded(&srv, id, 4);
    let n = assert_objects_match(&srv, &db, &s3, id, &fs);
    assert!(n >= 4, "{n} objects compared (backlog was {backlog})");
    poll_until(WAIT, "the backlog metric to drain", || {
        (metric(&srv, "binlog_server_upload_backlog_files", id) == Some(0.0)).then_some(())
    });
    assert_eq!(srv.task(id).state, TaskState::Running);
}

#[test]
fn wrong_credentials_fail_readably_and_retry_upload_succeeds_once_fixed() {
    let s3 = S3Server::start(true);
    let db = MariaDb::start(MariaDbOpts::default());
    let wrong = "not-the-secret-key-0123456789";
    // Automatic retries are an hour apart: only retry-upload can make the second attempt.
    let opts = s3
        .upload_env_with_secret(fast_server_opts(), wrong)
        .env("BINLOG_SERVER_UPLOAD_RETRY_INITIAL_SEC", "3600")
        .env("BINLOG_SERVER_UPLOAD_RETRY_MAX_SEC", "3600");
    let mut srv = Server::start(opts);
    let id = create_upload_task(&srv, &db);
    db.sql("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB");
    flush_and_catch_up(&srv, &db, id);

    let failed =
        poll_until(WAIT, "the sealed file to be UPLOAD_FAILED", || upload_failures(&srv, id).into_iter().next());
    let reason = failed.upload.last_error.as_deref().expect("a reason");
    assert!(reason.contains("SignatureDoesNotMatch"), "a readable reason: {reason}");
    assert!(!reason.contains(wrong) && !reason.contains(&s3.secret_key), "no secret in the reason: {reason}");
    assert_eq!(failed.upload.state, UploadState::UploadFailed);
    assert!(s3.keys().is_empty(), "nothing reached the bucket");
    assert!(!srv.log_text().contains(wrong), "the wrong secret is never logged");

    // Fix the credentials (restart with the right secret): the failure waits for its retry time.
    srv.set_env("BINLOG_SERVER_UPLOAD_SECRET_KEY", &s3.secret_key.clone());
    srv.restart();
    wait_running(&srv, id);
    let name = failed.name.clone();
    let state = |srv: &Server| srv.files(id).into_iter().find(|f| f.name == name).expect("the file").upload.state;
    assert_eq!(state(&srv), UploadState::UploadFailed, "not retried before its time");

    let retry: RetryUploadDto = srv.post_as(&format!("/api/tasks/{id}/files/retry-upload?limit=10"), &json!({}), 200);
    assert!(retry.retried >= 1, "{retry:?}");
    let fs = wait_all_uploaded(&srv, id, 1);
    assert_objects_match(&srv, &db, &s3, id, &fs);
    assert!(upload_failures(&srv, id).is_empty(), "no failure left");

    // The API's edges.
    assert_eq!(srv.post("/api/tasks/999/files/retry-upload", &json!({})).0, 404);
    assert_eq!(srv.post(&format!("/api/tasks/{id}/files/retry-upload?limit=-1"), &json!({})).0, 400);
    assert_eq!(srv.get("/api/tasks/999/upload-failures").0, 404);
}

#[test]
fn an_upload_left_unfinished_by_a_kill_is_redone_and_its_parts_aborted() {
    let s3 = S3Server::start(false);
    let db = MariaDb::start(MariaDbOpts::default().max_binlog_size("64M"));
    let mut srv = Server::start(upload_opts(&s3));
    let id = create_upload_task(&srv, &db);
    db.sql("CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, b LONGBLOB) ENGINE=InnoDB");
    for _ in 0..12 {
        db.sql("INSERT INTO t (b) VALUES (REPEAT('k', 1048576))");
    }
    // Leave a multipart upload behind as a killed process would: initiated, one part, no end.
    let key = format!("it/upload-{id}/{}/orphan", source_identity(&db));
    s3.python(
        "u = s3.create_multipart_upload(Bucket=B, Key=sys.argv[1]); \
         s3.upload_part(Bucket=B, Key=sys.argv[1], PartNumber=1, UploadId=u['UploadId'], Body=b'x' * 5242880)",
        &[&key],
    );
    assert_eq!(s3.multipart_uploads(), 1);
    flush_and_catch_up(&srv, &db, id);
    srv.kill9();
    srv.restart();
    wait_running(&srv, id);
    let fs = wait_all_uploaded(&srv, id, 1);
    assert_objects_match(&srv, &db, &s3, id, &fs);
    poll_until(Duration::from_secs(30), "the orphaned multipart upload to be aborted", || {
        (s3.multipart_uploads() == 0).then_some(())
    });
}

mod retention {
    //! Retention through the library, against the real bucket and a real SQLite catalog, with
    //! a `ManualClock`: 40 days pass in no time.

    use std::path::PathBuf;
    use std::sync::Arc;

    use binlog_server::binlog::name::BinlogFileName;
    use binlog_server::clock::{Clock as _, ManualClock, SharedClock};
    use binlog_server::config::UploadSettings;
    use binlog_server::domain::{RawTaskSpec, TaskId};
    use binlog_server::meta::{Checkpoint, FileRecord, FileState, MetaDsn, Store, UploadState};
    use binlog_server::secret::Secret;
    use binlog_server::upload::{ObjectStore, retention};
    use chrono::{DateTime, Duration, Utc};

    use crate::common::s3::{BUCKET, S3Server};
    use crate::common::temp_dir;

    const IDENTITY: &str = "mariadb-1-0";

    struct Fixture {
        _dir: tempfile::TempDir,
        data_dir: PathBuf,
        clock: Arc<ManualClock>,
        store: Store,
        id: TaskId,
    }

    fn day(n: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&Utc) + Duration::days(n)
    }

    fn name(n: u32) -> String {
        format!("mysql-bin.{n:06}")
    }

    fn fixture() -> Fixture {
        let dir = temp_dir("binlog-it-retention-");
        let data_dir = dir.path().join("data");
        let clock = ManualClock::new(day(0));
        let shared: SharedClock = clock.clone();
        let store = Store::open(&MetaDsn::Sqlite(dir.path().join("meta.db")), 2, shared).expect("open the store");
        let spec = RawTaskSpec {
            name: Some("retention".into()),
            retention_days: Some(7),
            bucket_retention_days: Some(30),
            ..crate::common::test_spec("retention")
        }
        .validate()
        .expect("a valid spec");
        let id = store.create_task(&spec).expect("create the task").id;
        Fixture { _dir: dir, data_dir, clock, store, id }
    }

    impl Fixture {
        fn path(&self, n: u32) -> PathBuf {
            self.record(n).local_path(&self.data_dir)
        }

        fn record(&self, n: u32) -> FileRecord {
            self.store
                .list_files(self.id)
                .expect("files")
                .into_iter()
                .find(|f| f.file_name.as_str() == name(n))
                .unwrap_or_else(|| FileRecord {
                    task_id: self.id.0,
                    source_identity: IDENTITY.into(),
                    file_name: BinlogFileName::parse(&name(n)).unwrap(),
                    state: FileState::Open,
                    start_pos: 4,
                    header_len: 4,
                    end_pos: None,
                    size: 0,
                    sha256: None,
                    created_at: day(0),
                    sealed_at: None,
                    upload: Default::default(),
                    summary: Default::default(),
                })
        }

        /// Creates file `n` on disk and in the catalog; seals it at `sealed_on` (moving the
        /// checkpoint to the next file) unless `None`.
        fn add(&self, n: u32, sealed_on: Option<i64>) {
            let rec = self.record(n);
            let path = rec.local_path(&self.data_dir);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let bytes: Vec<u8> = format!("\u{fe}bin file {n} ").repeat(100 + n as usize).into_bytes();
            std::fs::write(&path, &bytes).unwrap();
            self.store.insert_file(&rec).expect("insert");
            let cp = |f: u32, pos: u64| Checkpoint {
                source_identity: IDENTITY.into(),
                file: BinlogFileName::parse(&name(f)).unwrap(),
                pos,
                gtid_set: None,
            };
            match sealed_on {
                Some(d) => {
                    self.clock.set(day(d));
                    let len = bytes.len() as u64;
                    let summary = binlog_server::binlog::summary::FileSummary::default();
                    self.store
                        .seal_file(self.id, IDENTITY, &name(n), len, len, &summary, Some(&cp(n + 1, 4)))
                        .expect("seal");
                    let sha = binlog_server::actors::task::sha256_file(&path).expect("sha256");
                    self.store.set_file_sha256(self.id, IDENTITY, &name(n), &sha).expect("sha");
                }
                None => self.store.save_checkpoint(self.id, &cp(n, 100)).expect("checkpoint"),
            }
        }

        fn upload(&self, rt: &tokio::runtime::Runtime, objects: &ObjectStore, n: u32) -> String {
            let rec = self.record(n);
            let key = objects.object_key("retention", IDENTITY, &name(n));
            rt.block_on(async {
                let u = objects.upload_file(&self.path(n), &key, rec.sha256.as_deref().unwrap()).await.expect("upload");
                objects.verify(&u).await.expect("verify");
            });
            self.store.mark_uploading(self.id, IDENTITY, &name(n), &key).unwrap();
            self.store.mark_uploaded(self.id, IDENTITY, &name(n), self.clock.now()).unwrap();
            key
        }

        fn sweep(&self, rt: &tokio::runtime::Runtime, objects: Option<&ObjectStore>, on: i64) -> retention::Report {
            self.clock.set(day(on));
            let log = slog::Logger::root(slog::Discard, slog::o!());
            let clock: SharedClock = self.clock.clone();
            rt.block_on(retention::sweep(&self.store, objects, self.id, &self.data_dir, &clock, &log)).expect("sweep")
        }

        fn local(&self) -> Vec<u32> {
            (1..=9).filter(|n| self.path(*n).exists()).collect()
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
    }

    fn objects(s3: &S3Server) -> ObjectStore {
        ObjectStore::new(&UploadSettings {
            enabled: true,
            endpoint: s3.endpoint(),
            bucket: BUCKET.into(),
            access_key: Secret::new(s3.access_key.clone()),
            secret_key: Secret::new(s3.secret_key.clone()),
            prefix: "it".into(),
            ..UploadSettings::default()
        })
        .expect("a client")
    }

    #[test]
    fn retention_deletes_exactly_the_old_verified_copies_and_never_an_unsaved_byte() {
        let s3 = S3Server::start(false);
        let rt = runtime();
        let objects = objects(&s3);
        let f = fixture();
        // 1, 2: sealed day 0, uploaded. 3: sealed day 5, uploaded. 4: sealed day 0, upload
        // failed. 5: sealed day 0, never uploaded. 6: sealed day 0, uploaded but not verified.
        // 7: the open file at the checkpoint.
        for (n, d) in [(1, 0), (2, 0), (3, 5), (4, 0), (5, 0), (6, 0)] {
            f.add(n, Some(d));
        }
        f.add(7, None);
        let k1 = f.upload(&rt, &objects, 1);
        let k2 = f.upload(&rt, &objects, 2);
        let k3 = f.upload(&rt, &objects, 3);
        f.store.mark_upload_failed(f.id, IDENTITY, &name(4), 2, "HTTP 403 AccessDenied", day(99)).unwrap();
        f.store.mark_uploading(f.id, IDENTITY, &name(6), "it/retention/x/6").unwrap();
        assert_eq!(f.local(), vec![1, 2, 3, 4, 5, 6, 7]);

        // Day 6: nothing is older than 7 days.
        let r = f.sweep(&rt, Some(&objects), 6);
        assert!(r.deleted_local.is_empty() && r.deleted_remote.is_empty(), "{r:?}");
        // Day 10: 1 and 2 go locally; 3 is too young; 4, 5, 6 are held (not uploaded+verified).
        let r = f.sweep(&rt, Some(&objects), 10);
        assert_eq!(r.deleted_local, vec![name(1), name(2)], "{r:?}");
        assert_eq!(r.held_for_upload, 3);
        assert!(r.deleted_remote.is_empty() && r.errors.is_empty(), "{r:?}");
        assert_eq!(f.local(), vec![3, 4, 5, 6, 7]);
        let mut keys = s3.keys();
        keys.sort();
        assert_eq!(keys, vec![k1.clone(), k2.clone(), k3.clone()], "the bucket keeps its copies");
        // Day 31: 3 goes locally; objects 1 and 2 pass the bucket retention, 3 does not.
        let r = f.sweep(&rt, Some(&objects), 31);
        assert_eq!(r.deleted_local, vec![name(3)], "{r:?}");
        assert_eq!(r.deleted_remote, vec![name(1), name(2)], "{r:?}");
        assert_eq!(s3.keys(), vec![k3.clone()]);
        assert_eq!(f.local(), vec![4, 5, 6, 7], "never a file that is not uploaded and verified, never the open one");
        // The catalog remembers what went where.
        let r1 = f.record(1);
        assert!(r1.upload.local_deleted_at.is_some() && r1.upload.remote_deleted_at.is_some(), "{r1:?}");
        assert_eq!(r1.upload.state, UploadState::Uploaded);
        assert!(f.record(3).upload.remote_deleted_at.is_none());
        // A second sweep the same day finds nothing new.
        let r = f.sweep(&rt, Some(&objects), 31);
        assert!(r.deleted_local.is_empty() && r.deleted_remote.is_empty(), "{r:?}");
        // Day 36: object 3 goes.
        let r = f.sweep(&rt, Some(&objects), 36);
        assert_eq!(r.deleted_remote, vec![name(3)], "{r:?}");
        assert!(s3.keys().is_empty());
        assert!(f.path(7).exists());
    }

    #[test]
    fn without_upload_age_alone_decides_but_the_checkpoint_file_stays() {
        let rt = runtime();
        let f = fixture();
        for (n, d) in [(1, 0), (2, 5)] {
            f.add(n, Some(d));
        }
        // The checkpoint sits at the end of sealed file 2 (no file 3 yet): it must stay.
        let end = f.record(2).end_pos.expect("sealed");
        let cp = Checkpoint {
            source_identity: IDENTITY.into(),
            file: BinlogFileName::parse(&name(2)).unwrap(),
            pos: end,
            gtid_set: None,
        };
        f.store.save_checkpoint(f.id, &cp).unwrap();
        let r = f.sweep(&rt, None, 40);
        assert_eq!(r.deleted_local, vec![name(1)], "{r:?}");
        assert_eq!(f.local(), vec![2]);
        assert!(f.store.get_checkpoint(f.id).unwrap().is_some());
    }

    /// An object counts as uploaded only once the bucket reports our size, sha256 and MD5 ETag
    /// (`ObjectStore::verify`, called before the catalog marks it uploaded): against a real S3
    /// server, an object as sent passes; one whose size, sha256 metadata or ETag is not what was
    /// sent, one missing, and one replaced in the bucket by other bytes of the same size are
    /// refused, each naming what differs.
    #[test]
    fn verify_refuses_an_object_the_bucket_does_not_hold_as_sent() {
        use binlog_server::upload::{UploadError, Uploaded};
        let s3 = S3Server::start(false);
        let rt = runtime();
        let objects = objects(&s3);
        let dir = temp_dir("binlog-it-verify-");
        let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
        std::fs::write(&ours, vec![b'a'; 1000]).unwrap();
        std::fs::write(&theirs, vec![b'b'; 1000]).unwrap();
        let sha = binlog_server::actors::task::sha256_file(&ours).expect("sha256");
        let key = objects.object_key("verify", IDENTITY, &name(1));
        let sent = rt.block_on(objects.upload_file(&ours, &key, &sha)).expect("upload");
        rt.block_on(objects.verify(&sent)).expect("the object as sent passes");

        let refused = |u: &Uploaded| match rt.block_on(objects.verify(u)) {
            Err(UploadError::Verify(m)) => m,
            other => panic!("not refused as unverified: {other:?} for {u:?}"),
        };
        let cases = [
            (Uploaded { size: 1001, ..sent.clone() }, "the bucket holds 1000 bytes, we sent 1001"),
            (Uploaded { sha256: "0".repeat(64), ..sent.clone() }, "sha256 metadata is"),
            (Uploaded { expected_etag: "0".repeat(32), ..sent.clone() }, "ETag is"),
            (
                Uploaded { key: objects.object_key("verify", IDENTITY, &name(2)), ..sent.clone() },
                "is not in the bucket",
            ),
        ];
        for (claim, want) in &cases {
            let m = refused(claim);
            assert!(m.contains(want), "{want:?} not in {m:?}");
        }
        // Other bytes of the same size under the key (another writer, a bucket that lost ours).
        let their_sha = binlog_server::actors::task::sha256_file(&theirs).expect("sha256");
        rt.block_on(objects.upload_file(&theirs, &key, &their_sha)).expect("overwrite");
        let m = refused(&sent);
        assert!(m.contains("sha256 metadata is") && m.contains(&their_sha), "{m}");
    }
}
