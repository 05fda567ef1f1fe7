//! Whether verified files may join a task's archive, and how: the lineage and overlap decision
//! of an import.
//!
//! The facts are the task (flavor, archive-only or not, its catalog and checkpoint) and what
//! `verify` found in each offered file. The files must be of the task's flavor and of one
//! server, the task's (MySQL: the server uuid its own transactions carry; MariaDB: its server id
//! and GTID domain), and continue the task's archive: after its last file, with a GTID state that
//! holds everything the task already holds (otherwise they overlap it or tell another history).
//! A gap (a missing file, a jump of the GTID state) is allowed: the recovery window shows it as
//! a break. Pure: no disk, no database; the importer carries the [`Plan`] out.

use crate::binlog::Flavor;
use crate::binlog::name::BinlogFileName;
use crate::binlog::summary::{FileSummary, Gtid};
use crate::import::verify::{Ending, Verified};
use crate::meta::{Checkpoint, FileRecord, FileState};
use crate::pitr::continuity::State;

/// The task an import adds to.
#[derive(Debug, Clone, Copy)]
pub struct TaskFacts<'a> {
    pub flavor: Flavor,
    /// The task never connects to a source: every imported file is sealed.
    pub archive_only: bool,
    /// Its catalog, in stream order.
    pub files: &'a [FileRecord],
    pub checkpoint: Option<&'a Checkpoint>,
    /// MySQL: the server uuid the operator names (`import --source-uuid`), for files that do not
    /// say (a server with `gtid_mode=OFF` writes only anonymous transactions). Files that do say
    /// must agree with it.
    pub declared_uuid: Option<&'a str>,
}

/// One file offered for import, verified.
#[derive(Debug, Clone, Copy)]
pub struct Offered<'a> {
    pub name: &'a BinlogFileName,
    pub file: &'a Verified,
}

/// What to do, in order: seal the task's open file, add `files`, move the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The source identity (folder) the files are catalogued under.
    pub identity: String,
    pub files: Vec<Placed>,
    /// The task's open file, sealed where its checkpoint is: the imported files continue it.
    pub seal_open: Option<SealOpen>,
    /// The task's checkpoint after the import: the end of the last imported file.
    pub checkpoint: Checkpoint,
}

/// One file as it is catalogued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub name: BinlogFileName,
    /// SEALED, or OPEN for the last file of a task that goes on fetching it from its source.
    pub state: FileState,
    /// Bytes kept (the whole file, or up to its last complete transaction); also its end
    /// position, as a whole file's offsets are the source's.
    pub size: u64,
    pub summary: FileSummary,
    /// Why part of the file was left out.
    pub truncated: Option<String>,
    /// The gap before this file, when it does not continue the one before it.
    pub gap: Option<String>,
}

/// The task's open file, sealed at its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealOpen {
    pub name: BinlogFileName,
    pub end_pos: u64,
    pub size: u64,
}

/// Why an import is refused (nothing is changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no file to import")]
    Nothing,
    #[error("{file} is offered twice")]
    Twice { file: BinlogFileName },
    #[error("{file} was written by {found} but the task's source is {task}")]
    Flavor { file: BinlogFileName, found: Flavor, task: Flavor },
    #[error("{file} was written by server {found}, not by the {expected} the other files or the task come from")]
    OtherServer { file: BinlogFileName, found: String, expected: String },
    #[error(
        "{file}: cannot tell which MySQL server wrote it (no transaction of its own carries its uuid); \
         name it with --source-uuid (API: source_uuid)"
    )]
    UnknownServer { file: BinlogFileName },
    #[error("{file} is already in the task's archive")]
    AlreadyHeld { file: BinlogFileName },
    #[error(
        "{file} comes before {last}, the task's last file: files are only imported after what the task holds \
         (import older history into a new task before it fetches anything)"
    )]
    Before { file: BinlogFileName, last: BinlogFileName },
    #[error("{file} is truncated ({why}) but later files follow it: the copy is damaged; copy it again")]
    TruncatedInside { file: BinlogFileName, why: String },
    #[error("{file} overlaps or contradicts what the task holds: {detail}")]
    Overlap { file: BinlogFileName, detail: String },
}

/// The identity (data folder) of the server that wrote `v`, when the file says.
fn own_identity(flavor: Flavor, v: &Verified) -> Option<String> {
    match flavor {
        Flavor::Mysql => v.own_uuid.clone(),
        Flavor::Mariadb => v.own_domain.map(|d| format!("mariadb-{}-{d}", v.server_id)),
    }
}

/// Decides the import of `offered` (any order) into `task`.
pub fn decide(task: TaskFacts<'_>, offered: &[Offered<'_>]) -> Result<Plan, Refusal> {
    let mut offered: Vec<Offered<'_>> = offered.to_vec();
    offered.sort_by(|a, b| a.name.cmp(b.name));
    let Some(first) = offered.first() else { return Err(Refusal::Nothing) };
    if let Some(w) = offered.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(Refusal::Twice { file: w[0].name.clone() });
    }
    for o in &offered {
        if o.file.flavor != task.flavor {
            return Err(Refusal::Flavor { file: o.name.clone(), found: o.file.flavor, task: task.flavor });
        }
    }

    // One server: the one the files name (they must agree), else the task's.
    let held_identity = task
        .checkpoint
        .map(|c| c.source_identity.clone())
        .or_else(|| task.files.last().map(|f| f.source_identity.clone()));
    let declared = task.declared_uuid.filter(|_| task.flavor == Flavor::Mysql).map(|u| u.trim().to_ascii_lowercase());
    let named = declared.or_else(|| offered.iter().find_map(|o| own_identity(task.flavor, o.file)));
    let identity = match (named, &held_identity) {
        (Some(id), _) => id,
        (None, Some(held)) => held.clone(),
        (None, None) => match task.flavor {
            // MariaDB's default domain is 0: a server that originated nothing is named by it.
            Flavor::Mariadb => format!("mariadb-{}-0", first.file.server_id),
            Flavor::Mysql => return Err(Refusal::UnknownServer { file: first.name.clone() }),
        },
    };
    for o in &offered {
        let found = match (task.flavor, own_identity(task.flavor, o.file)) {
            (_, Some(id)) => id,
            // No transaction of its own: for MariaDB its server id still speaks.
            (Flavor::Mariadb, None) if !identity.starts_with(&format!("mariadb-{}-", o.file.server_id)) => {
                format!("mariadb-{}-?", o.file.server_id)
            }
            (_, None) => continue,
        };
        if found != identity {
            return Err(Refusal::OtherServer { file: o.name.clone(), found, expected: identity });
        }
    }
    if let Some(held) = held_identity.filter(|h| *h != identity) {
        return Err(Refusal::OtherServer { file: first.name.clone(), found: identity, expected: held });
    }

    // After the task's last file, continuing its GTID state.
    let last = task.files.last();
    if let Some(l) = last {
        if let Some(o) = offered.iter().find(|o| *o.name == l.file_name) {
            return Err(Refusal::AlreadyHeld { file: o.name.clone() });
        }
        if *first.name < l.file_name {
            return Err(Refusal::Before { file: first.name.clone(), last: l.file_name.clone() });
        }
    }
    let (n, m) = (offered.len(), offered.len() - 1);
    if let Some(o) = offered[..m].iter().find(|o| o.file.truncated.is_some()) {
        return Err(Refusal::TruncatedInside {
            file: o.name.clone(),
            why: o.file.truncated.clone().unwrap_or_default(),
        });
    }
    let seal_open = match (last, task.checkpoint) {
        (Some(l), Some(cp)) if l.state == FileState::Open && cp.file == l.file_name => {
            Some(SealOpen { name: l.file_name.clone(), end_pos: cp.pos, size: l.local_offset(cp.pos) })
        }
        _ => None,
    };
    // The GTID state the task reaches, and the file it reaches it in.
    let mut reached: Option<(BinlogFileName, Option<String>)> = last.map(|l| {
        let state = match (&seal_open, task.checkpoint) {
            (Some(_), Some(cp)) => cp.gtid_set.clone(),
            _ => l.summary.gtid_end.clone(),
        };
        (l.file_name.clone(), state)
    });
    let mut files = Vec::with_capacity(n);
    for (i, o) in offered.iter().enumerate() {
        let gap = match &reached {
            Some((prev, state)) => continuation(task.flavor, prev, state.as_deref(), o)?,
            None => None,
        };
        let open = i == m && !task.archive_only && !matches!(o.file.ending, Ending::Rotate { .. });
        files.push(Placed {
            name: o.name.clone(),
            state: if open { FileState::Open } else { FileState::Sealed },
            size: o.file.end,
            summary: o.file.summary.clone(),
            truncated: o.file.truncated.clone(),
            gap,
        });
        reached = Some((o.name.clone(), o.file.summary.gtid_end.clone()));
    }
    let tail = offered[m];
    let checkpoint = Checkpoint {
        source_identity: identity.clone(),
        file: tail.name.clone(),
        pos: tail.file.end,
        gtid_set: tail.file.summary.gtid_end.clone(),
    };
    Ok(Plan { identity, files, seal_open, checkpoint })
}

/// Whether `o` may follow `prev`, whose GTID state ends at `state`: `Ok(Some(gap))` when it does
/// not continue it exactly, an error when it repeats or contradicts it.
fn continuation(
    flavor: Flavor,
    prev: &BinlogFileName,
    state: Option<&str>,
    o: &Offered<'_>,
) -> Result<Option<String>, Refusal> {
    let overlap = |detail: String| Refusal::Overlap { file: o.name.clone(), detail };
    let held = state.and_then(|s| State::parse(flavor, s));
    let starts = o.file.summary.gtid_start.as_deref().and_then(|s| State::parse(flavor, s));
    if let (Some(held), Some(first)) = (&held, o.file.summary.first_gtid.as_deref())
        && Gtid::parse(flavor, first).is_ok_and(|g| held.contains(&g))
    {
        return Err(overlap(format!("its first transaction {first} is already held (up to {prev})")));
    }
    let mut gaps = Vec::new();
    match (&held, &starts) {
        (Some(h), Some(s)) if !s.covers(h) => {
            return Err(overlap(format!(
                "it begins at GTID state {}, which lacks transactions the task holds up to {prev} ({})",
                o.file.summary.gtid_start.as_deref().unwrap_or_default(),
                state.unwrap_or_default()
            )));
        }
        (Some(h), Some(s)) if s != h => gaps.push(format!(
            "the GTID state jumps from {} (end of {prev}) to {}",
            state.unwrap_or_default(),
            o.file.summary.gtid_start.as_deref().unwrap_or_default()
        )),
        _ => {}
    }
    let (pb, pn) = prev.split();
    let (ob, on) = o.name.split();
    if pb != ob || pn.zip(on).is_none_or(|(p, n)| n != p + 1) {
        gaps.push(format!("{} does not follow {prev}", o.name));
    }
    Ok((!gaps.is_empty()).then(|| gaps.join("; ")))
}

#[cfg(test)]
#[path = "lineage_tests.rs"]
mod tests;
