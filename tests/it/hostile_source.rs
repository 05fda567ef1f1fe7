//! A source that lies (issue 22): the fake source (`common::fake_source`) plays a MariaDB that
//! logs binlog-server in, answers its set-up queries, and then sends what no honest server
//! sends: file names that are paths, event sizes and positions that disagree with the bytes,
//! endless packet chains, broken format descriptions, GTID counts that overflow, handshakes
//! that never end, a connection that stops mid-packet.
//!
//! Every test runs the real binary with a healthy task on a real `mariadbd` beside the hostile
//! ones, and ends with the same checks ([`Arena::aftermath`]): each hostile task is in FAILED
//! or RETRY_BACKOFF with a code and a message naming the problem, the process did not panic,
//! its memory peak (VmHWM) stayed bounded, nothing was written outside the hostile tasks'
//! directories (and nothing under a name the source chose and we refused), and the healthy
//! task still streams.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use binlog_server::domain::{TaskError, TaskErrorCode, TaskState};
use serde_json::json;

use crate::common::fake_source::events::{self, Binlog};
use crate::common::fake_source::{FakeSource, Greeting, Session, SourceFacts, caps};
use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::replication::{
    WAIT, api_checkpoint, create_task, fast_server_opts, source_via, start_copy_task, start_task,
    wait_checkpoint_moves, wait_running,
};
use crate::common::server::Server;
use crate::common::{poll_until, walk};

/// The file every fake dump is about.
const FILE: &str = "mysql-bin.000001";
/// `replication.max_event_bytes` in these tests: room for two 16 MiB chunks, not three.
const MAX_EVENT_BYTES: u64 = 32 << 20;
/// The memory peak the process may reach: a baseline, plus two batches and the largest event
/// the limit lets through, with room to spare. A hostile size field that were believed would
/// go far past it (4 GiB), as would an endless chain gathered without a limit.
const MAX_HWM_KIB: u64 = 400 << 10;
/// How long a script keeps a connection open after its lie, waiting for the client to go.
const HOLD: Duration = Duration::from_secs(30);

/// A server with a healthy task streaming from a real MariaDB, and the hostile tasks of a test.
struct Arena {
    db: MariaDb,
    srv: Server,
    healthy: i64,
    /// What the data directory held before the hostile tasks started.
    before: BTreeSet<PathBuf>,
    /// The hostile tasks and the fake sources they point at (kept alive with the arena).
    hostile: Vec<(i64, FakeSource)>,
    passwd_mtime: Option<std::time::SystemTime>,
}

impl Arena {
    fn start() -> Arena {
        let db = MariaDb::start(MariaDbOpts::default());
        let srv = Server::start(
            fast_server_opts()
                .env("BINLOG_SERVER_REPLICATION_MAX_EVENT_BYTES", MAX_EVENT_BYTES.to_string())
                .env("BINLOG_SERVER_REPLICATION_CONNECT_TIMEOUT_MS", "2000"),
        );
        db.sql("CREATE TABLE heartbeat (id INT AUTO_INCREMENT PRIMARY KEY, v INT)");
        let healthy = start_copy_task(&srv, &db, "healthy");
        wait_running(&srv, healthy);
        let before = walk(&srv.data_dir());
        let passwd_mtime = std::fs::metadata("/etc/passwd").and_then(|m| m.modified()).ok();
        Arena { db, srv, healthy, before, hostile: Vec::new(), passwd_mtime }
    }

    /// Starts a task (FILE_POS `FILE`:4) against a fake source running `script`; returns its id.
    fn hostile(&mut self, key: &str, script: impl Fn(&mut Session) -> io::Result<()> + Send + Sync + 'static) -> i64 {
        let fake = FakeSource::start(script);
        let id =
            create_task(&self.srv, key, source_via(fake.port()), json!({"mode": "FILE_POS", "file": FILE, "pos": 4}));
        start_task(&self.srv, id);
        self.hostile.push((id, fake));
        id
    }

    /// Waits until task `id` is FAILED or RETRY_BACKOFF with a `last_error` whose message
    /// contains `names` (the problem), and checks its code; returns that error.
    fn refused(&self, id: i64, names: &str, codes: &[TaskErrorCode]) -> TaskError {
        let e = poll_until(WAIT, &format!("task {id} to be FAILED or RETRY_BACKOFF naming {names:?}"), || {
            let t = self.srv.task(id);
            let settled = matches!(t.state, TaskState::Failed | TaskState::RetryBackoff);
            t.last_error.filter(|e| settled && e.message.contains(names))
        });
        assert!(codes.contains(&e.code), "task {id}: code {} is not one of {codes:?}: {e:?}", e.code);
        e
    }

    /// The checks every hostile case ends with.
    fn aftermath(&self, allowed_files: &[&str]) {
        let pid = self.srv.pid();
        assert!(crate::common::pid_exists(pid), "binlog-server died\n{}", self.srv.diagnostics());
        for path in [self.srv.log_path(), self.srv.console_path()] {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(!text.contains("panicked"), "a panic in {}:\n{}", path.display(), self.srv.diagnostics());
        }

        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
        let kib = |field: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        };
        let (rss, hwm) = (kib("VmRSS:"), kib("VmHWM:"));
        eprintln!("binlog-server memory: VmRSS {rss} KiB, VmHWM {hwm} KiB");
        assert!(hwm < MAX_HWM_KIB, "memory peak {hwm} KiB exceeds {MAX_HWM_KIB} KiB (VmRSS now {rss} KiB)");

        // Nothing new in the data directory but the hostile tasks' directories, and in those
        // only files of the names the test allows (never a name the source chose and we refused).
        let data_dir = self.srv.data_dir();
        let task_dirs: Vec<PathBuf> = self.hostile.iter().map(|(id, _)| data_dir.join(id.to_string())).collect();
        let healthy_dir = data_dir.join(self.healthy.to_string());
        for path in walk(&data_dir).difference(&self.before) {
            if path.starts_with(&healthy_dir) || is_metadata(&data_dir, path) {
                continue;
            }
            let inside = task_dirs.iter().any(|d| path.starts_with(d));
            assert!(inside, "{} was written outside the task directories", path.display());
            if path.is_file() {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                assert!(
                    allowed_files.contains(&name),
                    "unexpected file {} in a hostile task's directory",
                    path.display()
                );
            }
        }
        let passwd_mtime = std::fs::metadata("/etc/passwd").and_then(|m| m.modified()).ok();
        assert_eq!(passwd_mtime, self.passwd_mtime, "/etc/passwd was modified");

        // The healthy task still streams: a new transaction reaches its checkpoint.
        let before = api_checkpoint(&self.srv, self.healthy);
        self.db.sql("INSERT INTO heartbeat (v) VALUES (1)");
        wait_checkpoint_moves(&self.srv, self.healthy, before.as_ref());
        assert_eq!(self.srv.task(self.healthy).state, TaskState::Running);
    }
}

/// The metadata store's own files (the SQLite database and its journal) at the top level.
fn is_metadata(data_dir: &Path, path: &Path) -> bool {
    path.parent() == Some(data_dir)
        && path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(".db") || n.contains(".sqlite"))
}

/// A MariaDB source as far as the dump request; then `lies`, then it waits for the client to go.
fn source(
    lies: impl Fn(&mut Session) -> io::Result<()> + Send + Sync + 'static,
) -> impl Fn(&mut Session) -> io::Result<()> {
    move |s| {
        s.accept_login(&Greeting::mariadb())?;
        s.serve_until_dump(&SourceFacts::default())?;
        lies(s)?;
        s.stall(HOLD);
        Ok(())
    }
}

/// A MariaDB source that opens the dump honestly (rotate, FDE) and then sends `events` made
/// from the file's position.
fn stream(
    events: impl Fn(&mut Binlog) -> Vec<Vec<u8>> + Send + Sync + 'static,
) -> impl Fn(&mut Session) -> io::Result<()> {
    source(move |s| {
        let (mut binlog, opening) = Binlog::open(FILE);
        let lies = events(&mut binlog);
        for ev in opening.iter().chain(lies.iter()) {
            s.send_event(ev)?;
        }
        Ok(())
    })
}

/// A transaction of its own: a DDL statement outside BEGIN.
fn ddl(binlog: &mut Binlog) -> Vec<u8> {
    binlog.next(events::QUERY, &events::query_body("CREATE TABLE t (a INT)"))
}

const PROTOCOL: &[TaskErrorCode] = &[TaskErrorCode::SourceProtocolError, TaskErrorCode::SourceStreamUnreadable];

#[test]
fn hostile_file_names_are_refused_before_any_path_is_built() {
    let mut arena = Arena::start();
    let names: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", b"../../x".to_vec()),
        ("absolute", b"/etc/passwd".to_vec()),
        ("empty", Vec::new()),
        ("ten-kib", vec![b'a'; 10 << 10]),
        ("nul", b"mysql-bin\0.000001".to_vec()),
        ("newline", b"mysql-bin.000001\nlevel=INFO forged log line".to_vec()),
    ];
    let mut first = Vec::new();
    for (key, name) in names {
        // The dump's first event, the artificial rotate, names the file.
        let id = arena.hostile(key, source(move |s| s.send_event(&events::artificial_rotate(&name, 4))));
        first.push(id);
    }
    // A real ROTATE at the end of a file names the next one.
    let later = arena.hostile(
        "rotate",
        stream(|b| {
            let tx = ddl(b);
            let mut body = 4u64.to_le_bytes().to_vec();
            body.extend_from_slice(b"../../x");
            vec![tx, b.next(events::ROTATE, &body)]
        }),
    );
    for id in first.into_iter().chain([later]) {
        let message = arena.refused(id, "ROTATE", PROTOCOL).message;
        assert!(
            !message.contains('\n') && message.len() < 2000,
            "the message quotes the name escaped and short: {message}"
        );
    }
    // The file before the hostile ROTATE is kept (it was complete up to it); nothing else exists.
    arena.aftermath(&[FILE]);
    assert!(!arena.srv.data_dir().join("x").exists());
}

#[test]
fn event_sizes_that_disagree_with_the_bytes_are_refused() {
    let mut arena = Arena::start();
    let smaller = arena.hostile(
        "smaller",
        stream(|b| {
            let tx = ddl(b);
            vec![events::claiming_size(&tx, 12)]
        }),
    );
    let short = arena.hostile("short", stream(|_| vec![vec![0u8; 12]]));
    let larger = arena.hostile(
        "larger",
        stream(|b| {
            let tx = ddl(b);
            let len = tx.len() as u32;
            vec![events::claiming_size(&tx, len + 100)]
        }),
    );
    let four_gib = arena.hostile(
        "four-gib",
        stream(|b| {
            let tx = ddl(b);
            vec![events::claiming_size(&tx, u32::MAX)]
        }),
    );
    arena.refused(smaller, "event size field says 12 bytes", PROTOCOL);
    arena.refused(short, "event too short: 12 bytes", PROTOCOL);
    arena.refused(larger, "bytes but", PROTOCOL);
    arena.refused(four_gib, "event size field says 4294967295 bytes", PROTOCOL);
    arena.aftermath(&[FILE]);
}

/// The first 16 MiB - 1 chunk of an event packet whose header declares `size` bytes.
fn first_chunk(size: u32) -> Vec<u8> {
    let mut chunk = vec![0u8; 0xFF_FFFF];
    chunk[1 + 9..1 + 13].copy_from_slice(&size.to_le_bytes());
    chunk
}

#[test]
fn packet_chains_beyond_max_event_bytes_are_refused() {
    let mut arena = Arena::start();
    // Declares 4 GiB in its first chunk: refused there, before more is read.
    let declared = arena.hostile(
        "declared",
        source(|s| {
            let (_, opening) = Binlog::open(FILE);
            for ev in &opening {
                s.send_event(ev)?;
            }
            s.write_frame(0xFF_FFFF, &first_chunk(u32::MAX))
        }),
    );
    // Declares 20 MiB (within the limit), then never ends: 16 MiB chunks until refused.
    let endless = arena.hostile(
        "endless",
        source(|s| {
            let (_, opening) = Binlog::open(FILE);
            for ev in &opening {
                s.send_event(ev)?;
            }
            s.write_frame(0xFF_FFFF, &first_chunk(20 << 20))?;
            let chunk = vec![0u8; 0xFF_FFFF];
            for _ in 0..8 {
                // A write error means the client hung up, as it should.
                if s.write_frame(0xFF_FFFF, &chunk).is_err() {
                    break;
                }
            }
            Ok(())
        }),
    );
    arena.refused(declared, "declares 4294967295 bytes", PROTOCOL);
    let e = arena.refused(endless, "packet chain longer than the limit", PROTOCOL);
    assert!(e.message.contains("replication.max_event_bytes"), "{e:?}");
    arena.aftermath(&[FILE]);
}

/// A bad checksum never reaches disk, end to end: the source sends a good transaction, then
/// one with a bit flipped in its SQL text (its CRC32 no longer matches, as after a bad NIC, bad
/// memory or a rotten sector in the source's file). The task retries with CHECKSUM_MISMATCH
/// naming both CRCs and counts each refusal; the copy holds the good transaction, checkpointed
/// (everything before the refused event is written before the attempt ends), and not one byte
/// of the flipped one.
#[test]
fn an_event_whose_checksum_does_not_match_never_reaches_disk() {
    let mut arena = Arena::start();
    let good_end = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let end = good_end.clone();
    let id = arena.hostile(
        "flipped",
        stream(move |b| {
            let good = ddl(b);
            end.store(b.pos, std::sync::atomic::Ordering::SeqCst);
            let mut bad = b.next(events::QUERY, &events::query_body("CREATE TABLE flipped (a INT)"));
            let at = bad.len() - 4 - 3; // inside the SQL text, before the CRC
            bad[at] ^= 0x01;
            vec![good, bad]
        }),
    );
    let e = arena.refused(id, "CRC32 mismatch: stored", &[TaskErrorCode::ChecksumMismatch]);
    assert!(e.message.contains("computed"), "{e:?}");
    assert!(arena.srv.replication(id).crc_errors >= 1, "the refusal is counted");
    // The good transaction is durable: the checkpoint is at its end.
    let good_end = u64::from(good_end.load(std::sync::atomic::Ordering::SeqCst));
    let cp = poll_until(WAIT, "the good transaction's checkpoint", || {
        api_checkpoint(&arena.srv, id).filter(|(_, pos)| *pos == good_end)
    });
    assert_eq!(cp.0, FILE);
    let copy: Vec<PathBuf> = walk(&arena.srv.data_dir().join(id.to_string()))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == FILE))
        .collect();
    assert_eq!(copy.len(), 1, "one copy of {FILE}: {copy:?}");
    let bytes = std::fs::read(&copy[0]).expect("read the copy");
    assert_eq!(bytes.len() as u64, good_end, "the copy ends with the good transaction");
    assert!(bytes.windows(b"CREATE TABLE t (a INT)".len()).any(|w| w == b"CREATE TABLE t (a INT)"), "the good one");
    assert!(!bytes.windows(b"TABLE flipped".len()).any(|w| w == b"TABLE flipped"), "the flipped event reached disk");
    arena.aftermath(&[FILE]);
}

#[test]
fn log_positions_that_lie_are_refused() {
    let mut arena = Arena::start();
    let backwards = arena.hostile(
        "backwards",
        stream(|b| {
            let tx = ddl(b);
            let again = b.at(b.pos - 10, events::QUERY, &events::query_body("DROP TABLE t"));
            vec![tx, again]
        }),
    );
    let ahead = arena.hostile(
        "ahead",
        stream(|b| {
            let tx = ddl(b);
            let far = b.at(b.pos + 1000, events::QUERY, &events::query_body("DROP TABLE t"));
            vec![tx, far]
        }),
    );
    let inside_itself = arena.hostile(
        "inside-itself",
        stream(|_| vec![events::event(events::QUERY, 10, 0, &events::query_body("DROP TABLE t"))]),
    );
    // Asked for the file from position 4, the source sends the FDE as for a start further on
    // and then events from 5000: the beginning of the file would be missing from the copy.
    let elsewhere = arena.hostile(
        "elsewhere",
        source(|s| {
            s.send_event(&events::artificial_rotate(FILE.as_bytes(), 4))?;
            s.send_event(&events::fde(4, 19, 0))?;
            let b = Binlog { pos: 5000 };
            s.send_event(&b.at(5000, events::QUERY, &events::query_body("CREATE TABLE t (a INT)")))
        }),
    );
    arena.refused(backwards, "re-sent an event at", PROTOCOL);
    arena.refused(ahead, "position gap", PROTOCOL);
    arena.refused(inside_itself, "event ends at 10 but is", PROTOCOL);
    arena.refused(elsewhere, "from position 4", PROTOCOL);
    arena.aftermath(&[FILE]);
}

#[test]
fn a_format_description_of_another_version_or_header_length_is_refused() {
    let mut arena = Arena::start();
    let fde_end = 4 + events::fde_len();
    let cases = [
        ("version-3", 3u16, 19u8, "binlog version 3"),
        ("version-99", 99, 19, "binlog version 99"),
        ("header-13", 4, 13, "header length 13"),
        ("header-255", 4, 255, "header length 255"),
    ];
    let mut ids = Vec::new();
    for (key, version, header_len, says) in cases {
        let id = arena.hostile(
            key,
            source(move |s| {
                s.send_event(&events::artificial_rotate(FILE.as_bytes(), 4))?;
                s.send_event(&events::fde(version, header_len, fde_end))
            }),
        );
        ids.push((id, says));
    }
    for (id, says) in ids {
        let e = arena.refused(id, says, PROTOCOL);
        assert!(e.message.contains("FORMAT_DESCRIPTION"), "{e:?}");
    }
    arena.aftermath(&[]);
}

#[test]
fn gtid_events_whose_counts_overflow_are_refused() {
    let mut arena = Arena::start();
    // GTID_LIST: 2^28 - 1 GTIDs announced in a 4-byte body.
    let list =
        arena.hostile("gtid-list", stream(|b| vec![b.next(events::MARIA_GTID_LIST, &0x0FFF_FFFFu32.to_le_bytes())]));
    // PREVIOUS_GTIDS: 2^56 - 1 server uuids; then one uuid with 2^64 - 1 intervals.
    let sids = arena.hostile(
        "previous-sids",
        stream(|b| vec![b.next(events::PREVIOUS_GTIDS, &0x00FF_FFFF_FFFF_FFFFu64.to_le_bytes())]),
    );
    let intervals = arena.hostile(
        "previous-intervals",
        stream(|b| {
            let mut body = 1u64.to_le_bytes().to_vec();
            body.extend_from_slice(&[0x11; 16]);
            body.extend_from_slice(&u64::MAX.to_le_bytes());
            vec![b.next(events::PREVIOUS_GTIDS, &body)]
        }),
    );
    // A MariaDB GTID event cut short (5 bytes of its 13).
    let gtid = arena.hostile("gtid", stream(|b| vec![b.next(events::MARIA_GTID, &[1, 0, 0, 0, 0])]));
    arena.refused(list, "GTIDs do not fit", PROTOCOL);
    arena.refused(sids, "truncated GTID set", PROTOCOL);
    arena.refused(intervals, "truncated GTID set (intervals)", PROTOCOL);
    arena.refused(gtid, "malformed MARIADB_GTID event", PROTOCOL);
    arena.aftermath(&[FILE]);
}

#[test]
fn handshake_abuse_is_refused() {
    let mut arena = Arena::start();
    let plugin = arena.hostile("plugin", |s: &mut Session| {
        s.greet(&Greeting { auth_plugin: "dialog_evil".into(), ..Greeting::mariadb() })?;
        s.stall(HOLD);
        Ok(())
    });
    let endless = arena.hostile("auth-switch", |s: &mut Session| {
        let g = Greeting::mariadb();
        s.greet(&g)?;
        s.read_handshake_response()?;
        loop {
            let mut switch = vec![0xFE];
            switch.extend_from_slice(b"mysql_native_password\0");
            switch.extend_from_slice(&g.nonce);
            switch.push(0);
            s.write_packet(&switch)?;
            s.read_packet()?;
        }
    });
    let old = arena.hostile("no-protocol-41", |s: &mut Session| {
        s.greet(&Greeting { capabilities: caps::MYSQL8_PLAIN & !caps::PROTOCOL_41, ..Greeting::mariadb() })?;
        s.stall(HOLD);
        Ok(())
    });
    let huge = arena.hostile("huge-greeting", |s: &mut Session| {
        let mut greeting = vec![10u8];
        greeting.resize(0xFF_FFFF, b'A');
        // A write error means the client hung up, as it should.
        let _ = s.write_frame(0xFF_FFFF, &greeting);
        s.stall(HOLD);
        Ok(())
    });
    arena.refused(
        plugin,
        "authentication plugin \"dialog_evil\" is not supported",
        &[TaskErrorCode::SourceProtocolError],
    );
    arena.refused(endless, "authentication did not finish after 8 exchanges", PROTOCOL);
    arena.refused(old, "predates protocol 4.1", &[TaskErrorCode::SourceProtocolError]);
    arena.refused(huge, "exceeds the limit of 1048576 bytes (for a greeting", PROTOCOL);
    // Nothing was sent to the server with the unknown plugin: no scramble of the password.
    let plugin_fake = &arena.hostile.iter().find(|(id, _)| *id == plugin).expect("the plugin fake").1;
    assert!(plugin_fake.sessions().iter().all(|s| s.received.is_empty()), "{:?}", plugin_fake.sessions());
    arena.aftermath(&[]);
}

#[test]
fn a_source_that_accepts_every_dump_and_then_says_nothing_is_failing_not_streaming() {
    let mut arena = Arena::start();
    // The rotate and the FDE a source opens each dump with, then no event and no heartbeat, on
    // every connection: a source whose dump thread hangs (seen with MariaDB after a crash).
    let id = arena.hostile("silent", stream(|_| Vec::new()));
    // Each dump passes the grace for a refusal (RUNNING) and then times out. The attempts add
    // up in one retry period, its error kept, instead of starting over at every accepted dump:
    // the task is seen failing (and becomes stuck), not streaming a second at a time.
    let first = arena.refused(id, "no event or heartbeat for", &[TaskErrorCode::SourceUnreachable]);
    // One that sends nothing at all after the dump request, not even the rotate: a blocked dump
    // thread (MariaDB's hung semi-sync one holds every later dump), said as such.
    let blocked = arena.hostile("unanswered", source(|_| Ok(())));
    let later = poll_until(WAIT, "three failed attempts in one retry period", || {
        let e = arena.srv.task(id).last_error?;
        (e.attempts >= 3).then_some(e)
    });
    assert_eq!(later.since, first.since, "one retry period: {first:?} then {later:?}");
    assert_eq!(later.code, TaskErrorCode::SourceUnreachable, "{later:?}");
    arena.refused(blocked, "sent nothing for", &[TaskErrorCode::SourceUnreachable]);
    let e = poll_until(WAIT, "the unanswered dump's attempts to add up", || {
        let e = arena.srv.task(blocked).last_error?;
        (e.attempts >= 2).then_some(e)
    });
    assert!(e.message.contains("not even the rotate") && e.message.contains("semi-sync"), "{e:?}");
    arena.aftermath(&[FILE]);
}

#[test]
fn a_source_stalling_mid_packet_is_given_up() {
    let mut arena = Arena::start();
    // Mid-event: a frame announcing 100 bytes, 10 sent, then nothing (heartbeat rule).
    let event = arena.hostile(
        "mid-event",
        source(|s| {
            let (_, opening) = Binlog::open(FILE);
            for ev in &opening {
                s.send_event(ev)?;
            }
            s.write_frame(100, &[0u8; 10])
        }),
    );
    // Mid-reply: the answer to the first query stops after its first bytes (command timeout).
    let reply = arena.hostile("mid-reply", |s: &mut Session| {
        s.accept_login(&Greeting::mariadb())?;
        s.read_packet()?;
        s.write_frame(200, &[1, 2, 3])?;
        s.stall(HOLD);
        Ok(())
    });
    // Mid-greeting: the connect timeout.
    let greeting = arena.hostile("mid-greeting", |s: &mut Session| {
        s.write_frame(80, &[10, b'5'])?;
        s.stall(HOLD);
        Ok(())
    });
    arena.refused(event, "no event or heartbeat for", &[TaskErrorCode::SourceUnreachable]);
    arena.refused(reply, "for the source to answer", &[TaskErrorCode::SourceUnreachable]);
    arena.refused(greeting, "timed out connecting", &[TaskErrorCode::SourceUnreachable]);
    // The mid-event task created its file (the FDE came before the stall).
    arena.aftermath(&[FILE]);
}
