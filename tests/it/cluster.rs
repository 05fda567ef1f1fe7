//! Cluster mode (issue 5) with real processes: three `binlog-server` nodes on one MariaDB
//! metadata database, one MariaDB source with small files (they rotate every second or two under
//! the test load), one moto bucket. Leases last `TTL_SEC` = 3 s and are renewed every 1 s.
//!
//! What each test proves:
//! - `kill_9_...`: ten tasks are spread over three nodes (each holds at least one, none more than
//!   its fair share); after kill -9 of a node, each of its tasks is leased by another node, under
//!   a larger epoch, within 2 x TTL (+ one placement tick); the new owners continue the stream,
//!   and after catch-up the bucket holds every closed source file of every task, from the first
//!   one, byte-identical to the source's (files sealed by the dead node included), with no gap.
//! - `a_node_frozen_...`: a node stopped with SIGSTOP past its TTL loses its tasks to the others;
//!   resumed with SIGCONT, it writes nothing more to its files of those tasks, their stored
//!   checkpoints stay those of the new owner (node id and epoch) and only move forward, and each
//!   task's timeline records TASK_LEASE_LOST naming the frozen node.
//! - `a_graceful_stop_...`: SIGTERM exits 0 and releases the node's leases at once; its tasks run
//!   on the others; no task is ever FAILED or records TASK_ERROR; the bucket is byte-identical.
//! - `the_metadata_database_down_...`: with the metadata database gone (kill -9) past the TTL,
//!   every node stops writing its tasks' files before their leases can have expired and writes
//!   nothing while the source goes on; it notices the failing renewals within the TTL; once the
//!   database is back the tasks run again without FAILED or TASK_ERROR, and the bucket is
//!   byte-identical to the source.
//! - `leaving_while_a_round_is_claiming_...`: a coordinator (in-process, on the real metadata
//!   database) told to leave while a round that began before the shutdown is still claiming
//!   starts nothing that round acquired and releases its lease before `Leave` answers (the round
//!   is held in flight by another session's lock on the node's row).
//! - `a_node_restarted_within_its_ttl_...`: a node killed and restarted at once, with the same
//!   node id, while its leases are still live, does not keep them alive without running them:
//!   within 2 x TTL it holds its tasks again under larger epochs, they stream, and the bucket is
//!   byte-identical to the source.
//! - `a_takeover_that_needs_a_file_the_source_purged_...`: when the dead node's open file is
//!   neither in the bucket nor on the source any more (purged before the takeover), the new
//!   owner fails the task with SOURCE_BINLOG_PURGED naming the file, on the timeline, and leaves
//!   the stored checkpoint exactly as the dead node wrote it; the other tasks run on.
//! - `placement_...`: workers and the overview describe the cluster, a node without a configured
//!   id generates one and keeps it across restarts, a never-started task has no lease (nulls), any
//!   node serves any task, and `max_tasks_per_node` caps placement (the rest stays unplaced).
//! - `a_lease_is_renewed_...`: renewals keep to `lease_renew_interval_sec` (measured on the
//!   database's clock through `expires_at`); a skipped renewal halves the margin before expiry.
//! - `cluster_mode_refuses_...`: mode cluster without a MySQL meta_dsn, without upload, or without
//!   an explicit secrets key (and with malformed cluster settings) exits non-zero at start-up,
//!   naming the setting. `standalone_...`: a standalone server says so and has no leases.
//!
//! Every wait is a poll with a deadline. The timing claims are the takeover within 2 x TTL plus an
//! allowance (measured from the kill; the allowance is justified at `TAKEOVER_ALLOWANCE`), the
//! renewal cadence (measured by the database's clock, not the test's), and, with the metadata
//! database down, no write after the moment the leases could have expired (file mtimes against
//! the database's death + TTL; the test polls until that moment has passed, then looks).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use binlog_server::actors::cluster_link::LeaseCommand;
use binlog_server::api::error::ErrorCode;
use binlog_server::domain::{TaskError, TaskErrorCode, TaskState};
use serde_json::json;

use crate::common::cluster::{
    Cluster, Lease, RENEW_SEC, SECRETS_KEY, StoredCheckpoint, TTL_SEC, assert_bucket_matches_source,
    assert_none_failed, count_by_owner, dir_snapshot, events, generated_node_id, lease, live_leases, node_task_dir,
    overview, panic_text, source_and_cluster, stored_checkpoint, trickle, wait_all_caught_up, wait_all_uploaded,
    wait_spread, workers,
};
use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::replication::{LoadGenerator, WAIT, create_task, source_json, wait_failed};
use crate::common::server::{Server, ServerOpts, run_cli};
use crate::common::{free_port, poll_until, send_signal, temp_dir};

/// The source's `max_binlog_size`: 256 KiB, so the test load rotates a file every second or two.
const FILE_SIZE: &str = "262144";

/// On top of the 2 x TTL for a takeover. The mechanism itself needs at most TTL + one
/// tick: a lease runs TTL past its last renewal (made at most `RENEW_SEC` before the crash, so it
/// ends at most TTL after it), and a survivor claims it at its next placement tick (every
/// `RENEW_SEC` = 1 s). That is 4 s, inside 2 x TTL = 6 s; the 2 s on top absorb the test's own
/// polling (up to 200 ms between reads), the HTTP round trips, and a placement tick delayed by a
/// busy two-core machine running three nodes, two MariaDB servers and moto.
const TAKEOVER_ALLOWANCE: Duration = Duration::from_secs(2);

fn takeover_deadline() -> Duration {
    Duration::from_secs(2 * TTL_SEC) + TAKEOVER_ALLOWANCE
}

fn ids_of(tasks: &[(i64, String)]) -> Vec<i64> {
    tasks.iter().map(|(id, _)| *id).collect()
}

/// The node holding the most of `leases` (the first such in name order).
fn most_loaded(nodes: &[String], leases: &BTreeMap<i64, Lease>) -> String {
    let counts = count_by_owner(nodes, leases);
    let max = counts.values().copied().max().unwrap_or(0);
    assert!(max >= 1, "no node holds a lease: {leases:?}");
    counts.into_iter().find(|(_, n)| *n == max).map(|(id, _)| id).expect("a node with the maximum")
}

/// Every node's overview agrees with the leases read task by task.
fn assert_overviews(cluster: &Cluster, ids: &[i64], leases: &BTreeMap<i64, Lease>) {
    let by_node: BTreeMap<String, usize> =
        count_by_owner(&cluster.ids(), leases).into_iter().filter(|(_, n)| *n > 0).collect();
    for node in &cluster.nodes {
        let o = overview(&node.srv);
        assert_eq!(o["mode"], "cluster", "{}: {o}", node.id);
        assert_eq!(o["node_id"], node.id.as_str(), "the overview names the answering node: {o}");
        assert_eq!(o["lease_ttl_sec"], TTL_SEC, "{o}");
        assert_eq!(o["workers_alive"], cluster.nodes.len(), "{}: {o}", node.id);
        assert_eq!(o["tasks_wanted_running"], ids.len(), "{}: {o}", node.id);
        assert_eq!(o["tasks_leased"], ids.len(), "{}: {o}", node.id);
        assert_eq!(o["tasks_unplaced"], 0, "{}: {o}", node.id);
        let shown: BTreeMap<String, usize> = serde_json::from_value(o["leases_by_node"].clone())
            .unwrap_or_else(|e| panic!("leases_by_node is a map of counts: {e}: {o}"));
        let shown: BTreeMap<String, usize> = shown.into_iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(shown, by_node, "{}: leases_by_node vs the tasks' own leases: {o}", node.id);
    }
    let ws = workers(&cluster.nodes[0].srv);
    for node in &cluster.nodes {
        let w = ws.get(&node.id).unwrap_or_else(|| panic!("{} missing from /api/workers: {ws:?}", node.id));
        assert_eq!(w["alive"], true, "{w}");
        assert!(w["version"].as_str().is_some_and(|v| !v.is_empty()), "a worker names its version: {w}");
        assert!(w["started_at"].is_string() && w["heartbeat_at"].is_string(), "{w}");
    }
}

/// Polls until the source has closed at least two files and every task streams: its stored
/// checkpoint lies past the source's first file and was written by its lease holder under the
/// lease's epoch.
fn wait_streaming(srv: &Server, source: &MariaDb, leases: &BTreeMap<i64, Lease>) {
    let first = source.binlog_files()[0].0.clone();
    let mut last = BTreeMap::new();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_until(WAIT, "every task to stream past the source's first file under its lease", || {
            let mut all = source.binlog_files().len() >= 3;
            for (id, l) in leases {
                let cp = stored_checkpoint(srv, *id);
                all &= cp.as_ref().is_some_and(|c| {
                    c.file > first && c.node_id.as_deref() == Some(l.owner.as_str()) && c.epoch == Some(l.epoch)
                });
                last.insert(*id, (cp, l.clone()));
            }
            all.then_some(())
        })
    }));
    waited.unwrap_or_else(|e| {
        panic!("{}\nnot every task streamed; (checkpoint, lease) last seen: {last:#?}", panic_text(&e))
    });
}

/// Polls (through `srv`) until each task of `lost` has a live lease held by another node of
/// `nodes` than `gone`, under a larger epoch; `watch` runs at every poll. Panics after `deadline`.
fn wait_taken_over(
    srv: &Server,
    lost: &BTreeMap<i64, Lease>,
    gone: &str,
    nodes: &[String],
    deadline: Duration,
    watch: &dyn Fn(),
) -> BTreeMap<i64, Lease> {
    let mut last = BTreeMap::new();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_until(deadline, &format!("the tasks of {gone} {:?} to be leased by other nodes", lost.keys()), || {
            watch();
            let mut all = true;
            for (id, old) in lost {
                let now = lease(srv, *id);
                all &= now
                    .as_ref()
                    .is_some_and(|l| l.live && l.owner != gone && nodes.contains(&l.owner) && l.epoch > old.epoch);
                last.insert(*id, (old.clone(), now));
            }
            all.then(|| last.iter().map(|(id, (_, l))| (*id, l.clone().expect("checked above"))).collect())
        })
    }));
    waited.unwrap_or_else(|e| {
        let why = panic_text(&e);
        panic!("{why}\n(lease before, lease now) last seen: {last:#?}")
    })
}

/// Polls until each task of `before` has a live lease held by `node` under a larger epoch than
/// in `before` (the same node taking its tasks back). Panics after `deadline`.
fn wait_taken_over_by(
    srv: &Server,
    before: &BTreeMap<i64, Lease>,
    node: &str,
    deadline: Duration,
) -> BTreeMap<i64, Lease> {
    let mut last = BTreeMap::new();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_until(deadline, &format!("{node} to hold tasks {:?} again under new epochs", before.keys()), || {
            let mut all = true;
            for (id, old) in before {
                let now = lease(srv, *id);
                all &= now.as_ref().is_some_and(|l| l.live && l.owner == node && l.epoch > old.epoch);
                last.insert(*id, (old.clone(), now));
            }
            all.then(|| last.iter().map(|(id, (_, l))| (*id, l.clone().expect("checked above"))).collect())
        })
    }));
    waited.unwrap_or_else(|e| panic!("{}\n(lease before, lease now) last seen: {last:#?}", panic_text(&e)))
}

/// Tasks that were not the lost node's keep their lease: same owner, same epoch (placement only
/// claims tasks without a live lease).
fn assert_untouched(before: &BTreeMap<i64, Lease>, lost: &BTreeMap<i64, Lease>, now: &BTreeMap<i64, Lease>) {
    for (id, l) in before.iter().filter(|(id, _)| !lost.contains_key(id)) {
        let n = &now[id];
        assert_eq!(
            (&n.owner, n.epoch),
            (&l.owner, l.epoch),
            "task {id} was not on the lost node; its lease must not move"
        );
    }
}

/// Every task in `taken` records TASK_LEASE_ACQUIRED naming its new owner and epoch.
fn assert_acquired_events(srv: &Server, taken: &BTreeMap<i64, Lease>) {
    for (id, l) in taken {
        poll_until(
            WAIT,
            &format!("a TASK_LEASE_ACQUIRED event of task {id} naming {} and epoch {}", l.owner, l.epoch),
            || {
                events(srv, *id)
                    .into_iter()
                    .any(|(t, m)| {
                        t == "TASK_LEASE_ACQUIRED" && m.contains(&l.owner) && m.contains(&l.epoch.to_string())
                    })
                    .then_some(())
            },
        );
    }
}

/// Polls until every task of `taken` has a stored checkpoint written by its new owner under the
/// new epoch in a file after `mark_file` (the source rotated and the new owner followed);
/// `on_checkpoint(id, checkpoint)` sees every checkpoint read.
fn wait_new_owners_write(
    srv: &Server,
    taken: &BTreeMap<i64, Lease>,
    mark_file: &str,
    on_checkpoint: &mut dyn FnMut(i64, &StoredCheckpoint),
) {
    let mut last = BTreeMap::new();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_until(WAIT, &format!("the new owners to write checkpoints past {mark_file}"), || {
            let mut all = true;
            for (id, l) in taken {
                let cp = stored_checkpoint(srv, *id);
                if let Some(c) = &cp {
                    on_checkpoint(*id, c);
                }
                all &= cp.as_ref().is_some_and(|c| {
                    c.file.as_str() > mark_file
                        && c.node_id.as_deref() == Some(l.owner.as_str())
                        && c.epoch == Some(l.epoch)
                });
                last.insert(*id, (cp, l.clone()));
            }
            all.then_some(())
        })
    }));
    waited.unwrap_or_else(|e| {
        let why = panic_text(&e);
        panic!("{why}\n(checkpoint, new lease) last seen: {last:#?}")
    });
}

/// Stops the load, closes the source's file, waits until every task caught up and uploaded every
/// closed file, and compares the bucket with the source. Returns the objects compared.
fn finish_and_compare(cluster: &Cluster, srv: &Server, source: &MariaDb, tasks: &[(i64, String)], load: LoadGenerator) {
    let sent = load.stop();
    source.flush_binary_logs();
    let ids = ids_of(tasks);
    wait_all_caught_up(srv, source, &ids);
    wait_all_uploaded(srv, source, tasks);
    let compared = assert_bucket_matches_source(&cluster.s3, source, tasks);
    let files = crate::common::cluster::sealed_source_files(source).len();
    assert_eq!(compared, files * tasks.len(), "every task's every closed file was compared");
    eprintln!("{sent} statements; {files} closed source files; {compared} objects byte-identical to the source");
}

#[test]
fn kill_9_of_a_node_moves_its_tasks_within_two_ttls_and_the_bucket_has_no_gap() {
    let (source, mut cluster) = source_and_cluster(MariaDbOpts::default().max_binlog_size(FILE_SIZE), 3);
    let nodes = cluster.ids();
    let tasks = cluster.create_running_tasks(&source, 10);
    let ids = ids_of(&tasks);

    let leases = wait_spread(&cluster.nodes[0].srv, &ids, &nodes);
    assert_overviews(&cluster, &ids, &leases);
    let load = trickle(&source, "t", 1);
    wait_streaming(&cluster.nodes[0].srv, &source, &leases);

    let victim_id = most_loaded(&nodes, &leases);
    let victim = cluster.index_of(&victim_id);
    let lost: BTreeMap<i64, Lease> =
        leases.iter().filter(|(_, l)| l.owner == victim_id).map(|(i, l)| (*i, l.clone())).collect();
    // The victim is the runtime authority for its tasks until it dies.
    let (status, repl) =
        cluster.nodes[victim].srv.get(&format!("/api/tasks/{}/replication", lost.keys().next().unwrap()));
    assert_eq!(status, 200, "the owner serves its task's runtime details: {repl}");

    cluster.nodes[victim].srv.kill9();
    let killed = Instant::now();
    let survivor = &cluster.nodes[(victim + 1) % nodes.len()].srv;
    let taken = wait_taken_over(survivor, &lost, &victim_id, &nodes, takeover_deadline(), &|| ());
    eprintln!("{} tasks of {victim_id} taken over {:.1?} after kill -9: {taken:?}", lost.len(), killed.elapsed());

    let all = live_leases(survivor, &ids).expect("every task is leased after the takeover");
    assert_untouched(&leases, &lost, &all);
    let survivors: Vec<String> = nodes.iter().filter(|n| **n != victim_id).cloned().collect();
    let counts = count_by_owner(&survivors, &all);
    assert_eq!(counts.len(), survivors.len(), "only live nodes hold leases: {all:#?}");
    let fair = ids.len().div_ceil(survivors.len());
    assert!(counts.values().all(|&n| n <= fair), "each survivor holds at most {fair}: {counts:?}");
    assert_acquired_events(survivor, &taken);
    poll_until(takeover_deadline(), &format!("/api/workers to show {victim_id} dead"), || {
        (workers(survivor).get(&victim_id).is_some_and(|w| w["alive"] == false)).then_some(())
    });
    let o = overview(survivor);
    assert_eq!(o["workers_alive"], survivors.len(), "{o}");
    assert_eq!((o["tasks_leased"].clone(), o["tasks_unplaced"].clone()), (json!(ids.len()), json!(0)), "{o}");

    // The stream goes on under the new owners: they follow the source into its next files.
    let mark = source.master_status().expect("binlog on");
    wait_new_owners_write(survivor, &taken, &mark.file, &mut |_, _| ());
    finish_and_compare(&cluster, survivor, &source, &tasks, load);
    assert_none_failed(survivor, &ids);
}

#[test]
fn a_node_frozen_past_its_ttl_writes_nothing_more_for_the_tasks_it_lost() {
    let (source, cluster) = source_and_cluster(MariaDbOpts::default().max_binlog_size(FILE_SIZE), 3);
    let nodes = cluster.ids();
    let tasks = cluster.create_running_tasks(&source, 6);
    let ids = ids_of(&tasks);
    let leases = wait_spread(&cluster.nodes[0].srv, &ids, &nodes);
    let load = trickle(&source, "t", 2);
    wait_streaming(&cluster.nodes[0].srv, &source, &leases);

    let victim_id = most_loaded(&nodes, &leases);
    let victim = cluster.index_of(&victim_id);
    let frozen = &cluster.nodes[victim].srv;
    let observer = &cluster.nodes[(victim + 1) % nodes.len()].srv;
    let lost: BTreeMap<i64, Lease> =
        leases.iter().filter(|(_, l)| l.owner == victim_id).map(|(i, l)| (*i, l.clone())).collect();

    send_signal(frozen.pid(), "STOP");
    let stopped = Instant::now();
    let taken = wait_taken_over(observer, &lost, &victim_id, &nodes, takeover_deadline(), &|| ());
    eprintln!("{} tasks of frozen {victim_id} taken over {:.1?} after SIGSTOP", lost.len(), stopped.elapsed());
    // The new owners write while the old one is still frozen.
    let mut history: BTreeMap<i64, Vec<StoredCheckpoint>> = BTreeMap::new();
    poll_until(WAIT, "the new owners' first checkpoints", || {
        let mut all = true;
        for (id, l) in &taken {
            let cp = stored_checkpoint(observer, *id);
            let theirs =
                cp.as_ref().is_some_and(|c| c.node_id.as_deref() == Some(l.owner.as_str()) && c.epoch == Some(l.epoch));
            if theirs {
                history.insert(*id, vec![cp.expect("checked")]);
            }
            all &= theirs;
        }
        all.then_some(())
    });
    // What the frozen node holds for those tasks: it cannot change a byte while stopped.
    let before: BTreeMap<i64, _> =
        taken.keys().map(|id| (*id, dir_snapshot(&node_task_dir(frozen, *id, &source)))).collect();
    for (id, files) in &before {
        assert!(!files.is_empty(), "{victim_id} wrote files for task {id} before it was frozen");
    }
    let heartbeat = |srv: &Server| workers(srv).get(&victim_id).map(|w| w["heartbeat_at"].clone());
    let mut last_heartbeat = heartbeat(observer);

    send_signal(frozen.pid(), "CONT");
    // Sync point: the resumed node heartbeats twice, so its lease loop has run since it woke up
    // and has learnt that the leases are gone; it sees them owned by the others.
    let mut beats = 0;
    poll_until(WAIT, &format!("{victim_id} to heartbeat twice after SIGCONT"), || {
        let now = heartbeat(observer);
        if now != last_heartbeat {
            beats += 1;
            last_heartbeat = now;
        }
        (beats >= 2).then_some(())
    });
    for (id, l) in &taken {
        let seen = lease(frozen, *id).expect("a leased task");
        assert_eq!(
            (seen.owner.as_str(), seen.epoch),
            (l.owner.as_str(), l.epoch),
            "{victim_id} sees task {id}'s new lease"
        );
    }

    // The stream goes on under the new owners while the resumed node runs; every stored
    // checkpoint is theirs and moves only forward.
    let mark = source.master_status().expect("binlog on");
    let mut check = |id: i64, c: &StoredCheckpoint| {
        let l = &taken[&id];
        assert_eq!(
            (c.node_id.as_deref(), c.epoch),
            (Some(l.owner.as_str()), Some(l.epoch)),
            "task {id}: a checkpoint not written by the new owner under its epoch: {c:?}"
        );
        let h = history.entry(id).or_default();
        if let Some(prev) = h.last() {
            assert!(c.at() >= prev.at(), "task {id}: the stored checkpoint moved back from {prev:?} to {c:?}");
        }
        h.push(c.clone());
    };
    wait_new_owners_write(observer, &taken, &mark.file, &mut check);
    for (id, l) in &taken {
        assert_eq!(
            lease(observer, *id).map(|x| (x.owner, x.epoch)),
            Some((l.owner.clone(), l.epoch)),
            "task {id} stays with its new owner"
        );
    }

    // The frozen node's files of the lost tasks: not a byte more, not a byte changed.
    for (id, files) in &before {
        let after = dir_snapshot(&node_task_dir(frozen, *id, &source));
        let changed: Vec<String> = files
            .iter()
            .filter(|(name, v)| after.get(*name) != Some(*v))
            .map(|(name, v)| format!("{name}: {v:?} -> {:?}", after.get(name)))
            .chain(after.keys().filter(|n| !files.contains_key(*n)).map(|n| format!("{n}: new file")))
            .collect();
        assert!(changed.is_empty(), "{victim_id} changed its files of lost task {id} after SIGCONT: {changed:#?}");
    }

    finish_and_compare(&cluster, observer, &source, &tasks, load);
    for (id, l) in &taken {
        let c = stored_checkpoint(observer, *id).expect("a checkpoint");
        check(*id, &c);
        assert_eq!(c.node_id.as_deref(), Some(l.owner.as_str()));
    }
    assert_none_failed(observer, &ids);

    // Last, so that the checks above report first: the timeline tells the operator that the
    // frozen node lost each task (it has long heartbeated again by now).
    for id in taken.keys() {
        let timeline = events(observer, *id);
        assert!(
            timeline.iter().any(|(t, m)| t == "TASK_LEASE_LOST" && m.contains(&victim_id)),
            "task {id}: no TASK_LEASE_LOST event naming {victim_id}, which lost it while frozen: {timeline:#?}"
        );
    }
}

#[test]
fn a_graceful_stop_hands_the_tasks_over_without_a_failure() {
    let (source, mut cluster) = source_and_cluster(MariaDbOpts::default().max_binlog_size(FILE_SIZE), 3);
    let nodes = cluster.ids();
    let tasks = cluster.create_running_tasks(&source, 6);
    let ids = ids_of(&tasks);
    let leases = wait_spread(&cluster.nodes[0].srv, &ids, &nodes);
    let load = trickle(&source, "t", 3);
    wait_streaming(&cluster.nodes[0].srv, &source, &leases);

    let victim_id = most_loaded(&nodes, &leases);
    let victim = cluster.index_of(&victim_id);
    let lost: BTreeMap<i64, Lease> =
        leases.iter().filter(|(_, l)| l.owner == victim_id).map(|(i, l)| (*i, l.clone())).collect();
    let exit = cluster.nodes[victim].srv.stop();
    assert!(exit.success(), "SIGTERM must exit 0, not {exit}\n{}", cluster.nodes[victim].srv.diagnostics());

    let observer = &cluster.nodes[(victim + 1) % nodes.len()].srv;
    // Released, not left to expire: right after the exit no lease of the node is live (a lease
    // it renewed until the end would be live for up to TTL more).
    for id in lost.keys() {
        let l = lease(observer, *id);
        assert!(
            !l.as_ref().is_some_and(|l| l.live && l.owner == victim_id),
            "task {id}: {victim_id} exited gracefully but its lease is still live: {l:?}"
        );
    }
    let no_failure = || assert_none_failed(observer, &ids);
    let taken = wait_taken_over(observer, &lost, &victim_id, &nodes, takeover_deadline(), &no_failure);
    assert_untouched(&leases, &lost, &live_leases(observer, &ids).expect("every task is leased after the handover"));
    assert_acquired_events(observer, &taken);
    poll_until(takeover_deadline(), &format!("/api/workers to show {victim_id} gone"), || {
        (workers(observer).get(&victim_id).is_some_and(|w| w["alive"] == false)).then_some(())
    });

    let mark = source.master_status().expect("binlog on");
    wait_new_owners_write(observer, &taken, &mark.file, &mut |_, _| no_failure());
    finish_and_compare(&cluster, observer, &source, &tasks, load);
    no_failure();
    for id in &ids {
        let errors: Vec<(String, String)> =
            events(observer, *id).into_iter().filter(|(t, _)| t == "TASK_ERROR").collect();
        assert!(errors.is_empty(), "task {id} recorded errors: {errors:?}");
    }
}

/// Records what a coordinator asks of the supervisor (a real coordinator on a real metadata
/// database; only the supervisor it talks to is this recorder).
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl actix::Actor for Recorder {
    type Context = actix::Context<Self>;
}

impl actix::Handler<LeaseCommand> for Recorder {
    type Result = ();

    fn handle(&mut self, msg: LeaseCommand, _: &mut actix::Context<Self>) {
        let what = match msg {
            LeaseCommand::Run { task, fence, .. } => format!("run task {} (epoch {})", task.id.0, fence.epoch),
            LeaseCommand::Relinquish { id, reason } => format!("relinquish task {}: {reason}", id.0),
            LeaseCommand::Stop(id) => format!("stop task {}", id.0),
            LeaseCommand::Health { id, degraded } => format!("health task {}: degraded {degraded}", id.0),
        };
        self.0.lock().expect("recorder lock").push(what);
    }
}

#[test]
fn leaving_while_a_round_is_claiming_releases_what_that_round_acquired() {
    use actix::Actor as _;
    use binlog_server::actors::cluster_link::LocalEvent;
    use binlog_server::actors::coordinator::{Coordinator, Leave, StopPlacing};
    use binlog_server::config::{ClusterSettings, Settings};
    use binlog_server::domain::{DesiredState, TaskId};
    use binlog_server::meta::{MetaDsn, Store};
    use binlog_server::secret::Secret;
    use std::io::Write as _;
    use std::process::Command;
    use std::sync::{Arc, Mutex};

    const NODE: &str = "node-leaving";
    let meta = crate::common::cluster::MetaDb::start(false);
    let store = Store::open(&MetaDsn::Mysql(Secret::new(meta.dsn.clone())), 4, binlog_server::clock::system())
        .expect("open the metadata store");
    let spec = crate::common::test_spec("leave-race").validate().expect("valid spec");
    let id = store.create_task(&spec).expect("create").id;
    store.set_desired_state(id, DesiredState::Running).expect("desired RUNNING");
    store.register_node(NODE, "test", 0).expect("register the node");

    // Another session holds the node's row: the coordinator's first round (heartbeat, then
    // placement) waits at its heartbeat, in flight, until the test lets it go.
    let mut holder = meta.db.session("root", "", Some("meta"));
    let mut stdin = holder.stdin.take().expect("piped");
    writeln!(stdin, "BEGIN; SELECT node_id FROM cluster_nodes WHERE node_id = '{NODE}' FOR UPDATE;")
        .expect("write to the client");
    stdin.flush().expect("flush");
    poll_until(Duration::from_secs(10), "the holder to lock the node's row", || {
        let n: usize = meta.db.query_value("SELECT COUNT(*) FROM information_schema.innodb_trx").parse().ok()?;
        (n >= 1).then_some(())
    });

    let data = temp_dir("binlog-it-cluster-leave-");
    let settings = Arc::new(Settings {
        data_dir: data.path().to_path_buf(),
        cluster: ClusterSettings {
            node_id: NODE.into(),
            lease_ttl_sec: 60,
            lease_renew_interval_sec: 5,
            max_tasks_per_node: 0,
        },
        ..Settings::default()
    });
    let asked = Arc::new(Mutex::new(Vec::new()));
    let system = actix::System::new();
    system.block_on(async {
        let recorder = Recorder(asked.clone()).start();
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let coordinator = Coordinator::new(NODE.into(), store.clone(), settings, recorder.recipient(), &log).start();
        // The round is in flight from the coordinator's start: wait until it waits for the row.
        let db_port = meta.db.port();
        tokio::task::spawn_blocking(move || {
            poll_until(Duration::from_secs(10), "the coordinator's round to wait for the locked row", || {
                let out = Command::new(crate::common::find_binary("mariadb").expect("mariadb client"))
                    .args(["--no-defaults", "-h127.0.0.1", &format!("-P{db_port}"), "-uroot", "--batch"])
                    .args(["--skip-column-names", "-e", "SELECT COUNT(*) FROM information_schema.innodb_trx"])
                    .env_remove("MYSQL_PWD")
                    .output()
                    .ok()?;
                let n: usize = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
                (n >= 2).then_some(())
            })
        })
        .await
        .expect("poll");
        // Shutdown as the application does it: claim nothing more, (tasks stop), leave.
        coordinator.send(StopPlacing).await.expect("StopPlacing delivered");
        let leave = coordinator.send(Leave);
        // Messages are handled in order: once this one is answered, Leave has been handled.
        coordinator.send(LocalEvent::TaskEnded { id: TaskId(0), epoch: None }).await.expect("delivered");
        // Let the round go on: it acquires the task's lease.
        tokio::task::spawn_blocking(move || {
            writeln!(stdin, "ROLLBACK;").expect("write to the client");
            drop(stdin);
            holder.wait().expect("the holder exits")
        })
        .await
        .expect("join");
        tokio::time::timeout(Duration::from_secs(20), leave)
            .await
            .expect("Leave answered within 20 s")
            .expect("Leave delivered");
    });

    let lease = store.get_lease(id).expect("read the lease").expect(
        "the round in flight acquired the task's lease (if it did not, this test proves nothing: the lock did not \
         hold the round)",
    );
    assert_eq!((lease.owner.as_str(), lease.epoch), (NODE, 1), "{lease:?}");
    assert!(!lease.live, "the node left, but the lease its last round acquired is still live: {lease:?}");
    let asked = asked.lock().expect("recorder lock").clone();
    assert!(!asked.iter().any(|a| a.starts_with("run ")), "a task was started on a node that was leaving: {asked:?}");
}

#[test]
fn a_node_restarted_within_its_ttl_after_a_crash_runs_its_tasks_again_under_new_epochs() {
    let (source, mut cluster) = source_and_cluster(MariaDbOpts::default().max_binlog_size(FILE_SIZE), 1);
    let nodes = cluster.ids();
    let tasks = cluster.create_running_tasks(&source, 2);
    let ids = ids_of(&tasks);
    let leases = wait_spread(&cluster.nodes[0].srv, &ids, &nodes);
    let load = trickle(&source, "t", 5);
    wait_streaming(&cluster.nodes[0].srv, &source, &leases);

    // A crash and an immediate restart with the same node id, well within the TTL: the leases
    // of the crashed process are still live. The new process does not run them, so it must not
    // renew them: they expire, and it takes them again under new epochs and runs the tasks.
    cluster.nodes[0].srv.kill9();
    let killed = Instant::now();
    cluster.nodes[0].srv.restart();
    let srv = &cluster.nodes[0].srv;
    let taken = wait_taken_over_by(srv, &leases, &nodes[0], takeover_deadline());
    eprintln!("tasks running again {:.1?} after kill -9 and restart: {taken:?}", killed.elapsed());
    assert_acquired_events(srv, &taken);
    // Its folders were written under the crashed process's leases: set aside, and said.
    for id in taken.keys() {
        let said: Vec<String> =
            events(srv, *id).into_iter().filter(|(t, _)| t == "FILES_SET_ASIDE").map(|(_, m)| m).collect();
        assert!(said.iter().any(|m| m.contains("under another lease")), "task {id}: {said:?}");
    }
    let mark = source.master_status().expect("binlog on");
    wait_new_owners_write(srv, &taken, &mark.file, &mut |_, _| ());
    finish_and_compare(&cluster, srv, &source, &tasks, load);
    assert_none_failed(srv, &ids);
}

#[test]
fn a_takeover_that_needs_a_file_the_source_purged_fails_loudly_and_moves_nothing_back() {
    let (source, mut cluster) = source_and_cluster(MariaDbOpts::default().max_binlog_size(FILE_SIZE), 2);
    let nodes = cluster.ids();
    let tasks = cluster.create_running_tasks(&source, 2);
    let ids = ids_of(&tasks);
    let leases = wait_spread(&cluster.nodes[0].srv, &ids, &nodes);
    let load = trickle(&source, "t", 4);
    wait_streaming(&cluster.nodes[0].srv, &source, &leases);
    load.stop();
    wait_all_caught_up(&cluster.nodes[0].srv, &source, &ids);

    let victim_id = most_loaded(&nodes, &leases);
    let victim = cluster.index_of(&victim_id);
    let survivor_at = (victim + 1) % nodes.len();
    let lost: BTreeMap<i64, Lease> =
        leases.iter().filter(|(_, l)| l.owner == victim_id).map(|(i, l)| (*i, l.clone())).collect();
    let others: Vec<i64> = ids.iter().filter(|id| !lost.contains_key(id)).copied().collect();
    let before: BTreeMap<i64, StoredCheckpoint> = lost
        .keys()
        .map(|id| {
            (*id, stored_checkpoint(&cluster.nodes[survivor_at].srv, *id).expect("the victim wrote a checkpoint"))
        })
        .collect();

    // The victim dies holding its open file, which the bucket never has; the source then drops
    // every file but a new one, before the victim's leases can expire (TTL after their last
    // renewal), so the new owner finds neither the bucket nor the source holding what it needs.
    cluster.nodes[victim].srv.kill9();
    let survivor = &cluster.nodes[survivor_at].srv;
    source.flush_binary_logs();
    let newest = source.master_status().expect("binlog on").file;
    poll_until(WAIT, &format!("PURGE BINARY LOGS TO '{newest}' to leave only {newest}"), || {
        source.sql(&format!("PURGE BINARY LOGS TO '{newest}'"));
        (source.binlog_files().len() == 1).then_some(())
    });
    for (id, l) in &lost {
        let now = lease(survivor, *id).expect("a lease row");
        assert_eq!(
            (&now.owner, now.epoch),
            (&l.owner, l.epoch),
            "task {id} was taken over before the purge finished: the test raced the lease TTL"
        );
    }

    for (id, cp) in &before {
        let TaskError { code, message, .. } = wait_failed(survivor, *id);
        assert_eq!(code, TaskErrorCode::SourceBinlogPurged, "task {id}: {message}");
        // It names the file it needed: the dead node's open file, or an earlier one the bucket
        // did not hold yet, and either way one the source no longer has.
        let needed = message
            .split_once("binlog dump from ")
            .and_then(|(_, rest)| rest.split_once(':'))
            .map(|(file, _)| file.to_string())
            .unwrap_or_else(|| panic!("task {id}: the error does not name the dump's start: {message}"));
        assert!(needed <= cp.file, "task {id}: {needed} is past the checkpoint's file {}", cp.file);
        assert!(
            !source.binlog_files().iter().any(|(f, _)| *f == needed),
            "task {id}: {needed} is still on the source, yet the task failed: {message}"
        );
        let taken = lease(survivor, *id).expect("a lease row");
        assert!(
            taken.owner != victim_id && taken.epoch > lost[id].epoch,
            "task {id} failed under a new owner's lease, not the dead node's: {taken:?}"
        );
        assert!(
            events(survivor, *id).iter().any(|(t, m)| t == "TASK_ERROR" && m.starts_with("SOURCE_BINLOG_PURGED")),
            "task {id}: the failure is on the task's timeline"
        );
        assert_eq!(
            stored_checkpoint(survivor, *id).as_ref(),
            Some(cp),
            "task {id}: the checkpoint the dead node stored is kept as it was (nothing moved back)"
        );
    }
    // The survivor's own tasks read past the purge from the new file and are not affected.
    assert_none_failed(survivor, &others);
    wait_all_caught_up(survivor, &source, &others);
}

/// The newest modification time among the files in `dir`.
fn newest_mtime(dir: &std::path::Path) -> Option<SystemTime> {
    std::fs::read_dir(dir).ok()?.filter_map(Result::ok).filter_map(|e| e.metadata().ok()?.modified().ok()).max()
}

#[test]
fn the_metadata_database_down_past_the_ttl_stops_every_writer_in_time_and_the_cluster_recovers() {
    let (source, mut cluster) = source_and_cluster(MariaDbOpts::default().max_binlog_size(FILE_SIZE), 2);
    let nodes = cluster.ids();
    let tasks = cluster.create_running_tasks(&source, 4);
    let ids = ids_of(&tasks);
    let leases = wait_spread(&cluster.nodes[0].srv, &ids, &nodes);
    let load = trickle(&source, "t", 4);
    wait_streaming(&cluster.nodes[0].srv, &source, &leases);

    // No node can renew from here on. Every lease was renewed before the database died (it is
    // reaped when kill() returns), so each expires, by the database's clock (this host's), at
    // most TTL after `down_at`: by then every writer must have stopped.
    cluster.meta.db.kill();
    let down_at = SystemTime::now();
    let expiry_bound = down_at + Duration::from_secs(TTL_SEC);
    // No HTTP to the nodes from here until the database is back: what they serve from it is
    // unavailable. Files, logs and the source tell what happens.
    let grown = |from: &crate::common::mariadb::MasterStatus| {
        let now = source.master_status().expect("binlog on");
        now.file > from.file || now.position >= from.position + 65536
    };
    let at_kill = source.master_status().expect("binlog on");
    poll_until(WAIT, "the leases' latest expiry to pass while the source writes on", || {
        (SystemTime::now() > expiry_bound && grown(&at_kill)).then_some(())
    });
    let mut stopped = BTreeMap::new();
    for (id, l) in &leases {
        let dir = node_task_dir(&cluster.nodes[cluster.index_of(&l.owner)].srv, *id, &source);
        let newest = newest_mtime(&dir).unwrap_or_else(|| panic!("{} holds files of task {id}", l.owner));
        assert!(
            newest <= expiry_bound,
            "task {id}: {} wrote at {newest:?}, after its lease could have expired ({expiry_bound:?}; the \
             database went down at {down_at:?})",
            l.owner
        );
        stopped.insert(*id, (dir.clone(), dir_snapshot(&dir)));
    }
    let later = source.master_status().expect("binlog on");
    poll_until(WAIT, "the source to write another 64 KiB", || grown(&later).then_some(()));
    for (id, (dir, before)) in &stopped {
        assert_eq!(&dir_snapshot(dir), before, "task {id}: files changed while the lease could not be renewed");
    }
    // When did each node notice? Read from the time of its first "cannot renew leases" line (the
    // nodes log in UTC); checked at the end, so that recovery is tested either way.
    let noticed = poll_until(WAIT, "every node to log that it cannot renew its leases", || {
        cluster
            .nodes
            .iter()
            .map(|n| first_logged_at(&n.srv.log_text(), "cannot renew leases"))
            .collect::<Option<Vec<_>>>()
    });
    let last_noticed = noticed.into_iter().max().expect("nodes");
    let noticed_after = last_noticed.duration_since(down_at).unwrap_or_default();

    // The database comes back: the tasks are leased again and run; nothing failed, no data is lost.
    cluster.meta.db.restart();
    let srv = &cluster.nodes[0].srv;
    poll_until(WAIT, "every task leased and RUNNING again", || {
        assert_none_failed(srv, &ids);
        let leased = live_leases(srv, &ids).is_some();
        (leased && ids.iter().all(|id| srv.task(*id).state == TaskState::Running)).then_some(())
    });
    finish_and_compare(&cluster, srv, &source, &tasks, load);
    assert_none_failed(srv, &ids);
    for id in &ids {
        let errors: Vec<(String, String)> = events(srv, *id).into_iter().filter(|(t, _)| t == "TASK_ERROR").collect();
        assert!(errors.is_empty(), "task {id} recorded errors: {errors:?}");
    }
    // LEASE_DEGRADED is only worth its name if it comes while the leases are still valid.
    assert!(
        noticed_after <= Duration::from_secs(TTL_SEC),
        "the nodes logged \"cannot renew leases\" only {noticed_after:.1?} after the metadata database went \
         down, past the lease TTL ({TTL_SEC} s): the renewal failure (and LEASE_DEGRADED) comes after the \
         leases could have expired"
    );
}

#[test]
fn placement_respects_max_tasks_per_node_and_nodes_keep_a_generated_id() {
    // Two nodes that run one task each at most; the second one has no configured id. The meta
    // database's server doubles as the source (its binlog leaves the `meta` database out).
    let mut cluster = Cluster::start_with(1, true, |_, opts| opts.env("BINLOG_SERVER_CLUSTER_MAX_TASKS_PER_NODE", "1"));
    let second = cluster.add_node(cluster.node_opts().env("BINLOG_SERVER_CLUSTER_MAX_TASKS_PER_NODE", "1"));
    let generated = cluster.nodes[second].id.clone();
    assert_ne!(generated, "node-a");
    let ws = workers(&cluster.nodes[0].srv);
    assert_eq!(ws.keys().cloned().collect::<Vec<_>>(), {
        let mut v = cluster.ids();
        v.sort();
        v
    });
    for w in ws.values() {
        assert_eq!(
            (w["alive"].clone(), w["max_tasks"].clone(), w["leases"].clone()),
            (json!(true), json!(1), json!(0)),
            "{w}"
        );
    }

    // A task created but never started is never leased (nulls on every node); any node serves it;
    // a task that does not exist is 404.
    let source = &cluster.meta.db;
    let first = source.binlog_files()[0].0.clone();
    let start = json!({"mode": "FILE_POS", "file": first, "pos": 4});
    let idle = create_task(&cluster.nodes[0].srv, "idle", source_json(source), start.clone());
    for node in &cluster.nodes {
        assert_eq!(lease(&node.srv, idle), None, "{}: task {idle} was never started", node.id);
        assert_eq!(node.srv.task(idle).name, "idle", "{}", node.id);
        let (status, body) = node.srv.error("GET", "/api/tasks/999/lease", None);
        assert_eq!((status, body.code), (404, ErrorCode::TaskNotFound), "{}: {body:?}", node.id);
    }

    // Three running tasks, capacity two: one stays unplaced.
    let running: Vec<i64> = (0..3)
        .map(|i| {
            let id = create_task(&cluster.nodes[i % 2].srv, &format!("cap-{i}"), source_json(source), start.clone());
            crate::common::replication::start_task(&cluster.nodes[(i + 1) % 2].srv, id);
            id
        })
        .collect();
    let o = poll_until(WAIT, "two tasks leased, one unplaced", || {
        let o = overview(&cluster.nodes[1].srv);
        (o["tasks_leased"] == 2 && o["tasks_unplaced"] == 1).then_some(o)
    });
    assert_eq!(o["tasks_wanted_running"], 3, "{o}");
    assert_eq!(o["node_id"], generated.as_str(), "{o}");
    assert_eq!(o["workers_alive"], 2, "{o}");
    let by_node: BTreeMap<String, u64> = serde_json::from_value(o["leases_by_node"].clone()).expect("counts");
    assert_eq!(by_node.get("node-a"), Some(&1), "{o}");
    assert_eq!(by_node.get(&generated), Some(&1), "{o}");
    let leased = running.iter().filter(|id| lease(&cluster.nodes[0].srv, **id).is_some_and(|l| l.live)).count();
    assert_eq!(leased, 2, "max_tasks_per_node = 1 on both nodes");

    // The generated id survives a restart, and the node is the same worker afterwards.
    cluster.nodes[second].srv.restart();
    assert_eq!(generated_node_id(&cluster.nodes[second].srv), generated, "the generated node id is kept");
    poll_until(WAIT, "both workers alive after the restart", || {
        let ws = workers(&cluster.nodes[0].srv);
        (ws.len() == 2 && ws.values().all(|w| w["alive"] == true)).then_some(())
    });
}

/// When a node's text log first has a line containing `needle` (`Nov 24 19:14:25.688 WARN ...`,
/// logged in UTC, of this year).
fn first_logged_at(log: &str, needle: &str) -> Option<SystemTime> {
    use chrono::Datelike;
    let line = log.lines().find(|l| l.contains(needle))?;
    let stamp = line.get(..19)?;
    let year = chrono::Utc::now().year();
    let t = chrono::NaiveDateTime::parse_from_str(&format!("{year} {stamp}"), "%Y %b %d %H:%M:%S%.3f")
        .unwrap_or_else(|e| panic!("cannot read the time of log line {line:?}: {e}"));
    Some(SystemTime::from(t.and_utc()))
}

#[test]
fn a_lease_is_renewed_every_renew_interval() {
    // One node, one task; the metadata server doubles as the source.
    let cluster = Cluster::start_with(1, true, |_, opts| opts);
    let tasks = cluster.create_running_tasks(&cluster.meta.db, 1);
    let id = tasks[0].0;
    let srv = &cluster.nodes[0].srv;
    // Each renewal moves expires_at to the database's NOW(6) + TTL, so the gaps between the
    // values seen are the gaps between renewals, by the database's clock (whatever this test's
    // polling pace).
    let mut seen: Vec<chrono::DateTime<chrono::Utc>> = Vec::new();
    let renewals = 8;
    poll_until(WAIT, &format!("{renewals} renewals of task {id}'s lease"), || {
        if let Some(l) = lease(srv, id).filter(|l| l.live)
            && seen.last() != Some(&l.expires_at)
        {
            seen.push(l.expires_at);
        }
        (seen.len() > renewals).then_some(())
    });
    let gaps_ms: Vec<i64> = seen.windows(2).map(|w| (w[1] - w[0]).num_milliseconds()).collect();
    // A renewal every RENEW_SEC leaves TTL - RENEW_SEC of margin; half an interval of lateness
    // is tolerated, a skipped renewal (a gap of two intervals: a third of the TTL left) is not.
    let limit_ms = (RENEW_SEC * 1000 * 3 / 2) as i64;
    assert!(
        gaps_ms.iter().all(|g| *g <= limit_ms),
        "with lease_renew_interval_sec = {RENEW_SEC}, renewals must be at most {limit_ms} ms apart (by the \
         database's clock); gaps seen: {gaps_ms:?} ms"
    );
}

#[test]
fn standalone_mode_reports_itself_and_has_no_leases() {
    let srv = Server::start(ServerOpts::default());
    let o = overview(&srv);
    assert_eq!(o["mode"], "standalone", "{o}");
    let id = srv
        .create(&json!({"name": "solo", "cluster_key": "solo",
                "source": {"host": "127.0.0.1", "port": 3306, "user": "repl", "password": "pw", "flavor": "mariadb"},
                "start": {"mode": "LATEST"}}))
        .id;
    assert_eq!(lease(&srv, id), None, "no leases in standalone mode");
    let (status, body) = srv.error("GET", "/api/tasks/999/lease", None);
    assert_eq!((status, body.code), (404, ErrorCode::TaskNotFound), "no such task: {body:?}");
    let (status, cp) = srv.get(&format!("/api/tasks/{id}/checkpoint"));
    assert_eq!(status, 200, "{cp}");
    assert_eq!((cp.get("node_id"), cp.get("epoch")), (Some(&json!(null)), Some(&json!(null))), "{cp}");
}

/// Environment of one CLI run.
type Env<'a> = Vec<(&'a str, &'a str)>;

#[test]
fn cluster_mode_refuses_to_start_without_what_it_needs() {
    let dir = temp_dir("binlog-it-cluster-refusal-");
    let data = dir.path().join("data").display().to_string();
    let listen = format!("127.0.0.1:{}", free_port());
    // Never reached: validation comes first. The password must not show in any message.
    let mysql = "mysql://meta:Refusal-Canary-41@127.0.0.1:9/meta";
    let base: Vec<(&str, &str)> = vec![
        ("BINLOG_SERVER_DATA_DIR", &data),
        ("BINLOG_SERVER_LISTEN_ADDR", &listen),
        ("BINLOG_SERVER_MODE", "cluster"),
    ];
    let upload: Vec<(&str, &str)> = vec![
        ("BINLOG_SERVER_UPLOAD_ENABLED", "true"),
        ("BINLOG_SERVER_UPLOAD_ENDPOINT", "http://127.0.0.1:9"),
        ("BINLOG_SERVER_UPLOAD_BUCKET", "b"),
        ("BINLOG_SERVER_UPLOAD_ACCESS_KEY", "ak"),
        ("BINLOG_SERVER_UPLOAD_SECRET_KEY", "sk"),
    ];
    let key = [("BINLOG_SERVER_SECRETS_KEY", SECRETS_KEY)];
    let meta = [("BINLOG_SERVER_META_DSN", mysql)];
    let sqlite_file = format!("sqlite://{data}/meta.db");
    let sqlite = [("BINLOG_SERVER_META_DSN", sqlite_file.as_str())];
    let ttl = |v: &'static str| [("BINLOG_SERVER_CLUSTER_LEASE_TTL_SEC", v)];
    let renew = |v: &'static str| [("BINLOG_SERVER_CLUSTER_LEASE_RENEW_INTERVAL_SEC", v)];

    let cases: Vec<(&str, Env, &str)> = vec![
        ("the default (SQLite) meta_dsn", [&base[..], &upload, &key].concat(), "meta_dsn"),
        ("an explicit SQLite meta_dsn", [&base[..], &upload, &key, &sqlite].concat(), "meta_dsn"),
        ("upload disabled", [&base[..], &key, &meta].concat(), "upload.enabled"),
        ("no secrets.key", [&base[..], &upload, &meta].concat(), "secrets.key"),
        (
            "a node id outside [A-Za-z0-9._-]",
            [&base[..], &upload, &key, &meta, &[("BINLOG_SERVER_CLUSTER_NODE_ID", "node a!")]].concat(),
            "cluster.node_id",
        ),
        ("a TTL below 2", [&base[..], &upload, &key, &meta, &ttl("1"), &renew("1")].concat(), "cluster.lease_ttl_sec"),
        (
            "a renew interval above TTL / 2",
            [&base[..], &upload, &key, &meta, &ttl("3"), &renew("2")].concat(),
            "cluster.lease_renew_interval_sec",
        ),
    ];
    for (what, env, setting) in cases {
        let started = Instant::now();
        let (code, stdout, stderr) = run_cli(&["serve"], &env);
        assert_ne!(code, 0, "mode cluster with {what} must not start: stdout {stdout:?}, stderr {stderr:?}");
        assert!(stderr.contains(setting), "with {what}, the refusal names `{setting}`: {stderr}");
        assert!(
            !stderr.contains("Refusal-Canary-41") && !stdout.contains("Refusal-Canary-41"),
            "the DSN's password leaked: {stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "with {what}: refused at start-up, not after {:?}",
            started.elapsed()
        );
    }
}
