//! Writing: appending a batch, creating and sealing files, fsync before the checkpoint, and
//! persisting durable checkpoints.

use super::*;
use hashing::{BatchDigests, HashJobs, Hashing, hashing};

impl Writer {
    /// Writes a batch, its bytes hashed as [`hashing`] decides: a small one (streaming) here, as
    /// it is written; a large one (a catch-up's) on a thread of its own while this one copies the
    /// bytes out and waits for the disk when files are written with O_DIRECT, else not at all
    /// (the task reads each file it seals back after sealing).
    pub(super) fn write_batch(&mut self, batch: WriteBatch) -> Result<Option<Checkpoint>, WriterError> {
        let _busy = self.busy.begin(Work::Batch);
        self.fsync.check()?;
        self.check_lease()?;
        if let Some(e) = self.persist_failure.take() {
            // The timer's persist failed: the stream stops here, as when a batch's own did.
            return Err(e);
        }
        match hashing(&batch.ops, self.hash_apart_min, self.hash_large_on_write) {
            Hashing::Inline => self.apply_batch(batch),
            Hashing::AfterSealing => self.apply_batch_hashed_after_sealing(batch),
            Hashing::Apart => self.apply_batch_hashed_apart(batch),
        }
    }

    /// Writes a batch without hashing it: the task reads each file it seals back.
    fn apply_batch_hashed_after_sealing(&mut self, batch: WriteBatch) -> Result<Option<Checkpoint>, WriterError> {
        // The open file's digest so far is of no use any more: it is read back whole.
        if let Some(o) = self.open.as_mut() {
            o.hasher = None;
        }
        self.digests = BatchDigests::AfterSealing;
        let res = self.apply_batch(batch);
        self.digests = BatchDigests::Inline;
        res
    }

    fn apply_batch_hashed_apart(&mut self, batch: WriteBatch) -> Result<Option<Checkpoint>, WriterError> {
        let jobs = HashJobs::of(&batch.ops);
        let start = self.open.as_mut().and_then(|o| o.hasher.take());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let spawned =
                std::thread::Builder::new().name("binlog-hash".into()).spawn_scoped(scope, move || jobs.run(start, tx));
            let thread = match spawned {
                Ok(h) => h,
                Err(e) => {
                    // No thread to be had: the digests of this batch's files are left to the
                    // task (it reads a sealed file back when the writer could not hash it).
                    warn!(self.log, "cannot start a hashing thread; sealed files of this batch are hashed later";
                        "error" => %e);
                    return self.apply_batch_hashed_after_sealing(batch);
                }
            };
            self.digests = BatchDigests::Apart(rx);
            let res = self.apply_batch(batch);
            self.digests = BatchDigests::Inline;
            // A hashing thread that panicked leaves the digest to the task, as above.
            let left = thread.join().unwrap_or(None);
            if res.is_ok()
                && let Some(o) = self.open.as_mut()
            {
                o.hasher = left;
            }
            res
        })
    }

    fn apply_batch(&mut self, batch: WriteBatch) -> Result<Option<Checkpoint>, WriterError> {
        let mut bytes = 0u64;
        for op in batch.ops {
            match op {
                WriteOp::Create { name, start_pos, header } => self.create(name, start_pos, &header)?,
                WriteOp::Append { bytes: data, end_pos } => {
                    let o = self
                        .open
                        .as_mut()
                        .ok_or_else(|| WriterError::Invariant("append without an open file".into()))?;
                    o.append(&data)?;
                    o.summary.on_events(&data, end_pos);
                    bytes += data.len() as u64;
                }
                WriteOp::Rebase { start_pos, gtid } => {
                    let identity = self.ident()?.to_string();
                    let o = self
                        .open
                        .as_mut()
                        .ok_or_else(|| WriterError::Invariant("rebase without an open file".into()))?;
                    o.start_pos = start_pos;
                    o.header_len = o.size;
                    o.summary.rebase(gtid);
                    self.store.update_file_layout(self.task_id, &identity, o.name.as_str(), start_pos, o.size)?;
                }
                WriteOp::Seal { end_pos, gtid } => self.seal(end_pos, gtid)?,
            }
        }
        let started = Instant::now();
        let mut synced = false;
        if let Some(o) = self.open.as_mut()
            && o.dirty
        {
            synced = true;
            o.write_out()?;
            if let Err(e) = self.fsync.file(&o.file, &o.path, Scope::Data) {
                cut_unsynced(o, self.durable.as_ref(), &self.log);
                return Err(e);
            }
            o.dirty = false;
        }
        let fsync = started.elapsed();
        if synced {
            let m = crate::telemetry::metrics::metrics();
            m.fsync.observe(fsync.as_secs_f64());
            if let Some(received) = batch.received {
                m.durable_seconds.observe(received.elapsed().as_secs_f64());
            }
            if let Some(note) = self.slow_fsyncs.observe(fsync, Instant::now()) {
                self.tell_slow_fsyncs(note, bytes);
            }
        }
        if let Some(cp) = batch.checkpoint {
            // Only now, with the fsync returned, is the checkpoint durable: what waits for that
            // on the source (a semi-sync ack its commit waits for) goes first.
            if let Some(then) = batch.after_durable {
                then.run();
            }
            debug!(self.log, "checkpoint durable";
                "file" => %cp.file, "pos" => cp.pos, "gtid" => cp.gtid_set.as_deref().unwrap_or(""),
                "bytes" => bytes, "fsync_us" => fsync.as_micros() as u64);
            if let Some(o) = self.open.as_mut()
                && o.name == cp.file
            {
                o.summary.commit(cp.pos, cp.gtid_set.as_deref());
            }
            if !self.below_floor(&cp) {
                // The re-fetch has caught up with the stored checkpoint: back to normal.
                self.floor = None;
            }
            self.durable = Some(cp.clone());
            self.publish_durable();
            // The first checkpoint on a source is stored at once: recovery reads the tail past the
            // stored checkpoint, and without one it has no file to start from (and a semi-sync
            // ack of it must survive a crash). Later ones are stored by the task's timer
            // (`PersistCheckpoint`, every `checkpoint_interval`) between batches, so that no
            // batch's answer, and no semi-sync ack or relay client waiting on it, waits for the
            // metadata write; here only when the timer has fallen far behind.
            let first_here = self.persisted.as_ref().is_none_or(|p| p.source_identity != cp.source_identity);
            if first_here || self.last_persist.elapsed() >= self.checkpoint_interval * PERSIST_OVERDUE {
                self.persist()?;
            }
            let _ = self.report.try_send(WriterEvent::Checkpointed { checkpoint: cp, fsync, bytes });
        }
        Ok(self.durable.clone())
    }

    pub(super) fn create(&mut self, name: BinlogFileName, start_pos: u64, header: &[u8]) -> Result<(), WriterError> {
        // Checked again here, not only per batch: a holding that ended while this batch ran
        // must not create a file in the directory of the holding that follows it.
        self.check_lease()?;
        if let Some(o) = &self.open {
            return Err(WriterError::Invariant(format!("creating {name} while {} is still open", o.name)));
        }
        let identity = self.ident()?.to_string();
        let dir = self.layout.source_dir(self.task_id, &identity);
        let path = dir.join(name.as_str());
        let (file, mut direct) = if self.direct() {
            let file = direct::open_direct(&path, true).map_err(|e| WriterError::io("create", &path, e))?;
            let cached = direct::open_cached(&path).map_err(|e| WriterError::io("open", &path, e))?;
            (file, Some(DirectTail::new(0, &[], cached)))
        } else {
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .mode(0o600) // row data: the owner's only (the umask is 077 as well, see fsmode)
                .open(&path)
                .map_err(|e| WriterError::io("create", &path, e))?;
            (file, None)
        };
        let head = [&MAGIC[..], header].concat();
        match direct.as_mut() {
            Some(t) => t.append(&file, &head),
            None => (&file).write_all(&head),
        }
        .map_err(|e| WriterError::io("write", &path, e))?;
        // Hashed here when this batch is hashed inline (a hashing thread starts the digest itself;
        // a file begun in a batch hashed after sealing is read back whole).
        let hasher = matches!(self.digests, BatchDigests::Inline).then(|| Sha256::new_with_prefix(&head));
        let header_len = head.len() as u64;
        let inserted = self.store.insert_file(&FileRecord {
            task_id: self.task_id.0,
            source_identity: identity.clone(),
            file_name: name.clone(),
            state: FileState::Open,
            start_pos,
            header_len,
            end_pos: None,
            size: header_len,
            sha256: None,
            created_at: chrono::Utc::now(),
            sealed_at: None,
            upload: Default::default(),
            summary: Default::default(),
        });
        match inserted {
            Ok(()) => {}
            // A takeover re-fetching a catalogued file: its row stays as it is (it tells what
            // the file must hold, should this node crash before the file is whole again).
            Err(StoreError::Duplicate(_)) if self.floor.is_some() => {
                self.store.update_file_layout(self.task_id, &identity, name.as_str(), start_pos, header_len)?;
            }
            Err(e) => return Err(e.into()),
        }
        // The new name must survive a crash before any checkpoint points into the file.
        self.fsync.dir(&dir)?;
        info!(self.log, "file created"; "file" => %name, "start_pos" => start_pos);
        let _ = self.report.try_send(WriterEvent::FileCreated { identity, name: name.clone() });
        // Where the previous file ended is where this one begins, GTID-wise (for the first file a
        // takeover re-fetches, the catalog knows; the durable checkpoint is still the floor).
        let gtid_start = match self.rebuild.take() {
            Some(r) if r.name == name => r.gtid_start,
            _ => self.durable.as_ref().and_then(|c| c.gtid_set.clone()),
        };
        let summary = SummaryBuilder::new(header, gtid_start);
        self.open = Some(OpenLocal {
            name,
            path,
            file,
            start_pos,
            header_len,
            size: header_len,
            dirty: true,
            kicked: 0,
            summary,
            direct,
            hasher,
        });
        Ok(())
    }

    pub(super) fn seal(&mut self, end_pos: u64, gtid: Option<String>) -> Result<(), WriterError> {
        self.check_lease()?;
        let identity = self.ident()?.to_string();
        let _span = span(
            "file.seal",
            vec![KeyValue::new("task.id", self.task_id.0), KeyValue::new("binlog.end_pos", end_pos as i64)],
        );
        let mut o = self.open.take().ok_or_else(|| WriterError::Invariant("seal without an open file".into()))?;
        // Sealed means exactly the source's bytes: no padding past them.
        o.write_out()?;
        if let Err(e) = self.fsync.file(&o.file, &o.path, Scope::Data) {
            cut_unsynced(&o, self.durable.as_ref(), &self.log);
            return Err(e);
        }
        o.dirty = false;
        o.summary.commit(end_pos, gtid.as_deref());
        let cp = Checkpoint { source_identity: identity.clone(), file: o.name.clone(), pos: end_pos, gtid_set: gtid };
        // A takeover re-fetching files behind the stored checkpoint seals them without moving it.
        let behind = self.below_floor(&cp);
        let stored = (!behind).then_some(&cp);
        #[cfg(debug_assertions)]
        test_abort_before_seal_record();
        self.store.seal_file(self.task_id, &identity, o.name.as_str(), end_pos, o.size, o.summary.summary(), stored)?;
        self.durable = Some(cp.clone());
        if !behind {
            self.floor = None;
            self.persisted = Some(cp);
        }
        self.publish_durable();
        self.last_persist = Instant::now();
        info!(self.log, "file sealed"; "file" => %o.name, "size" => o.size, "end_pos" => end_pos);
        // Asked last: the hashing thread, if this batch has one, had the fsync and the store
        // write to catch up.
        let sha256 = match &self.digests {
            BatchDigests::Apart(rx) => rx.recv().unwrap_or(None),
            BatchDigests::Inline => o.hasher.take().map(|h| hex::encode(h.finalize())),
            BatchDigests::AfterSealing => None,
        };
        // Never dropped (unlike progress reports): a sealed file enters the upload queue
        // only once the task hashes it.
        self.report.do_send(WriterEvent::FileSealed {
            identity,
            name: o.name.clone(),
            path: o.path.clone(),
            size: o.size,
            sha256,
        });
        Ok(())
    }

    /// Says what `SlowFsyncs` decided (`bytes`: the batch's, for a slow fsync).
    pub(super) fn tell_slow_fsyncs(&self, note: SlowFsyncNote, bytes: u64) {
        match note {
            SlowFsyncNote::Slow { took, held, held_slowest } => {
                let file = self.open.as_ref().map(|o| o.name.to_string()).unwrap_or_default();
                warn!(self.log, "slow fsync: the disk took a second or more to make a batch durable; everything \
                                 waiting for it (a semi-sync source's commits, relay clients, the checkpoint) waited as long";
                    "file" => file, "took_ms" => took.as_millis() as u64, "bytes" => bytes,
                    "held_back" => held, "held_back_slowest_ms" => held_slowest.as_millis() as u64,
                    "said_at_most_every_s" => self.slow_fsyncs.quiet.as_secs());
            }
            SlowFsyncNote::HeldBack { held, held_slowest } => {
                warn!(self.log, "slow fsyncs held back since the last slow-fsync warning (a second or more each)";
                    "held_back" => held, "held_back_slowest_ms" => held_slowest.as_millis() as u64,
                    "said_at_most_every_s" => self.slow_fsyncs.quiet.as_secs());
            }
        }
    }

    pub(super) fn persist(&mut self) -> Result<(), WriterError> {
        if let Some(cp) = &self.durable
            && self.below_floor(cp)
        {
            // A takeover still re-fetching: the stored checkpoint is ahead; leave it.
            self.last_persist = Instant::now();
            return Ok(());
        }
        if self.durable.is_some() && self.durable != self.persisted {
            self.check_lease()?;
            let cp = self.durable.clone().expect("checked");
            let _span = span(
                "checkpoint.persist",
                vec![
                    KeyValue::new("task.id", self.task_id.0),
                    KeyValue::new("binlog.file", cp.file.to_string()),
                    KeyValue::new("binlog.pos", cp.pos as i64),
                ],
            );
            match &self.open {
                Some(o) if o.name == cp.file => {
                    let size = o.local_offset(cp.pos);
                    self.store.save_checkpoint_in_open_file(self.task_id, &cp, size, o.summary.summary())?;
                }
                _ => self.store.save_checkpoint(self.task_id, &cp)?,
            }
            self.persisted = Some(cp);
        }
        self.last_persist = Instant::now();
        Ok(())
    }
}

/// Debug builds only (never in a release binary): with `BINLOG_TEST_ABORT_BEFORE_SEAL_RECORD` set
/// to a path, once a test has created that file (arming it), the next seal removes it and aborts
/// the process between the file's last fsync and the catalog transaction that marks it SEALED
/// (a crash at that point, once), so an integration test can show the restart loses nothing.
#[cfg(debug_assertions)]
fn test_abort_before_seal_record() {
    if let Some(armed) = std::env::var_os("BINLOG_TEST_ABORT_BEFORE_SEAL_RECORD")
        && std::fs::remove_file(&armed).is_ok()
    {
        std::process::abort();
    }
}
