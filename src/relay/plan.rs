//! Dump planning: where a dump starts for a file/position or a MariaDB GTID state, how far each
//! file may be read, and which event groups a GTID dump skips. Pure functions over catalog facts;
//! every refusal is the 1236 message a replica shows in `Last_IO_Error`.
//!
//! The one rule that matters most lives in [`readable_len`]: nothing past the durable checkpoint
//! is ever readable (bytes after it may be cut by a crash and fetched again differently).

use std::collections::BTreeMap;

use crate::binlog::gtid::{GtidSet, MariadbGtid, MariadbGtidState, Uuid};
use crate::binlog::summary::Gtid;
use crate::domain::Flavor;
use crate::meta::{Checkpoint, FileRecord, FileState};

/// A refusal to dump, sent as error 1236 (ER_MASTER_FATAL_ERROR_READING_BINLOG).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DumpRefused(pub String);

/// How many bytes of `file` (local offsets) a dump may read now, or `None` when none yet (a file
/// created after the durable checkpoint's file).
pub fn readable_len(file: &FileRecord, durable: Option<&Checkpoint>) -> Option<u64> {
    match (file.state, durable) {
        (FileState::Sealed, _) => Some(file.size),
        (FileState::Open, Some(cp)) if cp.file == file.file_name && cp.source_identity == file.source_identity => {
            Some(file.local_offset(cp.pos))
        }
        (FileState::Open, _) => None,
    }
}

/// How a file's bytes are known to be the ones stored before they are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeCheck {
    /// Each event against its own CRC32, the checksum the source computed, as it is read and
    /// before it goes out; a sealed file's size against the catalog before its first byte. No
    /// whole-file pass: a catch-up reads each file once.
    EachEvent,
    /// The whole file against the size and sha256 recorded at sealing, before its first byte
    /// (events without checksums; or a copy fetched from the bucket, which another writer could
    /// have replaced with a different, equally well-formed file).
    WholeFile,
}

/// The check a sealed file gets before it is served: its events' own CRC32s when its FDE says
/// they have them and the copy is the local one; the recorded sha256 otherwise.
pub fn serve_check(events_have_crc: bool, from_bucket: bool) -> ServeCheck {
    if events_have_crc && !from_bucket { ServeCheck::EachEvent } else { ServeCheck::WholeFile }
}

/// Where a dump starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartPlan {
    /// Index in the file list.
    pub file: usize,
    /// Source position announced in the artificial ROTATE.
    pub pos: u64,
    /// Local offset of the first event to send after the FDE.
    pub offset: u64,
    /// GTID dump: per domain, the last GTID the replica has (groups up to it are skipped).
    pub skip: GtidSkip,
    /// MySQL GTID dump that skips the start file's first transaction: the FDE goes out with its
    /// `created` field zeroed, so the replica keeps its temporary tables (as MySQL's
    /// `Binlog_sender` does).
    pub clear_fde_created: bool,
}

/// The files a dump can see, oldest first: those of the durable checkpoint's source identity
/// (after a switchover, file names of different servers can repeat).
pub fn served_files(files: Vec<FileRecord>, durable: Option<&Checkpoint>) -> Vec<FileRecord> {
    let identity = match durable {
        Some(cp) => cp.source_identity.clone(),
        None => match files.last() {
            Some(f) => f.source_identity.clone(),
            None => return files,
        },
    };
    files.into_iter().filter(|f| f.source_identity == identity).collect()
}

/// A file removed locally by retention that the bucket does not hold verified either.
fn gone_everywhere(f: &FileRecord) -> DumpRefused {
    DumpRefused(format!(
        "binlog file {} is no longer on local disk (retention removed it) and the bucket holds no verified copy of it",
        f.file_name
    ))
}

fn held(files: &[FileRecord]) -> String {
    match (files.first(), files.last()) {
        (Some(a), Some(b)) => format!("it holds {} to {}", a.file_name, b.file_name),
        _ => "it holds no file yet".into(),
    }
}

/// A dump by file name and position (`COM_BINLOG_DUMP` without a GTID state).
pub fn plan_position(
    files: &[FileRecord],
    durable: Option<&Checkpoint>,
    name: &str,
    pos: u64,
) -> Result<StartPlan, DumpRefused> {
    let pos = pos.max(4);
    let index = if name.is_empty() {
        if files.is_empty() {
            return Err(DumpRefused("Could not find first log file name in binary log index file: binlog-server holds no file for this task yet".into()));
        }
        0
    } else {
        files.iter().position(|f| f.file_name.as_str() == name).ok_or_else(|| {
            DumpRefused(format!(
                "Could not find first log file name in binary log index file: binlog-server holds no file {name} for this task ({})",
                held(files)
            ))
        })?
    };
    let f = &files[index];
    if f.upload.local_deleted_at.is_some() && !f.held_in_bucket() {
        return Err(gone_everywhere(f));
    }
    if f.start_pos > 4 && pos < f.start_pos {
        return Err(DumpRefused(format!(
            "Client requested master to start replication from impossible position {pos} in {}: binlog-server holds that file only from position {}",
            f.file_name, f.start_pos
        )));
    }
    let offset = f.local_offset(pos);
    let Some(end) = readable_len(f, durable) else {
        return Err(DumpRefused(format!(
            "binlog file {} holds nothing durable yet (it was just created); retry in a moment",
            f.file_name
        )));
    };
    if offset > end {
        return Err(DumpRefused(format!(
            "Client requested master to start replication from impossible position {pos} in {}: binlog-server holds that file up to position {}",
            f.file_name,
            source_pos(f, end)
        )));
    }
    Ok(StartPlan { file: index, pos, offset, skip: GtidSkip::default(), clear_fde_created: false })
}

/// The source position of a local offset in `f`.
pub fn source_pos(f: &FileRecord, offset: u64) -> u64 {
    if f.start_pos <= 4 { offset } else { offset + f.start_pos - f.header_len }
}

/// A MariaDB GTID dump (`@slave_connect_state`): the last file whose starting GTID state the
/// replica already has, from its beginning, skipping the groups the replica has.
pub fn plan_mariadb_gtid(
    files: &[FileRecord],
    durable: Option<&Checkpoint>,
    state: &MariadbGtidState,
    strict: bool,
) -> Result<StartPlan, DumpRefused> {
    let end_state = durable
        .and_then(|cp| cp.gtid_set.as_deref())
        .map(MariadbGtidState::parse)
        .transpose()
        .map_err(|e| DumpRefused(format!("the archive's GTID state is unreadable: {}", e.0)))?
        .unwrap_or_default();
    // A GTID past everything the archive holds durably: the replica is ahead of (or diverged
    // from) this source.
    for g in state.iter() {
        let ahead = match end_state.get(g.domain) {
            Some(have) => g.seq > have.seq,
            None => g.seq > 0,
        };
        if ahead {
            return Err(DumpRefused(format!(
                "Error: connecting slave requested to start from GTID {g}, which is not in the master's binlog \
                 (binlog-server holds {} durably)",
                if end_state.is_empty() { "no GTID".to_string() } else { end_state.to_string() }
            )));
        }
    }
    let starts: Vec<Option<MariadbGtidState>> =
        files.iter().map(|f| f.summary.gtid_start.as_deref().and_then(|s| MariadbGtidState::parse(s).ok())).collect();
    let index = starts
        .iter()
        .enumerate()
        .rev()
        .find(|(i, s)| {
            // Only a file with durable events (a file just created may not even hold its FDE
            // yet; one joined mid-way holds its header first).
            let f = &files[*i];
            readable_len(f, durable).is_some_and(|len| len > f.local_offset(f.start_pos.max(4)))
                && s.as_ref().is_some_and(|s| state.includes(s))
        })
        .map(|(i, _)| i)
        .ok_or_else(|| {
            DumpRefused(format!(
                "Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old \
                 and required binlog files have been purged. binlog-server does not hold GTID state '{state}' ({}; \
                 the earliest begins at GTID state '{}')",
                held(files),
                files.first().and_then(|f| f.summary.gtid_start.as_deref()).unwrap_or("unknown")
            ))
        })?;
    if let Some(f) = files[index..].iter().find(|f| f.upload.local_deleted_at.is_some() && !f.held_in_bucket()) {
        return Err(gone_everywhere(f));
    }
    let start = starts[index].clone().unwrap_or_default();
    // A file the task joined mid-way (a GTID start, or a source switchover it followed) holds the
    // source's header, then events from `start_pos`; what lies before was skipped by the source
    // because the task had it, and its `gtid_start` says which. A replica whose state includes
    // that has it too: it starts at the first event after the header.
    let (pos, offset) = {
        let f = &files[index];
        let pos = f.start_pos.max(4);
        (pos, f.local_offset(pos))
    };
    // Domains whose GTID is exactly where the file begins need no skipping.
    let pending = state.iter().filter(|g| !start.covers(&MariadbGtid { seq: g.seq + 1, ..**g })).copied();
    let pending: BTreeMap<u32, MariadbGtid> =
        pending.filter(|g| start.get(g.domain).is_none_or(|s| s.seq < g.seq)).map(|g| (g.domain, g)).collect();
    Ok(StartPlan {
        file: index,
        pos,
        offset,
        skip: GtidSkip { pending, strict, ..GtidSkip::default() },
        clear_fde_created: false,
    })
}

/// Whether a file's GTID start is not known yet (its first checkpoint is not catalogued): a
/// GTID dump refused now might be served a moment later.
pub fn gtid_start_pending(files: &[FileRecord]) -> bool {
    files.iter().any(|f| f.summary.gtid_start.is_none())
}

/// `uuid[:tag]:ranges` of the entries of `set` whose uuid is `uuid` (for messages).
fn entries_of(set: &GtidSet, uuid: &Uuid) -> String {
    let mut parts = Vec::new();
    for (u, tag, iv) in set.entries().filter(|(u, _, _)| *u == uuid) {
        let ranges: Vec<String> =
            iv.iter().map(|(s, e)| if e - s == 1 { s.to_string() } else { format!("{s}-{}", e - 1) }).collect();
        let tag = if tag.is_empty() { String::new() } else { format!(":{tag}") };
        parts.push(format!("{u}{tag}:{}", ranges.join(":")));
    }
    parts.join(",")
}

fn purged(requested: &GtidSet, missing: &GtidSet) -> DumpRefused {
    DumpRefused(format!(
        "Cannot replicate because the master purged required binary logs. Replicate the missing transactions \
         from elsewhere, or provision a new slave from backup. The GTID set sent by the slave is '{requested}', \
         and the missing transactions are '{missing}' (binlog-server's archive of this task does not reach back \
         that far)"
    ))
}

/// A MySQL GTID dump (`COM_BINLOG_DUMP_GTID` with an empty file name): the transactions the
/// replica has are `requested`; the dump starts, as a MySQL source's does, in the newest file
/// whose PREVIOUS_GTIDS the replica has entirely, from its beginning, and leaves out every
/// transaction of `requested` ([`GtidSkip::exclude`]).
///
/// Refused (1236) as MySQL refuses: a replica with transactions of this source that the archive
/// does not hold durably ("more GTIDs than the master"), and a replica that lacks transactions
/// from before the archive's first file ("purged required binary logs"), each naming the GTIDs.
pub fn plan_mysql_gtid(
    files: &[FileRecord],
    durable: Option<&Checkpoint>,
    requested: &GtidSet,
) -> Result<StartPlan, DumpRefused> {
    let executed = durable
        .and_then(|cp| cp.gtid_set.as_deref())
        .map(GtidSet::parse)
        .transpose()
        .map_err(|e| DumpRefused(format!("the archive's GTID state is unreadable: {}", e.0)))?
        .unwrap_or_default();
    // Only the source's own uuid: the replica may hold transactions of other sources.
    if let Some(own) = durable.and_then(|cp| Uuid::parse(&cp.source_identity).ok()) {
        let extra = requested.difference(&executed);
        let ahead = entries_of(&extra, &own);
        if !ahead.is_empty() {
            return Err(DumpRefused(format!(
                "Slave has more GTIDs than the master has, using the master's SERVER_UUID: the replica has {ahead}, \
                 which binlog-server does not hold (it holds '{executed}' durably)"
            )));
        }
    }
    let start_of = |f: &FileRecord| f.summary.gtid_start.as_deref().and_then(|s| GtidSet::parse(s).ok());
    // What the archive's first file says came before it: the "purged" transactions.
    if let Some(lost) = files.first().and_then(start_of) {
        let missing = lost.difference(requested);
        if !missing.is_empty() {
            return Err(purged(requested, &missing));
        }
    }
    let index = files
        .iter()
        .enumerate()
        .rev()
        .find(|(_, f)| {
            f.start_pos <= 4
                && readable_len(f, durable).is_some_and(|len| len > 4)
                && start_of(f).is_some_and(|s| s.is_subset(requested))
        })
        .map(|(i, _)| i)
        .ok_or_else(|| {
            let missing = files.first().and_then(start_of).map(|s| s.difference(requested)).unwrap_or_default();
            if missing.is_empty() {
                DumpRefused(format!(
                    "Could not find a binlog file whose PREVIOUS_GTIDS the slave's GTID set '{requested}' contains: \
                     binlog-server cannot serve it ({})",
                    held(files)
                ))
            } else {
                purged(requested, &missing)
            }
        })?;
    if let Some(f) = files[index..].iter().find(|f| f.upload.local_deleted_at.is_some() && !f.held_in_bucket()) {
        return Err(gone_everywhere(f));
    }
    let clear_fde_created = match files[index].summary.first_gtid.as_deref().map(|g| Gtid::parse(Flavor::Mysql, g)) {
        Some(Ok(Gtid::Mysql { uuid, tag, gno })) => requested.contains(&uuid, &tag, gno),
        _ => false,
    };
    Ok(StartPlan {
        file: index,
        pos: 4,
        offset: 4,
        skip: GtidSkip { exclude: Some(requested.clone()), ..GtidSkip::default() },
        clear_fde_created,
    })
}

/// Which event groups a GTID dump leaves out: per domain, everything up to and including the
/// replica's GTID. Fed every event type (and the GTID of each GTID event) in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSkip {
    pending: BTreeMap<u32, MariadbGtid>,
    strict: bool,
    skipping: bool,
    /// MySQL: the transactions the replica has (`COM_BINLOG_DUMP_GTID`); their groups are left
    /// out wherever they are.
    exclude: Option<GtidSet>,
}

impl GtidSkip {
    /// A dump by position that still leaves out the replica's MySQL transactions
    /// (COM_BINLOG_DUMP_GTID with a file name).
    pub fn excluding(set: GtidSet) -> Self {
        GtidSkip { exclude: Some(set), ..GtidSkip::default() }
    }

    /// Whether MySQL GTIDs are left out (GTID events must be read).
    pub fn excludes(&self) -> bool {
        self.exclude.is_some()
    }

    pub fn is_done(&self) -> bool {
        self.pending.is_empty() && !self.skipping && self.exclude.is_none()
    }

    /// A group's GTID event: whether the group is sent. Strict mode refuses a replica whose GTID
    /// the domain's history skipped (the source has `d-s-(n+1)` but never had `d-s-n`).
    pub fn on_gtid(&mut self, g: MariadbGtid) -> Result<bool, DumpRefused> {
        let Some(target) = self.pending.get(&g.domain).copied() else {
            self.skipping = false;
            return Ok(true);
        };
        if g.seq < target.seq {
            self.skipping = true;
            return Ok(false);
        }
        self.pending.remove(&g.domain);
        if g.seq == target.seq && (g.server_id == target.server_id || !self.strict) {
            self.skipping = true;
            return Ok(false);
        }
        if self.strict {
            return Err(DumpRefused(format!(
                "Error: connecting slave requested to start from GTID {target}, which is not in the master's binlog \
                 (binlog-server holds {g} in its place; slave_gtid_strict_mode is on)"
            )));
        }
        self.skipping = false;
        Ok(true)
    }

    /// A MySQL GTID event (`Some((uuid, tag, gno))`) or ANONYMOUS_GTID (`None`) at `at` in
    /// `file`: whether its group is sent. A GTID dump cannot serve an anonymous transaction (the
    /// replica could not tell whether it has it): refused, with MySQL's message.
    pub fn on_mysql_gtid(
        &mut self,
        gtid: Option<(&Uuid, &str, u64)>,
        file: &str,
        at: u64,
    ) -> Result<bool, DumpRefused> {
        let Some(exclude) = &self.exclude else {
            self.skipping = false;
            return Ok(true);
        };
        let Some((uuid, tag, gno)) = gtid else {
            return Err(DumpRefused(format!(
                "Cannot replicate anonymous transaction when AUTO_POSITION = 1, at file {file}, position {at}."
            )));
        };
        self.skipping = exclude.contains(uuid, tag, gno);
        Ok(!self.skipping)
    }

    /// Any other event: whether it is sent (events of a skipped group are not; file-level events
    /// always are).
    pub fn on_other(&mut self, type_code: u8) -> bool {
        use crate::binlog::event::types;
        match type_code {
            types::FORMAT_DESCRIPTION
            | types::ROTATE
            | types::STOP
            | types::PREVIOUS_GTIDS
            | types::MARIA_GTID_LIST
            | types::MARIA_BINLOG_CHECKPOINT => true,
            _ => !self.skipping,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::binlog::name::BinlogFileName;

    pub(crate) fn file(name: &str, state: FileState, size: u64, gtid_start: Option<&str>) -> FileRecord {
        FileRecord {
            task_id: 1,
            source_identity: "mariadb-1-0".into(),
            file_name: BinlogFileName::parse(name).unwrap(),
            state,
            start_pos: 4,
            header_len: 4,
            end_pos: (state == FileState::Sealed).then_some(size),
            size,
            sha256: None,
            created_at: chrono::Utc::now(),
            sealed_at: None,
            upload: Default::default(),
            summary: crate::binlog::summary::FileSummary {
                gtid_start: gtid_start.map(String::from),
                ..Default::default()
            },
        }
    }

    fn cp(name: &str, pos: u64, gtid: &str) -> Checkpoint {
        Checkpoint {
            source_identity: "mariadb-1-0".into(),
            file: BinlogFileName::parse(name).unwrap(),
            pos,
            gtid_set: Some(gtid.into()),
        }
    }

    fn archive() -> Vec<FileRecord> {
        vec![
            file("bin.000001", FileState::Sealed, 1000, Some("")),
            file("bin.000002", FileState::Sealed, 2000, Some("0-1-10")),
            file("bin.000003", FileState::Open, 5000, Some("0-1-20")),
        ]
    }

    #[test]
    fn a_local_file_with_event_checksums_is_checked_event_by_event_and_any_other_whole() {
        // (events have a CRC32, copy fetched from the bucket) -> check
        let table = [
            (true, false, ServeCheck::EachEvent),
            (true, true, ServeCheck::WholeFile),
            (false, false, ServeCheck::WholeFile),
            (false, true, ServeCheck::WholeFile),
        ];
        for (crc, bucket, want) in table {
            assert_eq!(serve_check(crc, bucket), want, "crc {crc}, from the bucket {bucket}");
        }
    }

    #[test]
    fn nothing_past_the_durable_checkpoint_is_readable() {
        let files = archive();
        let durable = cp("bin.000003", 3000, "0-1-25");
        assert_eq!(readable_len(&files[0], Some(&durable)), Some(1000));
        // 5000 bytes on disk, 3000 durable.
        assert_eq!(readable_len(&files[2], Some(&durable)), Some(3000));
        assert_eq!(readable_len(&files[2], None), None);
        let older = cp("bin.000002", 2000, "0-1-20");
        assert_eq!(readable_len(&files[2], Some(&older)), None);
        // A file joined mid-way: source positions map to local offsets.
        let mut mid = file("bin.000003", FileState::Open, 900, None);
        (mid.start_pos, mid.header_len) = (5000, 300);
        assert_eq!(readable_len(&mid, Some(&cp("bin.000003", 5400, ""))), Some(700));
    }

    #[test]
    fn position_dumps() {
        let files = archive();
        let durable = cp("bin.000003", 3000, "0-1-25");
        let p = plan_position(&files, Some(&durable), "bin.000002", 120).unwrap();
        assert_eq!((p.file, p.pos, p.offset), (1, 120, 120));
        let p = plan_position(&files, Some(&durable), "", 0).unwrap();
        assert_eq!((p.file, p.pos, p.offset), (0, 4, 4));
        assert_eq!(plan_position(&files, Some(&durable), "bin.000003", 3000).unwrap().offset, 3000);
        let e = plan_position(&files, Some(&durable), "bin.000003", 3001).unwrap_err();
        assert!(e.0.contains("impossible position 3001") && e.0.contains("up to position 3000"), "{e}");
        let e = plan_position(&files, Some(&durable), "bin.000009", 4).unwrap_err();
        assert!(e.0.contains("no file bin.000009") && e.0.contains("bin.000001 to bin.000003"), "{e}");
        // A file created after the durable checkpoint's file has nothing to serve yet.
        let older = cp("bin.000002", 2000, "0-1-20");
        assert!(plan_position(&files, Some(&older), "bin.000003", 4).unwrap_err().0.contains("nothing durable yet"));
        let mut gone = files.clone();
        gone[0].upload.local_deleted_at = Some(chrono::Utc::now());
        assert!(
            plan_position(&gone, Some(&durable), "bin.000001", 4).unwrap_err().0.contains("no longer on local disk")
        );
        // Removed locally, but held verified in the bucket: served from there.
        let mut in_bucket = gone.clone();
        in_bucket[0].upload.state = crate::meta::UploadState::Uploaded;
        in_bucket[0].upload.verified = true;
        in_bucket[0].upload.object_key = Some("k/bin.000001".into());
        let p = plan_position(&in_bucket, Some(&durable), "bin.000001", 4).unwrap();
        assert_eq!((p.file, p.pos, p.offset), (0, 4, 4));
        assert_eq!(plan_mariadb_gtid(&in_bucket, Some(&durable), &MariadbGtidState::default(), true).unwrap().file, 0);
        // ... unless the bucket's copy was removed too (its own retention).
        in_bucket[0].upload.remote_deleted_at = Some(chrono::Utc::now());
        assert!(plan_position(&in_bucket, Some(&durable), "bin.000001", 4).unwrap_err().0.contains("no verified copy"));
    }

    #[test]
    fn gtid_dumps_start_in_the_last_file_the_replica_has_reached() {
        let files = archive();
        let durable = cp("bin.000003", 3000, "0-1-25");
        let st = |s: &str| MariadbGtidState::parse(s).unwrap();
        assert_eq!(plan_mariadb_gtid(&files, Some(&durable), &st("0-1-15"), true).unwrap().file, 1);
        assert_eq!(plan_mariadb_gtid(&files, Some(&durable), &st("0-1-20"), true).unwrap().file, 2);
        assert_eq!(plan_mariadb_gtid(&files, Some(&durable), &st(""), true).unwrap().file, 0);
        assert_eq!(plan_mariadb_gtid(&files, Some(&durable), &st("0-1-25"), true).unwrap().file, 2);
        let e = plan_mariadb_gtid(&files, Some(&durable), &st("0-1-26"), true).unwrap_err();
        assert!(e.0.contains("GTID 0-1-26") && e.0.contains("not in the master's binlog"), "{e}");
        let e = plan_mariadb_gtid(&files, Some(&durable), &st("0-1-3,5-1-1"), false).unwrap_err();
        assert!(e.0.contains("5-1-1"), "{e}");
        // An archive that begins later than the replica's position.
        let late = files[1..].to_vec();
        let e = plan_mariadb_gtid(&late, Some(&durable), &st("0-1-5"), false).unwrap_err();
        assert!(e.0.contains("Could not find GTID state") && e.0.contains("0-1-5"), "{e}");
        // A file joined mid-way (the task followed a switchover to bin.000007 of another source,
        // by GTID at 0-1-25): a replica at 0-1-25 or past it starts after the file's header, at
        // the source position the copy begins; one before it cannot be served from there.
        let mut joined = file("bin.000007", FileState::Open, 900, Some("0-1-25"));
        (joined.start_pos, joined.header_len) = (5000, 300);
        let after = cp("bin.000007", 5600, "0-2-30");
        let p = plan_mariadb_gtid(std::slice::from_ref(&joined), Some(&after), &st("0-1-25"), true).unwrap();
        assert_eq!((p.file, p.pos, p.offset), (0, 5000, 300));
        let p = plan_mariadb_gtid(std::slice::from_ref(&joined), Some(&after), &st("0-2-27"), true).unwrap();
        assert_eq!((p.file, p.pos, p.offset), (0, 5000, 300), "skips up to 0-2-27 from there");
        let e = plan_mariadb_gtid(std::slice::from_ref(&joined), Some(&after), &st("0-1-24"), true).unwrap_err();
        assert!(e.0.contains("Could not find GTID state"), "{e}");
        assert!(!gtid_start_pending(std::slice::from_ref(&joined)));
        let mut fresh = joined.clone();
        fresh.summary.gtid_start = None;
        assert!(gtid_start_pending(&[joined.clone(), fresh]), "a file whose first checkpoint is not catalogued");
        // Nothing durable after its header yet: not a place to start.
        let header_only = cp("bin.000007", 5000, "0-1-25");
        assert!(plan_mariadb_gtid(std::slice::from_ref(&joined), Some(&header_only), &st("0-1-25"), true).is_err());
    }

    #[test]
    fn a_gtid_dump_skips_the_groups_the_replica_has() {
        let files = archive();
        let durable = cp("bin.000003", 3000, "0-1-25");
        let g = |seq| MariadbGtid { domain: 0, server_id: 1, seq };
        let mut skip =
            plan_mariadb_gtid(&files, Some(&durable), &MariadbGtidState::parse("0-1-12").unwrap(), true).unwrap().skip;
        assert!(skip.on_other(crate::binlog::event::types::FORMAT_DESCRIPTION));
        assert_eq!(skip.on_gtid(g(11)), Ok(false));
        assert!(!skip.on_other(crate::binlog::event::types::XID));
        assert_eq!(skip.on_gtid(g(12)), Ok(false));
        assert_eq!(skip.on_gtid(g(13)), Ok(true));
        assert!(skip.on_other(crate::binlog::event::types::XID));
        assert!(skip.is_done());
        // Strict mode: the replica's GTID is not where it should be.
        let mut strict = GtidSkip { pending: [(0, g(12))].into(), strict: true, ..GtidSkip::default() };
        assert!(strict.on_gtid(MariadbGtid { server_id: 2, ..g(12) }).unwrap_err().0.contains("0-1-12"));
        let mut loose = GtidSkip { pending: [(0, g(12))].into(), ..GtidSkip::default() };
        assert_eq!(loose.on_gtid(g(14)), Ok(true));
        // The replica is exactly at the start of the file: nothing to skip.
        let at_start =
            plan_mariadb_gtid(&files, Some(&durable), &MariadbGtidState::parse("0-1-20").unwrap(), true).unwrap();
        assert!(at_start.skip.is_done());
    }
    const U: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

    /// A MySQL archive: three files of source U, the third open; U's tagged transactions
    /// (`U:tag:n`, MySQL 8.4+) begin in the second.
    fn mysql_archive() -> (Vec<FileRecord>, Checkpoint) {
        let f = |name: &str, state, size, start: &str, first: &str| {
            let mut r = file(name, state, size, Some(start.replace('U', U).as_str()));
            r.source_identity = U.into();
            r.summary.first_gtid = Some(first.replace('U', U));
            r
        };
        let files = vec![
            f("bin.000001", FileState::Sealed, 1000, "", "U:1"),
            f("bin.000002", FileState::Sealed, 2000, "U:1-10", "U:11"),
            f("bin.000003", FileState::Open, 5000, "U:1-20,U:tag:1-2", "U:21"),
        ];
        let durable = Checkpoint {
            source_identity: U.into(),
            file: BinlogFileName::parse("bin.000003").unwrap(),
            pos: 3000,
            gtid_set: Some(format!("{U}:1-25,{U}:tag:1-3")),
        };
        (files, durable)
    }

    #[test]
    fn mysql_gtid_dumps_start_in_the_newest_file_the_replica_has_all_before() {
        let (files, durable) = mysql_archive();
        let set = |s: &str| GtidSet::parse(&s.replace('U', U)).unwrap();
        // (replica's set, start file, FDE `created` cleared: the file's first transaction is skipped)
        for (requested, file, cleared) in [
            ("", 0, false),
            ("U:1-5", 0, true),
            ("U:1-10", 1, false),
            ("U:1-12", 1, true),
            // The third file's PREVIOUS_GTIDS has tagged transactions the replica lacks.
            ("U:1-20", 1, true),
            ("U:1-20,U:tag:1-2", 2, false),
            ("U:1-25,U:tag:1-3", 2, true),
            // Transactions of other sources (multi-source, an earlier primary) do not matter.
            ("U:1-5,11111111-1111-1111-1111-111111111111:1-100", 0, true),
        ] {
            let p =
                plan_mysql_gtid(&files, Some(&durable), &set(requested)).unwrap_or_else(|e| panic!("{requested}: {e}"));
            assert_eq!((p.file, p.pos, p.offset, p.clear_fde_created), (file, 4, 4, cleared), "{requested}");
        }
        // A replica ahead of the archive on this source's own uuid, tagged or not.
        for (requested, named) in [("U:1-26", "U:26"), ("U:1-20,U:tag:1-4", "U:tag:4")] {
            let e = plan_mysql_gtid(&files, Some(&durable), &set(requested)).unwrap_err();
            assert!(e.0.contains("more GTIDs than the master") && e.0.contains(&named.replace('U', U)), "{e}");
        }
        // An archive that begins after transactions the replica lacks: what is missing is named.
        let late = files[1..].to_vec();
        let e = plan_mysql_gtid(&late, Some(&durable), &set("U:1-5")).unwrap_err();
        assert!(e.0.contains("purged required binary logs") && e.0.contains(&format!("'{U}:6-10'")), "{e}");
        let e = plan_mysql_gtid(&late, Some(&durable), &set("")).unwrap_err();
        assert!(e.0.contains(&format!("'{U}:1-10'")), "{e}");
        // A file the dump needs is no longer on local disk.
        let mut gone = files.clone();
        gone[1].upload.local_deleted_at = Some(chrono::Utc::now());
        let e = plan_mysql_gtid(&gone, Some(&durable), &set("U:1-12")).unwrap_err();
        assert!(e.0.contains("bin.000002 is no longer on local disk"), "{e}");
        // The open file holds nothing durable yet: the dump starts in the last sealed one.
        let older = Checkpoint { file: BinlogFileName::parse("bin.000002").unwrap(), ..durable.clone() };
        assert_eq!(plan_mysql_gtid(&files, Some(&older), &set("U:1-20,U:tag:1-2")).unwrap().file, 1);
    }

    #[test]
    fn a_mysql_gtid_dump_leaves_out_the_replicas_transactions_and_refuses_anonymous_ones() {
        let (files, durable) = mysql_archive();
        let u = Uuid::parse(U).unwrap();
        let requested = GtidSet::parse(&format!("{U}:1-12,{U}:tag:1")).unwrap();
        let mut skip = plan_mysql_gtid(&files, Some(&durable), &requested).unwrap().skip;
        assert!(skip.on_other(crate::binlog::event::types::PREVIOUS_GTIDS));
        assert_eq!(skip.on_mysql_gtid(Some((&u, "", 11)), "bin.000002", 4), Ok(false));
        assert!(!skip.on_other(crate::binlog::event::types::XID), "the rest of a left-out group");
        assert!(skip.on_other(crate::binlog::event::types::ROTATE));
        assert_eq!(skip.on_mysql_gtid(Some((&u, "", 13)), "bin.000002", 900), Ok(true));
        assert!(skip.on_other(crate::binlog::event::types::XID));
        assert_eq!(skip.on_mysql_gtid(Some((&u, "tag", 1)), "bin.000003", 900), Ok(false));
        assert_eq!(skip.on_mysql_gtid(Some((&u, "tag", 2)), "bin.000003", 999), Ok(true));
        assert!(!skip.is_done(), "a MySQL exclusion lasts the whole dump");
        let e = skip.on_mysql_gtid(None, "bin.000003", 1234).unwrap_err();
        assert!(e.0.contains("anonymous transaction") && e.0.contains("bin.000003, position 1234"), "{e}");
        // A dump by position sends anonymous transactions like any other.
        let mut by_pos = GtidSkip::default();
        assert_eq!(by_pos.on_mysql_gtid(None, "bin.000001", 4), Ok(true));
    }
}
