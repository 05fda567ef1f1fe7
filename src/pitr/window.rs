//! The recovery window: from which point to which point the held files form one unbroken
//! stream, and where and why it breaks.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::meta::FileState;
use crate::pitr::CatalogFile;

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
    /// The task followed a different source server from here on.
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

/// Why `b` does not continue `a` (both present, `a` directly before `b` in the catalog).
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

/// Computes the window of a catalog (stream order).
pub fn window(files: &[CatalogFile]) -> Window {
    let mut breaks = Vec::new();
    let mut last_present: Option<&CatalogFile> = None;
    let mut missing: Vec<&CatalogFile> = Vec::new();
    for f in files {
        if f.location.is_none() {
            missing.push(f);
            continue;
        }
        if !missing.is_empty() {
            breaks.push(missing_break(&missing, last_present, Some(f)));
            missing.clear();
        } else if let Some(prev) = last_present
            && let Some((reason, detail)) = join_break(prev, f)
        {
            breaks.push(Break { reason, after: Some(end_point(prev)), before: Some(start_point(f)), detail });
        }
        last_present = Some(f);
    }
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
    }
}

fn missing_break(missing: &[&CatalogFile], after: Option<&CatalogFile>, before: Option<&CatalogFile>) -> Break {
    let names: Vec<String> = missing.iter().map(|f| f.record.file_name.to_string()).collect();
    Break {
        reason: BreakReason::FileMissing,
        after: after.map(end_point),
        before: before.map(start_point),
        detail: format!("{} missing on local disk and in the bucket", names.join(", ")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::binlog::name::BinlogFileName;
    use crate::binlog::summary::FileSummary;
    use crate::meta::FileRecord;
    use crate::pitr::Location;

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
        let w = window(&files);
        assert!(w.continuous, "{w:?}");
        assert!(w.breaks.is_empty());
        assert_eq!(w.earliest.as_ref().unwrap().file, "bin.000001");
        assert_eq!(w.latest.as_ref().unwrap().pos, 900);
        assert_eq!(w.gtid_set.as_deref(), Some("0-1-20"));
    }

    #[test]
    fn a_missing_file_a_skipped_number_and_a_switchover_are_breaks() {
        let mut files = vec![
            file(1, 4, 1000, (100, 200), (0, 10)),
            file(2, 4, 900, (200, 300), (10, 20)),
            file(3, 4, 900, (300, 400), (20, 30)),
            file(5, 4, 900, (500, 600), (40, 50)),
        ];
        files[1].location = None;
        let w = window(&files);
        assert!(!w.continuous);
        let reasons: Vec<BreakReason> = w.breaks.iter().map(|b| b.reason).collect();
        assert_eq!(reasons, vec![BreakReason::FileMissing, BreakReason::Gap]);
        assert_eq!(w.breaks[0].after.as_ref().unwrap().file, "bin.000001");
        assert_eq!(w.breaks[0].before.as_ref().unwrap().file, "bin.000003");
        assert!(w.breaks[0].detail.contains("bin.000002"));

        let mut other = file(6, 4, 900, (600, 700), (50, 60));
        other.record.source_identity = "other".into();
        let w = window(&[file(5, 4, 900, (500, 600), (40, 50)), other]);
        assert_eq!(w.breaks[0].reason, BreakReason::SourceSwitchover);

        let w = window(&[file(1, 4, 1000, (100, 200), (0, 10)), file(2, 500, 900, (200, 300), (10, 20))]);
        assert_eq!(w.breaks[0].reason, BreakReason::Gap);
        assert!(w.breaks[0].detail.contains("only from position 500"));
    }

    #[test]
    fn an_object_only_file_is_no_break_and_an_empty_catalog_is_not_continuous() {
        let mut files = vec![file(1, 4, 1000, (100, 200), (0, 10)), file(2, 4, 900, (200, 300), (10, 20))];
        files[0].location = Some(Location::Object { key: "t/1/bin.000001".into() });
        assert!(window(&files).continuous);
        let w = window(&[]);
        assert!(!w.continuous && w.earliest.is_none());
    }
}
