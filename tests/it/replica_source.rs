//! A source that is itself a replica (issue 14, item 3): `log_slave_updates=ON`, relaying the
//! transactions of two primaries in two GTID domains (MariaDB multi-source replication), so its
//! binary log interleaves GTIDs of two domains and two server ids. GTID-mode tasks started from
//! a multi-domain position stream, resume (binlog-server SIGTERM and kill -9, a restart of the
//! replica) and stay byte-identical, and the checkpoint's GTID state names every domain.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::thread;

use binlog_server::binlog::gtid::MariadbGtid;
use serde_json::json;

use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::replication::{
    LoadGenerator, LoadShape, assert_copy_matches_source, create_task, fast_server_opts, flush_and_catch_up,
    from_first_file, last_event_id, local_dir, mariadb_binlog_gtids, mariadb_gtids, source_json, start_task,
    wait_checkpoint_advances, wait_event_after, wait_running,
};
use crate::common::server::Server;

/// (server id, GTID domain) of the two primaries; the replica is server 13 in domain 3.
const PRIMARIES: [(u32, u32); 2] = [(11, 1), (12, 2)];

/// Parses `@@gtid_binlog_pos` into domain -> (server id, sequence number).
fn positions(pos: &str) -> BTreeMap<u32, (u32, u64)> {
    pos.split(',')
        .filter(|g| !g.is_empty())
        .map(|g| {
            let p: Vec<&str> = g.split('-').collect();
            let n = |i: usize| p[i].parse::<u64>().unwrap_or_else(|_| panic!("bad GTID {g}"));
            (n(0) as u32, (n(1) as u32, n(2)))
        })
        .collect()
}

/// Every transaction of every domain after `after` (a `@@gtid_binlog_pos`) up to `last`, exactly
/// once and in order per domain, with the primary's server id; `mariadb-binlog` reads the same.
fn assert_each_gtid_once_per_domain(srv: &Server, db: &MariaDb, id: i64, after: &str, last: &str) {
    let dir = local_dir(srv, id, db);
    let paths: Vec<PathBuf> = srv.files(id).iter().map(|f| dir.join(&f.name)).collect();
    let mut gtids: Vec<MariadbGtid> = Vec::new();
    for p in &paths {
        gtids.extend(mariadb_gtids(&std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))));
    }
    let (after, last) = (positions(after), positions(last));
    assert_eq!(last.len(), PRIMARIES.len(), "the replica logged both primaries' domains: {last:?}");
    for (domain, (server, last_seq)) in &last {
        let seqs: Vec<u64> = gtids.iter().filter(|g| g.domain == *domain).map(|g| g.seq).collect();
        let first = after.get(domain).map_or(0, |(_, s)| *s) + 1;
        assert_eq!(
            seqs,
            (first..=*last_seq).collect::<Vec<_>>(),
            "task {id}, domain {domain}: each GTID once, in order"
        );
        assert!(gtids.iter().filter(|g| g.domain == *domain).all(|g| g.server_id == *server), "domain {domain}");
    }
    assert!(gtids.iter().all(|g| last.contains_key(&g.domain)), "task {id}: a GTID of an unknown domain");
    let theirs = mariadb_binlog_gtids(&paths);
    let ours: Vec<String> = gtids.iter().map(|g| format!("{}-{}-{}", g.domain, g.server_id, g.seq)).collect();
    assert!(theirs == ours, "task {id}: mariadb-binlog reads other GTIDs from our files");
}

#[test]
fn a_replica_relaying_two_gtid_domains_is_copied_and_resumed_in_gtid_mode() {
    let [a, b, mut replica] = thread::scope(|s| {
        let start = |opts: MariaDbOpts| s.spawn(move || MariaDb::start(opts));
        let handles = [
            start(MariaDbOpts::default().server_id(PRIMARIES[0].0).gtid_domain_id(PRIMARIES[0].1)),
            start(MariaDbOpts::default().server_id(PRIMARIES[1].0).gtid_domain_id(PRIMARIES[1].1)),
            start(
                MariaDbOpts::default()
                    .server_id(13)
                    .gtid_domain_id(3)
                    .max_binlog_size("64K")
                    .arg("--log-slave-updates"),
            ),
        ];
        handles.map(|h| h.join().expect("a server started"))
    });
    replica.replicate_from_as("a", &a);
    replica.replicate_from_as("b", &b);
    // A few transactions from each primary before the tasks: the GTID tasks start after them.
    for (db, table) in [(&a, "from_a"), (&b, "from_b")] {
        db.sql(&format!("CREATE TABLE {table}_setup (id INT PRIMARY KEY); INSERT INTO {table}_setup VALUES (1), (2);"));
    }
    replica.sync_with(&a);
    replica.sync_with(&b);
    let start = replica.gtid_binlog_pos();
    assert_eq!(positions(&start).len(), 2, "the replica's binlog holds both domains: {start}");

    let mut srv = Server::start(fast_server_opts());
    let tasks = [
        (
            "from a multi-domain position",
            create_task(&srv, "replica-gtid", source_json(&replica), json!({"mode": "GTID", "gtid_set": start})),
        ),
        (
            "from the empty position",
            create_task(&srv, "replica-all", source_json(&replica), json!({"mode": "GTID", "gtid_set": ""})),
        ),
        ("FILE_POS", create_task(&srv, "replica-pos", source_json(&replica), from_first_file(&replica))),
    ];
    let ids: Vec<i64> = tasks.iter().map(|t| t.1).collect();
    for &id in &ids {
        start_task(&srv, id);
        wait_running(&srv, id);
    }
    let load = |round: u64| {
        [(&a, "from_a"), (&b, "from_b")].map(|(db, table)| {
            LoadGenerator::start_shaped(db, table, round * 2 + u64::from(db.opts().server_id), LoadShape::Varied)
        })
    };
    let mut loads = load(1);
    let advance = |srv: &Server, what: &str| {
        for &id in &ids {
            wait_checkpoint_advances(srv, id);
        }
        eprintln!("{what}: every task streams");
    };
    advance(&srv, "start");

    let marks: Vec<i64> = ids.iter().map(|&id| last_event_id(&srv, id)).collect();
    srv.restart();
    for (&id, &mark) in ids.iter().zip(&marks) {
        wait_event_after(&srv, id, "TASK_RUNNING", mark);
    }
    advance(&srv, "binlog-server SIGTERM");

    srv.kill9();
    srv.restart();
    advance(&srv, "binlog-server kill -9");

    // The replica restarts (its replication connections come back by themselves); the
    // primaries keep writing meanwhile.
    let marks: Vec<i64> = ids.iter().map(|&id| last_event_id(&srv, id)).collect();
    replica.restart();
    for (&id, &mark) in ids.iter().zip(&marks) {
        wait_event_after(&srv, id, "TASK_RUNNING", mark);
    }
    advance(&srv, "replica restart");

    for l in std::mem::replace(&mut loads, load(2)) {
        l.stop();
    }
    advance(&srv, "more load");
    for l in loads {
        l.stop();
    }
    replica.sync_with(&a);
    replica.sync_with(&b);
    let end = replica.gtid_binlog_pos();
    for (what, id) in tasks {
        flush_and_catch_up(&srv, &replica, id);
        let copy = assert_copy_matches_source(&srv, &replica, id);
        assert!(copy.sealed.len() >= 3, "{what}: the replica's binlog rotates: {copy:?}");
        let after = if what == "from a multi-domain position" { start.as_str() } else { "" };
        assert_each_gtid_once_per_domain(&srv, &replica, id, after, &end);
        let cp = srv.checkpoint(id);
        assert_eq!(cp.gtid_set.as_deref(), Some(end.as_str()), "{what}: the checkpoint names every domain: {cp:?}");
    }
}
