//! Cluster mode as real processes: N `binlog-server` nodes on one MariaDB metadata database
//! (migrated with `binlog-server migrate up --meta-dsn`), one moto bucket and one shared
//! `secrets.key`, plus the reads a cluster test needs (leases, workers, the overview, who wrote a
//! checkpoint), a light paced writer for the source, and the end-to-end check that the bucket
//! holds every sealed source file byte for byte, with no gap.
//!
//! Nodes are driven only through their public surfaces (HTTP API, signals, files on disk). A
//! frozen (SIGSTOP) node does not answer HTTP: ask another node, never the frozen one. Every wait
//! is a poll with a deadline that names what it waited for; every process dies by PID on drop.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use binlog_server::api::dto::{CheckpointDto, FileDto, LeaseDto};
use binlog_server::domain::TaskState;
use binlog_server::meta::{FileState, UploadState};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::mariadb::{MariaDb, MariaDbOpts};
use super::replication::{
    LoadGenerator, LoadShape, WAIT, create_task, fast_server_opts, source_identity, source_json, start_task,
};
use super::s3::S3Server;
use super::server::{Server, ServerOpts, run_cli};
use super::{poll_until, temp_dir};

/// Lease TTL of the cluster tests: short, so a takeover happens within seconds.
pub const TTL_SEC: u64 = 3;
/// Renew (and heartbeat, and placement) interval of the cluster tests: the most `TTL_SEC` allows
/// with room for one missed renewal.
pub const RENEW_SEC: u64 = 1;
/// The object-key prefix `S3Server::upload_env` configures.
pub const PREFIX: &str = "it";
/// The key every node shares (32 bytes, hex): source passwords encrypted by one node must be
/// readable by the node that takes the task over.
pub const SECRETS_KEY: &str = "5c1d0e8a7f3b2a9146d0c3e5b7a9f1e2d4c6b8a0f2e4d6c8b0a2f4e6d8c0b2a4";

const META_DB: &str = "meta";
const META_USER: &str = "meta_owner";
const META_PASSWORD: &str = "Cluster-Meta-9c2f";

/// A MariaDB hosting the shared `meta` database, migrated by the binary's own `migrate up`.
pub struct MetaDb {
    pub db: MariaDb,
    pub dsn: String,
}

impl MetaDb {
    /// Starts a MariaDB, creates `meta` and its owner, runs `migrate up --meta-dsn`. With
    /// `binlog`, the server also logs (all but `meta`), so a test can use it as a source too.
    pub fn start(binlog: bool) -> MetaDb {
        let opts = if binlog {
            // The nodes' own checkpoint writes must not feed the binlog the tasks stream.
            MariaDbOpts::default().arg(format!("--binlog-ignore-db={META_DB}"))
        } else {
            MariaDbOpts::default().without_log_bin()
        };
        let db = MariaDb::start(opts);
        db.sql(&format!(
            "CREATE DATABASE {META_DB}; \
             CREATE USER '{META_USER}'@'%' IDENTIFIED BY '{META_PASSWORD}'; \
             GRANT ALL ON {META_DB}.* TO '{META_USER}'@'%'"
        ));
        let dsn = format!("mysql://{META_USER}:{META_PASSWORD}@127.0.0.1:{}/{META_DB}", db.port());
        let cli_dir = temp_dir("binlog-it-cluster-cli-");
        let data_dir = cli_dir.path().join("data");
        let (code, stdout, stderr) = run_cli(
            &["migrate", "up", "--meta-dsn", &dsn],
            &[("BINLOG_SERVER_DATA_DIR", data_dir.to_str().expect("utf-8 temp path"))],
        );
        assert_eq!(code, 0, "migrate up --meta-dsn: stdout {stdout:?}, stderr {stderr:?}\n{}", db.log_tail(20));
        MetaDb { db, dsn }
    }
}

/// One node: its configured (or generated) id and the process.
pub struct Node {
    pub id: String,
    pub srv: Server,
}

/// N nodes, their metadata database and their bucket. Nodes are declared first, so they die
/// before the database and the bucket they use.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub s3: S3Server,
    pub meta: MetaDb,
}

impl Cluster {
    /// `n` nodes `node-a`, `node-b`, ... with the test TTL and renew interval.
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, false, |_, opts| opts)
    }

    /// Like [`Cluster::start`]; `tweak(i, opts)` adjusts node `i`'s options, and `meta_binlog`
    /// turns on the metadata server's binlog (see [`MetaDb::start`]).
    pub fn start_with(n: usize, meta_binlog: bool, tweak: impl Fn(usize, ServerOpts) -> ServerOpts) -> Cluster {
        // The bucket and the database start side by side: each takes seconds.
        let (s3, meta) = std::thread::scope(|scope| {
            let s3 = scope.spawn(|| S3Server::start(false));
            let meta = MetaDb::start(meta_binlog);
            (s3.join().unwrap_or_else(|e| std::panic::resume_unwind(e)), meta)
        });
        let mut cluster = Cluster { nodes: Vec::new(), s3, meta };
        for i in 0..n {
            let id = node_name(i);
            let opts = tweak(i, cluster.node_opts().env("BINLOG_SERVER_CLUSTER_NODE_ID", &id));
            cluster.add_node(opts);
        }
        cluster
    }

    /// What every node shares: cluster mode, the meta DSN, the bucket, the key, fast leases,
    /// fast replication retries and quick upload retries. No node id: add one, or let the node
    /// generate its own.
    pub fn node_opts(&self) -> ServerOpts {
        self.s3
            .upload_env(fast_server_opts())
            .env("BINLOG_SERVER_UPLOAD_PART_SIZE_MB", "5")
            .env("BINLOG_SERVER_UPLOAD_MULTIPART_THRESHOLD_MB", "5")
            .env("BINLOG_SERVER_UPLOAD_RETRY_INITIAL_SEC", "1")
            .env("BINLOG_SERVER_UPLOAD_RETRY_MAX_SEC", "2")
            .env("BINLOG_SERVER_UPLOAD_REQUEST_TIMEOUT_SEC", "5")
            .env("BINLOG_SERVER_MODE", "cluster")
            // Log times in UTC, so that tests can read when a node logged something.
            .env("TZ", "UTC")
            .env("BINLOG_SERVER_META_DSN", &self.meta.dsn)
            .env("BINLOG_SERVER_SECRETS_KEY", SECRETS_KEY)
            .env("BINLOG_SERVER_CLUSTER_LEASE_TTL_SEC", TTL_SEC.to_string())
            .env("BINLOG_SERVER_CLUSTER_LEASE_RENEW_INTERVAL_SEC", RENEW_SEC.to_string())
    }

    /// Starts one more node with `opts`; its id is the configured one, else the one it
    /// generated in `{data_dir}/node_id`. Returns its index.
    pub fn add_node(&mut self, opts: ServerOpts) -> usize {
        let configured =
            opts.env.iter().rev().find(|(k, _)| k == "BINLOG_SERVER_CLUSTER_NODE_ID").map(|(_, v)| v.clone());
        let srv = Server::start(opts);
        let id = configured.unwrap_or_else(|| generated_node_id(&srv));
        self.nodes.push(Node { id, srv });
        self.nodes.len() - 1
    }

    /// The node ids, in start order.
    pub fn ids(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
    }

    /// The index of the node called `id`; panics when there is none.
    pub fn index_of(&self, id: &str) -> usize {
        self.nodes.iter().position(|n| n.id == id).unwrap_or_else(|| panic!("no node {id} in {:?}", self.ids()))
    }

    /// Creates `n` tasks copying `source` from its first file (cluster keys `cl-0`, `cl-1`, ...),
    /// each created through node `i % N` and started through node `(i + 1) % N`: any node's API
    /// serves any task. Returns `(task id, cluster key)`.
    pub fn create_running_tasks(&self, source: &MariaDb, n: usize) -> Vec<(i64, String)> {
        let first = source.binlog_files().first().map(|(f, _)| f.clone()).expect("the source has a binlog file");
        let count = self.nodes.len();
        (0..n)
            .map(|i| {
                let key = format!("cl-{i}");
                let id = create_task(
                    &self.nodes[i % count].srv,
                    &key,
                    source_json(source),
                    json!({"mode": "FILE_POS", "file": first, "pos": 4}),
                );
                start_task(&self.nodes[(i + 1) % count].srv, id);
                (id, key)
            })
            .collect()
    }
}

/// A source (MariaDB, binlog on, `opts`) and a cluster of `nodes` nodes, started side by side.
pub fn source_and_cluster(opts: MariaDbOpts, nodes: usize) -> (MariaDb, Cluster) {
    std::thread::scope(|scope| {
        let source = scope.spawn(|| MariaDb::start(opts));
        let cluster = Cluster::start(nodes);
        (source.join().unwrap_or_else(|e| std::panic::resume_unwind(e)), cluster)
    })
}

/// The message of a caught panic (what `poll_until` or an assertion said).
pub fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// `node-a`, `node-b`, ...
pub fn node_name(i: usize) -> String {
    format!("node-{}", (b'a' + i as u8) as char)
}

/// The id a node generated for itself: `{data_dir}/node_id`, checked against the documented
/// pattern.
pub fn generated_node_id(srv: &Server) -> String {
    let path = srv.data_dir().join("node_id");
    let id = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("a node without cluster.node_id keeps a generated one in {}: {e}", path.display()))
        .trim()
        .to_string();
    assert!(
        !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
        "the generated node id {id:?} must match [A-Za-z0-9._-]{{1,64}}"
    );
    id
}

/// `GET /api/tasks/{id}/lease` as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub epoch: i64,
    pub expires_at: DateTime<Utc>,
    pub live: bool,
}

/// The task's lease; `None` when it was never leased (`200` with `owner`, `epoch` and
/// `expires_at` null and `live: false`). Panics on any other answer (`404` means no such task).
pub fn lease(srv: &Server, id: i64) -> Option<Lease> {
    let l: LeaseDto = srv.get_as(&format!("/api/tasks/{id}/lease"));
    assert_eq!(l.task_id, id, "the lease names its task: {l:?}");
    let Some(owner) = l.owner else {
        assert!(
            l.epoch.is_none() && l.expires_at.is_none() && !l.live,
            "a task never leased has nulls and live false: {l:?}"
        );
        return None;
    };
    Some(Lease {
        owner,
        epoch: l.epoch.unwrap_or_else(|| panic!("a lease with an owner has an epoch: task {id}")),
        expires_at: l.expires_at.unwrap_or_else(|| panic!("a lease with an owner has expires_at: task {id}")),
        live: l.live,
    })
}

/// The live lease of every task, when each of them has one (else `None`).
pub fn live_leases(srv: &Server, ids: &[i64]) -> Option<BTreeMap<i64, Lease>> {
    let mut out = BTreeMap::new();
    for &id in ids {
        let l = lease(srv, id).filter(|l| l.live)?;
        out.insert(id, l);
    }
    Some(out)
}

/// How many of `leases` each node holds (nodes with none included, as 0).
pub fn count_by_owner(nodes: &[String], leases: &BTreeMap<i64, Lease>) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = nodes.iter().map(|n| (n.clone(), 0)).collect();
    for l in leases.values() {
        *counts.entry(l.owner.clone()).or_default() += 1;
    }
    counts
}

/// Polls (through `srv`) until every task has a live lease and every node in `nodes` holds at
/// least one; then checks no node holds more than ceil(tasks / nodes). Returns the leases.
pub fn wait_spread(srv: &Server, ids: &[i64], nodes: &[String]) -> BTreeMap<i64, Lease> {
    let mut last = None;
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_until(WAIT, &format!("{} tasks to be leased, spread over {nodes:?}", ids.len()), || {
            let leases = live_leases(srv, ids);
            last = leases.clone();
            let leases = leases?;
            count_by_owner(nodes, &leases).values().all(|&n| n >= 1).then_some(leases)
        })
    }));
    let leases = waited.unwrap_or_else(|e| {
        panic!("{}\nplacement did not spread the tasks; last leases seen: {last:#?}", panic_text(&e))
    });
    let fair = ids.len().div_ceil(nodes.len());
    let counts = count_by_owner(nodes, &leases);
    assert_eq!(counts.len(), nodes.len(), "a lease names an owner that is not a node: {leases:#?}");
    assert!(
        counts.values().all(|&n| n <= fair),
        "each node holds at most ceil({}/{}) = {fair}: {counts:?}",
        ids.len(),
        nodes.len()
    );
    leases
}

/// `GET /api/cluster/overview`.
pub fn overview(srv: &Server) -> Value {
    let (status, body) = srv.get("/api/cluster/overview");
    assert_eq!(status, 200, "GET /api/cluster/overview: {body}");
    body
}

/// `GET /api/workers` as `node_id -> worker`.
pub fn workers(srv: &Server) -> BTreeMap<String, Value> {
    let (status, body) = srv.get("/api/workers");
    assert_eq!(status, 200, "GET /api/workers: {body}");
    body["workers"]
        .as_array()
        .unwrap_or_else(|| panic!("no workers array: {body}"))
        .iter()
        .map(|w| {
            (w["node_id"].as_str().unwrap_or_else(|| panic!("a worker without node_id: {w}")).to_string(), w.clone())
        })
        .collect()
}

/// The stored checkpoint and who wrote it (`GET /api/tasks/{id}/checkpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub file: String,
    pub pos: u64,
    pub node_id: Option<String>,
    pub epoch: Option<i64>,
}

impl StoredCheckpoint {
    /// The position as a comparable pair (file names of one source sort in log order).
    pub fn at(&self) -> (String, u64) {
        (self.file.clone(), self.pos)
    }
}

/// The task's stored checkpoint; `None` before the first one. Panics unless the body carries
/// the `node_id` and `epoch` fields.
pub fn stored_checkpoint(srv: &Server, id: i64) -> Option<StoredCheckpoint> {
    let (status, raw) = srv.get(&format!("/api/tasks/{id}/checkpoint"));
    assert_eq!(status, 200, "GET checkpoint of task {id}: {raw}");
    // `Option` fields would also take an absent key: the body must name both, null or not.
    assert!(
        raw.get("node_id").is_some() && raw.get("epoch").is_some(),
        "the checkpoint names node_id and epoch: {raw}"
    );
    let cp: CheckpointDto =
        serde_json::from_value(raw.clone()).unwrap_or_else(|e| panic!("checkpoint of task {id}: {e}: {raw}"));
    Some(StoredCheckpoint { file: cp.file?, pos: cp.pos?, node_id: cp.node_id, epoch: cp.epoch })
}

/// `(event_type, message)` of the task's events, oldest first.
pub fn events(srv: &Server, id: i64) -> Vec<(String, String)> {
    let mut evs: Vec<(String, String)> =
        super::replication::task_events(srv, id).into_iter().map(|(_, t, m)| (t, m)).collect();
    evs.reverse();
    evs
}

/// Panics when any of the tasks is FAILED (with its `last_error`).
pub fn assert_none_failed(srv: &Server, ids: &[i64]) {
    for &id in ids {
        let t = srv.task(id);
        assert_ne!(t.state, TaskState::Failed, "task {id} FAILED: {:?}", t.last_error);
    }
}

/// Polls until every task's stored checkpoint is the source's end (re-read at each poll, so a
/// BINLOG_CHECKPOINT written after a rotation is followed). Stop the load first.
pub fn wait_all_caught_up(srv: &Server, source: &MariaDb, ids: &[i64]) {
    let mut last = BTreeMap::new();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_until(WAIT, &format!("the checkpoints of tasks {ids:?} to reach the source's end"), || {
            assert_none_failed(srv, ids);
            let end = source.master_status().expect("the source's binary log is on");
            let mut all = true;
            for &id in ids {
                let cp = stored_checkpoint(srv, id);
                all &= cp.as_ref().is_some_and(|c| c.file == end.file && c.pos == end.position);
                last.insert(id, (cp, end.clone()));
            }
            all.then_some(())
        })
    }));
    waited.unwrap_or_else(|e| {
        panic!("{}\nnot every task caught up; (checkpoint, source end) last seen: {last:#?}", panic_text(&e))
    });
}

/// The source's closed files (all but the one being written), in order.
pub fn sealed_source_files(source: &MariaDb) -> Vec<String> {
    let mut names: Vec<String> = source.binlog_files().into_iter().map(|(n, _)| n).collect();
    names.pop();
    names
}

/// The object key of a task's file: `{prefix}/{cluster_key}/{source_identity}/{file}`.
pub fn object_key(cluster_key: &str, source: &MariaDb, file: &str) -> String {
    format!("{PREFIX}/{cluster_key}/{}/{file}", source_identity(source))
}

/// Polls until, for every task, the catalog (`GET /api/tasks/{id}/files`) lists as SEALED exactly
/// the source's closed files from the first one (no gap, no duplicate), each UPLOADED, verified,
/// under its documented object key. Run it after `FLUSH BINARY LOGS` and catch-up.
pub fn wait_all_uploaded(srv: &Server, source: &MariaDb, tasks: &[(i64, String)]) {
    let expected = sealed_source_files(source);
    assert!(!expected.is_empty(), "the source has no closed file yet");
    let identity = source_identity(source);
    let mut last = BTreeMap::new();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_until(WAIT, &format!("every task to hold {} sealed, uploaded files", expected.len()), || {
            assert_none_failed(srv, &tasks.iter().map(|(id, _)| *id).collect::<Vec<_>>());
            let mut all = true;
            for (id, key) in tasks {
                let fs = srv.files(*id);
                let sealed: Vec<&FileDto> =
                    fs.iter().filter(|f| f.source_identity == identity && f.state == FileState::Sealed).collect();
                let names: Vec<&str> = sealed.iter().map(|f| f.name.as_str()).collect();
                let done = names == expected
                    && sealed.iter().all(|f| {
                        f.upload.state == UploadState::Uploaded
                            && f.upload.verified
                            && f.upload.object_key.as_deref() == Some(object_key(key, source, &f.name).as_str())
                    });
                all &= done;
                last.insert(*id, fs);
            }
            all.then_some(())
        })
    }));
    waited.unwrap_or_else(|e| {
        let why = panic_text(&e);
        let summary: BTreeMap<i64, Vec<String>> = last
            .iter()
            .map(|(id, fs)| {
                let rows = fs
                    .iter()
                    .map(|f| format!("{} {} {} {:?}", f.name, f.state, f.upload.state, f.upload.object_key))
                    .collect();
                (*id, rows)
            })
            .collect();
        panic!(
            "{why}\nnot every task's closed files were uploaded; expected sealed {expected:?}; \
             catalogs last seen: {summary:#?}"
        )
    });
}

/// Downloads the whole bucket (one boto3 run) and asserts, for every task, that its objects are
/// exactly the source's closed files from the first one (no gap, nothing else) and that each is
/// byte-identical to the source's file. Returns how many objects were compared.
pub fn assert_bucket_matches_source(s3: &S3Server, source: &MariaDb, tasks: &[(i64, String)]) -> usize {
    let expected = sealed_source_files(source);
    let dir = temp_dir("binlog-it-bucket-");
    let keys = s3.download_prefix(&format!("{PREFIX}/"), dir.path());
    let mut compared = 0;
    for (id, key) in tasks {
        let task_prefix = format!("{PREFIX}/{key}/{}/", source_identity(source));
        let mut names: Vec<&str> = keys.iter().filter_map(|k| k.strip_prefix(&task_prefix)).collect();
        names.sort_unstable();
        assert_eq!(names, expected, "task {id} ({key}): the bucket must hold exactly the source's closed files");
        for name in &names {
            let object = std::fs::read(dir.path().join(&task_prefix).join(name)).expect("a downloaded object");
            let theirs = std::fs::read(source.binlog_dir().join(name)).unwrap_or_else(|e| panic!("source {name}: {e}"));
            assert!(
                object == theirs,
                "task {id}: {task_prefix}{name} differs from the source's file ({} vs {} bytes, first \
                 difference at {:?})",
                object.len(),
                theirs.len(),
                super::replication::first_difference(&object, &theirs)
            );
            compared += 1;
        }
    }
    let known: Vec<String> = tasks.iter().map(|(_, k)| format!("{PREFIX}/{k}/")).collect();
    let stray: Vec<&String> = keys.iter().filter(|k| !known.iter().any(|p| k.starts_with(p))).collect();
    assert!(stray.is_empty(), "objects that belong to no task: {stray:?}");
    compared
}

/// `(size, sha256)` of every file in `dir` (empty when the dir does not exist).
pub fn dir_snapshot(dir: &Path) -> BTreeMap<String, (u64, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            let bytes = std::fs::read(e.path()).unwrap_or_else(|err| panic!("reading {}: {err}", e.path().display()));
            let hash = hex::encode(Sha256::digest(&bytes));
            (e.file_name().to_string_lossy().into_owned(), (bytes.len() as u64, hash))
        })
        .collect()
}

/// A light, steady write load (see `LoadShape::Trickle`): ten tasks copy everything it writes,
/// and each copy goes to the bucket.
pub fn trickle(db: &MariaDb, table: &str, seed: u64) -> LoadGenerator {
    LoadGenerator::start_shaped(db, table, seed, LoadShape::Trickle)
}

/// The local directory where node `srv` keeps task `id`'s files of `source`.
pub fn node_task_dir(srv: &Server, id: i64, source: &MariaDb) -> PathBuf {
    super::replication::local_dir(srv, id, source)
}
