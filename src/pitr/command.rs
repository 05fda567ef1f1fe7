//! The decoder commands of a replay plan: one `mariadb-binlog` / `mysqlbinlog` invocation per
//! segment, and the whole replay as one shell command (`{ a && b; }` when several segments run
//! in order), over whatever paths the caller has the files at (the server's, or a `--fetch`
//! directory). Pure string building; every word a shell could misread is quoted.

use std::borrow::Cow;

use crate::domain::Flavor;
use crate::pitr::Location;
use crate::pitr::plan::{Plan, PlanFile, PlanSegment};

/// One segment's command over its files at `path(file)`.
pub fn segment(plan: &Plan, seg: &PlanSegment, path: &dyn Fn(&PlanFile) -> String) -> String {
    let mut parts: Vec<String> = Vec::new();
    if seg.start_datetime.is_some() || seg.stop_datetime.is_some() {
        parts.push("TZ=UTC".into());
    }
    parts.push(
        match plan.flavor {
            Flavor::Mariadb => "mariadb-binlog",
            Flavor::Mysql => "mysqlbinlog",
        }
        .into(),
    );
    if let Some(p) = seg.start_position {
        parts.push(format!("--start-position={p}"));
    }
    if let Some(t) = seg.start_datetime {
        parts.push(format!("--start-datetime='{}'", t.format("%Y-%m-%d %H:%M:%S")));
    }
    if let Some(t) = seg.stop_datetime {
        parts.push(format!("--stop-datetime='{}'", t.format("%Y-%m-%d %H:%M:%S")));
    }
    if let Some(p) = seg.stop_position {
        parts.push(format!("--stop-position={p}"));
    }
    if let Some(g) = &seg.exclude_gtids {
        parts.push(format!("--exclude-gtids={}", shell_quote(g)));
    }
    for name in &seg.files {
        let f = plan.files.iter().find(|f| f.name == *name && f.source_identity == seg.source_identity);
        // A segment names only files of the plan; a hand-made plan that does not gets its name.
        parts.push(shell_quote(&f.map(path).unwrap_or_else(|| name.clone())));
    }
    parts.join(" ")
}

/// The plan's segments; a plan from a server that did not send any is one segment with the
/// plan's own options over all its files.
pub fn segments(plan: &Plan) -> Cow<'_, [PlanSegment]> {
    if !plan.segments.is_empty() {
        return Cow::Borrowed(&plan.segments);
    }
    Cow::Owned(vec![PlanSegment {
        source_identity: plan.files.first().map(|f| f.source_identity.clone()).unwrap_or_default(),
        files: plan.files.iter().map(|f| f.name.clone()).collect(),
        start_position: plan.start_position,
        stop_position: plan.stop_position,
        start_datetime: plan.start_datetime,
        stop_datetime: plan.stop_datetime,
        exclude_gtids: None,
        command: String::new(),
    }])
}

/// The whole replay: the segments' commands in order, as one shell command whose output is
/// the SQL of every segment (pipe it into the client). A segment runs only if the one before
/// it succeeded.
pub fn whole(plan: &Plan, path: &dyn Fn(&PlanFile) -> String) -> String {
    let cmds: Vec<String> = segments(plan).iter().map(|s| segment(plan, s, path)).collect();
    match cmds.as_slice() {
        [one] => one.clone(),
        many => format!("{{ {}; }}", many.join(" && ")),
    }
}

/// Where a plan's file is on the server (the path the server's own `command` names).
pub fn at_server(f: &PlanFile) -> String {
    match &f.location {
        Location::Local { path } => path.display().to_string(),
        Location::Object { key } => format!("s3-object:{key}"),
    }
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+:=@".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::pitr::Location;

    fn file(name: &str, source: &str) -> PlanFile {
        PlanFile {
            name: name.into(),
            source_identity: source.into(),
            size: 100,
            location: Location::Local { path: format!("/d/{source}/{name}").into() },
            sealed: None,
        }
    }

    fn seg(source: &str, files: &[&str]) -> PlanSegment {
        PlanSegment {
            source_identity: source.into(),
            files: files.iter().map(|f| f.to_string()).collect(),
            start_position: None,
            stop_position: None,
            start_datetime: None,
            stop_datetime: None,
            exclude_gtids: None,
            command: String::new(),
        }
    }

    fn path(f: &PlanFile) -> String {
        match &f.location {
            Location::Local { path } => path.display().to_string(),
            Location::Object { key } => key.clone(),
        }
    }

    #[test]
    fn segments_run_in_order_and_names_are_per_source() {
        let mut first = seg("a", &["bin.000002", "bin.000003"]);
        first.start_position = Some(400);
        let mut second = seg("b", &["bin.000003"]);
        second.start_position = Some(900);
        second.stop_datetime = DateTime::from_timestamp(1_150, 0);
        let plan = Plan {
            flavor: Flavor::Mariadb,
            files: vec![file("bin.000002", "a"), file("bin.000003", "a"), file("bin.000003", "b")],
            segments: vec![first, second],
            start_position: Some(400),
            stop_position: None,
            start_datetime: None,
            stop_datetime: DateTime::from_timestamp(1_150, 0),
            command: String::new(),
        };
        assert_eq!(
            whole(&plan, &path),
            "{ mariadb-binlog --start-position=400 /d/a/bin.000002 /d/a/bin.000003 && \
             TZ=UTC mariadb-binlog --start-position=900 --stop-datetime='1970-01-01 00:19:10' /d/b/bin.000003; }"
        );
        // A plan without segments (an older server's) is one segment over all its files.
        let old = Plan { segments: vec![], files: plan.files[..2].to_vec(), ..plan.clone() };
        assert_eq!(
            whole(&old, &path),
            "TZ=UTC mariadb-binlog --start-position=400 --stop-datetime='1970-01-01 00:19:10' /d/a/bin.000002 \
             /d/a/bin.000003"
        );
    }

    #[test]
    fn mysql_segments_leave_out_repeated_gtids() {
        let mut s = seg("u2", &["bin.000001"]);
        s.exclude_gtids = Some("3e11fa47-71ca-11e1-9e33-c80aa9429562:16-20".into());
        let plan = Plan {
            flavor: Flavor::Mysql,
            files: vec![file("bin.000001", "u2")],
            segments: vec![s.clone()],
            start_position: None,
            stop_position: None,
            start_datetime: None,
            stop_datetime: None,
            command: String::new(),
        };
        assert_eq!(
            segment(&plan, &s, &path),
            "mysqlbinlog --exclude-gtids=3e11fa47-71ca-11e1-9e33-c80aa9429562:16-20 /d/u2/bin.000001"
        );
    }

    #[test]
    fn quoting_survives_odd_paths() {
        assert_eq!(shell_quote("/a/b.000001"), "/a/b.000001");
        assert_eq!(shell_quote("/a b/it's"), "'/a b/it'\\''s'");
    }
}
