//! Tracing: spans reach an OTLP/HTTP endpoint (a minimal receiver inside the test), cover the
//! documented operations, and never carry the source password.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::poll_until;
use crate::common::server::{Server, ServerOpts};

/// Accepts OTLP/HTTP export requests and keeps their bodies (protobuf: span names and
/// attribute values appear in it as plain bytes).
fn otlp_receiver() -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let sink = bodies.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut writer = conn;
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    sink.lock().expect("lock").push(body);
                    let _ = writer.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    (port, bodies)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn spans_reach_an_otlp_endpoint_without_secrets() {
    let (port, bodies) = otlp_receiver();
    let password = "Trace-Secret-Pw-91x";
    let db = MariaDb::start(MariaDbOpts::default());
    db.sql(&format!("CREATE USER 'tracer'@'%' IDENTIFIED BY '{password}'; GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'tracer'@'%'"));
    let srv = Server::start(
        ServerOpts::default()
            .env("BINLOG_SERVER_TRACING_ENABLED", "true")
            .env("BINLOG_SERVER_TRACING_ENDPOINT", format!("http://127.0.0.1:{port}/v1/traces"))
            .env("BINLOG_SERVER_TRACING_EXPORT_INTERVAL_MS", "200")
            .env("BINLOG_SERVER_WRITER_CHECKPOINT_INTERVAL_MS", "0"),
    );
    let first = db.binlog_files()[0].0.clone();
    let id = srv
        .create(&json!({"name": "traced", "cluster_key": "traced",
                "source": {"host": "127.0.0.1", "port": db.port(), "user": "tracer", "password": password, "flavor": "mariadb"},
                "start": {"mode": "FILE_POS", "file": first, "pos": 4}}))
        .id;
    srv.start_task(id);
    db.sql("CREATE TABLE t (a INT) ENGINE=InnoDB; INSERT INTO t VALUES (1)");
    db.flush_binary_logs();
    poll_until(Duration::from_secs(60), "the rotation to be copied", || {
        srv.files(id).iter().any(|x| x.state == binlog_server::meta::FileState::Sealed).then_some(())
    });
    srv.stop_task(id);

    let wanted: [&[u8]; 6] =
        [b"HTTP POST /api/tasks", b"task.start", b"source.connect", b"file.seal", b"checkpoint.persist", b"task.stop"];
    poll_until(Duration::from_secs(30), "every span name at the OTLP endpoint", || {
        let all: Vec<u8> = bodies.lock().expect("lock").concat();
        wanted.iter().all(|w| contains(&all, w)).then_some(())
    });
    let all: Vec<u8> = bodies.lock().expect("lock").concat();
    assert!(contains(&all, b"binlog-server"), "service.name in the resource");
    assert!(contains(&all, b"/api/tasks/{id}/start"), "HTTP spans carry the route pattern, not the path");
    assert!(!contains(&all, password.as_bytes()), "the source password reached the trace exporter");
}
