//! The task API against a real `binlog-server` process: documented response shapes, input
//! validation with stable error codes, the state machine, persistence across graceful and crash
//! restarts, authentication on every `/api` route, and that a source password never leaves the
//! process (responses, logs).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use binlog_server::api::dto::{TaskDto, TaskPage};
use binlog_server::api::error::ErrorCode;
use binlog_server::domain::{DesiredState, Flavor, StartMode, TaskErrorCode, TaskState, TlsMode};
use serde_json::{Value, json};

use crate::common::mariadb::{MariaDb, MariaDbOpts, REPL_PASSWORD, REPL_PRIVILEGES, REPL_USER};
use crate::common::replication::wait_caught_up;
use crate::common::server::{ErrorBody, RawResponse, Server, ServerOpts, spec_part};
use crate::common::{find_binary, free_port, output_with_deadline, poll_until};

const WAIT: Duration = Duration::from_secs(30);
/// `replication.server_id_base`'s documented default.
const SERVER_ID_BASE: i64 = 3_000_000_000;

/// A server whose tasks retry quickly (tests wait for RETRY_BACKOFF and reconnects).
fn server_with(opts: ServerOpts) -> Server {
    Server::start(
        opts.env("BINLOG_SERVER_REPLICATION_RETRY_INITIAL_MS", "100")
            .env("BINLOG_SERVER_REPLICATION_RETRY_MAX_MS", "1000")
            .env("BINLOG_SERVER_REPLICATION_HEARTBEAT_PERIOD_MS", "200"),
    )
}

fn server() -> Server {
    server_with(ServerOpts::default())
}

/// A valid LATEST task body for a MariaDB source on 127.0.0.1:`port`.
fn task_body(key: &str, port: u16) -> Value {
    json!({
        "name": format!("task {key}"),
        "cluster_key": key,
        "source": {"host": "127.0.0.1", "port": port, "user": "repl", "password": "pw-initial", "flavor": "mariadb"},
        "start": {"mode": "LATEST"},
        "storage": {"retention_days": 7},
    })
}

/// Creates a task, asserting 201; returns it.
fn create(srv: &Server, body: &Value) -> TaskDto {
    srv.create(body)
}

fn list_total(srv: &Server) -> i64 {
    srv.get_as::<TaskPage>("/api/tasks").total
}

/// Ids of the items of a list page, and the page itself (status 200 asserted).
fn list_ids(srv: &Server, query: &str) -> (Vec<i64>, TaskPage) {
    let page: TaskPage = srv.get_as(&format!("/api/tasks{query}"));
    (page.items.iter().map(|t| t.id).collect(), page)
}

/// Asserts an error answer: status, `{error, code}`, and (when given) that `fields[]` names
/// exactly these fields.
fn assert_error(what: &str, status: u16, body: &Value, want_status: u16, want_code: ErrorCode, want_fields: &[&str]) {
    assert_eq!(status, want_status, "{what}: status (body {body})");
    let e: ErrorBody =
        serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{what}: not an error body: {e}: {body}"));
    assert_eq!(e.code, want_code, "{what}: code (body {body})");
    assert!(!e.error.is_empty(), "{what}: `error` must be a message: {body}");
    if !want_fields.is_empty() {
        assert!(!e.fields.is_empty(), "{what}: a validation error lists fields[]: {body}");
        let mut fields = e.field_names();
        fields.sort_unstable();
        fields.dedup();
        let mut want = want_fields.to_vec();
        want.sort_unstable();
        assert_eq!(fields, want, "{what}: fields[] (body {body})");
    }
}

/// The tasks a batch created (`items` of a 201 answer).
fn batch_items(body: &Value) -> Vec<TaskDto> {
    serde_json::from_value(body["items"].clone()).unwrap_or_else(|e| panic!("batch items are tasks: {e}: {body}"))
}

/// Removes `key` from a JSON object.
fn remove(v: &mut Value, key: &str) {
    v.as_object_mut().expect("a JSON object").remove(key);
}

/// Event types of a task, newest first.
fn event_types(srv: &Server, id: i64) -> Vec<String> {
    srv.events(id).into_iter().map(|e| e.event_type).collect()
}

/// `SELECT <column> FROM tasks WHERE id = <id>` in the server's SQLite file, with the sqlite3 CLI
/// (installed by scripts/setup-deps.sh test).
fn sqlite_task_column(data_dir: &Path, id: i64, column: &str) -> Option<String> {
    let sqlite3 = find_binary("sqlite3").expect("sqlite3 CLI (scripts/setup-deps.sh test installs it)");
    let db = data_dir.join("meta.db");
    let sql = format!("SELECT {column} FROM tasks WHERE id = {id}");
    let out = output_with_deadline(Command::new(sqlite3).arg(&db).arg(&sql), WAIT, "sqlite3");
    assert!(out.status.success(), "sqlite3 {} {sql:?}: {}", db.display(), String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string())
}

/// The source password a task has at rest: it must be ciphertext (never `clear` in the file),
/// and decrypts with the server's generated key to the returned value.
fn stored_password(data_dir: &Path, id: i64, must_not_contain: &str) -> Option<String> {
    let stored = sqlite_task_column(data_dir, id, "source_password")?;
    let key = sqlite_task_column(data_dir, id, "cluster_key")?;
    assert!(stored.starts_with("enc:v1:"), "the password is encrypted at rest: {stored}");
    assert!(!stored.contains(must_not_contain));
    let cipher = binlog_server::meta::cipher::Cipher::load_or_generate(&data_dir.join("secrets.key")).expect("key");
    Some(cipher.decrypt(&stored, &key).expect("decrypts with the server's key").expose().to_string())
}

#[test]
fn healthz_answers_ok() {
    let srv = server();
    let r = srv.get_raw("/healthz");
    assert_eq!(r.status, 200, "GET /healthz: {}", r.body);
    assert_eq!(r.body, "ok", "GET /healthz body");
}

#[test]
fn create_list_get_update_delete_round_trip() {
    let srv = server();
    assert_eq!(list_total(&srv), 0, "a fresh server has no tasks");

    // Create: 201, Location, the documented shape, the password redacted.
    let body = task_body("alpha-1", 3306);
    let r = srv.request(
        "POST",
        "/api/tasks",
        &[],
        Some(("application/json", serde_json::to_vec(&body).expect("serialise"))),
    );
    let created: TaskDto = r.typed(201, "create");
    let id = created.id;
    assert_eq!(r.header("location"), Some(format!("/api/tasks/{id}").as_str()), "Location header: {:?}", r.headers);
    assert_eq!(created.name, "task alpha-1");
    assert_eq!(created.cluster_key, "alpha-1");
    assert_eq!(created.state, TaskState::Stopped, "{created:?}");
    assert_eq!(created.desired_state, DesiredState::Stopped, "{created:?}");
    assert_eq!(created.last_error, None, "{created:?}");
    assert_eq!(created.source.password, "***", "passwords are write-only: {created:?}");
    assert_eq!(created.source.host, "127.0.0.1");
    assert_eq!(created.source.port, 3306);
    assert_eq!(created.source.user, "repl");
    assert_eq!(created.source.flavor, Flavor::Mariadb);
    assert_eq!(created.source.tls_mode, TlsMode::Preferred, "documented default tls_mode: {created:?}");
    assert_eq!(created.source.server_id, None);
    assert_eq!(
        i64::from(created.source.effective_server_id),
        SERVER_ID_BASE + id,
        "without server_id a task registers as server_id_base + id: {created:?}"
    );
    assert_eq!(created.start.mode, StartMode::Latest);
    assert_eq!(created.storage.retention_days, 7);

    // Get: the same task.
    assert_eq!(srv.task(id), created, "GET returns what POST returned");

    // More tasks for the filters: an explicit server_id, another host and port.
    let mut b = task_body("beta-2", 3307);
    b["name"] = json!("beta two");
    b["source"]["host"] = json!("db2.example");
    b["source"]["server_id"] = json!(4242);
    let beta = create(&srv, &b);
    assert_eq!(beta.source.server_id, Some(4242));
    assert_eq!(beta.source.effective_server_id, 4242, "an explicit server_id is used as is: {beta:?}");
    let mut g = task_body("alpha-3", 3307);
    g["name"] = json!("gamma");
    g["start"] = json!({"mode": "FILE_POS", "file": "mysql-bin.000042", "pos": 4});
    let gamma = create(&srv, &g);
    let start = &gamma.start;
    assert_eq!(
        (start.mode, start.file.as_deref(), start.pos, start.gtid_set.as_deref()),
        (StartMode::FilePos, Some("mysql-bin.000042"), Some(4), None)
    );
    let (beta_id, gamma_id) = (beta.id, gamma.id);
    assert!(id < beta_id && beta_id < gamma_id, "ids grow: {id} {beta_id} {gamma_id}");

    // List: the envelope and the filters.
    let (ids, page) = list_ids(&srv, "");
    assert_eq!(ids, vec![id, beta_id, gamma_id], "all tasks by id: {page:?}");
    assert_eq!((page.total, page.limit, page.offset), (3, 50, 0));
    assert!(page.items.iter().all(|t| t.source.password == "***"), "list redacts every password: {page:?}");
    let cases: &[(&str, &[i64], i64)] = &[
        ("?host=127.0.0.1", &[id, gamma_id], 2),
        ("?host=db2.example", &[beta_id], 1),
        ("?port=3307", &[beta_id, gamma_id], 2),
        ("?host=127.0.0.1&port=3307", &[gamma_id], 1),
        ("?q=alpha", &[id, gamma_id], 2),
        ("?q=two", &[beta_id], 1),
        ("?q=%25", &[], 0),
        ("?q=nothing-matches", &[], 0),
        ("?state=STOPPED", &[id, beta_id, gamma_id], 3),
        ("?state=RUNNING", &[], 0),
        ("?limit=2", &[id, beta_id], 3),
        ("?limit=2&offset=2", &[gamma_id], 3),
        ("?limit=1&offset=1", &[beta_id], 3),
        ("?offset=10", &[], 3),
        ("?limit=0", &[], 3),
    ];
    for (query, want_ids, want_total) in cases {
        let (got_ids, page) = list_ids(&srv, query);
        assert_eq!(got_ids, want_ids.to_vec(), "GET /api/tasks{query}: items ({page:?})");
        assert_eq!(page.total, *want_total, "GET /api/tasks{query}: total ({page:?})");
    }
    let (_, page) = list_ids(&srv, "?limit=2&offset=1");
    assert_eq!((page.limit, page.offset), (2, 1), "echoes paging: {page:?}");

    // Update (PUT): a replacement of the spec; state and identity stay.
    let mut changed = task_body("alpha-1", 3310);
    changed["name"] = json!("alpha renamed");
    changed["source"]["host"] = json!("db9.example");
    changed["storage"]["retention_days"] = json!(30);
    let updated: TaskDto = srv.put_as(&format!("/api/tasks/{id}"), &changed, 200);
    assert_eq!(updated.id, id);
    assert_eq!(updated.name, "alpha renamed");
    assert_eq!(updated.source.host, "db9.example");
    assert_eq!(updated.source.port, 3310);
    assert_eq!(updated.source.password, "***");
    assert_eq!(updated.storage.retention_days, 30);
    assert_eq!(updated.state, TaskState::Stopped);
    assert_eq!(updated.created_at, created.created_at, "PUT keeps created_at");
    assert_eq!(srv.task(id), updated, "GET after PUT returns the updated task");
    let (ids, _) = list_ids(&srv, "?host=db9.example");
    assert_eq!(ids, vec![id], "filters see the update");
    assert!(event_types(&srv, id).contains(&"TASK_UPDATED".to_string()), "PUT records TASK_UPDATED");

    // Delete: 204 with no body, then 404 everywhere.
    let r = srv.delete_raw(&format!("/api/tasks/{id}"));
    assert_eq!(r.status, 204, "DELETE: {}", r.body);
    assert!(r.body.is_empty(), "204 has no body: {:?}", r.body);
    let (status, body) = srv.get(&format!("/api/tasks/{id}"));
    assert_error("GET after DELETE", status, &body, 404, ErrorCode::TaskNotFound, &[]);
    let (status, body) = srv.delete(&format!("/api/tasks/{id}"));
    assert_error("DELETE twice", status, &body, 404, ErrorCode::TaskNotFound, &[]);
    let (ids, page) = list_ids(&srv, "");
    assert_eq!(ids, vec![beta_id, gamma_id], "the deleted task is gone from the list: {page:?}");
    assert_eq!(page.total, 2);
}

#[test]
fn put_keeps_the_stored_password_unless_given_a_new_one() {
    let srv = server();
    let mut body = task_body("pw-task", 3306);
    body["source"]["password"] = json!("first-Password-1");
    let id = create(&srv, &body).id;
    if let Some(stored) = stored_password(&srv.data_dir(), id, "first-Password-1") {
        assert_eq!(stored, "first-Password-1", "create stores the password");
    }

    // PUT without a password: the stored one stays.
    let mut no_pw = body.clone();
    remove(&mut no_pw["source"], "password");
    no_pw["name"] = json!("renamed once");
    let (status, t) = srv.put(&format!("/api/tasks/{id}"), &no_pw);
    assert_eq!(status, 200, "PUT without password: {t}");
    assert_eq!(t["source"]["password"], "***");
    if let Some(stored) = stored_password(&srv.data_dir(), id, "first-Password-1") {
        assert_eq!(stored, "first-Password-1", "a PUT that omits the password keeps the stored one");
    }

    // PUT echoing the redaction: the stored one stays.
    let mut redacted = body.clone();
    redacted["source"]["password"] = json!("***");
    redacted["name"] = json!("renamed twice");
    let (status, t) = srv.put(&format!("/api/tasks/{id}"), &redacted);
    assert_eq!(status, 200, "PUT with ***: {t}");
    if let Some(stored) = stored_password(&srv.data_dir(), id, "first-Password-1") {
        assert_eq!(stored, "first-Password-1", "a PUT that sends *** keeps the stored one");
    }

    // PUT with a new password: replaced.
    let mut new_pw = body.clone();
    new_pw["source"]["password"] = json!("second-Password-2");
    let (status, t) = srv.put(&format!("/api/tasks/{id}"), &new_pw);
    assert_eq!(status, 200, "PUT with a new password: {t}");
    assert_eq!(t["source"]["password"], "***", "the new password is not echoed: {t}");
    if let Some(stored) = stored_password(&srv.data_dir(), id, "second-Password-2") {
        assert_eq!(stored, "second-Password-2", "a PUT with a new password replaces the stored one");
    }
    assert_eq!(srv.task(id).name, "task pw-task", "the last PUT's name");
}

#[test]
fn bad_input_is_refused_with_a_status_a_code_and_the_field() {
    let srv = server();
    let existing = create(&srv, &task_body("existing", 3306)).id;
    let total = list_total(&srv);
    assert_eq!(total, 1);

    // Bodies that are not a task at all.
    let as_text = serde_json::to_string(&task_body("ct", 3306)).expect("serialise");
    let refused_raw: &[(&str, &str, &[u8])] = &[
        ("malformed JSON", "application/json", b"{\"name\": \"x\", "),
        ("not an object", "application/json", b"[1, 2, 3]"),
        ("empty body", "application/json", b""),
        ("wrong content type", "text/plain", as_text.as_bytes()),
        ("form content type", "application/x-www-form-urlencoded", b"name=x&cluster_key=y"),
    ];
    for (what, content_type, bytes) in refused_raw {
        let r = srv.post_raw("/api/tasks", content_type, bytes);
        let (status, code) = if content_type.starts_with("application/json") {
            (400, ErrorCode::InvalidRequest)
        } else {
            (415, ErrorCode::UnsupportedMediaType)
        };
        assert_error(what, r.status, &r.json(), status, code, &[]);
        assert_eq!(list_total(&srv), total, "{what}: nothing may be created");
    }

    // Unknown fields (typos) are named, not ignored.
    let mut typo = task_body("typo", 3306);
    typo["clustr_key"] = json!("typo-2");
    let (status, body) = srv.post("/api/tasks", &typo);
    assert_error("unknown top-level field", status, &body, 400, ErrorCode::InvalidRequest, &[]);
    assert!(body["error"].as_str().unwrap_or_default().contains("clustr_key"), "the typo is named: {body}");
    let mut typo = task_body("typo", 3306);
    typo["source"]["pasword"] = json!("x");
    let (status, body) = srv.post("/api/tasks", &typo);
    assert_error("unknown source field", status, &body, 400, ErrorCode::InvalidRequest, &[]);
    assert!(body["error"].as_str().unwrap_or_default().contains("pasword"), "the typo is named: {body}");
    assert_eq!(list_total(&srv), total, "unknown fields: nothing may be created");

    // Validation errors: each names its field.
    type Edit = fn(&mut Value);
    let invalid: &[(&str, Edit, &[&str])] = &[
        ("missing name", |b| remove(b, "name"), &["name"]),
        ("empty name", |b| b["name"] = json!("  "), &["name"]),
        ("missing cluster_key", |b| remove(b, "cluster_key"), &["cluster_key"]),
        ("missing source", |b| remove(b, "source"), &["source.host", "source.port", "source.user", "source.flavor"]),
        ("missing source.host", |b| remove(&mut b["source"], "host"), &["source.host"]),
        ("missing start", |b| remove(b, "start"), &["start.mode"]),
        ("missing start.mode", |b| b["start"] = json!({}), &["start.mode"]),
        ("unknown flavor", |b| b["source"]["flavor"] = json!("postgres"), &["source.flavor"]),
        ("unknown mode", |b| b["start"]["mode"] = json!("SOMETIME"), &["start.mode"]),
        ("FILE_POS without file and pos", |b| b["start"] = json!({"mode": "FILE_POS"}), &["start.file", "start.pos"]),
        (
            "FILE_POS without pos",
            |b| b["start"] = json!({"mode": "FILE_POS", "file": "mysql-bin.000001"}),
            &["start.pos"],
        ),
        (
            "FILE_POS with pos 3",
            |b| b["start"] = json!({"mode": "FILE_POS", "file": "mysql-bin.000001", "pos": 3}),
            &["start.pos"],
        ),
        ("port 0", |b| b["source"]["port"] = json!(0), &["source.port"]),
        ("port 70000", |b| b["source"]["port"] = json!(70000), &["source.port"]),
        ("name of 300 characters", |b| b["name"] = json!("n".repeat(300)), &["name"]),
        ("cluster_key with a space and !", |b| b["cluster_key"] = json!("bad key!"), &["cluster_key"]),
        ("cluster_key with a slash", |b| b["cluster_key"] = json!("a/b"), &["cluster_key"]),
        ("cluster_key of 129 characters", |b| b["cluster_key"] = json!("k".repeat(129)), &["cluster_key"]),
        ("retention_days 0", |b| b["storage"]["retention_days"] = json!(0), &["storage.retention_days"]),
        ("unknown tls_mode", |b| b["source"]["tls_mode"] = json!("sometimes"), &["source.tls_mode"]),
    ];
    for (what, edit, fields) in invalid {
        let mut body = task_body("invalid", 3306);
        edit(&mut body);
        let (status, answer) = srv.post("/api/tasks", &body);
        assert_error(what, status, &answer, 400, ErrorCode::InvalidRequest, fields);
        assert_eq!(list_total(&srv), total, "{what}: nothing may be created");
    }

    // Boundaries that are valid: a 255-character name, a 128-character cluster key.
    let mut edge = task_body(&"k".repeat(128), 3306);
    edge["name"] = json!("n".repeat(255));
    let edge_id = create(&srv, &edge).id;
    assert_eq!(srv.delete(&format!("/api/tasks/{edge_id}")).0, 204);

    // A duplicate cluster_key: 409, and the first task is untouched.
    let mut dup = task_body("existing", 3399);
    dup["name"] = json!("intruder");
    let (status, body) = srv.post("/api/tasks", &dup);
    assert_error("duplicate cluster_key", status, &body, 409, ErrorCode::TaskAlreadyExists, &[]);
    assert_eq!(list_total(&srv), total, "duplicate: nothing may be created");
    let (_, first) = srv.get(&format!("/api/tasks/{existing}"));
    assert_eq!(first["name"], "task existing", "the existing task is untouched: {first}");

    // A refused PUT changes nothing.
    let mut bad_put = task_body("existing", 3306);
    bad_put["source"]["port"] = json!(0);
    bad_put["name"] = json!("changed");
    let (status, body) = srv.put(&format!("/api/tasks/{existing}"), &bad_put);
    assert_error("PUT with port 0", status, &body, 400, ErrorCode::InvalidRequest, &["source.port"]);
    let (_, after) = srv.get(&format!("/api/tasks/{existing}"));
    assert_eq!(after, first, "a refused PUT changes nothing");
    let r = srv.put_raw(&format!("/api/tasks/{existing}"), "application/json", b"{oops");
    assert_error("PUT with malformed JSON", r.status, &r.json(), 400, ErrorCode::InvalidRequest, &[]);

    // Unknown and non-numeric ids: 404 TASK_NOT_FOUND on every task route.
    let valid = task_body("other", 3306);
    for id in ["999999", "abc", "0", "-1", "1.5", "99999999999999999999999"] {
        let routes: &[(&str, String, Option<&Value>)] = &[
            ("GET", format!("/api/tasks/{id}"), None),
            ("PUT", format!("/api/tasks/{id}"), Some(&valid)),
            ("DELETE", format!("/api/tasks/{id}"), None),
            ("POST", format!("/api/tasks/{id}/start"), None),
            ("POST", format!("/api/tasks/{id}/stop"), None),
            ("GET", format!("/api/tasks/{id}/checkpoint"), None),
            ("GET", format!("/api/tasks/{id}/events"), None),
            ("GET", format!("/api/tasks/{id}/files"), None),
            ("GET", format!("/api/tasks/{id}/replication"), None),
        ];
        for (method, path, body) in routes {
            let body = body.map(|b| ("application/json", serde_json::to_vec(b).expect("serialise")));
            let r = srv.request(method, path, &[], body);
            assert_error(&format!("{method} {path}"), r.status, &r.json(), 404, ErrorCode::TaskNotFound, &[]);
        }
    }
    assert_eq!(list_total(&srv), total, "requests on unknown ids create nothing");

    // Bad query parameters.
    let bad_queries: &[(&str, &[&str])] = &[
        ("/api/tasks?limit=-1", &["limit"]),
        ("/api/tasks?limit=1001", &["limit"]),
        ("/api/tasks?offset=-1", &["offset"]),
        ("/api/tasks?state=BOGUS", &["state"]),
        ("/api/tasks?port=0", &["port"]),
        ("/api/tasks?limit=abc", &[]),
        ("/api/tasks?stat=RUNNING", &[]),
        ("/api/tasks/{existing}/events?limit=-1", &["limit"]),
    ];
    for (path, fields) in bad_queries {
        let path = path.replace("{existing}", &existing.to_string());
        let (status, body) = srv.get(&path);
        assert_error(&format!("GET {path}"), status, &body, 400, ErrorCode::InvalidRequest, fields);
    }

    // A body beyond the 64 KiB limit is refused before it is parsed.
    let mut huge = task_body("huge", 3306);
    huge["name"] = json!("h".repeat(70 * 1024));
    let (status, body) = srv.post("/api/tasks", &huge);
    assert_error("a 70 KiB body", status, &body, 413, ErrorCode::PayloadTooLarge, &[]);
    assert_eq!(list_total(&srv), total, "an oversized body creates nothing");
}

#[test]
fn put_onto_another_tasks_cluster_key_is_a_conflict_that_names_the_key() {
    let srv = server();
    create(&srv, &task_body("existing", 3306));
    let second = create(&srv, &task_body("second", 3306)).id;
    let (_, before) = srv.get(&format!("/api/tasks/{second}"));
    let (status, body) = srv.put(&format!("/api/tasks/{second}"), &task_body("existing", 3306));
    assert_error("PUT with another task's cluster_key", status, &body, 409, ErrorCode::TaskAlreadyExists, &[]);
    let (_, after) = srv.get(&format!("/api/tasks/{second}"));
    assert_eq!(after, before, "a refused PUT changes nothing");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("\"existing\""),
        "the conflicting cluster_key is named, as on create: {body}"
    );
}

#[test]
fn state_machine_against_an_unreachable_source() {
    let srv = server();
    // Nothing listens there: every connection attempt is refused.
    let closed_port = free_port();
    let id = create(&srv, &task_body("unreachable", closed_port)).id;
    let task_path = format!("/api/tasks/{id}");

    let t = srv.start_task(id);
    assert_eq!(t.state, TaskState::Starting, "start answers STARTING: {t:?}");
    assert_eq!(t.desired_state, DesiredState::Running, "{t:?}");

    let (status, body) = srv.post(&format!("{task_path}/start"), &json!({}));
    assert_error("second start", status, &body, 409, ErrorCode::InvalidStateTransition, &[]);
    let (status, body) = srv.put(&task_path, &task_body("unreachable", closed_port));
    assert_error("PUT while active", status, &body, 409, ErrorCode::InvalidStateTransition, &[]);
    let (status, body) = srv.delete(&task_path);
    assert_error("DELETE while active", status, &body, 409, ErrorCode::InvalidStateTransition, &[]);
    let (ids, page) = list_ids(&srv, "?state=STOPPED");
    assert!(!ids.contains(&id), "an active task is not STOPPED: {page:?}");

    // The task keeps retrying, and says why.
    let repl = poll_until(WAIT, "RETRY_BACKOFF with SOURCE_UNREACHABLE in /replication", || {
        let r = srv.replication(id);
        (r.state == TaskState::RetryBackoff
            && r.last_error.as_ref().is_some_and(|e| e.code == TaskErrorCode::SourceUnreachable))
        .then_some(r)
    });
    assert_eq!(repl.task_id, id, "{repl:?}");
    assert!(repl.last_error.as_ref().is_some_and(|e| !e.message.is_empty()), "an error message: {repl:?}");
    poll_until(WAIT, "a second reconnect attempt (retries go on)", || {
        (srv.replication(id).reconnects >= 2).then_some(())
    });
    poll_until(WAIT, "a TASK_RETRY_BACKOFF event", || {
        event_types(&srv, id).contains(&"TASK_RETRY_BACKOFF".to_string()).then_some(())
    });
    let types = event_types(&srv, id);
    assert!(types.contains(&"TASK_STARTED".to_string()), "start is an event: {types:?}");
    assert_eq!(types.last().map(String::as_str), Some("TASK_CREATED"), "oldest event is TASK_CREATED: {types:?}");

    let t = srv.stop_task(id);
    assert_eq!(t.state, TaskState::Stopped, "stop answers STOPPED: {t:?}");
    assert_eq!(t.desired_state, DesiredState::Stopped, "{t:?}");
    assert_eq!(srv.task(id).state, TaskState::Stopped);
    let (status, body) = srv.post(&format!("{task_path}/stop"), &json!({}));
    assert_error("second stop", status, &body, 409, ErrorCode::InvalidStateTransition, &[]);
    assert!(event_types(&srv, id).contains(&"TASK_STOPPED".to_string()), "stop is an event");

    let r = srv.delete_raw(&task_path);
    assert_eq!(r.status, 204, "DELETE once stopped: {}", r.body);
    let (status, body) = srv.get(&task_path);
    assert_error("GET after DELETE", status, &body, 404, ErrorCode::TaskNotFound, &[]);
}

/// `GET /api/summary` agrees with the task list: the counts by state, and a stuck task first.
#[test]
fn summary_agrees_with_the_task_list() {
    let srv = server_with(ServerOpts::default().env("BINLOG_SERVER_RETRY_ALERT_AFTER_SEC", "1"));
    let closed_port = free_port();
    let ids: Vec<i64> = (0..5).map(|i| create(&srv, &task_body(&format!("summary-{i}"), closed_port)).id).collect();
    let summary = || {
        let (status, s) = srv.get("/api/summary");
        assert_eq!(status, 200, "GET /api/summary: {s}");
        s
    };
    let s = summary();
    assert_eq!(s["tasks"]["total"], list_total(&srv), "{s}");
    assert_eq!(s["tasks"]["by_state"]["STOPPED"], 5, "{s}");
    assert_eq!(s["tasks"]["by_state"]["RUNNING"], 0, "every state is listed, zeros too: {s}");
    assert_eq!((s["tasks"]["active"].as_i64(), s["tasks"]["failing"].as_i64()), (Some(0), Some(0)), "{s}");
    assert_eq!(s["urgent"].as_array().map(Vec::len), Some(5), "{s}");
    assert_eq!(s["nodes"], json!({"mode": "standalone", "total": 1, "alive": 1}), "{s}");
    assert_eq!(s["upload"], json!({"enabled": false, "backlog_files": 0, "failed_files": 0}), "{s}");
    assert!(s["oldest_recovery_point"].is_null() && s["worst_lag"].is_null(), "nothing fetched yet: {s}");

    // One task retries against a closed port for longer than retry.alert_after_sec: stuck.
    srv.start_task(ids[2]);
    let s = poll_until(WAIT, "the summary to count a stuck task", || {
        let s = summary();
        (s["tasks"]["stuck"] == 1).then_some(s)
    });
    let first = &s["urgent"][0];
    assert_eq!(first["task"]["id"], ids[2], "the stuck task comes first: {s}");
    assert_eq!(first["task"]["stuck"], true, "{s}");
    assert_eq!(first["task"]["last_error"]["code"], "SOURCE_UNREACHABLE", "{s}");
    assert_eq!((s["tasks"]["active"].as_i64(), s["tasks"]["failing"].as_i64()), (Some(1), Some(1)), "{s}");
    for state in ["STOPPED", "RETRY_BACKOFF", "RUNNING", "FAILED"] {
        let (_, page) = list_ids(&srv, &format!("?state={state}"));
        assert_eq!(s["tasks"]["by_state"][state], page.total, "{state}: the summary and the list agree: {s}");
    }
    srv.stop_task(ids[2]);
}

/// `POST /api/tasks/batch`: one bad item refuses the whole batch with every problem by index and
/// field, nothing created; a taken key is 409; 100 good ones are created in one go (and the
/// summary counts them); `start: true` starts what it created.
#[test]
fn batch_create_is_all_or_nothing() {
    let srv = server();
    let closed_port = free_port();
    let mut bad = task_body("batch-bad", closed_port);
    bad["source"]["port"] = json!(70000);
    remove(&mut bad, "name");
    let items = json!({"tasks": [task_body("batch-a", closed_port), bad, task_body("batch-a", closed_port)]});
    let (status, body) = srv.error("POST", "/api/tasks/batch", Some(&items));
    assert_eq!((status, body.code), (400, ErrorCode::InvalidRequest), "{body:?}");
    assert!(!body.items.is_empty(), "per-item errors in `items`: {body:?}");
    let problems: Vec<(usize, &str)> = body.items.iter().map(|i| (i.index, i.field.as_str())).collect();
    for want in [(1, "source.port"), (1, "name"), (2, "cluster_key")] {
        assert!(problems.contains(&want), "{want:?} is reported: {body:?}");
    }
    assert!(!problems.iter().any(|(i, _)| *i == 0), "item 0 is valid: {body:?}");
    assert_eq!(list_total(&srv), 0, "an invalid batch creates nothing");

    let (status, body) = srv.post("/api/tasks/batch", &json!({"tasks": []}));
    assert_error("an empty batch", status, &body, 400, ErrorCode::InvalidRequest, &[]);
    let (status, body) = srv.post("/api/tasks/batch", &json!({"tasks": [task_body("x", 1)], "strat": true}));
    assert_error("an unknown field", status, &body, 400, ErrorCode::InvalidRequest, &[]);
    let r = srv.get_raw("/api/tasks/batch");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")), "batch is no task id: {}", r.body);

    let hundred: Vec<Value> = (0..100).map(|i| task_body(&format!("batch-{i:03}"), closed_port)).collect();
    let (status, body) = srv.post("/api/tasks/batch", &json!({"tasks": hundred}));
    assert_eq!(status, 201, "a batch of 100: {body}");
    let created = batch_items(&body);
    assert_eq!(created.len(), 100, "{body}");
    assert_eq!(created[42].cluster_key, "batch-042", "in the order given");
    assert!(created.iter().all(|t| t.state == TaskState::Stopped && t.source.password == "***"), "{body}");
    assert_eq!(list_total(&srv), 100);
    let (_, summary) = srv.get("/api/summary");
    assert_eq!(summary["tasks"]["total"], 100, "{summary}");

    // A key that exists refuses the whole batch too.
    let again = json!({"tasks": [task_body("batch-new", closed_port), task_body("batch-007", closed_port)]});
    let (status, body) = srv.error("POST", "/api/tasks/batch", Some(&again));
    assert_eq!((status, body.code), (409, ErrorCode::TaskAlreadyExists), "{body:?}");
    assert_eq!(body.items.first().map(|i| i.index), Some(1), "{body:?}");
    assert_eq!(list_total(&srv), 100, "nothing created");

    let (status, body) =
        srv.post("/api/tasks/batch", &json!({"tasks": [task_body("batch-start", closed_port)], "start": true}));
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["start_errors"], json!([]), "{body}");
    let started = &batch_items(&body)[0];
    assert_eq!(started.desired_state, DesiredState::Running, "started: {body}");
    srv.wait_for_state(started.id, TaskState::RetryBackoff);
    srv.stop_task(started.id);
}

/// `POST /api/tasks/batch` takes YAML (`application/yaml`) as kept in files: a bare list, with
/// `?start=true`; a problem is named by item and field as for JSON, a YAML error by line; anchors
/// and aliases are refused; other routes answer 415 to YAML.
#[test]
fn batch_create_takes_yaml() {
    let srv = server();
    let closed_port = free_port();
    let yaml = |port: u32, key2: &str| {
        format!(
            "# two tasks\n\
             - name: yaml a\n  cluster_key: yaml-a\n  source: {{host: 127.0.0.1, port: {closed_port}, user: repl, password: 'p: w', flavor: mariadb}}\n  start: {{mode: LATEST}}\n\
             - name: yaml b\n  cluster_key: {key2}\n  source:\n    host: 127.0.0.1\n    port: {port}\n    user: repl\n    password: pw\n    flavor: mariadb\n  start:\n    mode: LATEST\n"
        )
    };
    let r = srv.post_raw("/api/tasks/batch", "application/yaml", yaml(70000, "yaml-b").as_bytes());
    let body = r.error();
    assert_eq!((r.status, body.code), (400, ErrorCode::InvalidRequest), "{body:?}");
    assert_eq!(body.items.first().map(|i| (i.index, i.field.as_str())), Some((1, "source.port")), "{body:?}");
    assert_eq!(list_total(&srv), 0, "nothing created");

    let r = srv.post_raw("/api/tasks/batch", "application/yaml", b"- name: x\n  cluster_key: [1, 2\n");
    assert_error("broken YAML", r.status, &r.json(), 400, ErrorCode::InvalidRequest, &[]);
    assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("line")), "names the line: {}", r.body);
    let r = srv.post_raw("/api/tasks/batch", "application/yaml", b"- &t {name: x}\n- *t\n");
    assert_error("an alias", r.status, &r.json(), 400, ErrorCode::InvalidRequest, &[]);
    let r = srv.post_raw("/api/tasks/batch", "text/yaml", yaml(3306, "yaml-b").as_bytes());
    assert_error("text/yaml", r.status, &r.json(), 415, ErrorCode::UnsupportedMediaType, &[]);
    let r = srv.post_raw("/api/tasks", "application/yaml", b"name: x\n");
    assert_error("YAML to a JSON route", r.status, &r.json(), 415, ErrorCode::UnsupportedMediaType, &[]);
    assert_eq!(list_total(&srv), 0, "nothing created");

    let r =
        srv.post_raw("/api/tasks/batch?start=true", "application/yaml", yaml(closed_port.into(), "yaml-b").as_bytes());
    let body = r.json();
    assert_eq!(r.status, 201, "{body}");
    let items = batch_items(&body);
    let keys: Vec<&str> = items.iter().map(|t| t.cluster_key.as_str()).collect();
    assert_eq!(keys, ["yaml-a", "yaml-b"], "in the order given: {body}");
    assert!(items.iter().all(|t| t.desired_state == DesiredState::Running), "?start=true starts them: {body}");
    for t in &items {
        srv.stop_task(t.id);
    }
    let r = srv.post_raw("/api/tasks/batch?start=maybe", "application/yaml", yaml(3306, "yaml-c").as_bytes());
    assert_error("a bad query", r.status, &r.json(), 400, ErrorCode::InvalidRequest, &[]);
}

/// `http.max_body_bytes` bounds every `/api` body: 413 in the JSON error shape.
#[test]
fn request_bodies_above_max_body_bytes_are_413() {
    let srv = server_with(ServerOpts::default().env("BINLOG_SERVER_HTTP_MAX_BODY_BYTES", "2048"));
    let items: Vec<Value> = (0..20).map(|i| task_body(&format!("big-{i}"), 3306)).collect();
    let (status, body) = srv.post("/api/tasks/batch", &json!({"tasks": items}));
    assert_error("a batch above 2048 bytes", status, &body, 413, ErrorCode::PayloadTooLarge, &[]);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("2048")), "names the limit: {body}");
    assert_eq!(list_total(&srv), 0);
    create(&srv, &task_body("small", 3306));
}

#[test]
fn tasks_and_their_states_survive_graceful_and_crash_restarts() {
    let db = MariaDb::start(MariaDbOpts::default());
    let mut srv = server();

    let mut running = task_body("runs", db.port());
    running["source"]["user"] = json!(REPL_USER);
    running["source"]["password"] = json!(REPL_PASSWORD);
    running["start"] = json!({"mode": "FILE_POS", "file": format!("{}.000001", db.binlog_basename()), "pos": 4});
    let running = create(&srv, &running);
    let mut idle = task_body("idle", db.port());
    idle["source"]["server_id"] = json!(777);
    let idle = create(&srv, &idle);
    let mut idle_gtid = task_body("idle-gtid", free_port());
    idle_gtid["start"] = json!({"mode": "GTID", "gtid_set": "0-1-5"});
    let idle_gtid = create(&srv, &idle_gtid);
    let (run_id, idle_id, gtid_id) = (running.id, idle.id, idle_gtid.id);

    srv.start_task(run_id);
    srv.wait_for_state(run_id, TaskState::Running);
    db.sql("CREATE TABLE before_restart (id INT PRIMARY KEY)");
    db.sql("INSERT INTO before_restart VALUES (1)");
    wait_caught_up(&srv, &db, run_id);

    let snapshot: Vec<TaskDto> = [run_id, idle_id, gtid_id].iter().map(|id| spec_part(&srv.task(*id))).collect();

    for (round, how) in ["graceful stop", "kill -9"].iter().enumerate() {
        if round == 0 {
            let exit = srv.stop();
            assert!(exit.success(), "SIGTERM must exit cleanly: {exit}\n{}", srv.diagnostics());
        } else {
            srv.kill9();
        }
        srv.restart();

        let (ids, page) = list_ids(&srv, "");
        assert_eq!(ids, vec![run_id, idle_id, gtid_id], "after {how}: all tasks are there ({page:?})");
        let now: Vec<TaskDto> = page.items.iter().map(spec_part).collect();
        assert_eq!(now, snapshot, "after {how}: the specs are unchanged");

        // The running one runs again (really: it streams what the source writes now) ...
        let t = srv.wait_for_state(run_id, TaskState::Running);
        assert_eq!(t.desired_state, DesiredState::Running, "after {how}: {t:?}");
        db.sql(&format!("INSERT INTO before_restart VALUES ({})", round + 2));
        wait_caught_up(&srv, &db, run_id);

        // ... the others are still stopped.
        for id in [idle_id, gtid_id] {
            let t = srv.task(id);
            assert_eq!((t.state, t.desired_state), (TaskState::Stopped, DesiredState::Stopped), "after {how}: {t:?}");
        }
    }

    // Deleting a task that has files moves them to {data_dir}/.deleted/ (README).
    let t = srv.stop_task(run_id);
    assert_eq!(t.state, TaskState::Stopped, "stop: {t:?}");
    let task_dir = srv.data_dir().join(run_id.to_string());
    assert!(task_dir.is_dir(), "the running task wrote into {}", task_dir.display());
    assert_eq!(srv.delete(&format!("/api/tasks/{run_id}")).0, 204);
    assert!(!task_dir.exists(), "{} must be moved away on DELETE", task_dir.display());
    let moved: Vec<String> = std::fs::read_dir(srv.data_dir().join(".deleted"))
        .unwrap_or_else(|e| panic!("{}/.deleted: {e}", srv.data_dir().display()))
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        moved.iter().any(|n| n.starts_with(&format!("{run_id}-"))),
        "the task's files are kept under .deleted/: {moved:?}"
    );
}

/// Every route of the README's table, with a body where the route takes one.
fn api_routes(id: i64) -> Vec<(&'static str, String, Option<Value>)> {
    let body = task_body("auth-task", 3306);
    vec![
        ("POST", "/api/tasks".to_string(), Some(task_body("auth-other", 3306))),
        ("POST", "/api/tasks/batch".to_string(), Some(json!({"tasks": [task_body("auth-batch", 3306)]}))),
        ("GET", "/api/tasks".to_string(), None),
        ("GET", "/api/summary".to_string(), None),
        ("GET", format!("/api/tasks/{id}"), None),
        ("PUT", format!("/api/tasks/{id}"), Some(body)),
        ("DELETE", format!("/api/tasks/{id}"), None),
        ("POST", format!("/api/tasks/{id}/start"), None),
        ("POST", format!("/api/tasks/{id}/stop"), None),
        ("GET", format!("/api/tasks/{id}/checkpoint"), None),
        ("GET", format!("/api/tasks/{id}/events"), None),
        ("GET", format!("/api/tasks/{id}/files"), None),
        ("GET", format!("/api/tasks/{id}/replication"), None),
        ("GET", "/api/no-such-route".to_string(), None),
    ]
}

fn send(srv: &Server, method: &str, path: &str, headers: &[(&str, &str)], body: &Option<Value>) -> RawResponse {
    let body = body.as_ref().map(|b| ("application/json", serde_json::to_vec(b).expect("serialise")));
    srv.request(method, path, headers, body)
}

fn assert_unauthorized(r: &RawResponse, what: &str, scheme: &str) {
    assert_eq!(r.status, 401, "{what}: status (body {})", r.body);
    assert_eq!(r.error().code, ErrorCode::Unauthorized, "{what}: code (body {})", r.body);
    let challenge =
        r.header("www-authenticate").unwrap_or_else(|| panic!("{what}: no WWW-Authenticate: {:?}", r.headers));
    assert!(challenge.starts_with(scheme), "{what}: WWW-Authenticate {challenge:?} names {scheme}");
}

#[test]
fn bearer_auth_guards_every_api_route() {
    const TOKEN: &str = "tok-4b1d9e0c7a2f";
    let srv = server_with(
        ServerOpts::default()
            .env("BINLOG_SERVER_API_AUTH_ENABLED", "true")
            .env("BINLOG_SERVER_API_AUTH_MODE", "bearer")
            .env("BINLOG_SERVER_API_AUTH_BEARER_TOKEN", TOKEN)
            // Dozens of wrong credentials on purpose: each must be a 401, not the 429 that
            // slows guessing down (security::failed_authentication_is_slowed_down_per_address).
            .env("BINLOG_SERVER_API_AUTH_FAILURE_LIMIT_BURST", "10000"),
    );
    let good = format!("Bearer {TOKEN}");
    let auth = [("Authorization", good.as_str())];

    // One task to aim the refused requests at (so only auth can refuse them).
    let r = send(&srv, "POST", "/api/tasks", &auth, &Some(task_body("auth-task", free_port())));
    let id = r.typed::<TaskDto>(201, "create with the token").id;

    let same_len = {
        let mut t = TOKEN.to_string();
        t.replace_range(TOKEN.len() - 1.., "X");
        format!("Bearer {t}")
    };
    let longer = format!("Bearer {TOKEN}0");
    let shorter = format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]);
    let no_scheme = TOKEN.to_string();
    let basic = format!("Basic {TOKEN}");
    let wrong: &[(&str, Option<&str>)] = &[
        ("no credential", None),
        ("wrong token of the same length", Some(same_len.as_str())),
        ("wrong longer token", Some(longer.as_str())),
        ("wrong shorter token", Some(shorter.as_str())),
        ("the token without the Bearer scheme", Some(no_scheme.as_str())),
        ("the token with the Basic scheme", Some(basic.as_str())),
    ];
    for (method, path, body) in api_routes(id) {
        for (how, header) in wrong {
            let headers: Vec<(&str, &str)> = header.iter().map(|h| ("Authorization", *h)).collect();
            let r = send(&srv, method, &path, &headers, &body);
            assert_unauthorized(&r, &format!("{method} {path} with {how}"), "Bearer");
        }
    }
    // An API key header is no bearer token.
    let r = send(&srv, "GET", "/api/tasks", &[("X-API-Key", TOKEN)], &None);
    assert_unauthorized(&r, "GET /api/tasks with X-API-Key", "Bearer");

    // None of the refused requests did anything.
    let r = send(&srv, "GET", "/api/tasks", &auth, &None);
    assert_eq!(r.status, 200, "list with the token: {}", r.body);
    let page: TaskPage = r.typed(200, "list with the token");
    assert_eq!(page.total, 1, "refused requests created or deleted nothing: {page:?}");
    assert_eq!(page.items[0].state, TaskState::Stopped, "refused requests started nothing: {page:?}");
    assert_eq!(page.items[0].name, "task auth-task", "refused PUTs changed nothing: {page:?}");

    // With the token every route works (the order makes each call valid).
    let expected: &[(&str, String, Option<Value>, u16)] = &[
        ("GET", "/api/tasks".into(), None, 200),
        ("POST", "/api/tasks".into(), Some(task_body("auth-other", 3306)), 201),
        ("GET", format!("/api/tasks/{id}"), None, 200),
        ("PUT", format!("/api/tasks/{id}"), Some(task_body("auth-task", free_port())), 200),
        ("GET", format!("/api/tasks/{id}/checkpoint"), None, 200),
        ("GET", format!("/api/tasks/{id}/events"), None, 200),
        ("GET", format!("/api/tasks/{id}/files"), None, 200),
        ("GET", format!("/api/tasks/{id}/replication"), None, 200),
        ("POST", format!("/api/tasks/{id}/start"), None, 200),
        ("POST", format!("/api/tasks/{id}/stop"), None, 200),
        ("DELETE", format!("/api/tasks/{id}"), None, 204),
        ("GET", "/api/no-such-route".into(), None, 404),
    ];
    for (method, path, body, status) in expected {
        let r = send(&srv, method, path, &auth, body);
        assert_eq!(r.status, *status, "{method} {path} with the token: {}", r.body);
    }
    // The scheme is case-insensitive (RFC 7235).
    let lower = format!("bearer {TOKEN}");
    let r = send(&srv, "GET", "/api/tasks", &[("Authorization", &lower)], &None);
    assert_eq!(r.status, 200, "lower-case scheme: {}", r.body);

    let r = srv.get_raw("/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"), "/healthz stays open");
}

#[test]
fn api_key_auth_uses_its_header() {
    const KEY: &str = "key-8c3f5a71e2d90b4a";
    let srv = server_with(
        ServerOpts::default()
            .env("BINLOG_SERVER_API_AUTH_ENABLED", "true")
            .env("BINLOG_SERVER_API_AUTH_MODE", "api_key")
            .env("BINLOG_SERVER_API_AUTH_API_KEY", KEY)
            .env("BINLOG_SERVER_API_AUTH_FAILURE_LIMIT_BURST", "10000"),
    );
    let wrong_same_len = format!("{}X", &KEY[..KEY.len() - 1]);
    let bearer = format!("Bearer {KEY}");
    let refused: &[(&str, Vec<(&str, &str)>)] = &[
        ("no credential", vec![]),
        ("a wrong key of the same length", vec![("X-API-Key", wrong_same_len.as_str())]),
        ("a longer key", vec![("X-API-Key", "key-8c3f5a71e2d90b4a-and-more")]),
        ("the key as a bearer token", vec![("Authorization", bearer.as_str())]),
    ];
    for (method, path, body) in api_routes(1) {
        for (how, headers) in refused {
            let r = send(&srv, method, &path, headers, &body);
            assert_unauthorized(&r, &format!("{method} {path} with {how}"), "ApiKey");
        }
    }
    let r = send(&srv, "GET", "/api/tasks", &[("X-API-Key", KEY)], &None);
    assert_eq!(r.status, 200, "list with the key: {}", r.body);
    assert_eq!(r.json()["total"], 0, "refused creates created nothing: {}", r.body);
    let r = send(&srv, "POST", "/api/tasks", &[("x-api-key", KEY)], &Some(task_body("k", 3306)));
    let id = r.typed::<TaskDto>(201, "create with the key (header names are case-insensitive)").id;
    let r = send(&srv, "GET", &format!("/api/tasks/{id}"), &[("X-API-Key", KEY)], &None);
    assert_eq!(r.status, 200, "get with the key: {}", r.body);
    let r = srv.get_raw("/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, "ok"), "/healthz stays open");
}

#[test]
fn source_passwords_never_leave_the_process() {
    // Distinctive strings that can only come from the task definitions.
    const PW_FIRST: &str = "Leak-Canary-First-9f3b2c";
    const PW_SECOND: &str = "Leak-Canary-Second-71ad0e";
    const PW_WRONG: &str = "Leak-Canary-Wrong-c0ffee";
    let canaries = [PW_FIRST, PW_SECOND, PW_WRONG];

    let db = MariaDb::start(MariaDbOpts::default());
    db.sql(&format!(
        "CREATE USER 'canary'@'%' IDENTIFIED BY '{PW_FIRST}'; GRANT {REPL_PRIVILEGES} ON *.* TO 'canary'@'%'"
    ));
    let srv = server_with(ServerOpts::default().env("BINLOG_SERVER_LOG_LEVEL", "debug"));
    let mut seen = 0usize;
    let mut check = |what: &str, r: RawResponse| -> RawResponse {
        for pw in canaries {
            assert!(!r.body.contains(pw), "{what}: the response contains a source password: {}", r.body);
            for (name, value) in &r.headers {
                assert!(!value.contains(pw), "{what}: header {name} contains a source password");
            }
        }
        seen += 1;
        r
    };

    let mut body = task_body("canary", db.port());
    body["source"]["user"] = json!("canary");
    body["source"]["password"] = json!(PW_FIRST);
    body["start"] = json!({"mode": "FILE_POS", "file": format!("{}.000001", db.binlog_basename()), "pos": 4});
    let created: TaskDto =
        check("create", send(&srv, "POST", "/api/tasks", &[], &Some(body.clone()))).typed(201, "create");
    let id = created.id;
    let path = format!("/api/tasks/{id}");
    check("get", srv.get_raw(&path));
    check("list", srv.get_raw("/api/tasks"));

    // A new password through PUT (and on the source), then a run with it.
    db.sql(&format!("ALTER USER 'canary'@'%' IDENTIFIED BY '{PW_SECOND}'"));
    body["source"]["password"] = json!(PW_SECOND);
    let updated: TaskDto = check("update", send(&srv, "PUT", &path, &[], &Some(body.clone()))).typed(200, "update");
    assert_eq!(updated.source.password, "***", "{updated:?}");
    let started: TaskDto = check("start", send(&srv, "POST", &format!("{path}/start"), &[], &None)).typed(200, "start");
    assert_eq!(started.state, TaskState::Starting, "{started:?}");
    srv.wait_for_state(id, TaskState::Running);
    for sub in ["", "/replication", "/events", "/checkpoint", "/files"] {
        check(&format!("GET {path}{sub} while running"), srv.get_raw(&format!("{path}{sub}")));
    }
    let stopped: TaskDto = check("stop", send(&srv, "POST", &format!("{path}/stop"), &[], &None)).typed(200, "stop");
    assert_eq!(stopped.state, TaskState::Stopped, "{stopped:?}");

    // A wrong password: the failure is reported, without the password.
    let mut wrong = body.clone();
    wrong["cluster_key"] = json!("canary-wrong");
    wrong["source"]["password"] = json!(PW_WRONG);
    let wrong_id = check("create (wrong password)", send(&srv, "POST", "/api/tasks", &[], &Some(wrong)))
        .typed::<TaskDto>(201, "create (wrong password)")
        .id;
    check("start (wrong password)", send(&srv, "POST", &format!("/api/tasks/{wrong_id}/start"), &[], &None));
    srv.wait_for_state(wrong_id, TaskState::Failed);
    let failed: TaskDto =
        check("get (failed)", srv.get_raw(&format!("/api/tasks/{wrong_id}"))).typed(200, "get (failed)");
    assert_eq!(failed.last_error.map(|e| e.code), Some(TaskErrorCode::SourceAccessDenied));
    check("replication (failed)", srv.get_raw(&format!("/api/tasks/{wrong_id}/replication")));
    check("events (failed)", srv.get_raw(&format!("/api/tasks/{wrong_id}/events")));
    check("list (all)", srv.get_raw("/api/tasks"));
    assert!(seen >= 15, "every response was checked ({seen})");

    // The logs (debug level) talk about the tasks, never with their passwords.
    let log = srv.log_text();
    assert!(log.contains("streaming"), "the debug log covers the run (else this check proves nothing):\n{log}");
    let console = std::fs::read_to_string(srv.console_path()).unwrap_or_default();
    for pw in canaries {
        assert!(!log.contains(pw), "the server log contains a source password ({pw})");
        assert!(!console.contains(pw), "the server console output contains a source password ({pw})");
    }
}
