//! Replay plans: which files, and which exact `mariadb-binlog` / `mysqlbinlog` command prints
//! the SQL of a range, from a start (a dump's file and position, a GTID state, or a time) to a
//! stop (a time, a GTID, or a file and position). Every stop is exclusive: the stop time's
//! events, the stop GTID's transaction and the event at the stop position are not replayed.
//!
//! Positions in a request are the source's; the command uses offsets in our files (they differ
//! for a file joined mid-way). Times are whole seconds in UTC, as event timestamps are, and the
//! command runs the decoder with `TZ=UTC` because it reads `--*-datetime` in local time.

use std::io;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::binlog::gtid::{GtidSet, MariadbGtidState};
use crate::binlog::summary::{Gtid, TxnStart};
use crate::domain::Flavor;
use crate::meta::{FileRecord, FileState};
use crate::pitr::window::{end_point, join_break};
use crate::pitr::{CatalogFile, Location};

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
    /// Needed only when a file name exists under two sources (after a switchover).
    pub source_identity: Option<String>,
}

/// One file of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PlanFile {
    pub name: String,
    pub source_identity: String,
    /// Bytes of the file that belong to the plan (an open file: up to the checkpoint).
    pub size: u64,
    pub location: Location,
}

/// The answer of `GET /api/tasks/{id}/replay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Plan {
    pub flavor: Flavor,
    pub files: Vec<PlanFile>,
    /// Local offset in the first file to start at (`--start-position`), if not its start.
    pub start_position: Option<u64>,
    /// Local offset in the last file to stop at (`--stop-position`).
    pub stop_position: Option<u64>,
    pub start_datetime: Option<DateTime<Utc>>,
    pub stop_datetime: Option<DateTime<Utc>>,
    /// The decoder command over the files at their server paths; pipe it into the client.
    pub command: String,
}

/// Why a request cannot be planned: the range is not (provably) in the held files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotCovered(pub String);

/// Reads the GTID transaction starts of a file up to its held size (`summary::transaction_starts`).
pub trait TxnReader {
    fn starts(&self, f: &CatalogFile) -> io::Result<Vec<TxnStart>>;
}

type Result<T> = std::result::Result<T, NotCovered>;

fn nc<T>(msg: impl Into<String>) -> Result<T> {
    Err(NotCovered(msg.into()))
}

/// The GTID state of one flavor, for "is this transaction already in it" questions.
enum State {
    Mysql(GtidSet),
    Mariadb(MariadbGtidState),
}

impl State {
    fn parse(flavor: Flavor, text: &str) -> Option<State> {
        match flavor {
            Flavor::Mysql => GtidSet::parse(text).ok().map(State::Mysql),
            Flavor::Mariadb => MariadbGtidState::parse(text).ok().map(State::Mariadb),
        }
    }

    fn contains(&self, g: &Gtid) -> bool {
        match (self, g) {
            (State::Mysql(s), Gtid::Mysql { uuid, tag, gno }) => s.contains(uuid, tag, *gno),
            (State::Mariadb(s), Gtid::Mariadb(g)) => s.get(g.domain).is_some_and(|c| c.seq >= g.seq),
            _ => false,
        }
    }

    /// Whether every transaction of `other` is in `self`.
    fn covers(&self, other: &State) -> bool {
        match (self, other) {
            (State::Mysql(a), State::Mysql(b)) => b.entries().all(|(u, t, iv)| {
                // Intervals are disjoint and non-adjacent: a covered range lies in one of a's.
                let mine: Vec<(u64, u64)> =
                    a.entries().filter(|(au, at, _)| *au == u && *at == t).flat_map(|(_, _, i)| i.iter()).collect();
                iv.iter().all(|(s, e)| mine.iter().any(|&(ms, me)| ms <= s && e <= me))
            }),
            (State::Mariadb(a), State::Mariadb(b)) => b.iter().all(|g| a.get(g.domain).is_some_and(|c| c.seq >= g.seq)),
            _ => false,
        }
    }
}

fn held_state(flavor: Flavor, text: &Option<String>) -> Option<State> {
    text.as_deref().and_then(|t| State::parse(flavor, t))
}

/// Plans a replay over `files` (the catalog, stream order).
pub fn plan(flavor: Flavor, files: &[CatalogFile], req: &Request, reader: &dyn TxnReader) -> Result<Plan> {
    let files: Vec<&CatalogFile> =
        files.iter().filter(|f| req.source_identity.as_ref().is_none_or(|s| *s == f.record.source_identity)).collect();
    if files.is_empty() {
        return nc("no binlog files are held for this task");
    }
    let (first, start_off, start_dt) = resolve_start(flavor, &files, &req.start, reader)?;
    let (last, stop_off, stop_dt) = resolve_stop(flavor, &files, first, start_off, &req.stop, reader)?;

    // Every file of the range present, every pair joined.
    for i in first..=last {
        let f = files[i];
        if f.location.is_none() {
            return nc(format!(
                "{} ({}) is needed but missing on local disk and in the bucket",
                f.record.file_name, f.record.source_identity
            ));
        }
        if i > first
            && let Some((reason, detail)) = join_break(files[i - 1], f)
        {
            let p = end_point(files[i - 1]);
            return nc(format!("the range crosses a break ({reason:?}) after {} at {}: {detail}", p.file, p.pos));
        }
    }
    if first == last
        && let (Some(a), Some(b)) = (start_off, stop_off)
        && b < a
    {
        return nc("the stop lies before the start");
    }
    let plan_files: Vec<PlanFile> = files[first..=last]
        .iter()
        .map(|f| PlanFile {
            name: f.record.file_name.to_string(),
            source_identity: f.record.source_identity.clone(),
            size: f.record.local_offset(f.held_end()),
            location: f.location.clone().expect("checked above"),
        })
        .collect();
    let mut plan = Plan {
        flavor,
        files: plan_files,
        start_position: start_off,
        stop_position: stop_off,
        start_datetime: start_dt,
        stop_datetime: stop_dt,
        command: String::new(),
    };
    let paths: Vec<String> = plan
        .files
        .iter()
        .map(|f| match &f.location {
            Location::Local { path } => path.display().to_string(),
            Location::Object { key } => format!("s3-object:{key}"),
        })
        .collect();
    plan.command = command(&plan, &paths);
    Ok(plan)
}

/// The decoder command for `plan` over `paths` (one per plan file, in order).
pub fn command(plan: &Plan, paths: &[String]) -> String {
    let mut parts: Vec<String> = Vec::new();
    if plan.start_datetime.is_some() || plan.stop_datetime.is_some() {
        parts.push("TZ=UTC".into());
    }
    parts.push(
        match plan.flavor {
            Flavor::Mariadb => "mariadb-binlog",
            Flavor::Mysql => "mysqlbinlog",
        }
        .into(),
    );
    if let Some(p) = plan.start_position {
        parts.push(format!("--start-position={p}"));
    }
    if let Some(t) = plan.start_datetime {
        parts.push(format!("--start-datetime='{}'", t.format("%Y-%m-%d %H:%M:%S")));
    }
    if let Some(t) = plan.stop_datetime {
        parts.push(format!("--stop-datetime='{}'", t.format("%Y-%m-%d %H:%M:%S")));
    }
    if let Some(p) = plan.stop_position {
        parts.push(format!("--stop-position={p}"));
    }
    parts.extend(paths.iter().map(|p| shell_quote(p)));
    parts.join(" ")
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn time_of(t: Option<u32>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(i64::from(t), 0))
}

fn find_file(files: &[&CatalogFile], name: &str, from: usize, what: &str) -> Result<usize> {
    let hits: Vec<usize> = (from..files.len()).filter(|&i| files[i].record.file_name.as_str() == name).collect();
    match hits.as_slice() {
        [] => {
            let held: Vec<&str> = files.iter().map(|f| f.record.file_name.as_str()).collect();
            nc(format!("{what} file {name} is not held (held: {})", summarize_names(&held)))
        }
        [i] => Ok(*i),
        _ => nc(format!("{what} file {name} exists under several sources; give source_identity")),
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
    reader: &dyn TxnReader,
) -> Result<(usize, Option<u64>, Option<DateTime<Utc>>)> {
    match start {
        Start::FilePos { file, pos } => {
            let i = find_file(files, file, 0, "start")?;
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
                .position(|f| held_state(flavor, &f.record.summary.gtid_end).is_none_or(|end| !have.covers(&end)));
            let Some(i) = i else {
                let last = files.len() - 1;
                let f = files[last];
                let off = f.record.local_offset(f.held_end());
                return Ok((last, Some(off), None));
            };
            let f = files[i];
            match held_state(flavor, &f.record.summary.gtid_start) {
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
    reader: &dyn TxnReader,
) -> Result<(usize, Option<u64>, Option<DateTime<Utc>>)> {
    match stop {
        Stop::FilePos { file, pos } => {
            let j = find_file(files, file, 0, "stop")?;
            if j < first {
                return nc("the stop lies before the start");
            }
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
                .find(|&j| held_state(flavor, &files[j].record.summary.gtid_end).is_some_and(|end| end.contains(&g)));
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
    use super::*;
    use crate::binlog::gtid::MariadbGtid;
    use crate::pitr::window::tests::file;

    /// Each file holds one transaction per GTID, 100 bytes apart from offset 200.
    struct Fake;
    impl TxnReader for Fake {
        fn starts(&self, f: &CatalogFile) -> io::Result<Vec<TxnStart>> {
            let s = &f.record.summary;
            let g0: u64 = s.gtid_start.as_ref().unwrap().rsplit('-').next().unwrap().parse().unwrap();
            let g1: u64 = s.gtid_end.as_ref().unwrap().rsplit('-').next().unwrap().parse().unwrap();
            Ok((g0 + 1..=g1)
                .enumerate()
                .map(|(k, seq)| TxnStart {
                    offset: 200 + 100 * k as u64,
                    timestamp: 0,
                    gtid: Some(Gtid::Mariadb(MariadbGtid { domain: 0, server_id: 1, seq })),
                })
                .collect())
        }
    }

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
        Request { start, stop, source_identity: None }
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

    #[test]
    fn quoting_survives_odd_paths() {
        assert_eq!(shell_quote("/a/b.000001"), "/a/b.000001");
        assert_eq!(shell_quote("/a b/it's"), "'/a b/it'\\''s'");
    }
}
