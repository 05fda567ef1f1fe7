//! schemathesis over the served OpenAPI document, against a real server: no response is a
//! 5xx, every response matches the document (status, content type, headers, body schema), and
//! requests the document calls invalid are refused.
//!
//! Left out: `positive_data_acceptance`. Some rules cross objects and the schema cannot say
//! them (a GTID set's syntax depends on `source.flavor`), so a "schema-valid" request can be
//! refused with a 400 naming the field; that is the API working, not a failure.
//!
//! The stateful phase also leaves out `negative_data_rejection`: there, schemathesis 4.32 marks
//! bodies "negative" and then overwrites the mutated fields with values drawn from earlier
//! responses, so it reports a valid request as "schema-violating request accepted" with no
//! mutation named (seen twice: PUTs whose every field was valid, once even under `--mode
//! positive`). Negative cases keep that check in their own phases (coverage, fuzzing), where the
//! mutation is what is sent.
//!
//! A request the document calls invalid may also be refused with 413: a body over
//! `http.max_body_bytes` (64 KiB by default, `api::body`) is refused before it is parsed. schemathesis 4.32's default list of
//! rejections leaves 413 out, and once reported a 70 KiB batch with an over-long field as
//! "schema-violating request accepted" although nothing was accepted; `CONFIG` adds it.

use std::process::Command;
use std::time::Duration;

use crate::common::server::{Server, ServerOpts};
use crate::common::{output_with_deadline, require_binary, temp_dir};

/// schemathesis's default statuses for refusing a request the document calls invalid, and 413.
const CONFIG: &str = r#"[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
"#;

/// Runs schemathesis with `extra` arguments for `seconds`; panics with its report on failure.
fn schemathesis(srv: &Server, seconds: u64, exclude: &str, extra: &[&str]) {
    let dir = temp_dir("schemathesis-");
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, CONFIG).expect("write schemathesis.toml");
    let mut cmd = Command::new(require_binary("schemathesis"));
    let max_time = seconds.to_string();
    cmd.arg("--config-file")
        .arg(&config)
        .args(["run", &srv.url("/api/openapi.json")])
        .args(["--checks", "all", "--exclude-checks", exclude])
        .args(["--max-time", &max_time, "--workers", "1", "--generation-database", "none"])
        // Like the UI: requests that change state without a JSON body carry this header.
        .args(["--header", "X-Requested-With: schemathesis"])
        .args(extra)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "");
    let out = output_with_deadline(&mut cmd, Duration::from_secs(seconds + 240), "schemathesis");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis {extra:?} found problems:\n{text}\n{}", srv.diagnostics());
    assert!(text.contains("passed"), "schemathesis {extra:?} did not run any test case:\n{text}");
}

#[test]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let srv = Server::start(
        ServerOpts::default()
            // Tasks it creates and starts point at random hosts: give up on them quickly.
            .env("BINLOG_SERVER_REPLICATION_CONNECT_TIMEOUT_MS", "300")
            .env("BINLOG_SERVER_REPLICATION_RETRY_MAX_MS", "2000"),
    );
    let seconds: u64 = std::env::var("BINLOG_API_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(45);
    schemathesis(
        &srv,
        (seconds * 2 / 3).max(1),
        "positive_data_acceptance",
        &["--phases", "examples,coverage,fuzzing"],
    );
    schemathesis(
        &srv,
        (seconds / 3).max(1),
        "positive_data_acceptance,negative_data_rejection",
        &["--phases", "stateful", "--mode", "positive"],
    );
    assert!(!srv.log_text().contains("panicked"), "the server panicked:\n{}", srv.diagnostics());
}

#[test]
fn swagger_ui_is_served_offline_and_the_document_follows_the_api_auth() {
    let srv = Server::start(
        ServerOpts::default()
            .env("BINLOG_SERVER_API_AUTH_ENABLED", "true")
            .env("BINLOG_SERVER_API_AUTH_BEARER_TOKEN", "doc-token-42-0123456789"),
    );
    let ui = srv.get_raw("/swagger/index.html");
    assert_eq!(ui.status, 200);
    assert!(ui.body.contains("swagger-ui"), "the Swagger UI page: {}", &ui.body[..ui.body.len().min(300)]);
    // Its scripts come from the binary, not from a CDN.
    assert!(!ui.body.contains("https://"), "the page loads nothing from the internet");
    let init = srv.get_raw("/swagger/swagger-initializer.js");
    assert_eq!(init.status, 200);
    assert!(init.body.contains("/swagger/openapi.json"), "{}", init.body);
    assert_eq!(srv.get_raw("/swagger/swagger-ui-bundle.js").status, 200);
    let r = srv.get_raw("/swagger");
    assert!(r.status == 200 || r.status == 302, "/swagger leads to the UI: {}", r.status);

    // The UI's copy is open; /api/openapi.json is an /api route and needs the token.
    let open_copy = srv.get_raw("/swagger/openapi.json");
    assert_eq!(open_copy.status, 200);
    assert_eq!(srv.get_raw("/api/openapi.json").status, 401);
    let doc = srv.request("GET", "/api/openapi.json", &[("Authorization", "Bearer doc-token-42-0123456789")], None);
    assert_eq!(doc.status, 200);
    let a: serde_json::Value = serde_json::from_str(&doc.body).expect("JSON");
    let b: serde_json::Value = serde_json::from_str(&open_copy.body).expect("JSON");
    assert_eq!(a, b, "one document");
    assert_eq!(a["openapi"], "3.1.0");

    // A method a path does not have: 405 with Allow.
    let r = srv.request("PATCH", "/api/tasks", &[("Authorization", "Bearer doc-token-42-0123456789")], None);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST"));
}

#[test]
fn the_rate_limit_answers_429_with_retry_after() {
    let srv = Server::start(
        ServerOpts::default()
            .env("BINLOG_SERVER_API_RATE_LIMIT_ENABLED", "true")
            .env("BINLOG_SERVER_API_RATE_LIMIT_REQUESTS_PER_SECOND", "0.5")
            .env("BINLOG_SERVER_API_RATE_LIMIT_BURST", "3"),
    );
    let statuses: Vec<u16> = (0..5).map(|_| srv.get_raw("/api/tasks").status).collect();
    assert_eq!(&statuses[..3], &[200, 200, 200], "the burst passes: {statuses:?}");
    let r = srv.get_raw("/api/tasks");
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("RATE_LIMITED"), "{}", r.body);
    let retry: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=2).contains(&retry), "retry after {retry} s");
    // Health and metrics are not rate limited.
    assert_eq!(srv.get_raw("/healthz").status, 200);
    assert_eq!(srv.get_raw("/metrics").status, 200);
}
