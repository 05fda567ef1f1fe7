//! Preparing the writer: reconciling the local copy with the checkpoint (`reconcile::plan`),
//! crash recovery of the fsynced tail (`Recover`), and resuming an open file's summary.

use super::*;
use std::os::unix::fs::FileExt as _;

impl Writer {
    pub(super) fn prepare(&mut self, msg: Prepare) -> Result<Prepared, WriterError> {
        let _busy = self.busy.begin(Work::Start);
        #[cfg(debug_assertions)]
        test_start_delay();
        // Whatever happened before (a dropped connection mid-transaction, a full disk), start
        // again from the last durable boundary: close the file without syncing it (everything
        // past the checkpoint is truncated below; everything before it is already durable).
        self.open = None;
        if let Some(floor) = &self.floor {
            // Interrupted while re-fetching for a takeover: reconcile against the stored
            // checkpoint again (the partial file is fetched anew).
            self.durable = Some(floor.clone());
        }
        self.load(msg.flavor)?;
        let checkpoint = self.durable.clone();
        let mut switched_from = None;
        if let Some(cp) = &checkpoint
            && cp.source_identity != msg.identity.as_str()
        {
            if !msg.gtid_mode {
                return Err(WriterError::Switchover { old: cp.source_identity.clone(), new: msg.identity.to_string() });
            }
            // GTID mode follows the new server. The old server's open file is kept as far as it
            // is durable, and sealed: it is complete as far as that server goes for us.
            self.seal_partial(cp)?;
            switched_from = Some(cp.source_identity.clone());
        }
        self.identity = Some(msg.identity.clone());
        let dir = self.layout.source_dir(self.task_id, msg.identity.as_str());
        fs::create_dir_all(&dir).map_err(|e| WriterError::io("create directory", &dir, e))?;
        // Both new names must survive a power cut before any checkpoint points below them: the
        // source's folder in the task's, the task's in the data dir (a file's own fsync, or its
        // folder's, does not make the folder's name durable).
        self.fsync.dir(&self.layout.task_dir(self.task_id))?;
        self.fsync.dir(self.layout.root())?;
        self.decide_io(&dir)?;

        // The checkpoint speaks for this folder only when it was taken on this source.
        let here = checkpoint.as_ref().filter(|c| c.source_identity == msg.identity.as_str());
        self.check_lease()?;
        self.rebuild = None;
        let local = self.reconcile(&dir, here)?;
        self.publish_durable();
        Ok(Prepared { checkpoint, local, switched_from, refetch_from: self.rebuild.clone() })
    }

    /// Makes `dir` agree with the checkpoint, as `reconcile::plan` decides (files after it and
    /// files the catalog does not know set aside, or removed when they hold no event, the
    /// checkpoint's file cut back to it, a takeover's missing files
    /// set aside to be fetched again). Returns what we hold.
    pub(super) fn reconcile(&mut self, dir: &Path, cp: Option<&Checkpoint>) -> Result<LocalFiles, WriterError> {
        let identity = self.ident()?.to_string();
        let rows: Vec<FileRecord> =
            self.store.list_files(self.task_id)?.into_iter().filter(|r| r.source_identity == identity).collect();
        let on_disk = files_in(dir)?;
        let facts = Facts {
            rows: &rows,
            checkpoint: cp,
            on_disk: &on_disk,
            refetch: self.lease.is_some(),
            recovering: false,
            tail: None,
        };
        let plan = reconcile::plan(facts)?;

        for (name, why) in &plan.remove {
            let p = dir.join(name);
            match fs::remove_file(&p) {
                Ok(()) => match why {
                    Removal::BeyondCheckpoint => {
                        info!(self.log, "removed file beyond the checkpoint"; "file" => %p.display())
                    }
                    Removal::InterruptedCreate => {
                        info!(self.log, "removed a file the catalog does not know that holds no more than a file's \
                                         header (a create interrupted before its catalog row)"; "file" => %p.display())
                    }
                    Removal::ShortCopyOfBucketFile => {
                        warn!(self.log, "removed a short local copy of a file the bucket holds"; "file" => %p.display())
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(WriterError::io("remove", &p, e)),
            }
        }
        self.store.delete_file_rows(self.task_id, &identity, &plan.forget)?;
        if !plan.set_aside.is_empty() {
            // Kept, never read: `{data_dir}/.stale/{task}-{time}`.
            let aside = self.layout.stale_copy_now(self.task_id);
            fs::create_dir_all(&aside).map_err(|e| WriterError::io("create", &aside, e))?;
            for (name, why) in &plan.set_aside {
                let (from, to) = (dir.join(name), aside.join(name));
                fs::rename(&from, &to).map_err(|e| WriterError::io("rename", &from, e))?;
                let (from, to) = (from.display(), to.display());
                match why {
                    Aside::Refetch => info!(self.log, "set a copy aside to fetch the file again";
                        "file" => %from, "to" => %to),
                    Aside::BeyondCheckpoint => warn!(self.log, "set aside a file beyond the checkpoint (fetched \
                        again from the source; should the source no longer have it, import it back from there)";
                        "file" => %from, "to" => %to),
                    Aside::Unknown => warn!(self.log, "set aside a file the catalog does not know (a metadata \
                        database older than the files, or a file put there; should the source no longer have \
                        it, import it back from there)"; "file" => %from, "to" => %to),
                }
            }
            // The copies' new names, and the folders holding them, survive a power cut (their
            // old names go with the source folder's fsync below).
            self.fsync.dir(&aside)?;
            if let Some(stale) = aside.parent() {
                self.fsync.dir(stale)?;
            }
            self.fsync.dir(self.layout.root())?;
            let note = reconcile::set_aside_note(self.task_id.0, &aside, &plan.set_aside);
            if let Err(e) = self.store.append_event(self.task_id, TaskEventType::FilesSetAside, &note) {
                warn!(self.log, "the files set aside could not be recorded as a task event"; "error" => %e, "note" => &note);
            }
        }

        let mut local = LocalFiles { open: None, sealed: plan.sealed };
        match (cp, plan.refetch_from, plan.open) {
            (Some(cp), Some(from), _) => {
                warn!(self.log, "files up to the checkpoint are not on this node nor in the bucket; fetching them again \
                                 from the source";
                    "from_file" => %from.name, "checkpoint_file" => %cp.file, "checkpoint_pos" => cp.pos);
                self.floor = Some(cp.clone());
                self.rebuild = Some(from);
            }
            (Some(cp), None, Some(resume)) => {
                let rec = rows.iter().find(|r| r.file_name == resume.name).expect("the plan resumes a catalogued file");
                let path = dir.join(resume.name.as_str());
                let mut f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .map_err(|e| WriterError::io("open", &path, e))?;
                if let Some(len) = plan.truncate_to {
                    info!(self.log, "truncating to the checkpoint";
                        "file" => %resume.name, "from" => on_disk.get(resume.name.as_str()).copied(), "to" => len);
                    f.set_len(len).map_err(|e| WriterError::io("truncate", &path, e))?;
                }
                self.fsync.file(&f, &path, Scope::All)?;
                let has_transactions =
                    has_transactions(&mut f, resume.len).map_err(|e| WriterError::io("read", &path, e))?;
                let summary = self
                    .resume_summary(&mut f, rec, cp.pos, resume.len)
                    .map_err(|e| WriterError::io("read", &path, e))?;
                f.seek(SeekFrom::End(0)).map_err(|e| WriterError::io("seek", &path, e))?;
                let mut direct = None;
                if self.direct() {
                    // Writes go on from the partial last block, read back into the aligned tail.
                    let mut partial = vec![0u8; (resume.len % direct::ALIGN as u64) as usize];
                    let at = resume.len - partial.len() as u64;
                    f.read_exact_at(&mut partial, at).map_err(|e| WriterError::io("read", &path, e))?;
                    f = direct::open_direct(&path, false).map_err(|e| WriterError::io("open", &path, e))?;
                    let cached = direct::open_cached(&path).map_err(|e| WriterError::io("open", &path, e))?;
                    direct = Some(DirectTail::new(resume.len, &partial, cached));
                }
                local.open = Some(OpenFile {
                    name: resume.name.clone(),
                    start_pos: resume.start_pos,
                    end_pos: cp.pos,
                    has_transactions,
                });
                self.open = Some(OpenLocal {
                    name: resume.name,
                    path,
                    file: f,
                    start_pos: resume.start_pos,
                    header_len: resume.header_len,
                    size: resume.len,
                    dirty: false,
                    kicked: resume.len,
                    summary,
                    direct,
                    hasher: None,
                });
            }
            _ => {}
        }
        self.fsync.dir(dir)?;
        Ok(local)
    }

    /// Reads the stored checkpoint on the first use after a start, or again after an fsync
    /// failure, and, after a start only, recovers the tail past it ([`Self::recover_tail`]). After
    /// an fsync failure nothing past the stored checkpoint is trusted: the kernel may have dropped
    /// pages that still read back from its cache.
    pub(super) fn load(&mut self, flavor: Flavor) -> Result<(), WriterError> {
        if self.loaded && !self.fsync.poisoned {
            return Ok(());
        }
        let after_fsync_failure = self.fsync.poisoned;
        self.durable = self.store.get_checkpoint(self.task_id)?.map(|(c, _)| c);
        self.persisted = self.durable.clone();
        self.loaded = true;
        self.fsync.poisoned = false;
        if !after_fsync_failure && self.floor.is_none() {
            #[cfg(debug_assertions)]
            test_recover_delay();
            self.recover_tail(flavor)?;
        }
        Ok(())
    }

    /// Crash recovery: keeps the complete, verified transactions past the stored checkpoint in
    /// its source's folder (the checkpoint's open file, or the file a rotate created after it),
    /// cuts only the incomplete rest, fsyncs the file and persists the checkpoint rebuilt from the
    /// tail. The rest of the folder is left to `Prepare`'s reconciliation, which then starts from
    /// this checkpoint. `reconcile::plan` decides; this carries it out.
    pub(super) fn recover_tail(&mut self, flavor: Flavor) -> Result<(), WriterError> {
        let Some(cp) = self.durable.clone() else { return Ok(()) };
        let dir = self.layout.source_dir(self.task_id, &cp.source_identity);
        if !dir.is_dir() {
            return Ok(());
        }
        let rows: Vec<FileRecord> = self
            .store
            .list_files(self.task_id)?
            .into_iter()
            .filter(|r| r.source_identity == cp.source_identity)
            .collect();
        let on_disk = files_in(&dir)?;
        let facts = Facts {
            rows: &rows,
            checkpoint: Some(&cp),
            on_disk: &on_disk,
            refetch: self.lease.is_some(),
            recovering: true,
            tail: None,
        };
        let Some(scan) = reconcile::tail_to_scan(facts) else { return Ok(()) };
        let gtid = match cp.gtid_set.as_deref().map(|g| StartGtid::parse(flavor, g)).transpose() {
            Ok(g) => g,
            Err(e) => {
                warn!(self.log, "the checkpoint's GTID state does not read; the tail past it is not recovered";
                    "error" => %e, "gtid" => cp.gtid_set.as_deref().unwrap_or(""));
                return Ok(());
            }
        };
        let path = dir.join(scan.name.as_str());
        let (fde, bytes) = read_tail(&path, scan.offset).map_err(|e| WriterError::io("read", &path, e))?;
        let tail = crate::binlog::tail::scan(
            &fde,
            &bytes,
            crate::binlog::tail::TailStart {
                name: scan.name.clone(),
                whole_file: scan.whole_file,
                offset: scan.offset,
                pos: scan.pos,
                gtid: GtidTracker::new(flavor, gtid.as_ref()),
            },
        );
        let plan = reconcile::plan(Facts { tail: Some(&tail), ..facts })?;
        let (Some(recovered), Some(resume)) = (plan.recovered, plan.open) else {
            debug!(self.log, "nothing complete past the checkpoint";
                "file" => %scan.name, "from" => scan.offset, "stopped" => tail.stopped.as_deref().unwrap_or(""));
            return Ok(());
        };
        self.check_lease()?;
        let mut f =
            OpenOptions::new().read(true).write(true).open(&path).map_err(|e| WriterError::io("open", &path, e))?;
        let had = on_disk.get(scan.name.as_str()).copied();
        if let Some(len) = plan.truncate_to {
            f.set_len(len).map_err(|e| WriterError::io("truncate", &path, e))?;
        }
        // The kept bytes were fsynced before the crash, or not: either way they are now, before
        // the checkpoint that covers them is stored.
        self.fsync.file(&f, &path, Scope::All)?;
        let mut rec =
            rows.iter().find(|r| r.file_name == resume.name).expect("the plan resumes a catalogued file").clone();
        if rec.summary.gtid_start.is_none() && resume.name != cp.file {
            // A file created after the checkpoint's: it begins where that one ended.
            rec.summary.gtid_start = cp.gtid_set.clone();
        }
        let summary = self
            .resume_summary(&mut f, &rec, recovered.pos, resume.len)
            .map_err(|e| WriterError::io("read", &path, e))?;
        self.store.save_checkpoint_in_open_file(self.task_id, &recovered, resume.len, summary.summary())?;
        warn!(self.log, "recovered transactions fsynced past the stored checkpoint";
            "file" => %recovered.file, "from_file" => %cp.file, "from_pos" => cp.pos, "to_pos" => recovered.pos,
            "transactions" => tail.boundaries, "cut_from" => had, "cut_to" => plan.truncate_to,
            "gtid" => recovered.gtid_set.as_deref().unwrap_or(""), "stopped" => tail.stopped.as_deref().unwrap_or(""));
        self.durable = Some(recovered.clone());
        self.persisted = Some(recovered.clone());
        self.last_persist = Instant::now();
        let _ =
            self.report.try_send(WriterEvent::Checkpointed { checkpoint: recovered, fsync: Duration::ZERO, bytes: 0 });
        Ok(())
    }

    /// GTID switchover: the old source's open file is kept up to the checkpoint and sealed.
    pub(super) fn seal_partial(&mut self, cp: &Checkpoint) -> Result<(), WriterError> {
        let dir = self.layout.source_dir(self.task_id, &cp.source_identity);
        let rows = self.store.list_files(self.task_id)?;
        if let Some(rec) = rows
            .iter()
            .find(|r| r.source_identity == cp.source_identity && r.file_name == cp.file && r.state == FileState::Open)
        {
            let path = dir.join(rec.file_name.as_str());
            let want = rec.local_offset(cp.pos);
            let f = OpenOptions::new().write(true).open(&path).map_err(|e| WriterError::io("open", &path, e))?;
            f.set_len(want).map_err(|e| WriterError::io("truncate", &path, e))?;
            self.fsync.file(&f, &path, Scope::All)?;
            let read = File::open(&path).map_err(|e| WriterError::io("open", &path, e))?;
            let summary = summary::summarize(
                io::BufReader::new(read),
                rec.start_pos,
                rec.header_len,
                want,
                rec.summary.gtid_start.clone(),
            )
            .map_err(|e| WriterError::io("read", &path, e))?;
            self.store.seal_file(
                self.task_id,
                &cp.source_identity,
                cp.file.as_str(),
                cp.pos,
                want,
                &summary,
                Some(cp),
            )?;
            // Never dropped (unlike progress reports): a sealed file enters the upload queue
            // only once the task hashes it.
            self.report.do_send(WriterEvent::FileSealed {
                identity: cp.source_identity.clone(),
                name: cp.file.clone(),
                path,
                size: want,
                sha256: None,
            });
        }
        Ok(())
    }

    /// The summary builder of an open file resumed at checkpoint `pos` (`len` local bytes):
    /// from its catalog row when that was saved with this checkpoint, else read from the file.
    pub(super) fn resume_summary(
        &self,
        f: &mut File,
        rec: &FileRecord,
        pos: u64,
        len: u64,
    ) -> io::Result<SummaryBuilder> {
        f.seek(SeekFrom::Start(0))?;
        let reader = io::BufReader::new(Read::by_ref(f).take(len));
        if rec.summary.summary_pos == pos {
            let mut has_crc = true;
            summary::for_each_event(reader, |_, ev| {
                if let Ok(fde) = crate::binlog::event::Fde::parse(ev) {
                    has_crc = fde.checksum.has_crc();
                }
                false
            })?;
            return Ok(SummaryBuilder::resume(rec.summary.clone(), has_crc));
        }
        summary::rebuild(reader, rec.start_pos, rec.header_len, len, rec.summary.gtid_start.clone())
    }
}

/// Debug builds only (never in a release binary): `BINLOG_TEST_RECOVER_DELAY_MS` makes crash
/// recovery (the first `Recover` after a start) wait that long before it reads the tail, so an
/// integration test can arm a power cut at recovery's truncation once the server answers.
#[cfg(debug_assertions)]
fn test_recover_delay() {
    if let Some(ms) = std::env::var("BINLOG_TEST_RECOVER_DELAY_MS").ok().and_then(|v| v.parse().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}

/// Debug builds only (never in a release binary): `BINLOG_TEST_WRITER_START_DELAY_MS` makes every
/// `Prepare` take at least that long (a disk that hangs while the writer reconciles the local
/// files), so an integration test sees a stalled start said while it lasts.
#[cfg(debug_assertions)]
fn test_start_delay() {
    if let Some(ms) = std::env::var("BINLOG_TEST_WRITER_START_DELAY_MS").ok().and_then(|v| v.parse().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
}
