//! `/metrics`: every family is there from the start, values move when a task streams, and the
//! endpoint is guarded like the API when configured.

use std::time::Duration;

use serde_json::json;

use crate::common::mariadb::{MariaDb, MariaDbOpts, REPL_PASSWORD, REPL_USER};
use crate::common::server::{Server, ServerOpts};
use crate::common::{metric_sample as sample, poll_until};

const FAMILIES: [&str; 25] = [
    "binlog_server_tasks",
    "binlog_server_events_total",
    "binlog_server_bytes_written_total",
    "binlog_server_replication_lag_seconds",
    "binlog_server_checkpoint_age_seconds",
    "binlog_server_writer_busy_seconds",
    "binlog_server_fsync_duration_seconds",
    "binlog_server_reconnects_total",
    "binlog_server_crc_errors_total",
    "binlog_server_upload_backlog_files",
    "binlog_server_upload_failures_total",
    "binlog_server_http_requests_total",
    "binlog_server_http_requests_duration_seconds",
    "binlog_server_build_info",
    "binlog_server_source_switchovers_total",
    "binlog_server_upload_retries_total",
    "binlog_server_cluster_nodes_online",
    "binlog_server_recovery_window_oldest_timestamp_seconds",
    "binlog_server_recovery_breaks",
    "binlog_server_durable_seconds",
    "binlog_server_relay_send_delay_seconds",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_start_time_seconds",
];

fn scrape(srv: &Server) -> String {
    let r = srv.get_raw("/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

#[test]
fn every_family_is_present_and_values_move_while_streaming() {
    let srv = Server::start(ServerOpts::default());
    // Before any task exists (one request first, so the HTTP families have a sample).
    let _ = srv.get("/api/tasks");
    let text = scrape(&srv);
    for family in FAMILIES {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} missing before any task:\n{text}");
    }
    assert_eq!(sample(&text, "binlog_server_tasks{state=\"RUNNING\"}"), Some(0.0));
    assert_eq!(sample(&text, "binlog_server_cluster_nodes_online"), Some(1.0), "standalone: this node");
    let build = text.lines().find(|l| l.starts_with("binlog_server_build_info{")).expect("a build_info sample");
    assert!(build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))), "{build}");
    assert!(build.contains("commit=\"") && !build.contains("commit=\"\""), "a commit label: {build}");
    assert!(sample(&text, "process_resident_memory_bytes").is_some_and(|b| b > 1e6), "process metrics: {text}");
    assert!(sample(&text, "process_open_fds").is_some_and(|n| n > 0.0), "{text}");
    // Route patterns, not paths, label the HTTP families (bounded cardinality).
    // (A scrape may be served from a render up to a second old: polled.)
    let _ = srv.get("/api/tasks/424242");
    poll_until(Duration::from_secs(10), "HTTP metrics labelled with the route pattern", || {
        scrape(&srv).contains("endpoint=\"/api/tasks/{id}\"").then_some(())
    });

    let db = MariaDb::start(MariaDbOpts::default());
    let first = db.binlog_files()[0].0.clone();
    let (status, task) = srv.post(
        "/api/tasks",
        &json!({"name": "m", "cluster_key": "m",
                "source": {"host": "127.0.0.1", "port": db.port(), "user": REPL_USER, "password": REPL_PASSWORD, "flavor": "mariadb"},
                "start": {"mode": "FILE_POS", "file": first, "pos": 4}}),
    );
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_i64().expect("id");
    assert_eq!(srv.post(&format!("/api/tasks/{id}/start"), &json!({})).0, 200);
    db.sql("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(100)) ENGINE=InnoDB");
    db.sql("INSERT INTO t SELECT seq, REPEAT('m', 100) FROM seq_1_to_1000");

    let label = format!("{{task=\"{id}\"}}");
    let text = poll_until(Duration::from_secs(60), "event and byte counters to move", || {
        let text = scrape(&srv);
        let events = sample(&text, &format!("binlog_server_events_total{label}"))?;
        let bytes = sample(&text, &format!("binlog_server_bytes_written_total{label}"))?;
        (events > 0.0 && bytes > 1000.0).then_some(text)
    });
    assert_eq!(sample(&text, "binlog_server_tasks{state=\"RUNNING\"}"), Some(1.0), "{text}");
    let fsyncs = sample(&text, "binlog_server_fsync_duration_seconds_count").expect("fsync histogram");
    assert!(fsyncs > 0.0, "fsyncs are timed: {text}");
    // Every batch made from the stream is timed from its first event's arrival to its fsync.
    let durable = sample(&text, "binlog_server_durable_seconds_count").expect("durable histogram");
    assert!(
        durable > 0.0 && durable <= fsyncs,
        "received -> durable is timed per fsynced batch: {durable} of {fsyncs}"
    );
    poll_until(Duration::from_secs(30), "the lag gauge", || {
        sample(&scrape(&srv), &format!("binlog_server_replication_lag_seconds{label}"))
    });
    // The recovery-window families are recomputed at most every 30 s (from a scrape).
    let text = poll_until(Duration::from_secs(90), "the task's recovery window gauges", || {
        let text = scrape(&srv);
        sample(&text, &format!("binlog_server_recovery_window_oldest_timestamp_seconds{label}"))?;
        Some(text)
    });
    let oldest =
        sample(&text, &format!("binlog_server_recovery_window_oldest_timestamp_seconds{label}")).unwrap_or(0.0);
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(oldest > now - 3600.0 && oldest <= now + 5.0, "the oldest event is from this test's source: {oldest}");
    assert_eq!(sample(&text, &format!("binlog_server_recovery_breaks{label}")), Some(0.0), "{text}");
}

#[test]
fn metrics_are_guarded_when_configured() {
    let srv = Server::start(
        ServerOpts::default()
            .env("BINLOG_SERVER_API_AUTH_ENABLED", "true")
            .env("BINLOG_SERVER_API_AUTH_BEARER_TOKEN", "metrics-token-123"),
    );
    let r = srv.get_raw("/metrics");
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.header("www-authenticate").is_some());
    let r = srv.request("GET", "/metrics", &[("Authorization", "Bearer metrics-token-123")], None);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("# TYPE binlog_server_tasks gauge"));

    let open = Server::start(
        ServerOpts::default()
            .env("BINLOG_SERVER_API_AUTH_ENABLED", "true")
            .env("BINLOG_SERVER_API_AUTH_BEARER_TOKEN", "metrics-token-123")
            .env("BINLOG_SERVER_API_AUTH_PROTECT_METRICS", "false"),
    );
    assert_eq!(open.get_raw("/metrics").status, 200, "protect_metrics=false leaves /metrics open");
    assert_eq!(open.get_raw("/api/tasks").status, 401, "while /api stays protected");
}
