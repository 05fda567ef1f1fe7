//! A task's life cycle against a live source: a stop leaves no dump thread behind on the source,
//! a hundred start/stop cycles leak no connection, thread or file handle and keep the copy
//! exact, start and stop requests leave a keep-alive HTTP connection usable, two tasks on one
//! source register distinct server ids and stream side by side, and a shutdown whose HTTP stop
//! hangs still stops the tasks in order.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use binlog_server::domain::TaskState;
use serde_json::json;

use crate::common::mariadb::{MariaDb, MariaDbOpts, REPL_USER};
use crate::common::replication::{
    assert_copy_matches_source, assert_each_gtid_once, binlog_dump_threads, create_task, fast_server_opts,
    flush_and_catch_up, local_dir, meta_checkpoint, meta_query, start_copy_task, start_task, stop_task, task_events,
    user_sessions, wait_caught_up, wait_running,
};
use crate::common::server::{Server, ServerOpts};
use crate::common::{free_port, poll_until};

/// How long the source may take to drop a dump session after the task stops.
const GONE_WITHIN: Duration = Duration::from_secs(10);

/// Threads of a process (`/proc/<pid>/task`).
fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or_else(|e| panic!("threads of {pid}: {e}"))
}

/// Open file descriptors of a process (`/proc/<pid>/fd`).
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or_else(|e| panic!("fds of {pid}: {e}"))
}

/// Polls until the source has no dump thread and no session of the replication user.
fn wait_no_repl_sessions(db: &MariaDb, after: &str) {
    poll_until(GONE_WITHIN, &format!("the source to have no {REPL_USER} session {after}"), || {
        (binlog_dump_threads(db).is_empty() && user_sessions(db, REPL_USER) == 0).then_some(())
    });
}

/// A server whose replicas ask for a heartbeat once a minute. An idle dump thread on the source
/// only notices that its replica's socket closed when it next writes, so without the server's
/// KILL on stop it would linger for up to a minute (observed here: still there 10 s after a
/// kill -9 of the server), far beyond [`GONE_WITHIN`].
fn slow_heartbeat_server() -> Server {
    Server::start(
        ServerOpts::default()
            .env("BINLOG_SERVER_REPLICATION_HEARTBEAT_PERIOD_MS", "60000")
            .env("BINLOG_SERVER_REPLICATION_RETRY_INITIAL_MS", "100")
            .env("BINLOG_SERVER_REPLICATION_RETRY_MAX_MS", "1000"),
    )
}

#[test]
fn stop_ends_the_dump_thread_on_the_source() {
    let db = MariaDb::start(MariaDbOpts::default());
    let srv = slow_heartbeat_server();
    let id = start_copy_task(&srv, &db, "stopkill");
    wait_running(&srv, id);
    let dumps = poll_until(GONE_WITHIN, "the task's dump thread on the source", || {
        let d = binlog_dump_threads(&db);
        (!d.is_empty()).then_some(d)
    });
    assert_eq!(dumps.len(), 1, "one dump thread per task: {dumps:?}");
    assert_eq!(dumps[0].1, REPL_USER);

    stop_task(&srv, id);
    assert_eq!(srv.task(id).state, TaskState::Stopped);
    wait_no_repl_sessions(&db, "after the stop");
}

#[test]
fn a_hundred_start_stop_cycles_leak_nothing() {
    const CYCLES: usize = 100;
    // Threads and fds that may legitimately differ between two idle moments of the process:
    // tokio's blocking pool keeps up to a few threads alive for 10 s after metadata calls, and a
    // thread may be just starting or ending at either count. A leak of one thread, one socket or
    // one file per cycle would show as 100 or more; 8 is far below that and above the noise.
    const THREAD_SLACK: usize = 8;
    const FD_SLACK: usize = 8;
    let started = Instant::now();
    let db = MariaDb::start(MariaDbOpts::default().max_binlog_size("64K"));
    db.sql("CREATE TABLE cycles (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)");
    // A one-minute heartbeat, as in the test above: a dump session the server did not end
    // itself would still be there at the check.
    let srv = slow_heartbeat_server();
    let pid = srv.pid();
    let id = start_copy_task(&srv, &db, "cycles");
    wait_running(&srv, id);
    wait_caught_up(&srv, &db, id);
    stop_task(&srv, id);
    wait_no_repl_sessions(&db, "after the warm-up cycle");
    let (threads_before, fds_before) = (thread_count(pid), fd_count(pid));

    for cycle in 1..=CYCLES {
        start_task(&srv, id);
        // Every fifth cycle writes and streams it before it stops (a resumed task becomes
        // RUNNING with the first event or heartbeat it receives); the others stop wherever the
        // start has got to (connecting, reconciling, dumping).
        if cycle % 5 == 0 {
            db.sql(&format!("INSERT INTO cycles (v) SELECT REPEAT('c', 500) FROM seq_1_to_{}", cycle % 40 + 1));
            wait_running(&srv, id);
        }
        stop_task(&srv, id);
        let state = srv.task(id).state;
        assert_eq!(state, TaskState::Stopped, "cycle {cycle}: a stop that returned leaves the task STOPPED");
    }
    let cycles_took = started.elapsed();
    wait_no_repl_sessions(&db, &format!("after {CYCLES} cycles"));
    let (threads_after, fds_after) = poll_until(Duration::from_secs(20), "threads and fds back to their level", || {
        let (t, f) = (thread_count(pid), fd_count(pid));
        (t <= threads_before + THREAD_SLACK && f <= fds_before + FD_SLACK).then_some((t, f))
    });
    eprintln!(
        "{CYCLES} cycles in {cycles_took:.1?}: threads {threads_before} -> {threads_after}, \
         fds {fds_before} -> {fds_after}"
    );
    assert!(
        !task_events(&srv, id).iter().any(|e| e.1 == "TASK_ERROR"),
        "no cycle may fail: {:?}",
        task_events(&srv, id).iter().filter(|e| e.1 == "TASK_ERROR").collect::<Vec<_>>()
    );

    // The copy is still exact after all those interruptions.
    start_task(&srv, id);
    flush_and_catch_up(&srv, &db, id);
    assert_eq!(srv.task(id).state, TaskState::Running);
    assert_copy_matches_source(&srv, &db, id);
    assert_each_gtid_once(&srv, &db, id);
}

#[test]
fn two_tasks_on_one_source_get_distinct_server_ids_and_both_stream() {
    let db = MariaDb::start(MariaDbOpts::default().max_binlog_size("64K"));
    let srv = Server::start(fast_server_opts());
    let a = start_copy_task(&srv, &db, "twin-a");
    let b = start_copy_task(&srv, &db, "twin-b");
    wait_running(&srv, a);
    wait_running(&srv, b);
    let id_a = u64::from(srv.task(a).source.effective_server_id);
    let id_b = u64::from(srv.task(b).source.effective_server_id);
    assert_ne!(id_a, id_b, "two tasks must not share a server_id");
    let hosts = poll_until(Duration::from_secs(10), "both replicas in SHOW SLAVE HOSTS", || {
        let ids: Vec<u64> = db.sql("SHOW SLAVE HOSTS").iter().filter_map(|r| r[0].parse().ok()).collect();
        (ids.contains(&id_a) && ids.contains(&id_b)).then_some(ids)
    });
    assert_eq!(binlog_dump_threads(&db).len(), 2, "two dump threads; SHOW SLAVE HOSTS {hosts:?}");

    db.sql("CREATE TABLE twins (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)");
    for i in 0..30 {
        db.sql(&format!("INSERT INTO twins (v) SELECT REPEAT('t', 1000) FROM seq_1_to_{}", i % 10 + 1));
    }
    db.flush_binary_logs();
    for id in [a, b] {
        wait_caught_up(&srv, &db, id);
        srv.wait_for_state(id, TaskState::Running);
        // Had the source kicked one of them (ERR 4052, same server_id), it would have retried.
        let retries: Vec<_> = task_events(&srv, id).into_iter().filter(|e| e.1 == "TASK_RETRY_BACKOFF").collect();
        assert!(retries.is_empty(), "task {id} was interrupted: {retries:?}");
        let repl = srv.replication(id);
        assert_eq!(repl.reconnects, 0, "task {id}: {repl:?}");
        let copy = assert_copy_matches_source(&srv, &db, id);
        assert!(copy.sealed.len() >= 2, "task {id} must have followed rotations: {copy:?}");
        assert_each_gtid_once(&srv, &db, id);
    }
    assert!(!srv.log_text().contains("source error 4052"), "no task was kicked for a duplicate server_id");
}

/// Reads one HTTP/1.1 response from `conn`: `(head, body)`, the head's header names lower-case;
/// `None` when the server closed the connection instead of answering.
fn read_response(conn: &mut TcpStream) -> Option<(String, String)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("reading a response: {e}"),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("content-length"))
        .unwrap_or(0);
    while data.len() < head_end + length {
        match conn.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading a response body: {e}"),
        }
    }
    Some((head, String::from_utf8_lossy(&data[head_end..head_end + length]).into_owned()))
}

#[test]
fn start_and_stop_leave_a_keep_alive_connection_usable() {
    // Nothing listens on the source port: start and stop still answer (STARTING, RETRY_BACKOFF,
    // STOPPED), which is all this test needs.
    let srv = Server::start(fast_server_opts());
    let source =
        json!({"host": "127.0.0.1", "port": free_port(), "user": REPL_USER, "password": "x", "flavor": "mariadb"});
    let id = create_task(&srv, "keepalive", source, json!({"mode": "LATEST"}));
    let mut conn = TcpStream::connect(("127.0.0.1", srv.port())).expect("connect to the API");
    conn.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    conn.set_nodelay(true).expect("nodelay");
    for action in ["start", "stop"] {
        // The body `{}` follows the head 100 ms later: any client whose body leaves in a second
        // TCP segment (ureq writes head and body separately) and meets a busy machine.
        let head = format!(
            "POST /api/tasks/{id}/{action} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
             content-length: 2\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).expect("write the request head");
        std::thread::sleep(Duration::from_millis(100));
        // The server may already have answered and closed: the write error is then not the point.
        let _ = conn.write_all(b"{}");
        let (head, body) = read_response(&mut conn).unwrap_or_else(|| panic!("POST {action}: no response"));
        assert!(head.starts_with("http/1.1 200"), "POST {action}: {head}{body}");
        assert!(!head.contains("connection: close"), "POST {action}: this test wants a kept-alive connection: {head}");
        // HTTP/1.1 without `connection: close`: the connection must serve the next request.
        conn.write_all(format!("GET /api/tasks/{id} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").as_bytes())
            .unwrap_or_else(|e| panic!("after POST {action}, the server closed a kept-alive connection: {e}"));
        let next = read_response(&mut conn);
        assert!(
            next.is_some(),
            "after POST {action} (answered 200 without `connection: close`), the server closed the connection \
             instead of answering the next request: a keep-alive client fails its next request"
        );
    }
}

/// A hang inside the HTTP server's own stop (its thread blocked when the shutdown begins, by the
/// debug-build hook `BINLOG_TEST_HTTP_STOP_STALL`) does not keep the tasks from stopping in order:
/// SIGTERM still ends with the task stopped, its open file flushed to the checkpoint it saved, and
/// the process exits (cleanly) once the HTTP server's limit has passed, saying why.
#[test]
fn a_hung_http_stop_does_not_keep_the_tasks_from_stopping_in_order() {
    let db = MariaDb::start(MariaDbOpts::default());
    db.sql("CREATE TABLE hung (id INT PRIMARY KEY, v TEXT)");
    let mut srv = Server::start(fast_server_opts().env("BINLOG_TEST_HTTP_STOP_STALL", "1"));
    let id = start_copy_task(&srv, &db, "hung-http");
    wait_running(&srv, id);
    for i in 0..20 {
        db.sql(&format!("INSERT INTO hung VALUES ({i}, REPEAT('h', 500))"));
    }
    let source = wait_caught_up(&srv, &db, id);

    let started = Instant::now();
    let exit = srv.stop();
    let took = started.elapsed();
    assert!(exit.success(), "SIGTERM with a hung HTTP stop must still exit cleanly: {exit}\n{}", srv.diagnostics());

    let log = srv.log_text();
    let line_of = |what: &str| {
        log.lines().position(|l| l.contains(what)).unwrap_or_else(|| panic!("the log says {what:?}:\n{log}"))
    };
    let hung = line_of("the HTTP server did not stop in time");
    let stopped = line_of("all tasks stopped");
    let bye = line_of("bye");
    assert!(hung < stopped && stopped < bye, "in that order (lines {hung}, {stopped}, {bye}):\n{log}");
    assert!(took >= Duration::from_secs(9), "the HTTP server was given its limit first (took {took:?})");

    // What the task left is what an orderly stop leaves: STOPPED, the checkpoint at the source's
    // end, the open file flushed up to it.
    let data = srv.data_dir();
    let state = meta_query(&data, &format!("SELECT state FROM tasks WHERE id = {id}"));
    assert_eq!(state, vec![vec!["STOPPED".to_string()]], "the task's state after the stop");
    let cp = meta_checkpoint(&data, id).expect("a checkpoint was saved");
    assert_eq!((cp.file_name.as_str(), cp.pos), (source.file.as_str(), source.position), "checkpoint: {cp:?}");
    let open = local_dir(&srv, id, &db).join(&source.file);
    let len = std::fs::metadata(&open).unwrap_or_else(|e| panic!("{}: {e}", open.display())).len();
    assert_eq!(len, source.position, "{} flushed up to the checkpoint", open.display());
}
