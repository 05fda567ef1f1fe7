//! Replay plans: which files, and which exact `mariadb-binlog` / `mysqlbinlog` commands print
//! the SQL of a range, from a start (a dump's file and position, a GTID state, or a time) to a
//! stop (a time, a GTID, or a file and position). Every stop is exclusive: the stop time's
//! events, the stop GTID's transaction and the event at the stop position are not replayed.
//!
//! Positions in a request are the source's; the command uses offsets in our files (they differ
//! for a file joined mid-way). Times are whole seconds in UTC, as event timestamps are, and the
//! command runs the decoder with `TZ=UTC` because it reads `--*-datetime` in local time.
//!
//! A range may cross GTID switchovers: the plan then has one segment per source, one decoder
//! invocation each, run in order as one shell command. A switchover is crossed only when the GTID
//! state proves it lost nothing (`continuity`), and every transaction is applied once: a new
//! source's copies of transactions an earlier segment applies are skipped (its segment starts at
//! the first transaction not yet applied; MySQL leaves out later copies with `--exclude-gtids`).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::binlog::gtid::GtidSet;
use crate::binlog::summary::Gtid;
use crate::domain::Flavor;
use crate::meta::{FileRecord, FileState};
use crate::pitr::command;
use crate::pitr::continuity::State;
use crate::pitr::window::{BreakReason, end_point, join_break, switchover};
use crate::pitr::{CatalogFile, Location};

pub use crate::pitr::TxnReader;

/// Where a replay begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A source position, as `mariadb-dump --master-data` records it.
    FilePos {
        file: String,
        pos: u64,
    },
    /// The GTID state a snapshot already holds (`--gtid` dumps, `gtid_slave_pos`).
    GtidSet(String),
    Datetime(DateTime<Utc>),
}

/// Where a replay ends (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    Datetime(DateTime<Utc>),
    /// The first transaction not to replay.
    Gtid(String),
    FilePos {
        file: String,
        pos: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub start: Start,
    pub stop: Stop,
    /// The source whose files a start by file name means, when the name exists under several
    /// sources (after a switchover).
    pub start_source: Option<String>,
    /// The same for a stop by file name.
    pub stop_source: Option<String>,
}

/// One file of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PlanFile {
    pub name: String,
    pub source_identity: String,
    /// Bytes of the file that belong to the plan (an open file: up to the checkpoint).
    pub size: u64,
    pub location: Location,
    /// A sealed local file's recorded size and sha256, checked before its bytes are served.
    #[serde(skip)]
    pub sealed: Option<crate::pitr::files::SealedCopy>,
}

/// The part of a plan read from one source's files: one decoder invocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PlanSegment {
    pub source_identity: String,
    /// The segment's files in order, by name (each is in the plan's `files` with this source).
    pub files: Vec<String>,
    /// Local offset in the segment's first file to start at (`--start-position`), if not its
    /// start.
    pub start_position: Option<u64>,
    /// Local offset in the segment's last file to stop at (`--stop-position`).
    pub stop_position: Option<u64>,
    pub start_datetime: Option<DateTime<Utc>>,
    pub stop_datetime: Option<DateTime<Utc>>,
    /// MySQL: transactions of this segment that an earlier segment applies, left out with
    /// `--exclude-gtids`.
    pub exclude_gtids: Option<String>,
    /// This segment's decoder command over its files at their server paths.
    pub command: String,
}

/// The answer of `GET /api/tasks/{id}/replay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Plan {
    pub flavor: Flavor,
    /// Every file of every segment, in order: what the archive holds.
    pub files: Vec<PlanFile>,
    /// One per source the range reads, in order (more than one across a switchover).
    #[serde(default)]
    #[schema(required = true)]
    pub segments: Vec<PlanSegment>,
    /// The first segment's start offset (`--start-position`), if not its first file's start.
    pub start_position: Option<u64>,
    /// The last segment's stop offset (`--stop-position`).
    pub stop_position: Option<u64>,
    pub start_datetime: Option<DateTime<Utc>>,
    pub stop_datetime: Option<DateTime<Utc>>,
    /// The whole replay as one shell command over the files at their server paths (one
    /// segment: one decoder invocation; several: `{ a && b; }`); pipe it into the client.
    pub command: String,
}

impl Plan {
    /// Whether the plan reads the files of more than one source (it crosses a switchover).
    pub fn several_sources(&self) -> bool {
        self.files.iter().any(|f| f.source_identity != self.files[0].source_identity)
    }

    /// Where a copy of `f` goes in an archive or a download directory: its name, under a
    /// folder named after its source when the plan reads several (their file names can repeat).
    pub fn copy_path(&self, f: &PlanFile) -> String {
        if self.several_sources() { format!("{}/{}", f.source_identity, f.name) } else { f.name.clone() }
    }
}

/// Why a request cannot be planned: the range is not (provably) in the held files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotCovered(pub String);

type Result<T> = std::result::Result<T, NotCovered>;

fn nc<T>(msg: impl Into<String>) -> Result<T> {
    Err(NotCovered(msg.into()))
}

/// A segment being planned: files `from..=to` (indices into the catalog).
struct Seg {
    from: usize,
    to: usize,
    start: Option<u64>,
    exclude: Option<GtidSet>,
}

/// Plans a replay over `files` (the catalog, stream order).
pub fn plan(flavor: Flavor, files: &[CatalogFile], req: &Request, reader: &dyn TxnReader) -> Result<Plan> {
    let files: Vec<&CatalogFile> = files.iter().collect();
    if files.is_empty() {
        return nc("no binlog files are held for this task");
    }
    let (first, start_off, start_dt) = resolve_start(flavor, &files, &req.start, req.start_source.as_deref(), reader)?;
    let (last, stop_off, stop_dt) =
        resolve_stop(flavor, &files, first, start_off, &req.stop, req.stop_source.as_deref(), reader)?;
    if first == last
        && let (Some(a), Some(b)) = (start_off, stop_off)
        && b < a
    {
        return nc("the stop lies before the start");
    }
    let range = Range { first, last, start_off, stop_off, stop_by_time: stop_dt.is_some() };
    let (segs, stop_off) = cut(flavor, &files, &range, reader)?;
    Ok(assemble(flavor, &files, &segs, stop_off, start_dt, stop_dt))
}

/// The resolved range: files `first..=last`, the local offsets in them.
struct Range {
    first: usize,
    last: usize,
    start_off: Option<u64>,
    stop_off: Option<u64>,
    stop_by_time: bool,
}

/// Cuts the range into segments, one per source: every file present, files of one source
/// joined, every switchover proven lossless, and each new source's segment starting at its
/// first transaction not applied before. Returns the segments and the stop offset in the last
/// one (none when the stop lay among copies of applied transactions and was a time).
fn cut(flavor: Flavor, files: &[&CatalogFile], r: &Range, reader: &dyn TxnReader) -> Result<(Vec<Seg>, Option<u64>)> {
    let mut segs = vec![Seg { from: r.first, to: r.first, start: r.start_off, exclude: None }];
    present(files[r.first])?;
    let mut i = r.first + 1;
    while i <= r.last {
        present(files[i])?;
        let (prev, f) = (files[i - 1], files[i]);
        let crosses = |reason: BreakReason, detail: &str| {
            let p = end_point(prev);
            NotCovered(format!("the range crosses a break ({reason:?}) after {} at {}: {detail}", p.file, p.pos))
        };
        if prev.record.source_identity == f.record.source_identity {
            if let Some((reason, detail)) = join_break(prev, f) {
                return Err(crosses(reason, &detail));
            }
            segs.last_mut().expect("one segment at least").to = i;
            i += 1;
            continue;
        }
        let reached = State::held(flavor, &prev.record.summary.gtid_end);
        let repeats = switchover(flavor, files, i, reached.as_ref(), reader).map_err(|(detail, missing)| {
            let named = missing.map(|m| format!(" (missing: {m})")).unwrap_or_default();
            crosses(BreakReason::SourceSwitchover, &format!("{detail}{named}"))
        })?;
        let reached = reached.expect("a switchover with an unknown state is a break");
        let (k, off, exclude) = if repeats {
            skip_applied(flavor, files, i, r.last, r.stop_off, &reached, reader)?
        } else {
            (i, None, None)
        };
        if k > r.last || (k == r.last && off.zip(r.stop_off).is_some_and(|(o, s)| s <= o)) {
            // Everything up to the stop repeats what earlier segments apply.
            if !r.stop_by_time {
                return nc(format!(
                    "the stop lies in {}'s copies of transactions that {}'s files hold; give it as a GTID or \
                     in {}'s files",
                    f.record.source_identity, prev.record.source_identity, prev.record.source_identity
                ));
            }
            return Ok((segs, None));
        }
        for j in i..=k {
            present(files[j])?;
            if j > i
                && let Some((reason, detail)) = join_break(files[j - 1], files[j])
            {
                return Err(crosses(reason, &detail));
            }
        }
        segs.push(Seg { from: k, to: k, start: off, exclude });
        i = k + 1;
    }
    Ok((segs, r.stop_off))
}

/// The plan of `segs`: their files, options and commands (over the files at their server paths).
fn assemble(
    flavor: Flavor,
    files: &[&CatalogFile],
    segs: &[Seg],
    stop_off: Option<u64>,
    start_dt: Option<DateTime<Utc>>,
    stop_dt: Option<DateTime<Utc>>,
) -> Plan {
    let plan_file = |f: &CatalogFile| PlanFile {
        name: f.record.file_name.to_string(),
        source_identity: f.record.source_identity.clone(),
        size: f.record.local_offset(f.held_end()),
        location: f.location.clone().expect("checked present"),
        sealed: crate::pitr::files::SealedCopy::of(&f.record),
    };
    let n = segs.len();
    let mut plan_files = Vec::new();
    let mut segments = Vec::new();
    for (k, seg) in segs.iter().enumerate() {
        let seg_files: Vec<PlanFile> = files[seg.from..=seg.to].iter().map(|f| plan_file(f)).collect();
        segments.push(PlanSegment {
            source_identity: files[seg.from].record.source_identity.clone(),
            files: seg_files.iter().map(|f| f.name.clone()).collect(),
            start_position: seg.start,
            stop_position: if k + 1 == n { stop_off } else { None },
            start_datetime: if k == 0 { start_dt } else { None },
            stop_datetime: if k + 1 == n { stop_dt } else { None },
            exclude_gtids: seg.exclude.as_ref().map(|g| g.to_string()),
            command: String::new(),
        });
        plan_files.extend(seg_files);
    }
    let mut plan = Plan {
        flavor,
        files: plan_files,
        start_position: segments[0].start_position,
        stop_position: segments[n - 1].stop_position,
        start_datetime: start_dt,
        stop_datetime: stop_dt,
        segments,
        command: String::new(),
    };
    for seg in 0..n {
        plan.segments[seg].command = command::segment(&plan, &plan.segments[seg], &command::at_server);
    }
    plan.command = command::whole(&plan, &command::at_server);
    plan
}

fn present(f: &CatalogFile) -> Result<()> {
    if f.location.is_none() {
        return nc(format!(
            "{} ({}) is needed but missing on local disk and in the bucket",
            f.record.file_name, f.record.source_identity
        ));
    }
    Ok(())
}

/// Where the new source's segment begins after a switchover whose first transactions repeat
/// what the replay has applied (`reached`): `(file index, local offset of the first transaction
/// not yet applied, MySQL transactions to leave out after it)`. An index past `last` means
/// nothing up to the stop is new. Reads the new source's files up to the stop.
fn skip_applied(
    flavor: Flavor,
    files: &[&CatalogFile],
    junction: usize,
    last: usize,
    stop_off: Option<u64>,
    reached: &State,
    reader: &dyn TxnReader,
) -> Result<(usize, Option<u64>, Option<GtidSet>)> {
    let identity = &files[junction].record.source_identity;
    let segment_end = (junction..=last).take_while(|&j| files[j].record.source_identity == *identity).last();
    let Some(segment_end) = segment_end else { return Ok((last + 1, None, None)) };
    let read = |j: usize| {
        reader.starts(files[j]).map_err(|e| NotCovered(format!("cannot read {}: {e}", files[j].record.file_name)))
    };
    let mut found: Option<(usize, u64)> = None;
    let mut later_applied = GtidSet::new();
    for j in junction..=segment_end {
        let starts = read(j)?;
        let upto = |off: u64| j < last || stop_off.is_none_or(|s| off < s);
        for t in starts.iter().filter(|t| upto(t.offset)) {
            let Some(g) = &t.gtid else { continue };
            match (found, reached.contains(g)) {
                (None, false) => found = Some((j, t.offset)),
                (Some(_), true) => match (flavor, g) {
                    (Flavor::Mysql, Gtid::Mysql { uuid, tag, gno }) => later_applied.add(*uuid, tag, *gno),
                    _ => {
                        return nc(format!(
                            "{} repeats {g} (applied from the files before the switchover) after a transaction \
                             that is not: its stream is not one point of the old source's (several GTID domains?)",
                            identity
                        ));
                    }
                },
                _ => {}
            }
        }
    }
    match found {
        Some((j, off)) => Ok((j, Some(off), (!later_applied.is_empty()).then_some(later_applied))),
        None if segment_end < last => nc(format!(
            "{identity}'s files hold only transactions applied before the switchover to it, and the task switched \
             source again before the stop; plan the range in two parts"
        )),
        None => Ok((last + 1, None, None)),
    }
}

fn time_of(t: Option<u32>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(i64::from(t), 0))
}

/// The file `name` at or after index `from`, of source `source` when given (needed when the
/// name exists under several sources).
fn find_file(files: &[&CatalogFile], name: &str, from: usize, what: &str, source: Option<&str>) -> Result<usize> {
    let named = |i: &usize| files[*i].record.file_name.as_str() == name;
    let hits: Vec<usize> = (from..files.len())
        .filter(named)
        .filter(|&i| source.is_none_or(|s| files[i].record.source_identity == s))
        .collect();
    match hits.as_slice() {
        [] if (0..from).any(|i| named(&i)) => nc(format!("the {what} ({name}) lies before the start")),
        [] => {
            let held: Vec<&str> = files.iter().map(|f| f.record.file_name.as_str()).collect();
            let under = source.map(|s| format!(" under source {s}")).unwrap_or_default();
            nc(format!("{what} file {name} is not held{under} (held: {})", summarize_names(&held)))
        }
        [i] => Ok(*i),
        _ => {
            let sources: Vec<&str> = hits.iter().map(|&i| files[i].record.source_identity.as_str()).collect();
            nc(format!(
                "{what} file {name} exists under several sources ({}); give {what}_source_identity",
                sources.join(", ")
            ))
        }
    }
}

fn summarize_names(names: &[&str]) -> String {
    match names {
        [] => "none".into(),
        [one] => (*one).into(),
        [a, .., b] => format!("{a} .. {b}"),
    }
}

fn check_pos(rec: &FileRecord, held_end: u64, pos: u64, what: &str) -> Result<()> {
    if pos < rec.start_pos || (pos < 4) {
        return nc(format!(
            "{what} position {pos} in {} is not held: the file is held from position {}",
            rec.file_name, rec.start_pos
        ));
    }
    if pos > held_end {
        return nc(format!(
            "{what} position {pos} in {} is not held: the file is held up to position {held_end}",
            rec.file_name
        ));
    }
    Ok(())
}

/// (first file index, local start offset, start datetime).
fn resolve_start(
    flavor: Flavor,
    files: &[&CatalogFile],
    start: &Start,
    source: Option<&str>,
    reader: &dyn TxnReader,
) -> Result<(usize, Option<u64>, Option<DateTime<Utc>>)> {
    match start {
        Start::FilePos { file, pos } => {
            let i = find_file(files, file, 0, "start", source)?;
            let f = files[i];
            check_pos(&f.record, f.held_end(), *pos, "start")?;
            if f.record.state == FileState::Sealed && Some(*pos) == f.record.end_pos && i + 1 < files.len() {
                // A dump taken at the very end of a file: the replay begins with the next one.
                return Ok((i + 1, None, None));
            }
            let off = f.record.local_offset(*pos);
            Ok((i, (off > 4).then_some(off), None))
        }
        Start::Datetime(t) => {
            let earliest = files.iter().find_map(|f| time_of(f.record.summary.first_event_at));
            match earliest {
                Some(e) if e < *t => {}
                Some(e) => {
                    return nc(format!(
                        "start_datetime {} is not after the earliest event held ({})",
                        t.to_rfc3339(),
                        e.to_rfc3339()
                    ));
                }
                None => return nc("no event times are known for the held files"),
            }
            let i = files
                .iter()
                .position(|f| time_of(f.record.summary.last_event_at).is_some_and(|l| l >= *t))
                .unwrap_or(files.len() - 1);
            Ok((i, None, Some(*t)))
        }
        Start::GtidSet(text) => {
            let have = State::parse(flavor, text)
                .ok_or_else(|| NotCovered(format!("start_gtid_set {text:?} is not a {flavor:?} GTID state")))?;
            // The first file with a transaction the snapshot lacks.
            let i = files
                .iter()
                .position(|f| State::held(flavor, &f.record.summary.gtid_end).is_none_or(|end| !have.covers(&end)));
            let Some(i) = i else {
                let last = files.len() - 1;
                let f = files[last];
                let off = f.record.local_offset(f.held_end());
                return Ok((last, Some(off), None));
            };
            let f = files[i];
            match State::held(flavor, &f.record.summary.gtid_start) {
                Some(before) if have.covers(&before) => {}
                _ => {
                    return nc(format!(
                        "start_gtid_set {text} lacks transactions before {} ({}), the earliest file that \
                         could continue it; they are not held",
                        f.record.file_name,
                        f.record.summary.gtid_start.as_deref().unwrap_or("GTID state unknown")
                    ));
                }
            }
            let starts =
                reader.starts(f).map_err(|e| NotCovered(format!("cannot read {}: {e}", f.record.file_name)))?;
            let k = starts.iter().position(|s| s.gtid.as_ref().is_some_and(|g| !have.contains(g)));
            let Some(k) = k else {
                return nc(format!("{} holds no transaction missing from start_gtid_set", f.record.file_name));
            };
            if let Some(dup) = starts[k..].iter().filter_map(|s| s.gtid.as_ref()).find(|g| have.contains(g)) {
                return nc(format!(
                    "start_gtid_set is not one point of the stream ({dup} follows a transaction it lacks); \
                     start by file and position instead"
                ));
            }
            Ok((i, Some(starts[k].offset), None))
        }
    }
}

/// (last file index, local stop offset, stop datetime).
fn resolve_stop(
    flavor: Flavor,
    files: &[&CatalogFile],
    first: usize,
    start_off: Option<u64>,
    stop: &Stop,
    source: Option<&str>,
    reader: &dyn TxnReader,
) -> Result<(usize, Option<u64>, Option<DateTime<Utc>>)> {
    match stop {
        Stop::FilePos { file, pos } => {
            let j = find_file(files, file, first, "stop", source)?;
            let f = files[j];
            check_pos(&f.record, f.held_end(), *pos, "stop")?;
            Ok((j, Some(f.record.local_offset(*pos)), None))
        }
        Stop::Datetime(t) => {
            let j =
                (first..files.len()).find(|&j| time_of(files[j].record.summary.last_event_at).is_some_and(|l| l >= *t));
            match j {
                Some(j) => Ok((j, None, Some(*t))),
                None => {
                    let latest = files.last().and_then(|f| time_of(f.record.summary.last_event_at));
                    nc(format!(
                        "stop_datetime {} is after the latest event held ({}); nothing proves the source wrote \
                         nothing in between",
                        t.to_rfc3339(),
                        latest.map(|l| l.to_rfc3339()).unwrap_or_else(|| "none".into())
                    ))
                }
            }
        }
        Stop::Gtid(text) => {
            let g = Gtid::parse(flavor, text).map_err(|e| NotCovered(format!("stop_gtid: {e}")))?;
            let j = (first..files.len())
                .find(|&j| State::held(flavor, &files[j].record.summary.gtid_end).is_some_and(|end| end.contains(&g)));
            let Some(j) = j else {
                let latest = files.last().and_then(|f| f.record.summary.gtid_end.clone());
                return nc(format!(
                    "stop_gtid {g} is not in the held files from the start on (held up to {})",
                    latest.as_deref().unwrap_or("unknown")
                ));
            };
            let starts = reader
                .starts(files[j])
                .map_err(|e| NotCovered(format!("cannot read {}: {e}", files[j].record.file_name)))?;
            let Some(s) = starts.iter().find(|s| s.gtid.as_ref() == Some(&g)) else {
                return nc(format!(
                    "stop_gtid {g} is not in {} (a server id that differs from the source's?)",
                    files[j].record.file_name
                ));
            };
            if j == first && start_off.is_some_and(|a| s.offset < a) {
                return nc(format!("stop_gtid {g} lies before the start"));
            }
            Ok((j, Some(s.offset), None))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;
    use crate::binlog::gtid::MariadbGtid;
    use crate::binlog::summary::TxnStart;
    use crate::pitr::window::tests::{Fake, file, from_source};

    fn catalog() -> Vec<CatalogFile> {
        vec![
            file(1, 4, 5000, (1_000, 1_100), (0, 10)),
            file(2, 4, 5000, (1_100, 1_200), (10, 20)),
            file(3, 4, 5000, (1_200, 1_300), (20, 30)),
        ]
    }

    fn at(t: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(t, 0).unwrap()
    }

    fn req(start: Start, stop: Stop) -> Request {
        Request { start, stop, start_source: None, stop_source: None }
    }

    fn names(p: &Plan) -> Vec<&str> {
        p.files.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn dump_position_to_a_time_takes_exactly_the_files_between() {
        let p = plan(
            Flavor::Mariadb,
            &catalog(),
            &req(Start::FilePos { file: "bin.000001".into(), pos: 777 }, Stop::Datetime(at(1_150))),
            &Fake,
        )
        .unwrap();
        assert_eq!(names(&p), ["bin.000001", "bin.000002"]);
        assert_eq!(p.start_position, Some(777));
        assert_eq!(
            p.command,
            "TZ=UTC mariadb-binlog --start-position=777 --stop-datetime='1970-01-01 00:19:10' \
             /data/1/src/bin.000001 /data/1/src/bin.000002"
        );
    }

    #[test]
    fn gtid_start_and_stop_become_exact_offsets() {
        let p = plan(
            Flavor::Mariadb,
            &catalog(),
            &req(Start::GtidSet("0-1-12".into()), Stop::Gtid("0-1-25".into())),
            &Fake,
        )
        .unwrap();
        assert_eq!(names(&p), ["bin.000002", "bin.000003"]);
        // 0-1-13 is the third transaction of file 2; 0-1-25 the fifth of file 3.
        assert_eq!((p.start_position, p.stop_position), (Some(400), Some(600)));
        assert_eq!(
            p.command,
            "mariadb-binlog --start-position=400 --stop-position=600 /data/1/src/bin.000002 /data/1/src/bin.000003"
        );
    }

    #[test]
    fn a_dump_at_the_end_of_a_file_starts_with_the_next() {
        let p = plan(
            Flavor::Mariadb,
            &catalog(),
            &req(
                Start::FilePos { file: "bin.000001".into(), pos: 5000 },
                Stop::FilePos { file: "bin.000003".into(), pos: 900 },
            ),
            &Fake,
        )
        .unwrap();
        assert_eq!(names(&p), ["bin.000002", "bin.000003"]);
        assert_eq!((p.start_position, p.stop_position), (None, Some(900)));
    }

    #[test]
    fn uncovered_ranges_say_what_is_missing() {
        let cat = catalog();
        let err = |start, stop| plan(Flavor::Mariadb, &cat, &req(start, stop), &Fake).unwrap_err().0;
        let from = || Start::FilePos { file: "bin.000001".into(), pos: 4 };
        assert!(err(from(), Stop::Datetime(at(5_000))).contains("after the latest event held"));
        assert!(
            err(Start::FilePos { file: "bin.000009".into(), pos: 4 }, Stop::Datetime(at(1_150)))
                .contains("bin.000009 is not held")
        );
        assert!(
            err(Start::FilePos { file: "bin.000001".into(), pos: 6000 }, Stop::Datetime(at(1_150)))
                .contains("held up to position 5000")
        );
        assert!(err(Start::Datetime(at(900)), Stop::Datetime(at(1_150))).contains("not after the earliest event"));
        assert!(err(from(), Stop::Gtid("0-1-99".into())).contains("not in the held files"));
        assert!(
            err(
                Start::FilePos { file: "bin.000003".into(), pos: 4 },
                Stop::FilePos { file: "bin.000001".into(), pos: 9 }
            )
            .contains("before the start")
        );

        // Missing and gapped files inside the range.
        let mut missing = catalog();
        missing[1].location = None;
        let e = plan(Flavor::Mariadb, &missing, &req(from(), Stop::Datetime(at(1_250))), &Fake).unwrap_err().0;
        assert!(e.contains("bin.000002") && e.contains("missing"), "{e}");
        // ... but a range that avoids the missing file is fine.
        assert!(plan(Flavor::Mariadb, &missing, &req(from(), Stop::Datetime(at(1_050))), &Fake).is_ok());
        let mut gap = catalog();
        gap[2] = file(4, 4, 5000, (1_200, 1_300), (20, 30));
        let e = plan(Flavor::Mariadb, &gap, &req(from(), Stop::Datetime(at(1_250))), &Fake).unwrap_err().0;
        assert!(e.contains("break (Gap)"), "{e}");
    }

    #[test]
    fn a_gtid_start_with_transactions_before_the_first_file_is_refused() {
        let cat = catalog();
        let e =
            plan(Flavor::Mariadb, &cat[1..], &req(Start::GtidSet("0-1-5".into()), Stop::Gtid("0-1-25".into())), &Fake)
                .unwrap_err()
                .0;
        assert!(e.contains("lacks transactions before bin.000002"), "{e}");
    }

    /// `Fake`, except for the files listed here: (source, file) -> GTIDs in order, 100 bytes
    /// apart from offset 200.
    struct Listed(Vec<(&'static str, &'static str, Vec<MariadbGtid>)>);
    impl TxnReader for Listed {
        fn starts(&self, f: &CatalogFile) -> io::Result<Vec<TxnStart>> {
            let r = &f.record;
            match self.0.iter().find(|(s, n, _)| *s == r.source_identity && *n == r.file_name.as_str()) {
                None => Fake.starts(f),
                Some((_, _, gtids)) => Ok(gtids
                    .iter()
                    .enumerate()
                    .map(|(k, g)| TxnStart {
                        offset: 200 + 100 * k as u64,
                        timestamp: 0,
                        gtid: Some(Gtid::Mariadb(*g)),
                    })
                    .collect()),
            }
        }
    }

    fn seqs(server_id: u32, range: std::ops::RangeInclusive<u64>) -> Vec<MariadbGtid> {
        range.map(|seq| MariadbGtid { domain: 0, server_id, seq }).collect()
    }

    /// bin.000001-2 of `src` (0-1-1..20, until t=1200), then `other`'s bin.000002 (its own
    /// numbering: the names repeat) from `resumes`, to 0-2-30 (t=1200..1300).
    fn failover(resumes: &str) -> Vec<CatalogFile> {
        let mut cat = catalog();
        cat.truncate(2);
        cat.push(from_source(file(2, 300, 2000, (1_200, 1_300), (20, 30)), "other", 2, resumes));
        cat
    }

    /// (source, files, start offset, stop offset) per segment.
    type Seg<'a> = (&'a str, Vec<&'a str>, Option<u64>, Option<u64>);

    fn segs(p: &Plan) -> Vec<Seg<'_>> {
        p.segments
            .iter()
            .map(|s| {
                (
                    s.source_identity.as_str(),
                    s.files.iter().map(String::as_str).collect(),
                    s.start_position,
                    s.stop_position,
                )
            })
            .collect()
    }

    #[test]
    fn a_followed_switchover_is_crossed_with_a_segment_per_source() {
        let p = plan(
            Flavor::Mariadb,
            &failover("0-1-20"),
            &req(Start::GtidSet("0-1-12".into()), Stop::Gtid("0-2-25".into())),
            &Fake,
        )
        .unwrap();
        // 0-1-13 is the third transaction of src's bin.000002; 0-2-25 the fifth of other's.
        assert_eq!(
            segs(&p),
            [("src", vec!["bin.000002"], Some(400), None), ("other", vec!["bin.000002"], None, Some(600))]
        );
        assert_eq!(
            p.command,
            "{ mariadb-binlog --start-position=400 /data/1/src/bin.000002 && \
             mariadb-binlog --stop-position=600 /data/1/other/bin.000002; }"
        );
        assert_eq!((p.start_position, p.stop_position), (Some(400), Some(600)));
        assert_eq!(p.files.len(), 2);
        assert!(p.several_sources());
        assert_eq!(p.copy_path(&p.files[1]), "other/bin.000002");
        assert_eq!(p.segments[1].command, "mariadb-binlog --stop-position=600 /data/1/other/bin.000002");
    }

    #[test]
    fn a_new_source_repeating_applied_transactions_starts_at_the_first_new_one() {
        // The new primary's file holds 0-1-16..20 (it logged them as a replica), then its own.
        let reader = Listed(vec![("other", "bin.000002", [seqs(1, 16..=20), seqs(2, 21..=30)].concat())]);
        let p = plan(
            Flavor::Mariadb,
            &failover("0-1-15"),
            &req(Start::GtidSet("0-1-12".into()), Stop::Gtid("0-2-25".into())),
            &reader,
        )
        .unwrap();
        // 0-2-21 is the sixth transaction there (offset 700), 0-2-25 the tenth (1100).
        assert_eq!(
            segs(&p),
            [("src", vec!["bin.000002"], Some(400), None), ("other", vec!["bin.000002"], Some(700), Some(1100))]
        );

        // By time: the stop is after the failover; the start is a dump's file and position,
        // whose name both sources have.
        let by_time = |source: Option<&str>| {
            let mut r = req(Start::FilePos { file: "bin.000002".into(), pos: 777 }, Stop::Datetime(at(1_250)));
            r.start_source = source.map(String::from);
            plan(Flavor::Mariadb, &failover("0-1-15"), &r, &reader)
        };
        let e = by_time(None).unwrap_err().0;
        assert!(e.contains("several sources (src, other); give start_source_identity"), "{e}");
        let p = by_time(Some("src")).unwrap();
        assert_eq!(
            segs(&p),
            [("src", vec!["bin.000002"], Some(777), None), ("other", vec!["bin.000002"], Some(700), None)]
        );
        assert_eq!(p.segments[1].stop_datetime, Some(at(1_250)));
        assert!(p.command.contains("&& TZ=UTC mariadb-binlog --start-position=700 --stop-datetime="), "{}", p.command);

        // A stop before the failover reads the old source's files only.
        let p = plan(
            Flavor::Mariadb,
            &failover("0-1-15"),
            &req(Start::GtidSet("0-1-3".into()), Stop::Gtid("0-1-18".into())),
            &reader,
        )
        .unwrap();
        // 0-1-4 is the fourth transaction of bin.000001, 0-1-18 the eighth of bin.000002.
        assert_eq!(segs(&p), [("src", vec!["bin.000001", "bin.000002"], Some(500), Some(900))]);
        assert!(!p.several_sources() && !p.command.contains('{'));

        // A stop among the new source's copies is ambiguous: refused, with a way out.
        let mut r = req(Start::GtidSet("0-1-3".into()), Stop::FilePos { file: "bin.000002".into(), pos: 310 });
        r.stop_source = Some("other".into());
        let e = plan(Flavor::Mariadb, &failover("0-1-15"), &r, &reader).unwrap_err().0;
        assert!(e.contains("copies of transactions that src's files hold"), "{e}");
    }

    #[test]
    fn a_switchover_that_lost_transactions_is_not_crossed() {
        // The new primary was at 0-1-15 when it took over; 0-1-16..20 never reached it.
        let reader = Listed(vec![("other", "bin.000002", seqs(2, 16..=30))]);
        let e = plan(
            Flavor::Mariadb,
            &failover("0-1-15"),
            &req(Start::GtidSet("0-1-12".into()), Stop::Gtid("0-2-25".into())),
            &reader,
        )
        .unwrap_err()
        .0;
        assert!(e.contains("crosses a break (SourceSwitchover) after bin.000002 at 5000"), "{e}");
        assert!(e.contains("(missing: 0-1-16..0-1-20)"), "{e}");
        // Either side alone is fine.
        let within_new = req(Start::FilePos { file: "bin.000002".into(), pos: 300 }, Stop::Gtid("0-2-25".into()));
        let mut r = within_new.clone();
        r.start_source = Some("other".into());
        let p = plan(Flavor::Mariadb, &failover("0-1-15"), &r, &reader).unwrap();
        // Source position 300 is where the file was joined: local offset 100, after its header.
        assert_eq!(segs(&p), [("other", vec!["bin.000002"], Some(100), Some(1100))]);
    }
}
