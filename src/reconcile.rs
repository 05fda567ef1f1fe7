//! The reconcile plan: how one source's folder of a task is made to agree with the durable
//! checkpoint before a connection attempt streams into it (after a crash, a full disk, a
//! takeover). [`plan`] takes the facts (the catalog rows, the checkpoint, the sizes on disk,
//! whether missing files may be fetched again) and returns a [`Plan`] that `FileWriterActor`
//! carries out, or a [`Refusal`] when the facts show that data was lost.
//!
//! After a crash the stored checkpoint may lag what was fsynced (and, for a semi-sync task,
//! acknowledged to the source): [`tail_to_scan`] names the tail to read back, `binlog::tail`
//! reads it, and [`plan`] keeps its complete transactions (see [`Plan::recovered`]).
//!
//! Pure: no disk, no database, no clock. Every refusal is decided before anything is changed,
//! so a refused plan leaves the folder as it found it.

use std::collections::{BTreeMap, BTreeSet};

use crate::binlog::event::MAGIC;
use crate::binlog::name::BinlogFileName;
use crate::binlog::tail::Tail;
use crate::meta::{Checkpoint, FileRecord, FileState};

/// What reconciliation starts from.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The catalog rows of this source, oldest first.
    pub rows: &'a [FileRecord],
    /// The durable checkpoint, when it was taken on this source.
    pub checkpoint: Option<&'a Checkpoint>,
    /// The regular files in the source's folder, by name, with their sizes.
    pub on_disk: &'a BTreeMap<String, u64>,
    /// Cluster mode: what this node lacks and the bucket does not hold is fetched again from
    /// the source (a takeover), instead of being refused as lost.
    pub refetch: bool,
    /// The checkpoint was just read from the store after a start (not kept in memory through a
    /// reconnect, not reloaded after an fsync failure): complete transactions past it may have
    /// been fsynced, and acknowledged, before the crash.
    pub recovering: bool,
    /// What the tail [`tail_to_scan`] named holds (`binlog::tail::scan`).
    pub tail: Option<&'a Tail>,
}

/// What to do, in this order: remove, forget, set aside, then either fetch again from
/// `refetch_from` or resume `open` (cut back to `truncate_to`).
///
/// A file that holds a byte beyond what its creation wrote is never deleted here, only set
/// aside: the catalog can be older than the folder (a restored `meta.db` backup) and the source
/// may have purged what the file holds, so its bytes may be the only ones left.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// Files to delete, each with the reason (for the log): none holds a complete event or
    /// transaction that is not elsewhere (the source resends a file's header; the bucket holds a
    /// short copy's file).
    pub remove: Vec<(String, Removal)>,
    /// Catalog rows to delete: files after the checkpoint, or, without a checkpoint, every file
    /// that was not sealed.
    pub forget: Vec<String>,
    /// Files to move to `.stale/`, each with the reason: the stream will not use them (they are
    /// fetched again, or the catalog does not know them), but should the source no longer have
    /// what they hold, these bytes may be the only ones left.
    pub set_aside: Vec<(String, Aside)>,
    /// The checkpoint's file, appended to from its durable length.
    pub open: Option<Resume>,
    /// The open file holds more than the checkpoint covers (a torn tail, a partial transaction):
    /// cut it back to this length.
    pub truncate_to: Option<u64>,
    /// Cluster takeover: fetch again from the start of this catalogued file.
    pub refetch_from: Option<RefetchFrom>,
    /// The files held complete here: the stream skips whatever the source sends of them.
    pub sealed: BTreeSet<BinlogFileName>,
    /// Crash recovery: the checkpoint rebuilt from the tail past the stored one (complete,
    /// verified transactions that were fsynced and may have been acknowledged). `open` and
    /// `truncate_to` already follow it; it is persisted once the cut file is fsynced, before
    /// anything else happens.
    pub recovered: Option<Checkpoint>,
}

/// The task event that says what a start set aside (`Plan::set_aside`, moved to `folder`), why,
/// and how to put it back.
pub fn set_aside_note(task_id: i64, folder: &std::path::Path, aside: &[(String, Aside)]) -> String {
    let mut parts = Vec::new();
    for (why, said) in [
        (Aside::Unknown, "not in the catalog (a metadata database older than the files?)"),
        (Aside::BeyondCheckpoint, "after the checkpoint"),
        (Aside::Refetch, "copies a takeover does not trust"),
    ] {
        let names: Vec<&str> = aside.iter().filter(|(_, w)| *w == why).map(|(n, _)| n.as_str()).collect();
        if !names.is_empty() {
            parts.push(format!("{} {said}", names.join(", ")));
        }
    }
    format!(
        "{} file(s) moved to {}: {}. What the task still needs of them is fetched again from the source; should \
         it no longer have it, `binlog-server import --task {task_id} {}` puts them back (kept, never read: \
         remove the folder once the task streams past them)",
        aside.len(),
        folder.display(),
        parts.join("; "),
        folder.display()
    )
}

/// The tail [`plan`] wants read back before it decides (see [`tail_to_scan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailScan {
    pub name: BinlogFileName,
    /// The whole file: created after the checkpoint's file was sealed there.
    pub whole_file: bool,
    /// Our file's offset where the tail begins, and the source position there.
    pub offset: u64,
    pub pos: u64,
}

/// Why a file is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// After the checkpoint (or never sealed, without one), holding nothing but what its
    /// creation wrote (the magic and the format description the source sends again), or what
    /// the tail read back after a crash found no complete transaction in.
    BeyondCheckpoint,
    /// Not in the catalog and no longer than the header of this source's files (the magic and
    /// the format description, which the source sends again): a create interrupted before its
    /// catalog row was written.
    InterruptedCreate,
    /// A short local copy of a file the bucket holds: readers fetch the bucket's.
    ShortCopyOfBucketFile,
}

/// Why a file is set aside rather than used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aside {
    /// A takeover's copy, untrusted: the file is fetched again from the source.
    Refetch,
    /// After the checkpoint, holding events: fetched again from the source, which may no
    /// longer have them (a catalog restored from a backup older than the folder).
    BeyondCheckpoint,
    /// Not in the catalog, holding events: an older catalog than the folder (a restored
    /// backup), or files someone put there.
    Unknown,
}

/// The checkpoint's file, resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub name: BinlogFileName,
    pub start_pos: u64,
    pub header_len: u64,
    /// Our file's length at the checkpoint.
    pub len: u64,
}

/// Where a takeover fetches again from: a catalogued file, from its first event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefetchFrom {
    pub name: BinlogFileName,
    pub start_pos: u64,
    /// The GTID state where the file begins, when the catalog knows it.
    pub gtid_start: Option<String>,
}

/// The facts show lost or damaged data: nothing is changed and the task fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the checkpoint names {file} at {pos} but no such local file is recorded; local storage lost data \
         (delete the task's checkpoint to start over, or restore the files)"
    )]
    UnrecordedFile { file: BinlogFileName, pos: u64 },
    #[error("{file} is sealed at {end_pos:?} but the checkpoint is at {pos}")]
    InsideSealedFile { file: BinlogFileName, end_pos: Option<u64>, pos: u64 },
    #[error("the checkpoint is at {pos} in {file}, before the file's first event at {start_pos}")]
    BeforeFileStart { file: BinlogFileName, pos: u64, start_pos: u64 },
    #[error(
        "{file} holds {have} bytes but the checkpoint says {want} are durable; local storage lost data (or the \
         data directory was restored from an older copy than the metadata database)"
    )]
    Short { file: BinlogFileName, have: u64, want: u64 },
    #[error(
        "{file} is missing but the checkpoint says {want} bytes of it are durable; local storage lost data (or \
         the data directory was restored from an older copy than the metadata database)"
    )]
    Missing { file: BinlogFileName, want: u64 },
}

/// Decides how the folder is made to agree with the checkpoint:
/// - without a checkpoint for this source, only its sealed files (history from an earlier
///   switchover) are kept;
/// - with one, the files after the checkpoint's file go, and the checkpoint's file is resumed
///   and cut back to the checkpoint, unless it was sealed exactly there;
/// - whatever the catalog does not know goes;
/// - "goes" is "set aside" for a file holding events (see [`Plan`]), "removed" otherwise;
/// - in cluster mode, from the first catalogued file this node does not hold in full and the
///   bucket does not hold either, the files are fetched again (see [`first_missing`]).
///
/// Crash recovery (`recovering`, with the `tail` [`tail_to_scan`] named): the complete
/// transactions of that tail are kept, the checkpoint's file is cut back only after them (or the
/// file created after the checkpoint's file was sealed is kept up to them), and
/// [`Plan::recovered`] is the checkpoint there. A takeover that fetches files again is unchanged:
/// it never adopts a tail.
pub fn plan(facts: Facts<'_>) -> Result<Plan, Refusal> {
    let mut plan = plan_at_checkpoint(facts)?;
    if let (Some(tail), Some(scan), Some(cp)) = (facts.tail, tail_to_scan(facts), facts.checkpoint)
        && !adopt_tail(&mut plan, &facts, cp, &scan, tail)
        && scan.whole_file
        && tail.name == scan.name
    {
        // Read back whole and found holding no complete transaction: nothing to keep.
        let name = scan.name.as_str();
        if plan.set_aside.iter().any(|(n, _)| n == name) {
            plan.set_aside.retain(|(n, _)| n != name);
            plan.remove.push((name.to_string(), Removal::BeyondCheckpoint));
        }
    }
    Ok(plan)
}

/// Crash recovery: the tail past the stored checkpoint to read back before [`plan`] decides,
/// when there may be complete transactions in it:
/// - the checkpoint's file is open and longer than the checkpoint: from the checkpoint;
/// - the checkpoint's file was sealed exactly there and one open file follows it in the catalog
///   (a rotate after the last persisted checkpoint), fetched from position 4 and holding more
///   than its magic: that whole file.
///
/// None outside recovery, and none when a takeover fetches files again.
pub fn tail_to_scan(facts: Facts<'_>) -> Option<TailScan> {
    if !facts.recovering {
        return None;
    }
    let cp = facts.checkpoint?;
    let base = plan_at_checkpoint(Facts { tail: None, ..facts }).ok()?;
    if base.refetch_from.is_some() {
        return None;
    }
    match &base.open {
        Some(r) if base.truncate_to.is_some() => {
            Some(TailScan { name: r.name.clone(), whole_file: false, offset: r.len, pos: cp.pos })
        }
        Some(_) => None,
        None => {
            let i = facts.rows.iter().position(|r| r.file_name == cp.file)?;
            let next = match &facts.rows[i + 1..] {
                [next] => next,
                _ => return None,
            };
            let len = facts.on_disk.get(next.file_name.as_str()).copied().unwrap_or(0);
            (next.state == FileState::Open && next.start_pos <= 4 && next.header_len == 4 && len > 4)
                .then(|| TailScan { name: next.file_name.clone(), whole_file: true, offset: 4, pos: 4 })
        }
    }
}

/// Keeps the complete transactions `tail` found past the checkpoint (see [`plan`]); whether it
/// did.
fn adopt_tail(plan: &mut Plan, facts: &Facts<'_>, cp: &Checkpoint, scan: &TailScan, tail: &Tail) -> bool {
    if tail.name != scan.name || tail.pos <= scan.pos || tail.len <= scan.offset {
        return false;
    }
    let Some(&have) = facts.on_disk.get(tail.name.as_str()) else { return false };
    if tail.len > have {
        return false;
    }
    let Some(rec) = facts.rows.iter().find(|r| r.file_name == tail.name) else { return false };
    if scan.whole_file {
        let name = tail.name.as_str();
        plan.forget.retain(|n| n != name);
        plan.remove.retain(|(n, _)| n != name);
        plan.set_aside.retain(|(n, _)| n != name);
    }
    plan.truncate_to = (have > tail.len).then_some(tail.len);
    plan.open =
        Some(Resume { name: tail.name.clone(), start_pos: rec.start_pos, header_len: rec.header_len, len: tail.len });
    plan.recovered = Some(Checkpoint {
        source_identity: cp.source_identity.clone(),
        file: tail.name.clone(),
        pos: tail.pos,
        gtid_set: tail.gtid.clone(),
    });
    true
}

/// The plan as far as the stored checkpoint goes (see [`plan`]).
fn plan_at_checkpoint(facts: Facts<'_>) -> Result<Plan, Refusal> {
    let Facts { rows, checkpoint, on_disk, refetch, .. } = facts;
    let mut plan = Plan::default();
    let keep: Vec<&FileRecord> = match checkpoint {
        None => {
            let (kept, dropped): (Vec<&FileRecord>, Vec<&FileRecord>) =
                rows.iter().partition(|r| r.state == FileState::Sealed);
            plan.forget = dropped.iter().map(|r| r.file_name.to_string()).collect();
            kept
        }
        Some(cp) => match rows.iter().position(|r| r.file_name == cp.file) {
            Some(i) => {
                plan.forget = rows[i + 1..].iter().map(|r| r.file_name.to_string()).collect();
                rows[..=i].iter().collect()
            }
            None => return Err(Refusal::UnrecordedFile { file: cp.file.clone(), pos: cp.pos }),
        },
    };
    for r in rows.iter().filter(|r| plan.forget.iter().any(|n| r.file_name.as_str() == n)) {
        let name = r.file_name.to_string();
        match on_disk.get(&name) {
            Some(&len) if len > r.header_len => plan.set_aside.push((name, Aside::BeyondCheckpoint)),
            Some(_) => plan.remove.push((name, Removal::BeyondCheckpoint)),
            None => {}
        }
    }
    let known: BTreeSet<String> = rows.iter().map(|r| r.file_name.to_string()).collect();
    let header = rows.iter().map(|r| r.header_len).max().unwrap_or(0).max(MAGIC.len() as u64);
    for (name, &len) in on_disk.iter().filter(|(n, _)| !known.contains(*n)) {
        if len > header {
            plan.set_aside.push((name.clone(), Aside::Unknown));
        } else {
            plan.remove.push((name.clone(), Removal::InterruptedCreate));
        }
    }

    let Some(cp) = checkpoint else {
        plan.sealed.extend(keep.iter().map(|r| r.file_name.clone()));
        return Ok(plan);
    };
    let last = *keep.last().expect("the checkpoint's file is kept");
    let sealed_at_cp = last.state == FileState::Sealed && last.end_pos == Some(cp.pos);
    let want = if sealed_at_cp { last.size } else { durable_len(last, cp)? };

    if refetch {
        let (missing, short_copies) = first_missing(&keep, want, on_disk);
        plan.remove.extend(short_copies.into_iter().map(|n| (n, Removal::ShortCopyOfBucketFile)));
        if let Some(j) = missing {
            plan.set_aside.extend(
                keep[j..]
                    .iter()
                    .map(|r| r.file_name.to_string())
                    .filter(|n| on_disk.contains_key(n))
                    .map(|n| (n, Aside::Refetch)),
            );
            plan.sealed.extend(keep[..j].iter().map(|r| r.file_name.clone()));
            let from = keep[j];
            plan.refetch_from = Some(RefetchFrom {
                name: from.file_name.clone(),
                start_pos: from.start_pos,
                gtid_start: from.summary.gtid_start.clone(),
            });
            return Ok(plan);
        }
    }

    plan.sealed.extend(keep[..keep.len() - 1].iter().map(|r| r.file_name.clone()));
    if sealed_at_cp {
        plan.sealed.insert(last.file_name.clone());
        return Ok(plan);
    }
    if last.state == FileState::Sealed {
        // A sealed file never changes: a checkpoint inside one is a damaged catalog, never a
        // reason to cut the file back.
        return Err(Refusal::InsideSealedFile { file: last.file_name.clone(), end_pos: last.end_pos, pos: cp.pos });
    }
    let have = match on_disk.get(last.file_name.as_str()) {
        Some(&have) => have,
        None => return Err(Refusal::Missing { file: last.file_name.clone(), want }),
    };
    if have < want {
        return Err(Refusal::Short { file: last.file_name.clone(), have, want });
    }
    plan.truncate_to = (have > want).then_some(want);
    plan.open = Some(Resume {
        name: last.file_name.clone(),
        start_pos: last.start_pos,
        header_len: last.header_len,
        len: want,
    });
    Ok(plan)
}

/// Our file's length at the checkpoint, in the checkpoint's file.
fn durable_len(rec: &FileRecord, cp: &Checkpoint) -> Result<u64, Refusal> {
    if rec.start_pos > 4 && cp.pos < rec.start_pos {
        return Err(Refusal::BeforeFileStart { file: rec.file_name.clone(), pos: cp.pos, start_pos: rec.start_pos });
    }
    Ok(rec.local_offset(cp.pos))
}

/// The index in `keep` (the catalog up to the checkpoint's file, whose durable length is
/// `last_len`) of the first file this node does not hold in full and the bucket does not hold
/// either, and the short local copies before it of files the bucket holds (to remove).
/// A sealed file retention removed from the bucket (and so from here) is history the operator
/// let go, not a gap to fetch again.
fn first_missing(keep: &[&FileRecord], last_len: u64, on_disk: &BTreeMap<String, u64>) -> (Option<usize>, Vec<String>) {
    let mut short_copies = Vec::new();
    for (j, r) in keep.iter().enumerate() {
        let expected = if j + 1 == keep.len() { last_len } else { r.size };
        let have = on_disk.get(r.file_name.as_str()).copied();
        if have.is_some_and(|h| h >= expected) {
            continue;
        }
        if r.held_in_bucket() {
            if have.is_some() {
                short_copies.push(r.file_name.to_string());
            }
            continue;
        }
        if r.state == FileState::Sealed && r.upload.remote_deleted_at.is_some() {
            continue;
        }
        return (Some(j), short_copies);
    }
    (None, short_copies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{UploadInfo, UploadState};

    fn name(n: u32) -> BinlogFileName {
        BinlogFileName::parse(&format!("bin.{n:06}")).expect("name")
    }

    /// A file fetched from position 4: offsets are positions.
    fn sealed(n: u32, size: u64) -> FileRecord {
        FileRecord {
            task_id: 1,
            source_identity: "srv-1".into(),
            file_name: name(n),
            state: FileState::Sealed,
            start_pos: 4,
            header_len: 4,
            end_pos: Some(size),
            size,
            sha256: None,
            created_at: chrono::Utc::now(),
            sealed_at: None,
            upload: UploadInfo::default(),
            summary: Default::default(),
        }
    }

    fn open(n: u32, size: u64) -> FileRecord {
        FileRecord { state: FileState::Open, end_pos: None, ..sealed(n, size) }
    }

    fn in_bucket(r: FileRecord) -> FileRecord {
        FileRecord { upload: UploadInfo { state: UploadState::Uploaded, verified: true, ..Default::default() }, ..r }
    }

    fn retired(r: FileRecord) -> FileRecord {
        let now = Some(chrono::Utc::now());
        let upload = UploadInfo { local_deleted_at: now, remote_deleted_at: now, ..in_bucket(r.clone()).upload };
        FileRecord { upload, ..r }
    }

    fn cp(n: u32, pos: u64) -> Checkpoint {
        Checkpoint { source_identity: "srv-1".into(), file: name(n), pos, gtid_set: None }
    }

    fn disk(files: &[(u32, u64)]) -> BTreeMap<String, u64> {
        files.iter().map(|&(n, len)| (name(n).to_string(), len)).collect()
    }

    fn names(ns: &[u32]) -> Vec<String> {
        ns.iter().map(|&n| name(n).to_string()).collect()
    }

    fn aside(ns: &[u32], why: Aside) -> Vec<(String, Aside)> {
        ns.iter().map(|&n| (name(n).to_string(), why)).collect()
    }

    fn set(ns: &[u32]) -> BTreeSet<BinlogFileName> {
        ns.iter().map(|&n| name(n)).collect()
    }

    fn resume(n: u32, len: u64) -> Option<Resume> {
        Some(Resume { name: name(n), start_pos: 4, header_len: 4, len })
    }

    fn run(
        rows: &[FileRecord],
        checkpoint: Option<&Checkpoint>,
        on_disk: &[(u32, u64)],
        refetch: bool,
    ) -> Result<Plan, Refusal> {
        plan(Facts { rows, checkpoint, on_disk: &disk(on_disk), refetch, recovering: false, tail: None })
    }

    /// Every row of the decision table. The integration tests that reach each row:
    /// replication_crash (kill -9: torn tails, files after the checkpoint, leftovers), disk_full
    /// (a partial write cut back), replication_lifecycle (restarts, switchovers), cluster
    /// (takeovers: set aside and fetch again, the bucket's copies, a purged source).
    #[test]
    fn the_plan_for_every_row_of_the_table() {
        struct Row {
            what: &'static str,
            rows: Vec<FileRecord>,
            cp: Option<Checkpoint>,
            disk: Vec<(u32, u64)>,
            refetch: bool,
            want: Result<Plan, Refusal>,
        }
        let rows = vec![
            Row {
                what: "first start: nothing anywhere",
                rows: vec![],
                cp: None,
                disk: vec![],
                refetch: false,
                want: Ok(Plan::default()),
            },
            Row {
                what: "no checkpoint here (a switchover's history): sealed files kept, the rest forgotten \
                       (set aside when it holds events)",
                rows: vec![sealed(1, 100), open(2, 50), open(3, 4)],
                cp: None,
                disk: vec![(1, 100), (2, 50), (3, 4)],
                refetch: false,
                want: Ok(Plan {
                    remove: vec![(name(3).to_string(), Removal::BeyondCheckpoint)],
                    forget: names(&[2, 3]),
                    set_aside: aside(&[2], Aside::BeyondCheckpoint),
                    sealed: set(&[1]),
                    ..Plan::default()
                }),
            },
            Row {
                what: "restart at the checkpoint: the open file resumes as it is",
                rows: vec![sealed(1, 100), open(2, 300)],
                cp: Some(cp(2, 300)),
                disk: vec![(1, 100), (2, 300)],
                refetch: false,
                want: Ok(Plan { open: resume(2, 300), sealed: set(&[1]), ..Plan::default() }),
            },
            Row {
                what: "kill -9: a torn tail past the checkpoint is cut back",
                rows: vec![open(1, 200)],
                cp: Some(cp(1, 200)),
                disk: vec![(1, 257)],
                refetch: false,
                want: Ok(Plan { open: resume(1, 200), truncate_to: Some(200), ..Plan::default() }),
            },
            Row {
                what: "kill -9 after a rotate: the file after the checkpoint goes aside, its row goes; an \
                       empty leftover is removed",
                rows: vec![open(1, 200), open(2, 4)],
                cp: Some(cp(1, 150)),
                disk: vec![(1, 200), (2, 90), (7, 4)],
                refetch: false,
                want: Ok(Plan {
                    remove: vec![(name(7).to_string(), Removal::InterruptedCreate)],
                    forget: names(&[2]),
                    set_aside: aside(&[2], Aside::BeyondCheckpoint),
                    open: resume(1, 150),
                    truncate_to: Some(150),
                    ..Plan::default()
                }),
            },
            Row {
                what: "a file after the checkpoint holding only what its creation wrote: removed",
                rows: vec![open(1, 200), FileRecord { header_len: 120, ..open(2, 120) }],
                cp: Some(cp(1, 200)),
                disk: vec![(1, 200), (2, 120)],
                refetch: false,
                want: Ok(Plan {
                    remove: vec![(name(2).to_string(), Removal::BeyondCheckpoint)],
                    forget: names(&[2]),
                    open: resume(1, 200),
                    ..Plan::default()
                }),
            },
            Row {
                what: "a create interrupted before its row: a file no longer than the source's files' header \
                       is removed, a longer one set aside",
                rows: vec![FileRecord { header_len: 120, ..open(1, 300) }],
                cp: Some(cp(1, 300)),
                disk: vec![(1, 300), (2, 120), (3, 121)],
                refetch: false,
                want: Ok(Plan {
                    remove: vec![(name(2).to_string(), Removal::InterruptedCreate)],
                    set_aside: aside(&[3], Aside::Unknown),
                    open: Some(Resume { name: name(1), start_pos: 4, header_len: 120, len: 300 }),
                    ..Plan::default()
                }),
            },
            Row {
                what: "a catalog older than the folder (a restored backup): the files it does not know are \
                       set aside, never removed",
                rows: vec![sealed(1, 100), open(2, 200)],
                cp: Some(cp(2, 150)),
                disk: vec![(1, 100), (2, 700), (3, 800), (4, 60), (5, 0)],
                refetch: false,
                want: Ok(Plan {
                    remove: vec![(name(5).to_string(), Removal::InterruptedCreate)],
                    set_aside: aside(&[3, 4], Aside::Unknown),
                    open: resume(2, 150),
                    truncate_to: Some(150),
                    sealed: set(&[1]),
                    ..Plan::default()
                }),
            },
            Row {
                what: "a row after the checkpoint whose file was never created: only the row goes",
                rows: vec![open(1, 200), open(2, 4)],
                cp: Some(cp(1, 200)),
                disk: vec![(1, 200)],
                refetch: false,
                want: Ok(Plan { forget: names(&[2]), open: resume(1, 200), ..Plan::default() }),
            },
            Row {
                what: "sealed exactly at the checkpoint (stopped after a rotate): nothing open",
                rows: vec![sealed(1, 100), sealed(2, 200)],
                cp: Some(cp(2, 200)),
                disk: vec![(1, 100), (2, 200)],
                refetch: false,
                want: Ok(Plan { sealed: set(&[1, 2]), ..Plan::default() }),
            },
            Row {
                what: "a file joined mid-way: the checkpoint maps to a local offset",
                rows: vec![FileRecord { start_pos: 1000, header_len: 120, ..open(1, 320) }],
                cp: Some(cp(1, 1200)),
                disk: vec![(1, 400)],
                refetch: false,
                want: Ok(Plan {
                    open: Some(Resume { name: name(1), start_pos: 1000, header_len: 120, len: 320 }),
                    truncate_to: Some(320),
                    ..Plan::default()
                }),
            },
            Row {
                what: "the checkpoint names a file the catalog does not know: refused",
                rows: vec![sealed(1, 100)],
                cp: Some(cp(2, 50)),
                disk: vec![(1, 100)],
                refetch: false,
                want: Err(Refusal::UnrecordedFile { file: name(2), pos: 50 }),
            },
            Row {
                what: "a checkpoint inside a sealed file: refused, the file is not cut",
                rows: vec![sealed(1, 1000)],
                cp: Some(cp(1, 500)),
                disk: vec![(1, 1000)],
                refetch: false,
                want: Err(Refusal::InsideSealedFile { file: name(1), end_pos: Some(1000), pos: 500 }),
            },
            Row {
                what: "a checkpoint before the first event of a file joined mid-way: refused",
                rows: vec![FileRecord { start_pos: 1000, header_len: 120, ..open(1, 320) }],
                cp: Some(cp(1, 500)),
                disk: vec![(1, 320)],
                refetch: false,
                want: Err(Refusal::BeforeFileStart { file: name(1), pos: 500, start_pos: 1000 }),
            },
            Row {
                what: "the open file shorter than the checkpoint: refused, nothing removed",
                rows: vec![open(1, 300), open(2, 4)],
                cp: Some(cp(1, 300)),
                disk: vec![(1, 200), (2, 40)],
                refetch: false,
                want: Err(Refusal::Short { file: name(1), have: 200, want: 300 }),
            },
            Row {
                what: "the open file missing: refused",
                rows: vec![open(1, 300)],
                cp: Some(cp(1, 300)),
                disk: vec![],
                refetch: false,
                want: Err(Refusal::Missing { file: name(1), want: 300 }),
            },
            Row {
                what: "cluster, the node holds everything: as standalone",
                rows: vec![sealed(1, 100), open(2, 300)],
                cp: Some(cp(2, 300)),
                disk: vec![(1, 100), (2, 310)],
                refetch: true,
                want: Ok(Plan { open: resume(2, 300), truncate_to: Some(300), sealed: set(&[1]), ..Plan::default() }),
            },
            Row {
                what: "takeover: the bucket holds the sealed files, the open file is fetched again",
                rows: vec![in_bucket(sealed(1, 100)), in_bucket(sealed(2, 100)), open(3, 300)],
                cp: Some(cp(3, 300)),
                disk: vec![(2, 60)],
                refetch: true,
                want: Ok(Plan {
                    remove: vec![(name(2).to_string(), Removal::ShortCopyOfBucketFile)],
                    refetch_from: Some(RefetchFrom { name: name(3), start_pos: 4, gtid_start: None }),
                    sealed: set(&[1, 2]),
                    ..Plan::default()
                }),
            },
            Row {
                what: "takeover: a sealed file neither here nor in the bucket; what follows is set aside",
                rows: vec![retired(sealed(1, 100)), sealed(2, 100), sealed(3, 100), open(4, 300)],
                cp: Some(cp(4, 250)),
                disk: vec![(3, 100), (4, 300)],
                refetch: true,
                want: Ok(Plan {
                    set_aside: aside(&[3, 4], Aside::Refetch),
                    refetch_from: Some(RefetchFrom { name: name(2), start_pos: 4, gtid_start: None }),
                    sealed: set(&[1]),
                    ..Plan::default()
                }),
            },
            Row {
                what: "takeover: a file uploaded but not verified does not count as held",
                rows: vec![
                    FileRecord {
                        upload: UploadInfo { state: UploadState::Uploaded, verified: false, ..Default::default() },
                        ..sealed(1, 100)
                    },
                    open(2, 300),
                ],
                cp: Some(cp(2, 300)),
                disk: vec![(2, 300)],
                refetch: true,
                want: Ok(Plan {
                    set_aside: aside(&[2], Aside::Refetch),
                    refetch_from: Some(RefetchFrom { name: name(1), start_pos: 4, gtid_start: None }),
                    ..Plan::default()
                }),
            },
            Row {
                what: "takeover of a task stopped after a rotate: the last file is whole at its size",
                rows: vec![sealed(1, 100), sealed(2, 200)],
                cp: Some(cp(2, 200)),
                disk: vec![(1, 100), (2, 200)],
                refetch: true,
                want: Ok(Plan { sealed: set(&[1, 2]), ..Plan::default() }),
            },
        ];
        for row in rows {
            let got = run(&row.rows, row.cp.as_ref(), &row.disk, row.refetch);
            assert_eq!(got, row.want, "{}", row.what);
        }
    }

    #[test]
    fn the_set_aside_note_names_every_file_its_reason_and_the_way_back() {
        let folder = std::path::Path::new("/d/.stale/7-20261207T190350.705569");
        let mut moved = aside(&[3, 4], Aside::Unknown);
        moved.extend(aside(&[2], Aside::BeyondCheckpoint));
        let note = set_aside_note(7, folder, &moved);
        for part in [
            "3 file(s) moved to /d/.stale/7-20261207T190350.705569",
            "bin.000003, bin.000004 not in the catalog",
            "bin.000002 after the checkpoint",
            "binlog-server import --task 7 /d/.stale/7-20261207T190350.705569",
        ] {
            assert!(note.contains(part), "{part:?} in {note}");
        }
        assert!(!note.contains("takeover"), "{note}");
        let note = set_aside_note(7, folder, &aside(&[5], Aside::Refetch));
        assert!(note.starts_with("1 file(s) moved") && note.contains("bin.000005 copies a takeover"), "{note}");
    }

    fn tail(n: u32, len: u64, gtid: Option<&str>) -> Tail {
        Tail { name: name(n), len, pos: len, gtid: gtid.map(String::from), boundaries: 1, stopped: None }
    }

    fn scan(n: u32, whole_file: bool, from: u64) -> Option<TailScan> {
        Some(TailScan { name: name(n), whole_file, offset: from, pos: from })
    }

    fn recovered(n: u32, pos: u64, gtid: Option<&str>) -> Option<Checkpoint> {
        Some(Checkpoint { gtid_set: gtid.map(String::from), ..cp(n, pos) })
    }

    /// Crash recovery: which tail is read back (`scan`), and the plan once it is (`tail`, what
    /// `binlog::tail::scan` found there). The integration tests that reach these rows:
    /// semi_sync (kill -9 of the server and the source right after a commit returns, 20 rounds),
    /// replication_crash (a torn tail past the checkpoint is still cut back).
    #[test]
    fn the_recovery_plan_for_every_row_of_the_table() {
        struct Row {
            what: &'static str,
            rows: Vec<FileRecord>,
            cp: Checkpoint,
            disk: Vec<(u32, u64)>,
            refetch: bool,
            recovering: bool,
            scan: Option<TailScan>,
            tail: Option<Tail>,
            want: Plan,
        }
        let rows = vec![
            Row {
                what: "complete transactions past the checkpoint are kept, the torn rest is cut",
                rows: vec![sealed(1, 100), open(2, 300)],
                cp: cp(2, 300),
                disk: vec![(1, 100), (2, 520)],
                refetch: false,
                recovering: true,
                scan: scan(2, false, 300),
                tail: Some(tail(2, 480, Some("0-1-9"))),
                want: Plan {
                    open: resume(2, 480),
                    truncate_to: Some(480),
                    sealed: set(&[1]),
                    recovered: recovered(2, 480, Some("0-1-9")),
                    ..Plan::default()
                },
            },
            Row {
                what: "the tail ends exactly at a transaction: nothing is cut",
                rows: vec![open(1, 300)],
                cp: cp(1, 300),
                disk: vec![(1, 480)],
                refetch: false,
                recovering: true,
                scan: scan(1, false, 300),
                tail: Some(tail(1, 480, None)),
                want: Plan { open: resume(1, 480), recovered: recovered(1, 480, None), ..Plan::default() },
            },
            Row {
                what: "no complete transaction past the checkpoint: cut back to it, as before",
                rows: vec![open(1, 300)],
                cp: cp(1, 300),
                disk: vec![(1, 350)],
                refetch: false,
                recovering: true,
                scan: scan(1, false, 300),
                tail: Some(tail(1, 300, None)),
                want: Plan { open: resume(1, 300), truncate_to: Some(300), ..Plan::default() },
            },
            Row {
                what: "a rotate after the last persisted checkpoint: the new file is kept up to its last transaction",
                rows: vec![sealed(1, 100), sealed(2, 200), open(3, 4)],
                cp: cp(2, 200),
                disk: vec![(1, 100), (2, 200), (3, 700), (9, 4)],
                refetch: false,
                recovering: true,
                scan: scan(3, true, 4),
                tail: Some(tail(3, 650, Some("0-1-20"))),
                want: Plan {
                    remove: vec![(name(9).to_string(), Removal::InterruptedCreate)],
                    open: resume(3, 650),
                    truncate_to: Some(650),
                    sealed: set(&[1, 2]),
                    recovered: recovered(3, 650, Some("0-1-20")),
                    ..Plan::default()
                },
            },
            Row {
                what: "a rotate, but the new file holds nothing complete: it and its row go, as before",
                rows: vec![sealed(1, 200), open(2, 4)],
                cp: cp(1, 200),
                disk: vec![(1, 200), (2, 60)],
                refetch: false,
                recovering: true,
                scan: scan(2, true, 4),
                tail: Some(tail(2, 4, None)),
                want: Plan {
                    remove: vec![(name(2).to_string(), Removal::BeyondCheckpoint)],
                    forget: names(&[2]),
                    sealed: set(&[1]),
                    ..Plan::default()
                },
            },
            Row {
                what: "a new file holding only its magic is not read back",
                rows: vec![sealed(1, 200), open(2, 4)],
                cp: cp(1, 200),
                disk: vec![(1, 200), (2, 4)],
                refetch: false,
                recovering: true,
                scan: None,
                tail: None,
                want: Plan {
                    remove: vec![(name(2).to_string(), Removal::BeyondCheckpoint)],
                    forget: names(&[2]),
                    sealed: set(&[1]),
                    ..Plan::default()
                },
            },
            Row {
                what: "not recovering (a reconnect: the writer knows its durable checkpoint): cut back",
                rows: vec![open(1, 300)],
                cp: cp(1, 300),
                disk: vec![(1, 480)],
                refetch: false,
                recovering: false,
                scan: None,
                tail: Some(tail(1, 480, None)),
                want: Plan { open: resume(1, 300), truncate_to: Some(300), ..Plan::default() },
            },
            Row {
                what: "a tail of another file than the one asked for is ignored",
                rows: vec![open(1, 300)],
                cp: cp(1, 300),
                disk: vec![(1, 480)],
                refetch: false,
                recovering: true,
                scan: scan(1, false, 300),
                tail: Some(tail(2, 480, None)),
                want: Plan { open: resume(1, 300), truncate_to: Some(300), ..Plan::default() },
            },
            Row {
                what: "a tail longer than the file (a stale scan) is ignored",
                rows: vec![open(1, 300)],
                cp: cp(1, 300),
                disk: vec![(1, 400)],
                refetch: false,
                recovering: true,
                scan: scan(1, false, 300),
                tail: Some(tail(1, 480, None)),
                want: Plan { open: resume(1, 300), truncate_to: Some(300), ..Plan::default() },
            },
            Row {
                what: "cluster, the node holds everything: its own tail is kept as standalone",
                rows: vec![sealed(1, 100), open(2, 300)],
                cp: cp(2, 300),
                disk: vec![(1, 100), (2, 400)],
                refetch: true,
                recovering: true,
                scan: scan(2, false, 300),
                tail: Some(tail(2, 400, None)),
                want: Plan {
                    open: resume(2, 400),
                    sealed: set(&[1]),
                    recovered: recovered(2, 400, None),
                    ..Plan::default()
                },
            },
            Row {
                what: "takeover that fetches files again: no tail is read or adopted, copies set aside",
                rows: vec![sealed(1, 100), open(2, 300)],
                cp: cp(2, 300),
                disk: vec![(2, 400)],
                refetch: true,
                recovering: true,
                scan: None,
                tail: Some(tail(2, 400, None)),
                want: Plan {
                    set_aside: aside(&[2], Aside::Refetch),
                    refetch_from: Some(RefetchFrom { name: name(1), start_pos: 4, gtid_start: None }),
                    ..Plan::default()
                },
            },
        ];
        for row in rows {
            let on_disk = disk(&row.disk);
            let facts = Facts {
                rows: &row.rows,
                checkpoint: Some(&row.cp),
                on_disk: &on_disk,
                refetch: row.refetch,
                recovering: row.recovering,
                tail: None,
            };
            assert_eq!(tail_to_scan(facts), row.scan, "scan: {}", row.what);
            let got = plan(Facts { tail: row.tail.as_ref(), ..facts });
            assert_eq!(got, Ok(row.want), "{}", row.what);
        }
    }

    #[test]
    fn a_refetch_starts_where_the_catalog_says_the_file_begins() {
        let from = FileRecord {
            start_pos: 4,
            summary: crate::binlog::summary::FileSummary { gtid_start: Some("0-1-41".into()), ..Default::default() },
            ..open(5, 300)
        };
        let got = run(&[from], Some(&cp(5, 300)), &[], true).expect("a plan");
        assert_eq!(
            got.refetch_from,
            Some(RefetchFrom { name: name(5), start_pos: 4, gtid_start: Some("0-1-41".into()) })
        );
    }
}
