//! The recovery window: from which point to which point the held files form one unbroken
//! stream, where and why it breaks, and where it passes from one source to another (a GTID
//! switchover the GTID state proves lossless is a point of the stream, not a break).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::Flavor;
use crate::meta::FileState;
use crate::pitr::continuity::{self, State, Verdict};
use crate::pitr::{CatalogFile, TxnReader};

/// A point of the stream: a source position with what is known of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Point {
    /// Event time at this point (earliest: of the first event held; latest: of the last).
    pub time: Option<DateTime<Utc>>,
    /// GTID state at this point (MySQL set or MariaDB per-domain list), when known.
    pub gtid: Option<String>,
    pub source_identity: String,
    pub file: String,
    pub pos: u64,
}

/// Why the stream is not continuous somewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BreakReason {
    /// Two consecutive files do not join (a file was never fetched, or one starts mid-way).
    Gap,
    /// The task followed a different source server from here on, and the GTID states do not
    /// prove that nothing was lost (`missing_gtids` names what is missing, when known).
    SourceSwitchover,
    /// A catalogued file is neither on local disk nor in the bucket.
    FileMissing,
}

/// A hole in the window: nothing can be replayed across it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Break {
    pub reason: BreakReason,
    /// The last point held before the break (absent when the break is at the very start).
    pub after: Option<Point>,
    /// The first point held after the break (absent when the break is at the very end).
    pub before: Option<Point>,
    pub detail: String,
    /// SOURCE_SWITCHOVER: the GTIDs a replay across would miss (a MySQL GTID set; MariaDB
    /// GTIDs and ranges): transactions of the old source the new one lacks, and transactions
    /// the new source executed before the first file held from it. `detail` says which.
    pub missing_gtids: Option<String>,
}

/// A GTID switchover the window passes through: the task followed a new source server here,
/// and the GTID states prove that the new source's stream continues the old one's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Switchover {
    pub from_source: String,
    pub to_source: String,
    /// The last point held from the old source.
    pub after: Point,
    /// The first point held from the new source.
    pub before: Point,
    /// The new source's first held transactions repeat ones the old source's files hold (it
    /// logged them as a replica); a replay applies them once, from the old source's files.
    pub repeats: bool,
}

/// `GET /api/tasks/{id}/window`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Window {
    /// True when the held files form one unbroken stream from `earliest` to `latest`.
    pub continuous: bool,
    pub earliest: Option<Point>,
    pub latest: Option<Point>,
    /// The GTID state at `latest`: what a server restored up to there has executed.
    pub gtid_set: Option<String>,
    pub breaks: Vec<Break>,
    /// Source switchovers inside the window (points of the stream, in stream order).
    pub switchovers: Vec<Switchover>,
}

fn to_time(t: Option<u32>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::from_timestamp(i64::from(t), 0))
}

/// The first point held in a file.
pub fn start_point(f: &CatalogFile) -> Point {
    let r = &f.record;
    Point {
        time: to_time(r.summary.first_event_at),
        gtid: r.summary.gtid_start.clone(),
        source_identity: r.source_identity.clone(),
        file: r.file_name.to_string(),
        pos: r.start_pos,
    }
}

/// The last point held in a file.
pub fn end_point(f: &CatalogFile) -> Point {
    let r = &f.record;
    Point {
        time: to_time(r.summary.last_event_at),
        gtid: r.summary.gtid_end.clone(),
        source_identity: r.source_identity.clone(),
        file: r.file_name.to_string(),
        pos: f.held_end(),
    }
}

/// Why `b` does not continue `a` (both present, `a` directly before `b` in the catalog, from
/// one source; a change of source is judged by `switchover`).
pub fn join_break(a: &CatalogFile, b: &CatalogFile) -> Option<(BreakReason, String)> {
    let (ra, rb) = (&a.record, &b.record);
    if ra.source_identity != rb.source_identity {
        return Some((
            BreakReason::SourceSwitchover,
            format!("the task switched from source {} to {}", ra.source_identity, rb.source_identity),
        ));
    }
    if ra.state != FileState::Sealed {
        return Some((BreakReason::Gap, format!("{} was left open before {} began", ra.file_name, rb.file_name)));
    }
    if rb.start_pos > 4 {
        return Some((
            BreakReason::Gap,
            format!("{} is held only from position {}, not from its start", rb.file_name, rb.start_pos),
        ));
    }
    let (base_a, na) = ra.file_name.split();
    let (base_b, nb) = rb.file_name.split();
    if base_a != base_b || na.zip(nb).is_none_or(|(x, y)| y != x + 1) {
        return Some((BreakReason::Gap, format!("{} does not follow {}", rb.file_name, ra.file_name)));
    }
    None
}

/// What a switchover from `files[junction - 1]` to `files[junction]` (another source) is, for a
/// replay that has reached `reached` there: `Ok(repeats)` when continuous, else the break's
/// detail and the missing GTIDs.
pub fn switchover(
    flavor: Flavor,
    files: &[&CatalogFile],
    junction: usize,
    reached: Option<&State>,
    reader: &dyn TxnReader,
) -> Result<bool, (String, Option<String>)> {
    let (old, new) = (&files[junction - 1].record, &files[junction].record);
    let head = format!("the task switched from source {} to {}", old.source_identity, new.source_identity);
    let Some(reached) = reached else {
        return Err((format!("{head}; the GTID state where {} ends is unknown", old.file_name), None));
    };
    match continuity::examine(flavor, files, junction, reached, reader) {
        Ok(Verdict::Continuous { repeats }) => Ok(repeats),
        Ok(Verdict::Lost { missing, detail }) => Err((format!("{head}: {detail}"), Some(missing))),
        Err(why) => Err((format!("{head}; nothing proves that no transaction was lost: {why}"), None)),
    }
}

/// Computes the window of a catalog (stream order); `reader` is used only to check a
/// switchover whose GTID states alone do not decide it.
pub fn window(flavor: Flavor, files: &[CatalogFile], reader: &dyn TxnReader) -> Window {
    let all: Vec<&CatalogFile> = files.iter().collect();
    let mut breaks = Vec::new();
    let mut switchovers = Vec::new();
    let mut last_present: Option<usize> = None;
    let mut missing: Vec<&CatalogFile> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        if f.location.is_none() {
            missing.push(f);
            continue;
        }
        let prev = last_present.map(|p| &files[p]);
        if !missing.is_empty() {
            breaks.push(missing_break(&missing, prev, Some(f)));
            missing.clear();
        } else if let Some(prev) = prev {
            if prev.record.source_identity != f.record.source_identity {
                let reached = State::held(flavor, &prev.record.summary.gtid_end);
                match switchover(flavor, &all, i, reached.as_ref(), reader) {
                    Ok(repeats) => switchovers.push(Switchover {
                        from_source: prev.record.source_identity.clone(),
                        to_source: f.record.source_identity.clone(),
                        after: end_point(prev),
                        before: start_point(f),
                        repeats,
                    }),
                    Err((detail, missing_gtids)) => breaks.push(Break {
                        reason: BreakReason::SourceSwitchover,
                        after: Some(end_point(prev)),
                        before: Some(start_point(f)),
                        detail,
                        missing_gtids,
                    }),
                }
            } else if let Some((reason, detail)) = join_break(prev, f) {
                breaks.push(Break {
                    reason,
                    after: Some(end_point(prev)),
                    before: Some(start_point(f)),
                    detail,
                    missing_gtids: None,
                });
            }
        }
        last_present = Some(i);
    }
    let last_present = last_present.map(|p| &files[p]);
    if !missing.is_empty() {
        breaks.push(missing_break(&missing, last_present, None));
    }
    let first = files.iter().find(|f| f.location.is_some());
    let latest = last_present.map(end_point);
    Window {
        continuous: breaks.is_empty() && first.is_some(),
        earliest: first.map(start_point),
        gtid_set: latest.as_ref().and_then(|p| p.gtid.clone()),
        latest,
        breaks,
        switchovers,
    }
}

fn missing_break(missing: &[&CatalogFile], after: Option<&CatalogFile>, before: Option<&CatalogFile>) -> Break {
    let names: Vec<String> = missing.iter().map(|f| f.record.file_name.to_string()).collect();
    Break {
        reason: BreakReason::FileMissing,
        after: after.map(end_point),
        before: before.map(start_point),
        detail: format!("{} missing on local disk and in the bucket", names.join(", ")),
        missing_gtids: None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::binlog::gtid::MariadbGtid;
    use crate::binlog::name::BinlogFileName;
    use crate::binlog::summary::{FileSummary, Gtid, TxnStart};
    use crate::meta::FileRecord;
    use crate::pitr::Location;

    /// Each file holds one transaction per sequence number after its `gtid_start` up to its
    /// `gtid_end`, with `gtid_end`'s server id, 100 bytes apart from offset 200.
    pub struct Fake;
    impl TxnReader for Fake {
        fn starts(&self, f: &CatalogFile) -> std::io::Result<Vec<TxnStart>> {
            let s = &f.record.summary;
            let parts = |t: &Option<String>| -> Vec<u64> {
                t.as_ref().unwrap().split('-').map(|x| x.parse().unwrap()).collect()
            };
            let (g0, end) = (parts(&s.gtid_start)[2], parts(&s.gtid_end));
            Ok((g0 + 1..=end[2])
                .enumerate()
                .map(|(k, seq)| TxnStart {
                    offset: 200 + 100 * k as u64,
                    timestamp: 0,
                    gtid: Some(Gtid::Mariadb(MariadbGtid { domain: 0, server_id: end[1] as u32, seq })),
                })
                .collect())
        }
    }

    /// `file()` from another source whose transactions after `from` are written by `server_id`.
    pub fn from_source(mut f: CatalogFile, identity: &str, server_id: u32, from: &str) -> CatalogFile {
        let s = &mut f.record.summary;
        let end = s.gtid_end.as_ref().unwrap().rsplit('-').next().unwrap().to_string();
        s.gtid_start = Some(from.to_string());
        s.gtid_end = Some(format!("0-{server_id}-{end}"));
        f.record.source_identity = identity.into();
        f.location = Some(Location::Local { path: format!("/data/1/{identity}/{}", f.record.file_name).into() });
        f
    }

    /// A sealed, present file `bin.00000{n}` covering positions 4..end, events at t0..t1 and
    /// MariaDB GTIDs 0-1-(g0+1)..=g1.
    pub fn file(n: u32, start_pos: u64, end: u64, (t0, t1): (u32, u32), (g0, g1): (u64, u64)) -> CatalogFile {
        let name = BinlogFileName::parse(&format!("bin.{n:06}")).unwrap();
        CatalogFile {
            location: Some(Location::Local { path: format!("/data/1/src/{name}").into() }),
            record: FileRecord {
                task_id: 1,
                source_identity: "src".into(),
                file_name: name,
                state: FileState::Sealed,
                start_pos,
                header_len: if start_pos > 4 { 100 } else { 4 },
                end_pos: Some(end),
                size: end,
                sha256: None,
                created_at: Utc::now(),
                sealed_at: None,
                upload: Default::default(),
                summary: FileSummary {
                    first_event_at: Some(t0),
                    last_event_at: Some(t1),
                    first_gtid: Some(format!("0-1-{}", g0 + 1)),
                    last_gtid: Some(format!("0-1-{g1}")),
                    gtid_start: Some(format!("0-1-{g0}")),
                    gtid_end: Some(format!("0-1-{g1}")),
                    gtid_added: None,
                    summary_pos: end,
                },
            },
        }
    }

    #[test]
    fn contiguous_files_make_one_window() {
        let files = vec![file(1, 4, 1000, (100, 200), (0, 10)), file(2, 4, 900, (200, 300), (10, 20))];
        let w = window(Flavor::Mariadb, &files, &Fake);
        assert!(w.continuous, "{w:?}");
        assert!(w.breaks.is_empty());
        assert_eq!(w.earliest.as_ref().unwrap().file, "bin.000001");
        assert_eq!(w.latest.as_ref().unwrap().pos, 900);
        assert_eq!(w.gtid_set.as_deref(), Some("0-1-20"));
    }

    #[test]
    fn a_missing_file_and_a_skipped_number_are_breaks() {
        let mut files = vec![
            file(1, 4, 1000, (100, 200), (0, 10)),
            file(2, 4, 900, (200, 300), (10, 20)),
            file(3, 4, 900, (300, 400), (20, 30)),
            file(5, 4, 900, (500, 600), (40, 50)),
        ];
        files[1].location = None;
        let w = window(Flavor::Mariadb, &files, &Fake);
        assert!(!w.continuous);
        let reasons: Vec<BreakReason> = w.breaks.iter().map(|b| b.reason).collect();
        assert_eq!(reasons, vec![BreakReason::FileMissing, BreakReason::Gap]);
        assert_eq!(w.breaks[0].after.as_ref().unwrap().file, "bin.000001");
        assert_eq!(w.breaks[0].before.as_ref().unwrap().file, "bin.000003");
        assert!(w.breaks[0].detail.contains("bin.000002"));

        let w = window(
            Flavor::Mariadb,
            &[file(1, 4, 1000, (100, 200), (0, 10)), file(2, 500, 900, (200, 300), (10, 20))],
            &Fake,
        );
        assert_eq!(w.breaks[0].reason, BreakReason::Gap);
        assert!(w.breaks[0].detail.contains("only from position 500"));
    }

    #[test]
    fn an_object_only_file_is_no_break_and_an_empty_catalog_is_not_continuous() {
        let mut files = vec![file(1, 4, 1000, (100, 200), (0, 10)), file(2, 4, 900, (200, 300), (10, 20))];
        files[0].location = Some(Location::Object { key: "t/1/bin.000001".into() });
        assert!(window(Flavor::Mariadb, &files, &Fake).continuous);
        let w = window(Flavor::Mariadb, &[], &Fake);
        assert!(!w.continuous && w.earliest.is_none());
    }

    #[test]
    fn a_switchover_the_gtid_state_proves_is_a_point_not_a_break() {
        // Followed by GTID: the new source resumes at 0-1-50, where the old files end.
        let old = file(5, 4, 900, (500, 600), (40, 50));
        let new = from_source(file(2, 300, 900, (600, 700), (50, 60)), "other", 2, "0-1-50");
        let w = window(Flavor::Mariadb, &[old.clone(), new.clone()], &Fake);
        assert!(w.continuous && w.breaks.is_empty(), "{w:?}");
        assert_eq!(w.switchovers.len(), 1);
        let s = &w.switchovers[0];
        assert_eq!((s.from_source.as_str(), s.to_source.as_str(), s.repeats), ("src", "other", false));
        assert_eq!((s.after.file.as_str(), s.after.pos, s.before.pos), ("bin.000005", 900, 300));
        assert_eq!(w.gtid_set.as_deref(), Some("0-2-60"));

        // Resumed earlier, repeating 0-1-46..50 (it logged them as a replica).
        let mut repeating = file(2, 4, 900, (590, 700), (45, 60));
        repeating.record.source_identity = "other".into();
        let w = window(Flavor::Mariadb, &[old.clone(), repeating], &Fake);
        assert!(w.continuous, "{w:?}");
        assert!(w.switchovers[0].repeats);
    }

    #[test]
    fn a_switchover_that_lost_transactions_is_a_break_naming_them() {
        // The new source was at 0-1-45 when it took over: 0-1-46..50 never reached it.
        let old = file(5, 4, 900, (500, 600), (40, 50));
        let new = from_source(file(2, 300, 900, (600, 700), (45, 60)), "other", 2, "0-1-45");
        let w = window(Flavor::Mariadb, &[old.clone(), new], &Fake);
        assert!(!w.continuous && w.switchovers.is_empty(), "{w:?}");
        let b = &w.breaks[0];
        assert_eq!(b.reason, BreakReason::SourceSwitchover);
        assert_eq!(b.missing_gtids.as_deref(), Some("0-1-46..0-1-50"));
        assert!(b.detail.contains("from source src to other") && b.detail.contains("lacks 0-1-46..0-1-50"), "{b:?}");

        // A state nobody knows proves nothing.
        let mut unknown = from_source(file(2, 300, 900, (600, 700), (50, 60)), "other", 2, "0-1-50");
        unknown.record.summary.gtid_start = None;
        let w = window(Flavor::Mariadb, &[old, unknown], &Fake);
        assert_eq!(w.breaks[0].reason, BreakReason::SourceSwitchover);
        assert!(w.breaks[0].detail.contains("begins is unknown"), "{:?}", w.breaks[0]);
        assert_eq!(w.breaks[0].missing_gtids, None);
    }
}
