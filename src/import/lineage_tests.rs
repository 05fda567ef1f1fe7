use chrono::Utc;

use super::*;

const ID: &str = "mariadb-1-0";
const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const U2: &str = "4f22ab58-82db-22f2-af44-d91bb9530673";

fn n(file: u32) -> BinlogFileName {
    BinlogFileName::parse(&format!("bin.{file:06}")).unwrap()
}

/// A MariaDB file of server 1, domain 0, holding GTIDs 0-1-(g0+1)..=g1.
fn maria(g0: u64, g1: u64) -> Verified {
    Verified {
        flavor: Flavor::Mariadb,
        server_version: "10.11.6-MariaDB-log".into(),
        server_id: 1,
        has_crc: true,
        own_uuid: None,
        own_domain: (g1 > g0).then_some(0),
        end: 1000,
        len: 1000,
        truncated: None,
        ending: Ending::Rotate { next: n(99) },
        summary: FileSummary {
            first_event_at: Some(100),
            last_event_at: Some(200),
            first_gtid: (g1 > g0).then(|| format!("0-1-{}", g0 + 1)),
            last_gtid: (g1 > g0).then(|| format!("0-1-{g1}")),
            gtid_start: Some(format!("0-1-{g0}")),
            gtid_end: Some(format!("0-1-{g1}")),
            gtid_added: None,
            summary_pos: 1000,
        },
    }
}

/// A MySQL file of the server with uuid `u`, holding `u:(g0+1)-g1`.
fn mysql(u: &str, g0: u64, g1: u64) -> Verified {
    let set = |g: u64| if g == 0 { String::new() } else { format!("{u}:1-{g}") };
    Verified {
        flavor: Flavor::Mysql,
        server_version: "8.4.3".into(),
        own_uuid: Some(u.into()),
        own_domain: None,
        summary: FileSummary {
            first_gtid: Some(format!("{u}:{}", g0 + 1)),
            last_gtid: Some(format!("{u}:{g1}")),
            gtid_start: Some(set(g0)),
            gtid_end: Some(set(g1)),
            gtid_added: Some(format!("{u}:{}-{g1}", g0 + 1)),
            ..maria(g0, g1).summary
        },
        ..maria(g0, g1)
    }
}

fn held(file: u32, identity: &str, state: FileState, v: &Verified) -> FileRecord {
    FileRecord {
        task_id: 1,
        source_identity: identity.into(),
        file_name: n(file),
        state,
        start_pos: 4,
        header_len: 4,
        end_pos: (state == FileState::Sealed).then_some(1000),
        size: 1000,
        sha256: None,
        created_at: Utc::now(),
        sealed_at: None,
        upload: Default::default(),
        summary: v.summary.clone(),
    }
}

fn cp(identity: &str, file: u32, pos: u64, gtid: &str) -> Checkpoint {
    Checkpoint { source_identity: identity.into(), file: n(file), pos, gtid_set: Some(gtid.into()) }
}

/// What a placement should be: (identity, states of the placed files, which have a gap, open
/// file sealed at, checkpoint file and position).
type Placed = (&'static str, Vec<FileState>, Vec<bool>, Option<u64>, (u32, u64));

struct Case {
    what: &'static str,
    flavor: Flavor,
    archive_only: bool,
    files: Vec<FileRecord>,
    checkpoint: Option<Checkpoint>,
    offered: Vec<(u32, Verified)>,
    /// `binlog-server import --source-uuid`.
    declared_uuid: Option<&'static str>,
    /// Ok: (identity, states of the placed files, which have a gap, open file sealed at,
    /// checkpoint file and position). Err: a word of the refusal.
    expect: Result<Placed, &'static str>,
}

fn base(what: &'static str) -> Case {
    Case {
        what,
        flavor: Flavor::Mariadb,
        archive_only: false,
        files: vec![],
        checkpoint: None,
        offered: vec![],
        declared_uuid: None,
        expect: Err("no file"),
    }
}

fn open_tail() -> Verified {
    Verified { ending: Ending::Open, ..maria(20, 25) }
}

#[test]
fn imports_follow_the_lineage_table() {
    use FileState::{Open, Sealed};
    let truncated = Verified {
        truncated: Some("torn event at offset 900".into()),
        end: 800,
        ending: Ending::Open,
        ..maria(10, 20)
    };
    let cases = vec![
        base("nothing offered"),
        Case {
            offered: vec![(2, maria(10, 20)), (1, maria(0, 10)), (3, open_tail())],
            expect: Ok((ID, vec![Sealed, Sealed, Open], vec![false, false, false], None, (3, 1000))),
            ..base("an empty task takes a whole archive, in name order, the live last file left open")
        },
        Case {
            archive_only: true,
            offered: vec![(1, maria(0, 10)), (2, Verified { ending: Ending::Open, ..maria(10, 20) })],
            expect: Ok((ID, vec![Sealed, Sealed], vec![false, false], None, (2, 1000))),
            ..base("an archive-only task seals everything")
        },
        Case {
            offered: vec![(1, maria(0, 10)), (2, Verified { ending: Ending::Stop, ..maria(10, 20) })],
            expect: Ok((ID, vec![Sealed, Open], vec![false, false], None, (2, 1000))),
            ..base("a last file closed by STOP stays open: the source moves to the next file when asked")
        },
        Case {
            offered: vec![(1, maria(0, 10)), (3, maria(15, 20))],
            expect: Ok((ID, vec![Sealed, Sealed], vec![false, true], None, (3, 1000))),
            ..base("a gap (missing file, GTID jump) is allowed and reported")
        },
        Case {
            offered: vec![(1, maria(0, 10)), (2, truncated.clone())],
            expect: Ok((ID, vec![Sealed, Open], vec![false, false], None, (2, 800))),
            ..base("a truncated last file is kept up to its last transaction")
        },
        Case {
            offered: vec![(1, truncated), (2, maria(20, 30))],
            expect: Err("truncated"),
            ..base("a truncated file with later files after it is a damaged copy")
        },
        Case {
            files: vec![held(1, ID, Sealed, &maria(0, 10)), held(2, ID, Open, &maria(10, 18))],
            checkpoint: Some(cp(ID, 2, 900, "0-1-18")),
            offered: vec![(3, maria(20, 30))],
            expect: Ok((ID, vec![Sealed], vec![true], Some(900), (3, 1000))),
            ..base("after a task's open file: it is sealed at its checkpoint, the lost tail is a gap")
        },
        Case {
            files: vec![held(1, ID, Sealed, &maria(0, 10))],
            checkpoint: Some(cp(ID, 1, 1000, "0-1-10")),
            offered: vec![(2, Verified { ending: Ending::Open, ..maria(10, 20) })],
            expect: Ok((ID, vec![Open], vec![false], None, (2, 1000))),
            ..base("exactly after the task's sealed last file")
        },
        Case {
            files: vec![held(1, ID, Sealed, &maria(0, 10))],
            offered: vec![(1, maria(0, 10))],
            expect: Err("already"),
            ..base("a file the task holds")
        },
        Case {
            files: vec![held(5, ID, Sealed, &maria(40, 50))],
            offered: vec![(4, maria(30, 40))],
            expect: Err("comes before"),
            ..base("older history into a task that holds files")
        },
        Case {
            files: vec![held(1, ID, Sealed, &maria(0, 10))],
            offered: vec![(2, maria(8, 20))],
            expect: Err("overlaps"),
            ..base("a file repeating transactions the task holds")
        },
        Case {
            files: vec![held(1, ID, Sealed, &maria(0, 10))],
            offered: vec![(2, Verified { own_domain: Some(0), server_id: 2, ..maria(10, 20) })],
            expect: Err("server mariadb-2-0"),
            ..base("files of another MariaDB server")
        },
        Case {
            offered: vec![(1, maria(0, 10)), (2, Verified { server_id: 2, ..maria(10, 20) })],
            expect: Err("server mariadb-2-0"),
            ..base("a batch mixing two servers")
        },
        Case {
            offered: vec![(1, Verified { server_id: 7, ..maria(0, 0) })],
            expect: Ok(("mariadb-7-0", vec![Sealed], vec![false], None, (1, 1000))),
            ..base("a MariaDB server that originated nothing is named by the default domain")
        },
        Case {
            flavor: Flavor::Mysql,
            offered: vec![(1, maria(0, 10))],
            expect: Err("task's source is mysql"),
            ..base("another flavor")
        },
        Case {
            flavor: Flavor::Mysql,
            offered: vec![(1, mysql(U1, 0, 10)), (2, mysql(U1, 10, 20))],
            expect: Ok((U1, vec![Sealed, Sealed], vec![false, false], None, (2, 1000))),
            ..base("MySQL: named by the uuid of its own transactions, joined by PREVIOUS_GTIDS")
        },
        Case {
            flavor: Flavor::Mysql,
            files: vec![held(1, U1, Sealed, &mysql(U1, 0, 10))],
            checkpoint: Some(cp(U1, 1, 1000, &format!("{U1}:1-10"))),
            offered: vec![(2, mysql(U2, 0, 5))],
            expect: Err("server 4f22ab58"),
            ..base("MySQL: another server's files")
        },
        Case {
            flavor: Flavor::Mysql,
            files: vec![held(1, U1, Sealed, &mysql(U1, 0, 10))],
            offered: vec![(2, mysql(U1, 5, 20))],
            expect: Err("already held"),
            ..base("MySQL: a file whose PREVIOUS_GTIDS lacks what the task holds")
        },
        Case {
            flavor: Flavor::Mysql,
            offered: vec![(1, Verified { own_uuid: None, ..mysql(U1, 0, 0) })],
            expect: Err("cannot tell"),
            ..base("MySQL: no transaction of its own and nothing held")
        },
        Case {
            flavor: Flavor::Mysql,
            files: vec![held(1, U1, Sealed, &mysql(U1, 0, 10))],
            offered: vec![(2, Verified { own_uuid: None, ..mysql(U1, 10, 10) })],
            expect: Ok((U1, vec![Sealed], vec![false], None, (2, 1000))),
            ..base("MySQL: a file with no transaction of its own joins the task's server")
        },
        Case {
            flavor: Flavor::Mysql,
            archive_only: true,
            offered: vec![(1, Verified { own_uuid: None, ..mysql(U1, 0, 0) })],
            declared_uuid: Some(U1),
            expect: Ok((U1, vec![Sealed], vec![false], None, (1, 1000))),
            ..base("MySQL: no transaction of its own (gtid_mode OFF), the operator names the server")
        },
        Case {
            flavor: Flavor::Mysql,
            offered: vec![(1, mysql(U1, 0, 10))],
            declared_uuid: Some(U2),
            expect: Err("server 3e11fa47"),
            ..base("MySQL: the named server contradicts the files")
        },
        Case {
            flavor: Flavor::Mysql,
            files: vec![held(1, U1, Sealed, &mysql(U1, 0, 10))],
            checkpoint: Some(cp(U1, 1, 1000, &format!("{U1}:1-10"))),
            offered: vec![(2, Verified { own_uuid: None, ..mysql(U1, 10, 10) })],
            declared_uuid: Some(U2),
            expect: Err("server 4f22ab58"),
            ..base("MySQL: the named server is not the task's")
        },
    ];
    for c in cases {
        let names: Vec<BinlogFileName> = c.offered.iter().map(|(f, _)| n(*f)).collect();
        let offered: Vec<Offered<'_>> =
            names.iter().zip(&c.offered).map(|(name, (_, file))| Offered { name, file }).collect();
        let task = TaskFacts {
            flavor: c.flavor,
            archive_only: c.archive_only,
            files: &c.files,
            checkpoint: c.checkpoint.as_ref(),
            declared_uuid: c.declared_uuid,
        };
        match (decide(task, &offered), &c.expect) {
            (Ok(plan), Ok((identity, states, gaps, sealed_at, (cp_file, cp_pos)))) => {
                assert_eq!(plan.identity, *identity, "{}", c.what);
                assert_eq!(plan.files.iter().map(|p| p.state).collect::<Vec<_>>(), *states, "{}", c.what);
                assert_eq!(plan.files.iter().map(|p| p.gap.is_some()).collect::<Vec<_>>(), *gaps, "{}", c.what);
                assert_eq!(plan.seal_open.as_ref().map(|s| s.end_pos), *sealed_at, "{}", c.what);
                assert_eq!((plan.checkpoint.file.clone(), plan.checkpoint.pos), (n(*cp_file), *cp_pos), "{}", c.what);
                assert_eq!(plan.checkpoint.source_identity, *identity, "{}", c.what);
                let names: Vec<_> = plan.files.iter().map(|p| p.name.clone()).collect();
                let mut sorted = names.clone();
                sorted.sort();
                assert_eq!(names, sorted, "{}: placed in name order", c.what);
            }
            (Err(e), Err(word)) => assert!(e.to_string().contains(word), "{}: {e}", c.what),
            (got, want) => panic!("{}: got {got:?}, wanted {want:?}", c.what),
        }
    }
}
