//! The operator UI (`/ui/`) in a real browser: `tests/e2e/ui.spec.mjs` drives Debian's chromium
//! with playwright-core against a real binlog-server and a real MariaDB started here.
//!
//! The lifecycle scenario creates a task through the form, starts it, sees it RUNNING with files
//! appearing, stops, edits and deletes it; the auth scenario checks the token prompt; the
//! switchover scenario shows a task that followed a failover, its recovery window continuous
//! through the switchover; the stuck scenario checks that a task retrying for too long is first
//! on the dashboard and marked; the relay scenario lists a `mariadb-binlog` reading the task
//! through the relay on the task's page; the stall scenario shows a writer whose batch hangs as
//! a callout on the task's page while it lasts. Screenshots
//! of every view go to `$CARGO_TARGET_TMPDIR/ui-e2e/<scenario>/` (the path is printed). Without
//! chromium, node or `tests/e2e/node_modules` the tests say so and pass without running:
//! `scripts/setup-deps.sh test` installs all three, so `make test` and CI run them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use binlog_server::api::dto::TaskPage;

use crate::common::mariadb::{MariaDb, MariaDbOpts, REPL_PASSWORD, REPL_USER};
use crate::common::replication::{
    WAIT, create_task, fail_over, fast_server_opts, from_first_file, primary_replica_proxy, slow_disk_server_opts,
    source_json, start_copy_task, start_gtid_task_via, start_task, wait_caught_up, wait_failed, wait_following,
    wait_running,
};
use crate::common::server::Server;
use crate::common::{find_binary, free_port, output_with_deadline, poll_until, temp_dir};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The lifecycle scenario takes ~20 s on an idle machine; two busy cores can triple that.
const SPEC_TIMEOUT: Duration = Duration::from_secs(300);
const TOKEN: &str = "ui-e2e-token-0123456789";

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e")
}

/// Why the browser test cannot run on this machine, if it cannot.
fn missing_tool() -> Option<String> {
    if !Path::new(CHROMIUM).is_file() {
        return Some(format!("{CHROMIUM} is not installed (apt package `chromium`)"));
    }
    let Some(node) = find_binary("node") else {
        return Some("node is not installed".into());
    };
    // playwright-core 1.65 needs Node.js 20 or later.
    let version = Command::new(node).arg("--version").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let major = version
        .as_deref()
        .unwrap_or("")
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    if major.is_none_or(|m| m < 20) {
        return Some(format!("node {version:?} is older than 20 (playwright-core needs 20+)"));
    }
    if !e2e_dir().join("node_modules/playwright-core/package.json").is_file() {
        return Some("tests/e2e/node_modules has no playwright-core (`npm ci` in tests/e2e)".into());
    }
    None
}

/// Prints why and returns true when the browser test must be skipped.
fn skip() -> bool {
    match missing_tool() {
        Some(why) => {
            eprintln!(
                "SKIPPED: the UI browser test needs chromium, node and playwright-core: {why}. Run scripts/setup-deps.sh test."
            );
            true
        }
        None => false,
    }
}

/// Runs one scenario of the spec against `srv`; returns its stdout and the screenshot dir.
fn run_spec(srv: &Server, scenario: &str, env: &[(&str, String)]) -> (String, PathBuf) {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-e2e").join(scenario);
    // Screenshots of an earlier run would pass for this run's.
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("creating {}: {e}", out.display()));
    eprintln!("ui e2e ({scenario}): screenshots in {}", out.display());
    let node = find_binary("node").expect("checked by skip()");
    let mut cmd = Command::new(node);
    cmd.arg(e2e_dir().join("ui.spec.mjs"))
        .current_dir(e2e_dir())
        .env("UI_BASE_URL", srv.url(""))
        .env("UI_OUT_DIR", &out)
        .env("UI_SCENARIO", scenario)
        .env("CHROMIUM", CHROMIUM)
        .envs(env.iter().map(|(k, v)| (k, v)));
    let output = output_with_deadline(&mut cmd, SPEC_TIMEOUT, &format!("node tests/e2e/ui.spec.mjs ({scenario})"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success() && stdout.contains("ui e2e: ok"),
        "the browser test ({scenario}) failed ({}); screenshots in {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n{}",
        output.status,
        out.display(),
        srv.diagnostics()
    );
    eprintln!("{stdout}");
    (stdout, out)
}

/// Every named screenshot exists, is a PNG of some substance, and was reported by the spec.
fn assert_screenshots(stdout: &str, dir: &Path, names: &[&str]) {
    for name in names {
        let path = dir.join(format!("{name}.png"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("screenshot {}: {e}", path.display()));
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 2000, "{} is not a real PNG", path.display());
        assert!(stdout.contains(&format!("screenshot {}", path.display())), "the spec did not report {name}");
    }
}

#[test]
fn ui_creates_starts_stops_and_deletes_a_task_in_a_browser() {
    if skip() {
        return;
    }
    let db = MariaDb::start(MariaDbOpts::default());
    // History in two files, so the task has a sealed file and an open one as soon as it runs.
    db.sql("CREATE TABLE ui_rows (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)");
    db.sql("INSERT INTO ui_rows (v) SELECT REPEAT('u', 200) FROM seq_1_to_50");
    db.flush_binary_logs();
    db.sql("INSERT INTO ui_rows (v) SELECT REPEAT('i', 200) FROM seq_1_to_50");
    let first_file = db.binlog_files().first().map(|(name, _)| name.clone()).expect("the source has binlog files");
    let srv = Server::start(fast_server_opts());

    let (stdout, dir) = run_spec(
        &srv,
        "lifecycle",
        &[
            ("UI_SOURCE_HOST", db.host().to_string()),
            ("UI_SOURCE_PORT", db.port().to_string()),
            ("UI_SOURCE_USER", REPL_USER.to_string()),
            ("UI_SOURCE_PASSWORD", REPL_PASSWORD.to_string()),
            ("UI_START_FILE", first_file),
        ],
    );
    assert_screenshots(
        &stdout,
        &dir,
        &[
            "01-dashboard-empty",
            "02-form-errors",
            "03-start-confirm",
            "04-detail-running",
            "05-task-list",
            "06-dashboard",
            "07-phone-dashboard",
            "08-phone-detail",
            "09-phone-form",
            "10-edit-form",
            "11-delete-confirm",
            "12-task-list-after-delete",
        ],
    );
    // What the browser did, seen from the server: the task is gone, and so are its files (the
    // spec ticked "also delete its local binlog files"), instead of being moved to .deleted/.
    let (status, page) = srv.get("/api/tasks");
    assert_eq!((status, page["total"].as_i64()), (200, Some(0)), "{page}");
    let data = srv.data_dir();
    assert!(!data.join("1").exists(), "the task's files are still in {}", data.display());
    assert!(!data.join(".deleted").exists(), "the purge option was ignored: files moved to .deleted/");
}

/// A task retrying for longer than `retry.alert_after_sec` is first on the dashboard, ahead of
/// a FAILED one, and marked stuck with its error's attempts and since when.
#[test]
fn ui_puts_a_stuck_task_first_on_the_dashboard() {
    if skip() {
        return;
    }
    let db = MariaDb::start(MariaDbOpts::default());
    let srv = Server::start(fast_server_opts().env("BINLOG_SERVER_RETRY_ALERT_AFTER_SEC", "1"));
    let mut failed_source = source_json(&db);
    failed_source["password"] = json!("not-the-password");
    let failed = create_task(&srv, "a-failed", failed_source, from_first_file(&db));
    let running = create_task(&srv, "b-running", source_json(&db), from_first_file(&db));
    // Nothing listens there: every attempt is refused.
    let mut dead_source = source_json(&db);
    dead_source["port"] = json!(crate::common::free_port());
    let stuck = create_task(&srv, "c-stuck", dead_source, from_first_file(&db));
    for id in [failed, running, stuck] {
        start_task(&srv, id);
    }
    wait_failed(&srv, failed);
    wait_running(&srv, running);
    poll_until(WAIT, "the task on the dead port to be stuck", || srv.task(stuck).stuck.then_some(()));

    let (stdout, dir) = run_spec(
        &srv,
        "stuck",
        &[("UI_STUCK_TASK", "c-stuck".to_string()), ("UI_FAILED_TASK", "a-failed".to_string())],
    );
    assert_screenshots(&stdout, &dir, &["s1-dashboard-stuck", "s2-detail-stuck"]);
    assert!(stdout.contains("ok - the stuck task is first, marked STUCK"), "{stdout}");
}

/// A writer whose batch does not return (a hung disk, made here by the debug build's fsync delay)
/// is counted on the dashboard and marked in its urgent list (the task's state and lag look
/// healthy), is a red callout on the task's page while it lasts, and the callout goes once it
/// returns. Each batch's fsync takes 15 s: long enough for both pages to see the same stall.
#[test]
fn ui_shows_a_stalled_writer_while_it_lasts() {
    if skip() {
        return;
    }
    let db = MariaDb::start(MariaDbOpts::default());
    let srv =
        Server::start(slow_disk_server_opts(Duration::from_secs(15)).env("BINLOG_SERVER_WRITER_STALL_AFTER_SEC", "1"));
    let id = create_task(&srv, "hung-disk", source_json(&db), from_first_file(&db));
    start_task(&srv, id);
    let (stdout, dir) = run_spec(&srv, "stall", &[("UI_TASK_ID", id.to_string())]);
    assert_screenshots(&stdout, &dir, &["w0-dashboard-writer-stalled", "w1-detail-writer-stalled"]);
    assert!(stdout.contains("ok - the dashboard counts the stalled writer and names its task"), "{stdout}");
    assert!(stdout.contains("ok - the urgent list marks the task"), "{stdout}");
    assert!(stdout.contains("ok - the task page shows the stalled writer"), "{stdout}");
    assert!(stdout.contains("ok - the lag line does not call a stalled task caught up"), "{stdout}");
    assert!(stdout.contains("ok - and stops showing it once the batch returned"), "{stdout}");
}

/// A writer whose start hangs (debug-build hook: `Prepare` held 20 s; said after 1 s): the
/// dashboard names it "starting for ...", marked WRITER STALLED beside STARTING, and the task page
/// says the start stalled, until it returns.
#[test]
fn ui_shows_a_stalled_start_while_it_lasts() {
    if skip() {
        return;
    }
    let db = MariaDb::start(MariaDbOpts::default());
    let srv = Server::start(
        fast_server_opts()
            .env("BINLOG_TEST_WRITER_START_DELAY_MS", "20000")
            .env("BINLOG_SERVER_WRITER_START_STALL_AFTER_SEC", "1"),
    );
    let id = create_task(&srv, "hung-start", source_json(&db), from_first_file(&db));
    start_task(&srv, id);
    let (stdout, dir) = run_spec(&srv, "startstall", &[("UI_TASK_ID", id.to_string())]);
    assert_screenshots(&stdout, &dir, &["ws0-dashboard-start-stalled", "ws1-detail-start-stalled"]);
    assert!(stdout.contains("ok - the dashboard names the task whose start stalled"), "{stdout}");
    assert!(stdout.contains("ok - the urgent list marks the starting task"), "{stdout}");
    assert!(stdout.contains("ok - the task page says the start stalled"), "{stdout}");
    assert!(stdout.contains("ok - and stops showing it once the start returned"), "{stdout}");
    // And the task streams once it has.
    wait_running(&srv, id);
}

#[test]
fn ui_asks_for_the_token_when_auth_is_on() {
    if skip() {
        return;
    }
    let srv = Server::start(
        fast_server_opts()
            .env("BINLOG_SERVER_API_AUTH_ENABLED", "true")
            .env("BINLOG_SERVER_API_AUTH_BEARER_TOKEN", TOKEN),
    );
    // The UI itself is open; the API is not.
    assert_eq!(srv.get_raw("/ui/").status, 200);
    assert_eq!(srv.get_raw("/api/tasks").status, 401);

    let (stdout, dir) = run_spec(&srv, "auth", &[("UI_TOKEN", TOKEN.to_string())]);
    assert_screenshots(&stdout, &dir, &["a1-auth-prompt", "a2-auth-rejected", "a3-auth-dashboard"]);
    assert!(stdout.contains("ok - a 401 brings the prompt back"), "{stdout}");
}

/// The task form's semi-sync checkbox (issue 17): ticked and saved, the API stores
/// `source.semi_sync: true`; unticked in the edit form and saved, `false`.
#[test]
fn ui_semi_sync_checkbox_reaches_the_api() {
    if skip() {
        return;
    }
    let srv = Server::start(fast_server_opts());
    let (stdout, dir) = run_spec(&srv, "semisync", &[]);
    assert_screenshots(&stdout, &dir, &["ss1-form-semi-sync-ticked", "ss2-form-semi-sync-unticked"]);
    assert!(stdout.contains("ok - ticked and saved: the API shows source.semi_sync true"), "{stdout}");
    assert!(stdout.contains("ok - unticked and saved: the API shows source.semi_sync false"), "{stdout}");
    // Seen from here too: the one task, stored with semi_sync off.
    let list: TaskPage = srv.get_as("/api/tasks");
    assert_eq!(list.total, 1, "{list:?}");
    assert!(!list.items[0].source.semi_sync, "{list:?}");
}

/// The import page takes YAML as pasted from a file: a bad item is named by number and field and
/// nothing is created; the corrected list creates every task (checked through the API too).
#[test]
fn ui_imports_task_definitions_written_in_yaml() {
    if skip() {
        return;
    }
    let srv = Server::start(fast_server_opts());
    let (stdout, dir) = run_spec(&srv, "import", &[]);
    assert_screenshots(&stdout, &dir, &["i1-import-yaml-refused", "i2-import-yaml-created"]);
    assert!(stdout.contains("ok - a YAML list creates every task"), "{stdout}");
    let list: TaskPage = srv.get_as("/api/tasks");
    let mut keys: Vec<&str> = list.items.iter().map(|t| t.cluster_key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["yaml-1", "yaml-2"], "{list:?}");
    assert_eq!(list.items[0].source.password, "***", "{list:?}");
}

#[test]
fn ui_shows_a_followed_failover_as_a_point_of_the_recovery_window() {
    if skip() {
        return;
    }
    let (mut primary, replica, proxy) = primary_replica_proxy("16K");
    let srv = Server::start(fast_server_opts());
    let id = start_gtid_task_via(&srv, proxy.port(), "ui-failover");
    primary.sql("CREATE TABLE rows_ (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)");
    for _ in 0..8 {
        primary.sql("INSERT INTO rows_ (v) SELECT REPEAT('p', 200) FROM seq_1_to_20");
    }
    replica.sync_with(&primary);
    wait_caught_up(&srv, &primary, id);
    fail_over(&mut primary, &replica, &proxy);
    for _ in 0..8 {
        replica.sql("INSERT INTO rows_ (v) SELECT REPEAT('r', 200) FROM seq_1_to_20");
    }
    wait_following(&srv, id, "mariadb-2-0");
    wait_caught_up(&srv, &replica, id);

    let (stdout, dir) = run_spec(&srv, "switchover", &[("UI_TASK_ID", id.to_string())]);
    assert_screenshots(&stdout, &dir, &["w1-detail-switchover"]);
    assert!(stdout.contains("ok - the switchover is one point on the timeline"), "{stdout}");
}

#[test]
fn ui_lists_the_clients_reading_a_task_through_the_relay() {
    if skip() {
        return;
    }
    const USER: &str = "ui-relay-reader";
    const PASSWORD: &str = "ui-Relay-pw-7";
    let source = MariaDb::start(MariaDbOpts::default());
    let relay_port = free_port();
    let srv =
        Server::start(fast_server_opts().env("BINLOG_SERVER_RELAY_LISTEN_ADDR", format!("127.0.0.1:{relay_port}")));
    let id = start_copy_task(&srv, &source, "ui-relay");
    let (status, body) =
        srv.put(&format!("/api/tasks/{id}/relay"), &json!({"users": [{"name": USER, "password": PASSWORD}]}));
    assert_eq!(status, 200, "PUT relay users: {body}");
    source.sql("CREATE TABLE relayed (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)");
    source.sql("INSERT INTO relayed (v) SELECT REPEAT('r', 300) FROM seq_1_to_50");
    wait_caught_up(&srv, &source, id);
    let first = source.binlog_files()[0].0.clone();
    // A real client, following the task live: it stays connected until killed.
    let out = temp_dir("ui-relay-tail-");
    let mut tail = crate::relay::spawn_stop_never_tail(relay_port, USER, PASSWORD, out.path(), &first);
    let listed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_until(WAIT, "the API to list the mariadb-binlog client", || {
            let (status, page) = srv.get(&format!("/api/tasks/{id}/replicas"));
            (status == 200 && page["items"].as_array().is_some_and(|a| a.len() == 1 && a[0]["file"].is_string()))
                .then_some(())
        });
        let (stdout, dir) = run_spec(
            &srv,
            "relay",
            &[("UI_TASK_ID", id.to_string()), ("UI_RELAY_USER", USER.to_string()), ("UI_RELAY_FILE", first.clone())],
        );
        assert_screenshots(&stdout, &dir, &["r1-detail-relay-clients"]);
        assert!(stdout.contains("ok - the relay client is listed with its user"), "{stdout}");
    }));
    let _ = tail.kill();
    let _ = tail.wait();
    if let Err(panic) = listed {
        std::panic::resume_unwind(panic);
    }
}
