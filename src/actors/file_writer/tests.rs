use super::*;
use crate::meta::UploadInfo;

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
    let dsn = crate::meta::MetaDsn::Sqlite(tmp.path().join("meta.db"));
    let store = Store::open(&dsn, 2, crate::clock::system()).unwrap();
    let task = store.create_task(&crate::domain::test_spec("sealed", "sealed")).unwrap();
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
        let mut writer = FileWriterActor::new(task.id, &data_dir, store, log, report, Duration::from_secs(1));
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
