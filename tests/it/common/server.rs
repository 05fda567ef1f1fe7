//! The binlog-server binary as a real process: own temp data dir, ephemeral port, debug log.
//!
//! HTTP helpers never turn a non-2xx status into a Rust error (tests assert on 4xx bodies); they
//! panic only when there is no HTTP response at all. Like the UI, they send
//! `X-Requested-With` (what the service asks of a request that changes state without a JSON
//! body); `request_bare` and `raw_exchange` send exactly what the test gives, to play a browser
//! on another site. The typed helpers (`task`, `replication`, `files`, `checkpoint`, `create`,
//! `wait_for_state`, ...) deserialize the API's own DTOs and panic with the body when an answer
//! does not parse or has another status; `get`/`post`/... keep the raw `Value` for tests whose
//! point is a malformed or hostile body. Inherited `BINLOG_SERVER_*` variables are
//! removed so a developer's shell cannot change what a test sees. The process is killed by PID
//! when the `Server` drops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use binlog_server::api::dto::{CheckpointDto, EventPage, FileDto, FilePage, ReplicationDto, TaskDto};
use binlog_server::api::error::ErrorCode;
use binlog_server::domain::TaskState;
use binlog_server::meta::TaskEvent;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    append_file, file_len, file_tail, free_port, kill_and_reap, output_with_deadline, pid_listens_on, poll_until,
    read_from, send_signal, temp_dir, thread_stacks, wait_child,
};

/// Path of the server binary cargo built for this test run.
pub const BINARY: &str = env!("CARGO_BIN_EXE_binlog-server");

const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Above the service's default `shutdown_timeout_sec` (30 s), so a slow but orderly shutdown is
/// not mistaken for a hang.
const STOP_TIMEOUT: Duration = Duration::from_secs(45);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle pooled HTTP connection may be reused: under the server's default keep-alive
/// (`http.keep_alive_sec`, 5 s). ureq's own default is 15 s, and a request sent on a connection
/// the server closes at that moment gets no response ("Peer disconnected": a cluster test failed
/// so once).
const POOLED_CONNECTION_MAX_IDLE: Duration = Duration::from_secs(2);
/// Below the server's limit for its HTTP server's stop (`HTTP_STOP_LIMIT`, 10 s): see `stop()`.
const HTTP_STACKS_AFTER: Duration = Duration::from_secs(7);
/// The server's error line when that limit passed.
const HTTP_STOP_HUNG: &str = "the HTTP server did not stop in time";
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
const PORT_ATTEMPTS: usize = 5;
/// How long `wait_for_state` polls.
const STATE_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_TAIL_LINES: usize = 60;

/// How to start a `Server`: extra environment, an optional YAML config, default headers.
#[derive(Debug, Clone, Default)]
pub struct ServerOpts {
    /// Extra environment variables (applied after the harness defaults, so they override them).
    pub env: Vec<(String, String)>,
    /// Written to `<temp>/config.yaml` and passed as `--config`.
    pub config_yaml: Option<String>,
    /// Extra arguments after `serve`.
    pub args: Vec<String>,
    /// Headers every HTTP helper sends (e.g. `Authorization` when auth is on).
    pub headers: Vec<(String, String)>,
    /// The file mode creation mask the server process starts with (default: inherited).
    pub umask: Option<u32>,
    /// A whole command line to run instead of this build's `binlog-server serve` (an installed
    /// package, started the way its unit does): the harness then sets only the listen address,
    /// and the data dir, the log and `config_yaml`/`args` are the command's business.
    pub command: Option<Vec<String>>,
    /// The listener serves HTTPS (`api.tls.*` set by the test): `url()` says `https`, and the
    /// readiness probe is `curl --cacert <this file>`.
    pub https_ca: Option<PathBuf>,
}

impl ServerOpts {
    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the YAML config file content.
    pub fn config_yaml(mut self, yaml: impl Into<String>) -> Self {
        self.config_yaml = Some(yaml.into());
        self
    }

    /// Adds an argument after `serve`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Runs `argv` instead of this build's `binlog-server serve` (see [`ServerOpts::command`]).
    pub fn command(mut self, argv: Vec<String>) -> Self {
        self.command = Some(argv);
        self
    }

    /// Adds a header every HTTP helper sends.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The server serves HTTPS with a certificate this CA file verifies.
    pub fn https(mut self, ca_file: impl Into<PathBuf>) -> Self {
        self.https_ca = Some(ca_file.into());
        self
    }

    /// Starts the server process with this umask (e.g. `0o000`, the most permissive).
    pub fn umask(mut self, mask: u32) -> Self {
        self.umask = Some(mask);
        self
    }
}

/// The header the UI (and these helpers) send with every API request.
pub const REQUESTED_WITH: (&str, &str) = ("X-Requested-With", "binlog-server-tests");

/// An HTTP response as received: status, body text, headers (names lower-case).
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
}

impl RawResponse {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON; `Null` when empty, `Value::String(body)` when it is not JSON.
    pub fn json(&self) -> Value {
        body_json(&self.body)
    }

    /// The body as `T`, after checking the status is `status`; panics with the body otherwise.
    pub fn typed<T: DeserializeOwned>(&self, status: u16, what: &str) -> T {
        assert_eq!(self.status, status, "{what}: status (body {})", self.body);
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{what}: the body is not a {}: {e}\n{}", std::any::type_name::<T>(), self.body))
    }

    /// The body of an error answer (any status); panics when it is not `{error, code, ...}`.
    pub fn error(&self) -> ErrorBody {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("status {}: not an error body: {e}\n{}", self.status, self.body))
    }
}

/// An error answer of the API: `{error, code}`, plus `fields` for validation errors and
/// `items` for those of a batch (the shape of `api::error::ApiError`, whose field names are
/// `&'static str` and so cannot be deserialized into).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub error: String,
    pub code: ErrorCode,
    #[serde(default)]
    pub fields: Vec<FieldMessage>,
    #[serde(default)]
    pub items: Vec<ItemFieldMessage>,
}

impl ErrorBody {
    /// The names of the fields the error blames, in order.
    pub fn field_names(&self) -> Vec<&str> {
        self.fields.iter().map(|f| f.field.as_str()).collect()
    }
}

/// The parts of a task that only its operator changes: the task with its state, desired state,
/// last error, `stuck` and `updated_at` set to fixed values, for comparing a task across
/// restarts.
pub fn spec_part(t: &TaskDto) -> TaskDto {
    TaskDto {
        state: TaskState::Stopped,
        active: false,
        desired_state: binlog_server::domain::DesiredState::Stopped,
        last_error: None,
        stuck: false,
        updated_at: t.created_at,
        ..t.clone()
    }
}

/// One invalid field and why.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMessage {
    pub field: String,
    pub message: String,
}

/// One invalid field of one item of a batch request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemFieldMessage {
    pub index: usize,
    pub field: String,
    pub message: String,
}

/// A running binlog-server owned by one test.
pub struct Server {
    opts: ServerOpts,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    agent: ureq::Agent,
    /// Set once a panic message already carries the logs, so `Drop` does not repeat them.
    logs_reported: bool,
}

enum LaunchError {
    /// Another process bound the port between `free_port()` and the server's bind.
    PortTaken,
}

impl Server {
    /// Starts `binlog-server serve` and waits until `GET /healthz` answers `200 ok`.
    pub fn start(opts: ServerOpts) -> Server {
        let dir = temp_dir("binlog-it-server-");
        std::fs::create_dir_all(dir.path().join("data")).expect("create the server data dir");
        if let Some(yaml) = &opts.config_yaml {
            std::fs::write(dir.path().join("config.yaml"), yaml).expect("write config.yaml");
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(HTTP_TIMEOUT))
            .max_idle_age(POOLED_CONNECTION_MAX_IDLE)
            .build();
        let mut server = Server { opts, dir, port: 0, child: None, agent: config.into(), logs_reported: false };
        server.launch_on_free_port();
        server
    }

    /// The HTTP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>` (`https` when the server serves TLS).
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.opts.https_ca.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// The server's data dir (`BINLOG_SERVER_DATA_DIR`): `<temp>/data`, unless the test set
    /// that variable itself (a data dir on a disk of its own).
    pub fn data_dir(&self) -> PathBuf {
        match self.opts.env.iter().rev().find(|(k, _)| k == "BINLOG_SERVER_DATA_DIR") {
            Some((_, dir)) => PathBuf::from(dir),
            None => self.dir.path().join("data"),
        }
    }

    /// The temp dir holding the data dir, the logs and the config file.
    pub fn root_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log file (`BINLOG_SERVER_LOG_FILE`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The whole server log so far.
    pub fn log_text(&self) -> String {
        read_from(&self.log_path(), 0).unwrap_or_default()
    }

    /// The process's own stdout + stderr (panics and anything before logging is set up).
    pub fn console_path(&self) -> PathBuf {
        self.dir.path().join("console.log")
    }

    /// The PID of the running server; panics when it is not running.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("the server is not running (stopped or killed)")
    }

    /// Whether the process is still running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sets an environment variable for the next (re)start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.opts.env.retain(|(k, _)| k != key);
        self.opts.env.push((key.into(), value.into()));
    }

    /// `GET path` -> (status, JSON body).
    pub fn get(&self, path: &str) -> (u16, Value) {
        let r = self.request("GET", path, &[], None);
        (r.status, r.json())
    }

    /// `POST path` with a JSON body -> (status, JSON body).
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.request("POST", path, &[], Some(json_body(body)));
        (r.status, r.json())
    }

    /// `PUT path` with a JSON body -> (status, JSON body).
    pub fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self.request("PUT", path, &[], Some(json_body(body)));
        (r.status, r.json())
    }

    /// `DELETE path` -> (status, JSON body).
    pub fn delete(&self, path: &str) -> (u16, Value) {
        let r = self.request("DELETE", path, &[], None);
        (r.status, r.json())
    }

    /// `GET path`, which must answer 200 with a `T`.
    pub fn get_as<T: DeserializeOwned>(&self, path: &str) -> T {
        self.get_raw(path).typed(200, &format!("GET {path}"))
    }

    /// `POST path` with a JSON body, which must answer `status` with a `T`.
    pub fn post_as<T: DeserializeOwned>(&self, path: &str, body: &Value, status: u16) -> T {
        self.request("POST", path, &[], Some(json_body(body))).typed(status, &format!("POST {path}"))
    }

    /// `PUT path` with a JSON body, which must answer `status` with a `T`.
    pub fn put_as<T: DeserializeOwned>(&self, path: &str, body: &Value, status: u16) -> T {
        self.request("PUT", path, &[], Some(json_body(body))).typed(status, &format!("PUT {path}"))
    }

    /// `method path` with an optional JSON body, answered with an error: `(status, body)`.
    /// Panics when the answer is a success or not an error body.
    pub fn error(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, ErrorBody) {
        let r = self.request(method, path, &[], body.map(json_body));
        assert!(r.status >= 400, "{method} {path}: expected an error, got {}: {}", r.status, r.body);
        (r.status, r.error())
    }

    /// `GET /api/tasks/{id}`.
    pub fn task(&self, id: i64) -> TaskDto {
        self.get_as(&format!("/api/tasks/{id}"))
    }

    /// `POST /api/tasks` with `body`; panics unless the task was created (201).
    pub fn create(&self, body: &Value) -> TaskDto {
        self.post_as("/api/tasks", body, 201)
    }

    /// `POST /api/tasks/{id}/start`; panics unless 200. The task as the answer shows it.
    pub fn start_task(&self, id: i64) -> TaskDto {
        self.post_as(&format!("/api/tasks/{id}/start"), &Value::Object(Default::default()), 200)
    }

    /// `POST /api/tasks/{id}/stop` (returns once files are flushed and the state stored);
    /// panics unless 200.
    pub fn stop_task(&self, id: i64) -> TaskDto {
        self.post_as(&format!("/api/tasks/{id}/stop"), &Value::Object(Default::default()), 200)
    }

    /// `GET /api/tasks/{id}/replication`: the live status.
    pub fn replication(&self, id: i64) -> ReplicationDto {
        self.get_as(&format!("/api/tasks/{id}/replication"))
    }

    /// `GET /api/tasks/{id}/files` items, in stream order.
    pub fn files(&self, id: i64) -> Vec<FileDto> {
        self.get_as::<FilePage>(&format!("/api/tasks/{id}/files")).items
    }

    /// `GET /api/tasks/{id}/checkpoint`.
    pub fn checkpoint(&self, id: i64) -> CheckpointDto {
        self.get_as(&format!("/api/tasks/{id}/checkpoint"))
    }

    /// The task's event timeline (`GET /api/tasks/{id}/events?limit=1000`), newest first.
    pub fn events(&self, id: i64) -> Vec<TaskEvent> {
        self.get_as::<EventPage>(&format!("/api/tasks/{id}/events?limit=1000")).items
    }

    /// Polls until the task is in `state`; returns it then. A task that turns FAILED when
    /// another state was awaited panics at once with its `last_error` and the server's logs.
    pub fn wait_for_state(&self, id: i64, state: TaskState) -> TaskDto {
        poll_until(STATE_TIMEOUT, &format!("task {id} to be {state}"), || {
            let t = self.task(id);
            if t.state == state {
                return Some(t);
            }
            if t.state == TaskState::Failed {
                panic!("task {id} FAILED while waiting for {state}: {:?}\n{}", t.last_error, self.diagnostics());
            }
            None
        })
    }

    /// `GET path` -> the raw response.
    pub fn get_raw(&self, path: &str) -> RawResponse {
        self.request("GET", path, &[], None)
    }

    /// `POST path` with a body of the given content type -> the raw response.
    pub fn post_raw(&self, path: &str, content_type: &str, body: &[u8]) -> RawResponse {
        self.request("POST", path, &[], Some((content_type, body.to_vec())))
    }

    /// `PUT path` with a body of the given content type -> the raw response.
    pub fn put_raw(&self, path: &str, content_type: &str, body: &[u8]) -> RawResponse {
        self.request("PUT", path, &[], Some((content_type, body.to_vec())))
    }

    /// `DELETE path` -> the raw response.
    pub fn delete_raw(&self, path: &str) -> RawResponse {
        self.request("DELETE", path, &[], None)
    }

    /// Any request: extra headers (after the default ones and [`REQUESTED_WITH`]) and an
    /// optional `(content type, body)`. Panics only when no HTTP response arrives.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> RawResponse {
        let mut all: Vec<(&str, &str)> = self.opts.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        all.push(REQUESTED_WITH);
        all.extend_from_slice(headers);
        self.request_bare(method, path, &all, body)
    }

    /// A request with exactly `headers` (no default header, no [`REQUESTED_WITH`]): what a
    /// page on another site can make a browser send.
    pub fn request_bare(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> RawResponse {
        let url = self.url(path);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let (content_type, bytes) = body.unwrap_or(("", Vec::new()));
        if !content_type.is_empty() {
            builder = builder.header("content-type", content_type);
        }
        let request = builder.body(bytes).unwrap_or_else(|e| panic!("building {method} {url}: {e}"));
        let mut response = self.agent.run(request).unwrap_or_else(|e| panic!("{method} {url}: no HTTP response: {e}"));
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_else(|e| panic!("{method} {url}: reading the body: {e}"));
        RawResponse { status, body, headers }
    }

    /// Writes `request` (a whole HTTP/1.1 request, e.g. with a `Host` header of the test's
    /// choosing) on a new connection and reads the answer until the server closes it or
    /// `timeout` passes; `None` when no status line arrived in time.
    pub fn raw_exchange(&self, request: &[u8], timeout: Duration) -> Option<RawResponse> {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect to the server");
        conn.set_read_timeout(Some(timeout)).expect("set a read timeout");
        conn.write_all(request).expect("write the request");
        let mut bytes = Vec::new();
        let mut buf = [0u8; 8192];
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
            if let Some(r) = parse_http_response(&bytes)
                && r.header("content-length").and_then(|l| l.parse::<usize>().ok()) == Some(r.body.len())
            {
                return Some(r);
            }
        }
        parse_http_response(&bytes)
    }

    /// SIGKILL (a crash): no graceful shutdown. The PID is reaped when this returns.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// Graceful stop: SIGTERM, then wait (with a deadline) for the exit status.
    ///
    /// A stop that outlasts [`HTTP_STACKS_AFTER`] has its threads' stacks taken while the HTTP
    /// server's own stop may still hang (the server gives it 10 s, then stops the tasks without
    /// it); when the log then says it did not stop in time, and the test did not make it hang
    /// (`BINLOG_TEST_HTTP_STOP_STALL`), the stop fails with those stacks: such a hang would
    /// otherwise pass as a shutdown 10 s slower, with nothing saying where it hung.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("stop(): the server is not running");
        let log_start = file_len(&self.log_path()) as usize;
        send_signal(child.id(), "TERM");
        let mut stacks_while_stopping = None;
        let exited = match wait_child(&mut child, HTTP_STACKS_AFTER) {
            Some(status) => Some(status),
            None => {
                stacks_while_stopping = Some(thread_stacks(child.id(), "binlog-server"));
                wait_child(&mut child, STOP_TIMEOUT.saturating_sub(HTTP_STACKS_AFTER))
            }
        };
        match exited {
            Some(status) => {
                let stall_asked = self.opts.env.iter().any(|(k, v)| k == "BINLOG_TEST_HTTP_STOP_STALL" && v == "1");
                let log = std::fs::read(self.log_path()).unwrap_or_default();
                let since = String::from_utf8_lossy(log.get(log_start..).unwrap_or_default());
                if !stall_asked && since.contains(HTTP_STOP_HUNG) {
                    let stacks = stacks_while_stopping.unwrap_or_else(|| "(no stacks: it exited first)".into());
                    panic!(
                        "binlog-server (pid {}) exited, but its HTTP server's stop hung: the log says {HTTP_STOP_HUNG:?}\n{}\n\
                         stacks taken {HTTP_STACKS_AFTER:?} after SIGTERM:\n{stacks}",
                        child.id(),
                        self.reported_diagnostics()
                    );
                }
                status
            }
            None => {
                // Where it hangs, read before the kill.
                let stacks = thread_stacks(child.id(), "binlog-server");
                kill_and_reap(&mut child);
                panic!(
                    "binlog-server (pid {}) did not exit within {STOP_TIMEOUT:?} of SIGTERM; killed it\n{}\n{stacks}",
                    child.id(),
                    self.reported_diagnostics()
                );
            }
        }
    }

    /// Stops the server if it runs, then starts it again with the same data dir, config and
    /// environment, on the same port if it is still free (else on a new one: use `url()`).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        let port = self.port;
        if self.launch(port).is_err() {
            eprintln!("binlog-server: port {port} was taken meanwhile, restarting on another");
            self.launch_on_free_port();
        }
    }

    /// The tails of the server log and of the console output, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "--- {} (last {LOG_TAIL_LINES} lines) ---\n{}\n--- {} (last {LOG_TAIL_LINES} lines) ---\n{}",
            self.log_path().display(),
            file_tail(&self.log_path(), LOG_TAIL_LINES),
            self.console_path().display(),
            file_tail(&self.console_path(), LOG_TAIL_LINES)
        )
    }

    /// The diagnostics for a panic message; `Drop` then does not print them a second time.
    fn reported_diagnostics(&mut self) -> String {
        self.logs_reported = true;
        self.diagnostics()
    }

    fn launch_on_free_port(&mut self) {
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            match self.launch(port) {
                Ok(()) => return,
                Err(LaunchError::PortTaken) => {
                    eprintln!("binlog-server: port {port} raced (attempt {attempt}), trying another");
                }
            }
        }
        panic!("binlog-server could not bind a free port in {PORT_ATTEMPTS} attempts\n{}", self.reported_diagnostics());
    }

    /// Spawns the server on `port` and polls `/healthz` until this very process answers.
    fn launch(&mut self, port: u16) -> Result<(), LaunchError> {
        let console = self.console_path();
        let log = self.log_path();
        let (console_start, log_start) = (file_len(&console), file_len(&log));

        let mut cmd = match &self.opts.command {
            Some(argv) => {
                let mut cmd = Command::new(&argv[0]);
                cmd.args(&argv[1..]);
                scrub_env(&mut cmd);
                cmd
            }
            None => {
                let mut cmd = Command::new(BINARY);
                cmd.arg("serve");
                if self.opts.config_yaml.is_some() {
                    cmd.arg("--config").arg(self.dir.path().join("config.yaml"));
                }
                cmd.args(&self.opts.args);
                scrub_env(&mut cmd);
                cmd.env("BINLOG_SERVER_DATA_DIR", self.data_dir())
                    .env("BINLOG_SERVER_LOG_FILE", &log)
                    .env("BINLOG_SERVER_LOG_LEVEL", "debug");
                cmd
            }
        };
        if let Some(mask) = self.opts.umask {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask(2) is async-signal-safe and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(move || {
                    libc::umask(mask as libc::mode_t);
                    Ok(())
                });
            }
        }
        cmd.env("BINLOG_SERVER_LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)));
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(append_file(&console))
            .stderr(append_file(&console))
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {program}: {e}"));
        self.port = port;
        self.child = Some(child);

        let health = ureq::Agent::from(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(2)))
                .build(),
        );
        let url = self.url("/healthz");
        let what = format!("binlog-server at {url} to answer 200 ok");
        poll_until(READY_TIMEOUT, &what, || {
            let child = self.child.as_mut().expect("child was just spawned");
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                let new_output = format!(
                    "{}{}",
                    read_from(&console, console_start).unwrap_or_default(),
                    read_from(&log, log_start).unwrap_or_default()
                );
                if new_output.contains("Address already in use") || new_output.contains("os error 98") {
                    return Some(Err(LaunchError::PortTaken));
                }
                panic!("binlog-server exited during start-up ({status})\n{}", self.reported_diagnostics());
            }
            if let Some(ca) = &self.opts.https_ca {
                let out = Command::new("curl")
                    .args(["-sS", "--max-time", "2", "--cacert"])
                    .arg(ca)
                    .arg(&url)
                    .output()
                    .ok()?;
                if !out.status.success() || String::from_utf8_lossy(&out.stdout).trim() != "ok" {
                    return None;
                }
            } else {
                let mut response = health.get(&url).call().ok()?;
                let body = response.body_mut().read_to_string().ok()?;
                if response.status() != 200 || body.trim() != "ok" {
                    return None;
                }
            }
            // Another test's server on a raced port would answer too: check it is ours.
            pid_listens_on(child.id(), port).then_some(Ok(()))
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
        if std::thread::panicking() && !self.logs_reported {
            eprintln!("{}", self.diagnostics());
        }
    }
}

/// Runs the server binary once (`migrate status`, a config error, ...) with `env` on top of a
/// scrubbed environment; returns (exit code, stdout, stderr). A signal exit reports -1.
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BINARY);
    cmd.args(args);
    scrub_env(&mut cmd);
    cmd.envs(env.iter().copied());
    let what = format!("binlog-server {}", args.join(" "));
    let out = output_with_deadline(&mut cmd, CLI_TIMEOUT, &what);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Removes inherited `BINLOG_SERVER_*` variables so only what the test sets reaches the binary.
fn scrub_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BINLOG_SERVER_") {
            cmd.env_remove(key);
        }
    }
}

fn json_body(value: &Value) -> (&'static str, Vec<u8>) {
    let bytes = serde_json::to_vec(value).expect("a serde_json::Value always serialises");
    ("application/json", bytes)
}

/// Status, headers and body of a raw HTTP/1.1 answer (`None` until the head is complete).
pub fn parse_http_response(bytes: &[u8]) -> Option<RawResponse> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(RawResponse { status, body: String::from_utf8_lossy(&bytes[end + 4..]).into_owned(), headers })
}

fn body_json(body: &str) -> Value {
    if body.trim().is_empty() {
        return Value::Null;
    }
    serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()))
}
