//! Typed configuration: defaults < YAML file < `BINLOG_SERVER_*` environment variables.
//!
//! This file is the one place where defaults live. The list of keys is derived from
//! `Settings::default()` itself, so the environment names, the unknown-key check and the
//! reference table in `docs/guide/configuration.md` (checked by a test) can never drift apart.
//! It must never print a secret: `Secret` fields display as `***`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::StallAfter;
use crate::secret::Secret;

/// Prefix of every environment variable the service reads.
pub const ENV_PREFIX: &str = "BINLOG_SERVER_";
/// The environment variable naming the config file (same as `--config`).
pub const ENV_CONFIG_FILE: &str = "BINLOG_SERVER_CONFIG";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `standalone` (one process, any metadata backend) or `cluster` (several nodes on one
    /// MySQL/MariaDB metadata database, coordinated by leases; see docs/guide/cluster.md).
    pub mode: Mode,
    /// HTTP listen address. Loopback by default: another address needs the API protected.
    pub listen_addr: String,
    /// Directory for binlog files and the embedded metadata database.
    pub data_dir: PathBuf,
    /// Metadata database: empty = embedded SQLite at `{data_dir}/meta.db`; `sqlite://PATH` or
    /// `mysql://USER:PASS@HOST:PORT/DB`.
    pub meta_dsn: Secret,
    /// Reads `meta_dsn` from this file when set (keeps the password out of the environment).
    pub meta_dsn_file: String,
    /// Connections in the metadata pool.
    pub meta_pool_size: u32,
    /// Seconds the graceful shutdown may take before the process exits anyway.
    pub shutdown_timeout_sec: u64,
    /// Refuse to start unless the API and metrics ask for a credential and the listener serves
    /// TLS or is loopback (the rules `check_production` names).
    pub production: bool,
    /// The most tasks this service (or cluster: they share the metadata database) holds; a
    /// create beyond it is refused (409 `TASK_LIMIT_REACHED`).
    pub max_tasks: u32,
    pub log: LogSettings,
    pub http: HttpSettings,
    pub api: ApiSettings,
    pub ui: UiSettings,
    pub secrets: SecretsSettings,
    pub tracing: TracingSettings,
    pub upload: UploadSettings,
    pub storage: StorageSettings,
    pub replication: ReplicationSettings,
    pub retry: RetrySettings,
    pub writer: WriterSettings,
    pub cluster: ClusterSettings,
    pub relay: RelaySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Standalone,
            listen_addr: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            meta_dsn: Secret::default(),
            meta_dsn_file: String::new(),
            meta_pool_size: 8,
            shutdown_timeout_sec: 30,
            production: false,
            max_tasks: 1000,
            log: LogSettings::default(),
            http: HttpSettings::default(),
            api: ApiSettings::default(),
            ui: UiSettings::default(),
            secrets: SecretsSettings::default(),
            tracing: TracingSettings::default(),
            upload: UploadSettings::default(),
            storage: StorageSettings::default(),
            replication: ReplicationSettings::default(),
            retry: RetrySettings::default(),
            writer: WriterSettings::default(),
            cluster: ClusterSettings::default(),
            relay: RelaySettings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Standalone,
    Cluster,
}

/// Cluster mode: who this node is and how long its leases last (see docs/guide/cluster.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// This node's stable name, `[A-Za-z0-9._-]{1,64}`. Empty: generated once and kept in
    /// `{data_dir}/node_id`.
    pub node_id: String,
    /// A lease not renewed for this long (by the metadata database's clock) may be taken over.
    pub lease_ttl_sec: u64,
    /// How often a node renews its leases and heartbeats; at most half the TTL.
    pub lease_renew_interval_sec: u64,
    /// Most tasks one node runs at once; 0 = no limit.
    pub max_tasks_per_node: u32,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            node_id: String::new(),
            lease_ttl_sec: 15,
            lease_renew_interval_sec: 5,
            max_tasks_per_node: 0,
        }
    }
}

/// Checks a node id: `[A-Za-z0-9._-]{1,64}`.
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub level: LogLevel,
    pub format: LogFormat,
    /// Log file path; empty = standard error.
    pub file: String,
    /// Rotate the log file when it reaches this size.
    pub max_size_mb: u64,
    /// Rotated files kept (`file.1` .. `file.N`).
    pub max_files: u32,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: LogLevel::Info,
            format: LogFormat::Text,
            file: String::new(),
            max_size_mb: 100,
            max_files: 5,
        }
    }
}

/// The HTTP listener: what every request must respect, whatever its route.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Seconds a client has to send a request body once its headers arrived (then 408).
    pub body_timeout_sec: u64,
    /// Host names (comma-separated, no port) answered besides `localhost` and IP addresses while
    /// a route is open without authentication: e.g. a reverse proxy's name. Every other `Host`
    /// is refused then (DNS rebinding), and an `Origin` naming one of these counts as ours.
    pub allowed_hosts: String,
    /// Largest request body under `/api` (then 413): a task definition is a few hundred bytes,
    /// a batch of 100 some tens of KiB.
    pub max_body_bytes: u64,
    /// Seconds a client has to send its request headers once connected (then 408).
    pub request_timeout_sec: u64,
    /// Seconds an idle keep-alive connection stays open; 0 closes every connection after its
    /// response.
    pub keep_alive_sec: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            body_timeout_sec: 10,
            allowed_hosts: String::new(),
            max_body_bytes: 64 * 1024,
            request_timeout_sec: 5,
            keep_alive_sec: 5,
        }
    }
}

impl HttpSettings {
    /// `allowed_hosts` as lower-case names.
    pub fn allowed_host_names(&self) -> Vec<String> {
        self.allowed_hosts
            .split(',')
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    pub auth: AuthSettings,
    pub rate_limit: RateLimitSettings,
    pub tls: ApiTlsSettings,
}

/// HTTPS on the HTTP listener: both files set, or neither (plain HTTP). The certificate is
/// read again on SIGHUP.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiTlsSettings {
    /// PEM certificate chain, the server's certificate first.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of that certificate.
    pub key_file: String,
}

impl ApiTlsSettings {
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty() && !self.key_file.is_empty()
    }
}

/// The operator UI at `/ui/`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiSettings {
    /// Serve the UI from this directory (e.g. `static/ui`) instead of the copy compiled into the
    /// binary: for UI development, every request reads the disk.
    pub dev_dir: String,
}

/// Per-client-address request limit on `/api` (429 with `Retry-After`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Sustained requests per second per address.
    pub requests_per_second: f64,
    /// Requests an address may make at once before the rate applies.
    pub burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings { enabled: false, requests_per_second: 20.0, burst: 40 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    Bearer,
    ApiKey,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub enabled: bool,
    pub mode: AuthMode,
    pub bearer_token: Secret,
    pub bearer_token_file: String,
    pub api_key: Secret,
    pub api_key_file: String,
    pub api_key_header: String,
    pub protect_api: bool,
    pub protect_metrics: bool,
    /// Permit a non-loopback listen address with auth disabled (warned at every start).
    pub allow_insecure_remote: bool,
    pub failure_limit: FailureLimitSettings,
}

/// Wrong credentials per client address, on every route behind authentication (on by default).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailureLimitSettings {
    pub enabled: bool,
    /// Wrong credentials an address may present in a row.
    pub burst: u32,
    /// Then this many per minute; meanwhile its requests to protected routes get 429.
    pub per_minute: u32,
}

impl Default for FailureLimitSettings {
    fn default() -> Self {
        FailureLimitSettings { enabled: true, burst: 10, per_minute: 6 }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            enabled: false,
            mode: AuthMode::Bearer,
            bearer_token: Secret::default(),
            bearer_token_file: String::new(),
            api_key: Secret::default(),
            api_key_file: String::new(),
            api_key_header: "X-API-Key".into(),
            protect_api: true,
            protect_metrics: true,
            allow_insecure_remote: false,
            failure_limit: FailureLimitSettings::default(),
        }
    }
}

/// Upload of sealed files to S3-compatible storage. Off by default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadSettings {
    pub enabled: bool,
    /// `https://s3.example.com` or `http://127.0.0.1:9000` (any S3-compatible service).
    pub endpoint: String,
    pub bucket: String,
    pub access_key: Secret,
    pub access_key_file: String,
    pub secret_key: Secret,
    pub secret_key_file: String,
    pub region: String,
    /// Objects are `{prefix}/{cluster_key}/{source_identity}/{file}`.
    pub prefix: String,
    /// `bucket` in the path (the default with a custom endpoint); false for virtual-host style.
    pub path_style: bool,
    /// Files above this size go up in parts.
    pub multipart_threshold_mb: u64,
    pub part_size_mb: u64,
    /// First retry delay of a failed upload; doubles up to `retry_max_sec`.
    pub retry_initial_sec: u64,
    pub retry_max_sec: u64,
    pub request_timeout_sec: u64,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            enabled: false,
            endpoint: String::new(),
            bucket: String::new(),
            access_key: Secret::default(),
            access_key_file: String::new(),
            secret_key: Secret::default(),
            secret_key_file: String::new(),
            region: "us-east-1".into(),
            prefix: String::new(),
            path_style: true,
            multipart_threshold_mb: 64,
            part_size_mb: 16,
            retry_initial_sec: 5,
            retry_max_sec: 900,
            request_timeout_sec: 120,
        }
    }
}

/// Local and bucket retention (the periods themselves are per task: `storage` in the API).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// How often each task looks for files past their retention.
    pub retention_interval_sec: u64,
    /// The folder `POST /api/tasks/{id}/import` may read files from (empty: import over the API
    /// is off; `binlog-server import` reads any path its user can).
    pub import_dir: String,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings { retention_interval_sec: 3600, import_dir: String::new() }
    }
}

/// OpenTelemetry trace export over OTLP/HTTP (protobuf). Off by default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingSettings {
    pub enabled: bool,
    /// The OTLP/HTTP traces endpoint (a collector, an agent, or Jaeger's OTLP port).
    pub endpoint: String,
    /// Fraction of new traces kept, 0.0..=1.0.
    pub sample_ratio: f64,
    pub service_name: String,
    /// How often finished spans are sent.
    pub export_interval_ms: u64,
}

impl Default for TracingSettings {
    fn default() -> Self {
        TracingSettings {
            enabled: false,
            endpoint: "http://127.0.0.1:4318/v1/traces".into(),
            sample_ratio: 1.0,
            service_name: "binlog-server".into(),
            export_interval_ms: 5000,
        }
    }
}

/// The key that encrypts source passwords in the metadata store (AES-256-GCM).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSettings {
    /// 32 bytes as base64 or hex. Every node sharing a metadata database needs the same key.
    pub key: Secret,
    /// Read the key from this file. With neither set, `{data_dir}/secrets.key` is used, and
    /// generated (mode 0600) the first time.
    pub key_file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationSettings {
    /// Default replica server_id of task N is `server_id_base + N` (unless the task sets one).
    pub server_id_base: u32,
    /// Heartbeat period asked of the source.
    pub heartbeat_period_ms: u64,
    /// Silence longer than `heartbeat_period_ms * heartbeat_timeout_factor` is a dead link.
    pub heartbeat_timeout_factor: u32,
    /// TCP connect + handshake timeout.
    pub connect_timeout_ms: u64,
    /// First retry delay after a transient error; doubles up to `retry_max_ms` (with jitter).
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Largest packet accepted from the source (the source's max_allowed_packet is at most 1 GiB).
    pub max_event_bytes: u64,
    /// The directory a task's `source.tls_ca_file` names a file in; empty: no CA file can be
    /// used (verify_identity then checks against the bundled public roots).
    pub tls_ca_dir: String,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        ReplicationSettings {
            server_id_base: 3_000_000_000,
            heartbeat_period_ms: 1000,
            heartbeat_timeout_factor: 5,
            connect_timeout_ms: 10_000,
            retry_initial_ms: 500,
            retry_max_ms: 60_000,
            max_event_bytes: 1 << 30,
            tls_ca_dir: String::new(),
        }
    }
}

/// When retrying stops being the answer (the failure policy, `src/retry.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySettings {
    /// The same retryable failure at the same source position this many times in a row, with no
    /// progress in between, fails the task (SOURCE_EVENT_CORRUPT, SOURCE_STREAM_UNREADABLE);
    /// 0 never does.
    pub same_error_limit: u32,
    /// A task retrying for longer than this counts as stuck (`binlog_server_tasks_stuck`, first
    /// on the UI's dashboard).
    pub alert_after_sec: u64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings { same_error_limit: 5, alert_after_sec: 300 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriterSettings {
    /// An fsync starts at the latest this long after the first unsynced byte arrived.
    pub fsync_max_delay_ms: u64,
    /// An fsync starts once this many unsynced bytes are pending (also the batch size cap).
    pub fsync_max_bytes: u64,
    /// The durable checkpoint is written to the metadata store at most this often (and always
    /// at rotation and stop). Lower = less to re-fetch after a crash; never affects safety.
    pub checkpoint_interval_ms: u64,
    /// Page-cache bypass: write binlog files with O_DIRECT from an aligned buffer (`auto`: where
    /// the data directory's filesystem takes it and is not tmpfs, else buffered with one log line;
    /// `on`: refuse to start a task where it does not; `off`, the default: through the page cache).
    pub direct_io: DirectIo,
    /// The most writers that write and fsync at the same time; every task's writer runs its
    /// work on this shared pool of threads (see `actors::file_writer::actor`).
    pub threads: usize,
    /// A writer's batch (write-out and fsync, or the checkpoint's store) still running after this
    /// many seconds is said to be stalled: a warning, a `WRITER_STALLED` event, the dashboard
    /// (see `actors::file_writer::stall`).
    pub stall_after_sec: u64,
    /// A writer's start (crash recovery and reconciling the local files with the checkpoint,
    /// before the task streams) still running after this many seconds is said to be stalled, as
    /// a batch is: longer than a batch's, since a start may read a whole open file back.
    pub start_stall_after_sec: u64,
}

impl WriterSettings {
    /// `stall_after_sec` and `start_stall_after_sec` as durations.
    pub fn stall_after(&self) -> StallAfter {
        StallAfter {
            batch: Duration::from_secs(self.stall_after_sec),
            start: Duration::from_secs(self.start_stall_after_sec),
        }
    }
}

impl Default for WriterSettings {
    fn default() -> Self {
        WriterSettings {
            fsync_max_delay_ms: 2,
            fsync_max_bytes: 8 << 20,
            checkpoint_interval_ms: 200,
            // Off by default: O_DIRECT lowered catch-up's CPU per GiB on one machine (2026-12-04)
            // and made catch-up slower at the same CPU on another (2026-12-07, seventeenth
            // session); since small flushes go through the cache it no longer adds to live
            // commit latency (docs/performance.md).
            direct_io: DirectIo::Off,
            // 1,000 tasks streaming on 2 cores, one run each: 68% of a core with 16 threads, 85%
            // with 64, 106% with 512, 112% with a thread per task (docs/performance.md,
            // 2026-12-05, where longer runs compare 16 with a thread per task).
            threads: 16,
            // Healthy disks take milliseconds and a slow one a second or two (the slow-fsync
            // warning's line); ten seconds without an answer is a hang, not slowness.
            stall_after_sec: 10,
            // A start reads back what lies past the stored checkpoint and, to resume the open
            // file's summary, that file (up to `max_binlog_size`, 1 GiB): a minute is 17 MB/s,
            // a disk too slow (or hung) to stream from anyway.
            start_stall_after_sec: 60,
        }
    }
}

/// `writer.direct_io` (see `actors::file_writer::direct`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectIo {
    Auto,
    On,
    Off,
}

/// The relay listener: replicas and `mariadb-binlog` read the archive over the replication
/// protocol (docs/guide/relay.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySettings {
    /// `HOST:PORT` of the relay listener; empty (the default) = no relay.
    pub listen_addr: String,
    /// TLS on the relay listener (the MySQL protocol's upgrade): both files, or neither.
    pub tls: RelayTlsSettings,
    /// Without `tls`, a listen address other hosts can reach is refused unless this is set
    /// (relay users' passwords are never sent, but the binlog's row data is, in clear).
    pub allow_plaintext_remote: bool,
    /// Failed relay logins allowed per minute and client address (after `failure_burst`); then
    /// that address is refused until its budget refills.
    pub failure_per_minute: u32,
    pub failure_burst: u32,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            listen_addr: String::new(),
            tls: RelayTlsSettings::default(),
            allow_plaintext_remote: false,
            failure_per_minute: 10,
            failure_burst: 5,
        }
    }
}

/// TLS on the relay listener: a client asks for it in its handshake (CLIENT_SSL), as with a
/// MySQL/MariaDB server. When set, clients must use it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayTlsSettings {
    /// PEM certificate chain, the relay's certificate first.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of that certificate.
    pub key_file: String,
}

impl RelayTlsSettings {
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty() && !self.key_file.is_empty()
    }
}

impl RelaySettings {
    /// The address to listen on, `None` when the relay is off.
    pub fn socket_addr(&self) -> Result<Option<SocketAddr>, Invalid> {
        let tls = &self.tls;
        if tls.cert_file.is_empty() != tls.key_file.is_empty() {
            let (set, unset) =
                if tls.cert_file.is_empty() { ("key_file", "cert_file") } else { ("cert_file", "key_file") };
            return Err(invalid(
                &format!("relay.tls.{unset}"),
                format!("relay.tls.{set} is set but relay.tls.{unset} is not: set both (TLS) or neither"),
            ));
        }
        if self.listen_addr.trim().is_empty() {
            return Ok(None);
        }
        let addr: SocketAddr = self
            .listen_addr
            .trim()
            .parse()
            .map_err(|e| invalid("relay.listen_addr", format!("{:?} is not HOST:PORT ({e})", self.listen_addr)))?;
        if self.plaintext_remote(addr) && !self.allow_plaintext_remote {
            return Err(invalid(
                "relay.listen_addr",
                format!(
                    "{addr} is reachable from other hosts but the relay has no TLS: set relay.tls.cert_file and \
                     relay.tls.key_file, listen on 127.0.0.1, or accept that row data crosses the network in clear \
                     with relay.allow_plaintext_remote=true"
                ),
            ));
        }
        if self.failure_per_minute == 0 {
            return Err(invalid("relay.failure_per_minute", "must be at least 1"));
        }
        Ok(Some(addr))
    }

    /// Whether a relay on `addr` would send row data in clear to other hosts.
    fn plaintext_remote(&self, addr: SocketAddr) -> bool {
        !addr.ip().is_loopback() && !self.tls.enabled()
    }
}

/// A configuration problem: start-up stops with exit code 2 and this message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    fn new(msg: impl Into<String>) -> Self {
        ConfigError(msg.into())
    }
}

/// Every leaf key of the configuration as a dotted path (`api.auth.enabled`), from the defaults.
pub fn known_keys() -> Vec<String> {
    let value = serde_json::to_value(Settings::default()).expect("Settings serialises to JSON");
    let mut keys = Vec::new();
    collect_leaves(&value, String::new(), &mut keys);
    keys
}

fn collect_leaves(value: &serde_json::Value, prefix: String, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                collect_leaves(v, path, out);
            }
        }
        _ => out.push(prefix),
    }
}

/// `api.auth.enabled` -> `BINLOG_SERVER_API_AUTH_ENABLED`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_ascii_uppercase())
}

/// The default value of every key, rendered for the docs table.
pub fn default_values() -> BTreeMap<String, String> {
    let value = serde_json::to_value(Settings::default()).expect("Settings serialises to JSON");
    let mut out = BTreeMap::new();
    for key in known_keys() {
        let mut v = &value;
        for part in key.split('.') {
            v = &v[part];
        }
        let rendered = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        };
        out.insert(key, rendered);
    }
    out
}

/// Loads the configuration: defaults, then `file` (if any), then the environment `env`.
///
/// `env` is passed in (rather than read here) so tests need not touch the process environment.
pub fn load(file: Option<&Path>, env: &[(String, String)], purpose: Purpose) -> Result<Settings, ConfigError> {
    let keys: BTreeSet<String> = known_keys().into_iter().collect();
    let by_env: BTreeMap<String, &String> = keys.iter().map(|k| (env_name(k), k)).collect();

    let defaults = config::Config::try_from(&Settings::default())
        .map_err(|e| ConfigError::new(format!("internal error building defaults: {e}")))?;
    let mut builder = config::Config::builder().add_source(defaults);

    let file_label = file.map(|p| p.display().to_string());
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::new(format!("config file {} does not exist or is not a file", path.display())));
        }
        let label = path.display().to_string();
        let mut tree: serde_json::Value = config::Config::builder()
            .add_source(config::File::from(path.to_path_buf()).format(config::FileFormat::Yaml).required(true))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::new(format!("cannot read config file {label}: {e}")))?;
        let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        expand_tree(&mut tree, "", &lookup).map_err(|e| ConfigError::new(format!("{e} in {label}")))?;
        let expanded = config::Config::try_from(&tree)
            .map_err(|e| ConfigError::new(format!("cannot read config file {label}: {e}")))?;
        builder = builder.add_source(expanded);
    }

    let mut env_keys: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in env {
        if !name.starts_with(ENV_PREFIX) || name == ENV_CONFIG_FILE {
            continue;
        }
        let Some(key) = by_env.get(name.as_str()) else {
            return Err(ConfigError::new(format!(
                "unknown environment variable {name}: no configuration key has that name \
                 (see docs/guide/configuration.md)"
            )));
        };
        builder =
            builder.set_override(key.as_str(), value.as_str()).map_err(|e| ConfigError::new(format!("{name}: {e}")))?;
        env_keys.insert((*key).clone(), name.clone());
    }

    let merged = builder.build().map_err(|e| match &file_label {
        Some(f) => ConfigError::new(format!("cannot read config file {f}: {e}")),
        None => ConfigError::new(format!("invalid configuration: {e}")),
    })?;

    // Unknown keys can only come from the file: environment names were checked above.
    let tree: serde_json::Value = merged
        .clone()
        .try_deserialize()
        .map_err(|e| ConfigError::new(format!("invalid configuration{}: {e}", in_file(&file_label))))?;
    let mut present = Vec::new();
    collect_leaves(&tree, String::new(), &mut present);
    let mut unknown: Vec<&String> =
        present.iter().filter(|k| !keys.contains(*k) && !keys.iter().any(|known| is_prefix_key(known, k))).collect();
    unknown.sort();
    if let Some(first) = unknown.first() {
        return Err(ConfigError::new(format!(
            "unknown configuration key `{first}`{} (known keys are listed in docs/guide/configuration.md)",
            in_file(&file_label)
        )));
    }

    let mut settings: Settings = merged.try_deserialize().map_err(|e| {
        let msg = e.to_string();
        let origin = env_keys
            .iter()
            .find(|(k, _)| msg.contains(&format!("`{k}`")))
            .map(|(_, name)| format!(" (from environment variable {name})"))
            .unwrap_or_else(|| in_file(&file_label));
        ConfigError::new(format!("invalid configuration value: {msg}{origin}"))
    })?;

    resolve_secret_files(&mut settings)?;
    let named = |e: Invalid| {
        let origin = e
            .key
            .as_ref()
            .and_then(|k| env_keys.get(k))
            .map(|name| format!(" (from environment variable {name})"))
            .unwrap_or_else(|| in_file(&file_label));
        ConfigError::new(format!("{}{origin}", e.message))
    };
    settings.validate().map_err(named)?;
    if purpose == Purpose::Serve {
        settings.check_exposure().map_err(named)?;
        settings.check_production().map_err(named)?;
    }
    Ok(settings)
}

/// A `${VAR}` placeholder in the config file that cannot be expanded (never quoting a value).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlaceholderError {
    #[error("`{key}`: environment variable {var} is not set (write ${{{var}:-default}} to give a default)")]
    Unset { key: String, var: String },
    #[error("`{key}`: `${{` without a closing `}}` or with an invalid variable name (write $${{ for a literal ${{)")]
    Malformed { key: String },
}

/// Expands `${VAR}` and `${VAR:-default}` in every string value of the file's tree; `key` paths
/// name the value in errors.
fn expand_tree(
    value: &mut serde_json::Value,
    key: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), PlaceholderError> {
    match value {
        serde_json::Value::String(text) => {
            *text = expand_placeholders(text, key, lookup)?;
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let path = if key.is_empty() { k.clone() } else { format!("{key}.{k}") };
                expand_tree(v, &path, lookup)?;
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                expand_tree(v, &format!("{key}[{i}]"), lookup)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `${VAR}`: the variable's value (unset is an error); `${VAR:-default}`: the default when the
/// variable is unset or empty, as in a shell; `$${` is a literal `${`. Any other `$` stays as it
/// is, so a password holding `$` needs no escaping.
pub fn expand_placeholders(
    text: &str,
    key: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, PlaceholderError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("${") {
            let malformed = || PlaceholderError::Malformed { key: key.to_string() };
            let end = inner.find('}').ok_or_else(malformed)?;
            let body = &inner[..end];
            let (var, default) = match body.split_once(":-") {
                Some((v, d)) => (v, Some(d)),
                None => (body, None),
            };
            let valid_name = var.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid_name {
                return Err(malformed());
            }
            match (lookup(var), default) {
                (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(PlaceholderError::Unset { key: key.to_string(), var: var.to_string() }),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// What the configuration is loaded for: serving checks more than a one-shot tool needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Serve,
    Tool,
}

/// A YAML value that is a map where the defaults have a leaf (e.g. `meta_dsn: {}`) is reported
/// by deserialisation as a type error, not here as an unknown key.
fn is_prefix_key(known: &str, present: &str) -> bool {
    present.starts_with(known) && present.as_bytes().get(known.len()) == Some(&b'.')
}

fn in_file(file: &Option<String>) -> String {
    file.as_ref().map(|f| format!(" in {f}")).unwrap_or_default()
}

fn resolve_secret_files(s: &mut Settings) -> Result<(), ConfigError> {
    fn read(path: &str, key: &str) -> Result<Secret, ConfigError> {
        Secret::from_file(Path::new(path)).map_err(|e| ConfigError::new(format!("`{key}`: cannot read {path}: {e}")))
    }
    if !s.meta_dsn_file.is_empty() {
        s.meta_dsn = read(&s.meta_dsn_file, "meta_dsn_file")?;
    }
    if !s.api.auth.bearer_token_file.is_empty() {
        s.api.auth.bearer_token = read(&s.api.auth.bearer_token_file, "api.auth.bearer_token_file")?;
    }
    if !s.api.auth.api_key_file.is_empty() {
        s.api.auth.api_key = read(&s.api.auth.api_key_file, "api.auth.api_key_file")?;
    }
    if !s.secrets.key_file.is_empty() {
        s.secrets.key = read(&s.secrets.key_file, "secrets.key_file")?;
    }
    if !s.upload.access_key_file.is_empty() {
        s.upload.access_key = read(&s.upload.access_key_file, "upload.access_key_file")?;
    }
    if !s.upload.secret_key_file.is_empty() {
        s.upload.secret_key = read(&s.upload.secret_key_file, "upload.secret_key_file")?;
    }
    Ok(())
}

/// The shortest API credential accepted.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Why a token would be a weak or unusable credential (never quoting it).
fn weak_token(token: &str) -> Option<String> {
    if token.trim().chars().count() < MIN_TOKEN_CHARS {
        return Some(format!(
            "must be at least {MIN_TOKEN_CHARS} characters besides spaces (`openssl rand -hex 32` makes a good one)"
        ));
    }
    if token.trim() != token {
        return Some("must not begin or end with whitespace (a presented credential is trimmed)".into());
    }
    if token.chars().any(char::is_control) {
        return Some("must not contain control characters (it travels in an HTTP header)".into());
    }
    None
}

/// A semantic validation failure, naming its key.
#[derive(Debug)]
pub struct Invalid {
    pub key: Option<String>,
    pub message: String,
}

fn invalid(key: &str, message: impl std::fmt::Display) -> Invalid {
    Invalid { key: Some(key.to_string()), message: format!("invalid value for `{key}`: {message}") }
}

impl Settings {
    /// Checks what types cannot: addresses parse, ranges hold, required companions are set.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.listen_socket_addr()?;
        self.relay.socket_addr()?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }
        if self.max_tasks == 0 {
            return Err(invalid("max_tasks", "must be at least 1"));
        }
        if !self.meta_dsn.is_empty() {
            crate::meta::MetaDsn::parse(self.meta_dsn.expose(), &self.data_dir).map_err(|e| invalid("meta_dsn", e))?;
        }
        if !self.secrets.key.is_empty() {
            crate::meta::cipher::Cipher::from_text(self.secrets.key.expose()).map_err(|e| invalid("secrets.key", e))?;
        }
        let u = &self.upload;
        if u.enabled {
            let missing: Vec<String> = [
                ("upload.endpoint", u.endpoint.trim().is_empty()),
                ("upload.bucket", u.bucket.trim().is_empty()),
                ("upload.access_key", u.access_key.is_empty()),
                ("upload.secret_key", u.secret_key.is_empty()),
            ]
            .iter()
            .filter(|(_, m)| *m)
            .map(|(k, _)| format!("{k} ({})", env_name(k)))
            .collect();
            if !missing.is_empty() {
                return Err(Invalid {
                    key: None,
                    message: format!("upload.enabled is true but these keys are missing: {}", missing.join(", ")),
                });
            }
            let url = url::Url::parse(&u.endpoint)
                .map_err(|e| invalid("upload.endpoint", format!("{:?} is not a URL ({e})", u.endpoint)))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid("upload.endpoint", "must be an http:// or https:// URL with a host"));
            }
        }
        if !(5..=5120).contains(&u.part_size_mb) {
            return Err(invalid("upload.part_size_mb", "must be between 5 and 5120 (S3's part size limits)"));
        }
        if u.multipart_threshold_mb < u.part_size_mb {
            return Err(invalid("upload.multipart_threshold_mb", "must be at least upload.part_size_mb"));
        }
        if u.retry_initial_sec == 0 || u.retry_max_sec < u.retry_initial_sec {
            return Err(invalid("upload.retry_max_sec", "retry_initial_sec must be >= 1 and retry_max_sec >= it"));
        }
        if u.request_timeout_sec == 0 {
            return Err(invalid("upload.request_timeout_sec", "must be at least 1"));
        }
        if self.storage.retention_interval_sec == 0 {
            return Err(invalid("storage.retention_interval_sec", "must be at least 1"));
        }
        if !self.storage.import_dir.is_empty() && !Path::new(&self.storage.import_dir).is_dir() {
            return Err(invalid("storage.import_dir", format!("{:?} is not a directory", self.storage.import_dir)));
        }
        if !self.ui.dev_dir.is_empty() && !Path::new(&self.ui.dev_dir).join("index.html").is_file() {
            return Err(invalid("ui.dev_dir", format!("{:?} has no index.html", self.ui.dev_dir)));
        }
        if !(1..=3600).contains(&self.http.body_timeout_sec) {
            return Err(invalid("http.body_timeout_sec", "must be between 1 and 3600"));
        }
        if !(1..=3600).contains(&self.http.request_timeout_sec) {
            return Err(invalid("http.request_timeout_sec", "must be between 1 and 3600"));
        }
        if self.http.keep_alive_sec > 3600 {
            return Err(invalid("http.keep_alive_sec", "must be at most 3600 (0: no keep-alive)"));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.http.max_body_bytes) {
            return Err(invalid("http.max_body_bytes", "must be between 1024 and 67108864 (64 MiB)"));
        }
        if let Some(bad) = self
            .http
            .allowed_host_names()
            .into_iter()
            .find(|h| !h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')))
        {
            return Err(invalid(
                "http.allowed_hosts",
                format!("{:?} is not a host name (a comma-separated list of names, without ports)", bad),
            ));
        }
        let fl = &self.api.auth.failure_limit;
        if fl.burst == 0 || fl.burst > 10_000 {
            return Err(invalid("api.auth.failure_limit.burst", "must be between 1 and 10000"));
        }
        if fl.per_minute == 0 || fl.per_minute > 60_000 {
            return Err(invalid("api.auth.failure_limit.per_minute", "must be between 1 and 60000"));
        }
        let tls = &self.api.tls;
        if tls.cert_file.is_empty() != tls.key_file.is_empty() {
            let (set, unset) =
                if tls.cert_file.is_empty() { ("key_file", "cert_file") } else { ("cert_file", "key_file") };
            return Err(invalid(
                &format!("api.tls.{unset}"),
                format!("api.tls.{set} is set but api.tls.{unset} is not: set both (HTTPS) or neither (plain HTTP)"),
            ));
        }
        let rl = &self.api.rate_limit;
        if !(rl.requests_per_second > 0.0 && rl.requests_per_second <= 1_000_000.0) {
            return Err(invalid("api.rate_limit.requests_per_second", "must be above 0 and at most 1000000"));
        }
        if rl.burst == 0 {
            return Err(invalid("api.rate_limit.burst", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.tracing.sample_ratio) {
            return Err(invalid("tracing.sample_ratio", "must be between 0.0 and 1.0"));
        }
        if self.tracing.enabled {
            let url = url::Url::parse(&self.tracing.endpoint)
                .map_err(|e| invalid("tracing.endpoint", format!("{:?} is not a URL ({e})", self.tracing.endpoint)))?;
            if url.scheme() != "http" {
                return Err(invalid(
                    "tracing.endpoint",
                    "must be an http:// URL (the exporter speaks plain OTLP/HTTP; use a local collector for TLS)",
                ));
            }
        }
        if self.tracing.export_interval_ms == 0 || self.tracing.export_interval_ms > 600_000 {
            return Err(invalid("tracing.export_interval_ms", "must be between 1 and 600000"));
        }
        if self.meta_pool_size == 0 || self.meta_pool_size > 256 {
            return Err(invalid("meta_pool_size", "must be between 1 and 256"));
        }
        if self.log.max_size_mb == 0 {
            return Err(invalid("log.max_size_mb", "must be at least 1"));
        }
        let auth = &self.api.auth;
        if auth.enabled {
            match auth.mode {
                AuthMode::Bearer if auth.bearer_token.is_empty() => {
                    return Err(invalid(
                        "api.auth.bearer_token",
                        "required when api.auth.enabled is true and api.auth.mode is bearer \
                         (or set api.auth.bearer_token_file)",
                    ));
                }
                AuthMode::ApiKey if auth.api_key.is_empty() => {
                    return Err(invalid(
                        "api.auth.api_key",
                        "required when api.auth.enabled is true and api.auth.mode is api_key \
                         (or set api.auth.api_key_file)",
                    ));
                }
                _ => {}
            }
            let (key, token) = match (auth.mode, auth.bearer_token_file.is_empty(), auth.api_key_file.is_empty()) {
                (AuthMode::Bearer, true, _) => ("api.auth.bearer_token", &auth.bearer_token),
                (AuthMode::Bearer, false, _) => ("api.auth.bearer_token_file", &auth.bearer_token),
                (AuthMode::ApiKey, _, true) => ("api.auth.api_key", &auth.api_key),
                (AuthMode::ApiKey, _, false) => ("api.auth.api_key_file", &auth.api_key),
            };
            if let Some(why) = weak_token(token.expose()) {
                return Err(invalid(key, why));
            }
            if auth.api_key_header.trim().is_empty()
                || actix_web::http::header::HeaderName::try_from(auth.api_key_header.as_str()).is_err()
            {
                return Err(invalid("api.auth.api_key_header", "not a valid HTTP header name"));
            }
        }
        let r = &self.replication;
        if r.heartbeat_period_ms < 100 || r.heartbeat_period_ms > 3_600_000 {
            return Err(invalid("replication.heartbeat_period_ms", "must be between 100 and 3600000"));
        }
        if r.heartbeat_timeout_factor < 2 {
            return Err(invalid("replication.heartbeat_timeout_factor", "must be at least 2"));
        }
        if r.connect_timeout_ms == 0 {
            return Err(invalid("replication.connect_timeout_ms", "must be at least 1"));
        }
        if r.retry_initial_ms == 0 || r.retry_max_ms < r.retry_initial_ms {
            return Err(invalid(
                "replication.retry_max_ms",
                "retry_initial_ms must be >= 1 and retry_max_ms >= retry_initial_ms",
            ));
        }
        if r.max_event_bytes < (1 << 20) || r.max_event_bytes > (1 << 30) {
            return Err(invalid("replication.max_event_bytes", "must be between 1 MiB and 1 GiB"));
        }
        if self.retry.same_error_limit == 1 {
            return Err(invalid(
                "retry.same_error_limit",
                "must be 0 (never fail a task for a repeated error) or at least 2 (1 would fail on the first error)",
            ));
        }
        if self.retry.alert_after_sec == 0 {
            return Err(invalid("retry.alert_after_sec", "must be at least 1"));
        }
        if !r.tls_ca_dir.is_empty() && !Path::new(&r.tls_ca_dir).is_dir() {
            return Err(invalid("replication.tls_ca_dir", format!("{:?} is not a directory", r.tls_ca_dir)));
        }
        let w = &self.writer;
        if w.fsync_max_bytes < 4096 || w.fsync_max_bytes > (1 << 30) {
            return Err(invalid("writer.fsync_max_bytes", "must be between 4096 and 1 GiB"));
        }
        if w.fsync_max_delay_ms > 10_000 {
            return Err(invalid("writer.fsync_max_delay_ms", "must be at most 10000"));
        }
        if w.checkpoint_interval_ms > 60_000 {
            return Err(invalid("writer.checkpoint_interval_ms", "must be at most 60000"));
        }
        if w.threads == 0 || w.threads > 1024 {
            return Err(invalid("writer.threads", "must be between 1 and 1024"));
        }
        if w.stall_after_sec == 0 || w.stall_after_sec > 86_400 {
            return Err(invalid(
                "writer.stall_after_sec",
                "must be between 1 and 86400 (0 would call every batch stalled)",
            ));
        }
        if w.start_stall_after_sec == 0 || w.start_stall_after_sec > 86_400 {
            return Err(invalid(
                "writer.start_stall_after_sec",
                "must be between 1 and 86400 (0 would call every start stalled)",
            ));
        }
        self.validate_cluster()
    }

    /// Cluster mode needs a shared metadata database, a shared bucket and a shared secrets key.
    fn validate_cluster(&self) -> Result<(), Invalid> {
        let c = &self.cluster;
        if !c.node_id.is_empty() && !valid_node_id(&c.node_id) {
            return Err(invalid("cluster.node_id", "must match [A-Za-z0-9._-]{1,64}"));
        }
        if !(2..=3600).contains(&c.lease_ttl_sec) {
            return Err(invalid("cluster.lease_ttl_sec", "must be between 2 and 3600"));
        }
        if c.lease_renew_interval_sec == 0 || c.lease_renew_interval_sec * 2 > c.lease_ttl_sec {
            return Err(invalid(
                "cluster.lease_renew_interval_sec",
                "must be at least 1 and at most half of cluster.lease_ttl_sec (a node needs time to renew \
                 again before its lease can expire)",
            ));
        }
        if self.mode != Mode::Cluster {
            return Ok(());
        }
        let mysql = crate::meta::MetaDsn::parse(self.meta_dsn.expose(), &self.data_dir).is_ok_and(|d| d.is_mysql());
        if !mysql {
            return Err(invalid(
                "meta_dsn",
                "mode cluster needs a shared MySQL/MariaDB metadata database (mysql://USER:PASS@HOST:PORT/DB); \
                 the embedded SQLite database belongs to one node",
            ));
        }
        if !self.upload.enabled {
            return Err(invalid(
                "upload.enabled",
                "mode cluster needs upload enabled: the bucket is where a node that takes a task over finds its \
                 sealed files",
            ));
        }
        if self.secrets.key.is_empty() {
            return Err(invalid(
                "secrets.key",
                "mode cluster needs secrets.key (or secrets.key_file) set to the same key on every node: a key \
                 generated in one node's data_dir cannot decrypt source passwords on the others",
            ));
        }
        Ok(())
    }

    /// `upload.*` keys set to something other than their default while `upload.enabled` is false:
    /// ignored, which whoever set them most likely did not mean (start-up warns, naming them).
    pub fn ignored_upload_keys(&self) -> Vec<String> {
        if self.upload.enabled {
            return Vec::new();
        }
        // Compared as JSON trees, never printed: secrets stay inside this function.
        let set = serde_json::to_value(&self.upload).expect("UploadSettings serialises to JSON");
        let default = serde_json::to_value(UploadSettings::default()).expect("UploadSettings serialises to JSON");
        let (Some(set), Some(default)) = (set.as_object(), default.as_object()) else {
            return Vec::new();
        };
        set.iter().filter(|(k, v)| default.get(*k) != Some(v)).map(|(k, _)| format!("upload.{k}")).collect()
    }

    /// Whether a route answers without a credential (auth off, or a route left unprotected):
    /// the `Host` header must then name this server (`api::cross_site`).
    pub fn has_open_routes(&self) -> bool {
        let a = &self.api.auth;
        !(a.enabled && a.protect_api && a.protect_metrics)
    }

    /// Whether `/api` asks for a credential: authentication on and `protect_api`.
    pub fn api_is_protected(&self) -> bool {
        self.api.auth.enabled && self.api.auth.protect_api
    }

    /// The check only `serve` needs: a listen address other hosts can reach requires the API to
    /// be protected (what is actually guarded, not only `api.auth.enabled`), unless the operator
    /// accepts the risk explicitly.
    pub fn check_exposure(&self) -> Result<(), Invalid> {
        let addr = self.listen_socket_addr()?;
        let auth = &self.api.auth;
        if addr.ip().is_loopback() || auth.allow_insecure_remote || self.api_is_protected() {
            return Ok(());
        }
        let why = if auth.enabled {
            "api.auth.protect_api is false, so /api answers without a credential: set api.auth.protect_api=true"
        } else {
            "api.auth.enabled is false: enable authentication (BINLOG_SERVER_API_AUTH_ENABLED=true with a token)"
        };
        Err(invalid(
            "listen_addr",
            format!(
                "{addr} is reachable from other hosts but {why}, listen on 127.0.0.1, or accept the risk with \
                 api.auth.allow_insecure_remote=true"
            ),
        ))
    }

    /// With `production: true`, every rule a production deployment must meet, each unmet one
    /// named in the refusal: the API and metrics ask for a credential, the insecure override is
    /// off, and the listener either serves TLS (`api.tls.*`) or is loopback (TLS terminated by a
    /// reverse proxy on the same host).
    pub fn check_production(&self) -> Result<(), Invalid> {
        if !self.production {
            return Ok(());
        }
        let a = &self.api.auth;
        let loopback = self.listen_socket_addr().is_ok_and(|addr| addr.ip().is_loopback());
        let tls_or_loopback = loopback || self.api.tls.enabled();
        let relay_plaintext_remote =
            self.relay.socket_addr().ok().flatten().is_some_and(|a| self.relay.plaintext_remote(a));
        let unmet: Vec<&str> = [
            (!a.enabled, "api.auth.enabled must be true"),
            (!a.protect_api, "api.auth.protect_api must be true"),
            (!a.protect_metrics, "api.auth.protect_metrics must be true"),
            (a.allow_insecure_remote, "api.auth.allow_insecure_remote must be false"),
            (
                !tls_or_loopback,
                "the listener must serve TLS (set api.tls.cert_file and api.tls.key_file) or listen_addr \
                 must be a loopback address (TLS terminated by a reverse proxy on this host, see \
                 docs/security.md)",
            ),
            (
                relay_plaintext_remote,
                "the relay must serve TLS (set relay.tls.cert_file and relay.tls.key_file) or relay.listen_addr \
                 must be a loopback address (relay.allow_plaintext_remote is not enough)",
            ),
        ]
        .into_iter()
        .filter_map(|(bad, rule)| bad.then_some(rule))
        .collect();
        if unmet.is_empty() {
            return Ok(());
        }
        Err(invalid(
            "production",
            format!("production is true but {} rule(s) are unmet: {}", unmet.len(), unmet.join("; ")),
        ))
    }

    pub fn listen_socket_addr(&self) -> Result<SocketAddr, Invalid> {
        self.listen_addr
            .parse()
            .map_err(|e| invalid("listen_addr", format!("{:?} is not HOST:PORT ({e})", self.listen_addr)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn cluster_mode_needs_a_shared_database_bucket_and_key() {
        let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let base = [
            ("BINLOG_SERVER_LISTEN_ADDR", "127.0.0.1:8080"),
            ("BINLOG_SERVER_MODE", "cluster"),
            ("BINLOG_SERVER_META_DSN", "mysql://u:p@127.0.0.1:3306/meta"),
            ("BINLOG_SERVER_UPLOAD_ENABLED", "true"),
            ("BINLOG_SERVER_UPLOAD_ENDPOINT", "http://127.0.0.1:9000"),
            ("BINLOG_SERVER_UPLOAD_BUCKET", "b"),
            ("BINLOG_SERVER_UPLOAD_ACCESS_KEY", "a"),
            ("BINLOG_SERVER_UPLOAD_SECRET_KEY", "s"),
            ("BINLOG_SERVER_SECRETS_KEY", key),
        ];
        let s = load(None, &env(&base), Purpose::Serve).expect("a complete cluster config loads");
        assert_eq!(s.mode, Mode::Cluster);
        assert_eq!((s.cluster.lease_ttl_sec, s.cluster.lease_renew_interval_sec), (15, 5));
        let without = |key: &str| -> String {
            let rest: Vec<(&str, &str)> = base.iter().copied().filter(|(k, _)| *k != key).collect();
            load(None, &env(&rest), Purpose::Serve).unwrap_err().0
        };
        assert!(without("BINLOG_SERVER_META_DSN").contains("`meta_dsn`"));
        assert!(without("BINLOG_SERVER_UPLOAD_ENABLED").contains("`upload.enabled`"));
        assert!(without("BINLOG_SERVER_SECRETS_KEY").contains("`secrets.key`"));
        let mut bad = base.to_vec();
        bad.push(("BINLOG_SERVER_CLUSTER_LEASE_RENEW_INTERVAL_SEC", "10"));
        let err = load(None, &env(&bad), Purpose::Serve).unwrap_err().0;
        assert!(
            err.contains("cluster.lease_renew_interval_sec")
                && err.contains("BINLOG_SERVER_CLUSTER_LEASE_RENEW_INTERVAL_SEC"),
            "{err}"
        );
        let mut bad = base.to_vec();
        bad.push(("BINLOG_SERVER_CLUSTER_NODE_ID", "no spaces"));
        assert!(load(None, &env(&bad), Purpose::Serve).unwrap_err().0.contains("cluster.node_id"));
    }

    #[test]
    fn retry_policy_keys() {
        let s = load(None, &local(), Purpose::Serve).unwrap();
        assert_eq!((s.retry.same_error_limit, s.retry.alert_after_sec), (5, 300));
        let mut e = local();
        e.extend(env(&[("BINLOG_SERVER_RETRY_SAME_ERROR_LIMIT", "0"), ("BINLOG_SERVER_RETRY_ALERT_AFTER_SEC", "60")]));
        let s = load(None, &e, Purpose::Serve).unwrap();
        assert_eq!((s.retry.same_error_limit, s.retry.alert_after_sec), (0, 60));
        for (name, value, key) in [
            ("BINLOG_SERVER_RETRY_SAME_ERROR_LIMIT", "1", "retry.same_error_limit"),
            ("BINLOG_SERVER_RETRY_ALERT_AFTER_SEC", "0", "retry.alert_after_sec"),
        ] {
            let mut e = local();
            e.push((name.to_string(), value.to_string()));
            let err = load(None, &e, Purpose::Serve).unwrap_err().0;
            assert!(err.contains(key) && err.contains(name), "{err}");
        }
    }

    fn yaml(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn local() -> Vec<(String, String)> {
        env(&[("BINLOG_SERVER_LISTEN_ADDR", "127.0.0.1:8080")])
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let s = Settings::default();
        assert_eq!(s.listen_addr, "127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert!(s.meta_dsn.is_empty());
        assert!(!s.api.auth.enabled);
    }

    #[test]
    fn remote_listening_without_auth_is_refused_unless_accepted() {
        assert!(load(None, &[], Purpose::Serve).is_ok(), "the defaults start: loopback without auth");
        let remote = env(&[("BINLOG_SERVER_LISTEN_ADDR", "0.0.0.0:8080")]);
        let err = load(None, &remote, Purpose::Serve).unwrap_err().0;
        assert!(err.contains("listen_addr") && err.contains("api.auth.allow_insecure_remote"), "{err}");
        assert!(load(None, &local(), Purpose::Serve).unwrap().check_exposure().is_ok());
        let accepted = env(&[
            ("BINLOG_SERVER_LISTEN_ADDR", "0.0.0.0:8080"),
            ("BINLOG_SERVER_API_AUTH_ALLOW_INSECURE_REMOTE", "true"),
        ]);
        assert!(load(None, &accepted, Purpose::Serve).unwrap().check_exposure().is_ok());
        let with_auth = env(&[
            ("BINLOG_SERVER_LISTEN_ADDR", "0.0.0.0:8080"),
            ("BINLOG_SERVER_API_AUTH_ENABLED", "true"),
            ("BINLOG_SERVER_API_AUTH_BEARER_TOKEN", "t-0123456789abcdef"),
        ]);
        assert!(load(None, &with_auth, Purpose::Serve).unwrap().check_exposure().is_ok());
        // Enabled but protecting nothing that matters is no protection.
        let mut open_api = with_auth.clone();
        open_api.push(("BINLOG_SERVER_API_AUTH_PROTECT_API".into(), "false".into()));
        let err = load(None, &open_api, Purpose::Serve).unwrap_err().0;
        assert!(err.contains("api.auth.protect_api") && err.contains("allow_insecure_remote"), "{err}");
        let mut open_metrics = with_auth;
        open_metrics.push(("BINLOG_SERVER_API_AUTH_PROTECT_METRICS".into(), "false".into()));
        assert!(load(None, &open_metrics, Purpose::Serve).is_ok(), "open metrics alone are a warning, not an error");
    }

    #[test]
    fn env_overrides_file_overrides_defaults() {
        let (_d, p) = yaml("listen_addr: 127.0.0.1:9000\ndata_dir: /tmp/x\nlog:\n  level: debug\n");
        let s = load(Some(&p), &env(&[("BINLOG_SERVER_LISTEN_ADDR", "127.0.0.1:9001")]), Purpose::Serve).unwrap();
        assert_eq!(s.listen_addr, "127.0.0.1:9001");
        assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(s.log.level, LogLevel::Debug);
    }

    #[test]
    fn nested_keys_map_to_single_underscore_env_names() {
        let s = load(
            None,
            &env(&[
                ("BINLOG_SERVER_LISTEN_ADDR", "127.0.0.1:1"),
                ("BINLOG_SERVER_API_AUTH_ENABLED", "true"),
                ("BINLOG_SERVER_API_AUTH_BEARER_TOKEN", "tok-0123456789abcdef"),
                ("BINLOG_SERVER_WRITER_FSYNC_MAX_BYTES", "65536"),
                ("BINLOG_SERVER_WRITER_DIRECT_IO", "auto"),
                ("UNRELATED", "x"),
            ]),
            Purpose::Serve,
        )
        .unwrap();
        assert!(s.api.auth.enabled);
        assert_eq!(s.api.auth.bearer_token.expose(), "tok-0123456789abcdef");
        assert_eq!(s.writer.fsync_max_bytes, 65536);
        assert_eq!(s.writer.direct_io, DirectIo::Auto);
    }

    /// Each `(value, ok)` of `key` set through its environment variable: taken as it is, or
    /// refused with an error naming `key`. `get` reads the setting back.
    fn check_env_values(key: &str, var: &str, cases: &[(&str, bool)], get: impl Fn(&Settings) -> String) {
        for &(value, ok) in cases {
            match (load(None, &env(&[(var, value)]), Purpose::Serve), ok) {
                (Ok(s), true) => assert_eq!(get(&s), value),
                (Err(e), false) => assert!(e.0.contains(key), "{value}: {}", e.0),
                (got, _) => panic!("{value}: {:?}", got.map(|s| get(&s)).map_err(|e| e.0)),
            }
        }
    }

    #[test]
    fn writer_threads_between_1_and_1024() {
        assert_eq!(load(None, &[], Purpose::Serve).unwrap().writer.threads, 16);
        let cases = [("0", false), ("1", true), ("4", true), ("1024", true), ("1025", false)];
        check_env_values("writer.threads", "BINLOG_SERVER_WRITER_THREADS", &cases, |s| s.writer.threads.to_string());
    }

    #[test]
    fn writer_stall_thresholds_between_1_and_86400() {
        let defaults = load(None, &[], Purpose::Serve).unwrap().writer.stall_after();
        assert_eq!(defaults, StallAfter { batch: Duration::from_secs(10), start: Duration::from_secs(60) });
        let cases = [("0", false), ("1", true), ("30", true), ("86400", true), ("86401", false)];
        check_env_values("writer.stall_after_sec", "BINLOG_SERVER_WRITER_STALL_AFTER_SEC", &cases, |s| {
            s.writer.stall_after().batch.as_secs().to_string()
        });
        check_env_values("writer.start_stall_after_sec", "BINLOG_SERVER_WRITER_START_STALL_AFTER_SEC", &cases, |s| {
            s.writer.stall_after().start.as_secs().to_string()
        });
    }

    #[test]
    fn env_names_are_unambiguous() {
        let keys = known_keys();
        let names: BTreeSet<String> = keys.iter().map(|k| env_name(k)).collect();
        assert_eq!(names.len(), keys.len());
        assert!(names.contains("BINLOG_SERVER_LISTEN_ADDR"));
        assert!(names.contains("BINLOG_SERVER_META_DSN"));
        assert!(names.contains("BINLOG_SERVER_API_AUTH_PROTECT_METRICS"));
    }

    #[test]
    fn unknown_file_key_is_named_with_the_file() {
        let (_d, p) = yaml("listen_addr: 127.0.0.1:9000\napi:\n  auth:\n    enabld: true\n");
        let err = load(Some(&p), &[], Purpose::Serve).unwrap_err().0;
        assert!(err.contains("`api.auth.enabld`"), "{err}");
        assert!(err.contains(&p.display().to_string()), "{err}");
    }

    #[test]
    fn unknown_env_var_is_named() {
        let err = load(None, &env(&[("BINLOG_SERVER_LISTEN_ADR", "x")]), Purpose::Serve).unwrap_err().0;
        assert!(err.contains("BINLOG_SERVER_LISTEN_ADR"), "{err}");
    }

    #[test]
    fn bad_value_names_key_and_origin() {
        let (_d, p) = yaml("meta_pool_size: lots\n");
        let err = load(Some(&p), &[], Purpose::Serve).unwrap_err().0;
        assert!(err.contains("meta_pool_size"), "{err}");
        assert!(err.contains(&p.display().to_string()), "{err}");

        let err = load(None, &env(&[("BINLOG_SERVER_LISTEN_ADDR", "nowhere")]), Purpose::Serve).unwrap_err().0;
        assert!(err.contains("listen_addr") && err.contains("BINLOG_SERVER_LISTEN_ADDR"), "{err}");

        let err = load(None, &env(&[("BINLOG_SERVER_LOG_LEVEL", "loud")]), Purpose::Serve).unwrap_err().0;
        assert!(err.contains("log.level"), "{err}");
    }

    #[test]
    fn broken_yaml_names_the_file() {
        let (_d, p) = yaml("listen_addr: [unclosed\n");
        let err = load(Some(&p), &[], Purpose::Serve).unwrap_err().0;
        assert!(err.contains(&p.display().to_string()), "{err}");
    }

    #[test]
    fn auth_enabled_requires_a_token_and_never_prints_it() {
        let err = load(None, &env(&[("BINLOG_SERVER_API_AUTH_ENABLED", "true")]), Purpose::Serve).unwrap_err().0;
        assert!(err.contains("api.auth.bearer_token"), "{err}");
        let s = load(
            None,
            &env(&[
                ("BINLOG_SERVER_API_AUTH_ENABLED", "1"),
                ("BINLOG_SERVER_API_AUTH_BEARER_TOKEN", "zz-secret-0123456789"),
            ]),
            Purpose::Serve,
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("zz-secret"));
    }

    #[test]
    fn weak_tokens_are_refused_without_being_printed() {
        let with = |token: &str| {
            load(
                None,
                &env(&[
                    ("BINLOG_SERVER_LISTEN_ADDR", "127.0.0.1:1"),
                    ("BINLOG_SERVER_API_AUTH_ENABLED", "true"),
                    ("BINLOG_SERVER_API_AUTH_BEARER_TOKEN", token),
                ]),
                Purpose::Serve,
            )
        };
        for weak in ["x", "short-token-15c", "   ", " padded-token-0123456789 ", "tab\tin-token-0123456789"] {
            let err = with(weak).unwrap_err().0;
            assert!(
                err.contains("api.auth.bearer_token") && err.contains("BINLOG_SERVER_API_AUTH_BEARER_TOKEN"),
                "{err}"
            );
            assert!(weak.trim().len() < 4 || !err.contains(weak.trim()), "the token is printed: {err}");
        }
        assert!(with("tok-4b1d9e0c7a2f").is_ok(), "16 characters are enough");
    }

    #[test]
    fn secret_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("token");
        std::fs::write(&tok, "from-file-0123456789\n").unwrap();
        let s = load(
            None,
            &env(&[
                ("BINLOG_SERVER_API_AUTH_ENABLED", "true"),
                ("BINLOG_SERVER_API_AUTH_BEARER_TOKEN_FILE", tok.to_str().unwrap()),
            ]),
            Purpose::Serve,
        )
        .unwrap();
        assert_eq!(s.api.auth.bearer_token.expose(), "from-file-0123456789");
    }

    #[test]
    fn the_example_config_file_loads() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml"));
        let s = load(Some(path), &[], Purpose::Serve).unwrap();
        assert_eq!(s.listen_addr, "127.0.0.1:8080");
    }

    #[test]
    fn upload_names_every_missing_key() {
        let err = load(
            None,
            &env(&[
                ("BINLOG_SERVER_LISTEN_ADDR", "127.0.0.1:1"),
                ("BINLOG_SERVER_UPLOAD_ENABLED", "true"),
                ("BINLOG_SERVER_UPLOAD_BUCKET", "b"),
            ]),
            Purpose::Serve,
        )
        .unwrap_err()
        .0;
        for k in ["upload.endpoint", "upload.access_key", "upload.secret_key", "BINLOG_SERVER_UPLOAD_ENDPOINT"] {
            assert!(err.contains(k), "{k} not named: {err}");
        }
        assert!(!err.contains("upload.bucket"), "{err}");
        let ok = load(
            None,
            &env(&[
                ("BINLOG_SERVER_LISTEN_ADDR", "127.0.0.1:1"),
                ("BINLOG_SERVER_UPLOAD_ENABLED", "true"),
                ("BINLOG_SERVER_UPLOAD_ENDPOINT", "http://127.0.0.1:9000"),
                ("BINLOG_SERVER_UPLOAD_BUCKET", "b"),
                ("BINLOG_SERVER_UPLOAD_ACCESS_KEY", "ak"),
                ("BINLOG_SERVER_UPLOAD_SECRET_KEY", "sk-very-secret"),
            ]),
            Purpose::Serve,
        )
        .unwrap();
        assert!(!format!("{ok:?}").contains("sk-very-secret"));
    }

    #[test]
    fn ui_dev_dir_must_hold_an_index_html() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_string();
        let vars = env(&[("BINLOG_SERVER_LISTEN_ADDR", "127.0.0.1:1"), ("BINLOG_SERVER_UI_DEV_DIR", &path)]);
        let err = load(None, &vars, Purpose::Serve).unwrap_err().0;
        assert!(err.contains("ui.dev_dir") && err.contains("BINLOG_SERVER_UI_DEV_DIR"), "{err}");
        std::fs::write(dir.path().join("index.html"), "<!doctype html>").unwrap();
        assert_eq!(load(None, &vars, Purpose::Serve).unwrap().ui.dev_dir, path);
    }

    #[test]
    fn placeholders_expand_from_the_environment() {
        let vars = [("DIR", "/srv/binlog"), ("EMPTY", ""), ("P", "s3cr$t")];
        let lookup = |n: &str| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string());
        let x = |t: &str| expand_placeholders(t, "k", &lookup);
        assert_eq!(x("${DIR}/data").unwrap(), "/srv/binlog/data");
        assert_eq!(x("${NOPE:-./data}").unwrap(), "./data");
        assert_eq!(x("${EMPTY:-fallback}").unwrap(), "fallback", "empty counts as unset with :-");
        assert_eq!(x("${EMPTY}").unwrap(), "");
        assert_eq!(x("${DIR:-x}").unwrap(), "/srv/binlog");
        assert_eq!(x("${NOPE:-}").unwrap(), "");
        assert_eq!(x("a${DIR}b${P}c").unwrap(), "a/srv/binlogbs3cr$tc", "expanded values are not expanded again");
        assert_eq!(x("pa$$word $5 $${DIR}").unwrap(), "pa$$word $5 ${DIR}", "only ${{ starts a placeholder");
        assert_eq!(x("no placeholders").unwrap(), "no placeholders");
        assert_eq!(x("${NOPE}"), Err(PlaceholderError::Unset { key: "k".into(), var: "NOPE".into() }));
        for bad in ["${DIR", "${}", "${1X}", "${A-B}", "${:-x}"] {
            assert_eq!(x(bad), Err(PlaceholderError::Malformed { key: "k".into() }), "{bad}");
        }
    }

    #[test]
    fn placeholders_in_the_file_name_key_and_variable() {
        let (_d, p) = yaml("data_dir: ${IT_DIR}\nmeta_pool_size: ${IT_POOL:-3}\nlog:\n  level: ${IT_LEVEL}\n");
        let vars = env(&[("IT_DIR", "/tmp/expanded"), ("IT_LEVEL", "debug")]);
        let s = load(Some(&p), &vars, Purpose::Tool).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/tmp/expanded"));
        assert_eq!(s.meta_pool_size, 3, "a default fills a number");
        assert_eq!(s.log.level, LogLevel::Debug);
        let err = load(Some(&p), &env(&[("IT_DIR", "/tmp/x")]), Purpose::Tool).unwrap_err().0;
        assert!(err.contains("`log.level`") && err.contains("IT_LEVEL"), "{err}");
        assert!(err.contains(&p.display().to_string()), "{err}");
        // Environment overrides are taken literally: no expansion there.
        let mut over = vars.clone();
        over.push(("BINLOG_SERVER_DATA_DIR".into(), "${IT_DIR}".into()));
        assert_eq!(load(Some(&p), &over, Purpose::Tool).unwrap().data_dir, PathBuf::from("${IT_DIR}"));
    }

    #[test]
    fn upload_keys_set_while_upload_is_off_are_named() {
        let s = load(None, &[], Purpose::Serve).unwrap();
        assert!(s.ignored_upload_keys().is_empty(), "defaults are not 'set'");
        let vars = env(&[
            ("BINLOG_SERVER_UPLOAD_ENDPOINT", "http://127.0.0.1:9000"),
            ("BINLOG_SERVER_UPLOAD_BUCKET", "b"),
            ("BINLOG_SERVER_UPLOAD_SECRET_KEY", "sk-never-shown"),
        ]);
        let s = load(None, &vars, Purpose::Serve).unwrap();
        assert_eq!(s.ignored_upload_keys(), ["upload.bucket", "upload.endpoint", "upload.secret_key"]);
        let mut on = vars.clone();
        on.push(("BINLOG_SERVER_UPLOAD_ENABLED".into(), "true".into()));
        on.push(("BINLOG_SERVER_UPLOAD_ACCESS_KEY".into(), "ak".into()));
        assert!(load(None, &on, Purpose::Serve).unwrap().ignored_upload_keys().is_empty());
    }

    #[test]
    fn production_names_every_unmet_rule() {
        let err = load(None, &env(&[("BINLOG_SERVER_PRODUCTION", "true")]), Purpose::Serve).unwrap_err().0;
        for rule in ["api.auth.enabled", "production", "BINLOG_SERVER_PRODUCTION"] {
            assert!(err.contains(rule), "{rule}: {err}");
        }
        assert!(!err.contains("must serve TLS"), "the default listener is loopback: {err}");
        let ok = env(&[
            ("BINLOG_SERVER_PRODUCTION", "true"),
            ("BINLOG_SERVER_API_AUTH_ENABLED", "true"),
            ("BINLOG_SERVER_API_AUTH_BEARER_TOKEN", "tok-0123456789abcdef"),
        ]);
        assert!(load(None, &ok, Purpose::Serve).is_ok());
        assert!(
            load(None, &env(&[("BINLOG_SERVER_PRODUCTION", "true")]), Purpose::Tool).is_ok(),
            "tools serve nothing"
        );
        let mut remote = ok.clone();
        remote.push(("BINLOG_SERVER_LISTEN_ADDR".into(), "0.0.0.0:8080".into()));
        remote.push(("BINLOG_SERVER_API_AUTH_PROTECT_METRICS".into(), "false".into()));
        let err = load(None, &remote, Purpose::Serve).unwrap_err().0;
        assert!(
            err.contains("2 rule(s)") && err.contains("must serve TLS") && err.contains("protect_metrics"),
            "{err}"
        );
        // TLS or loopback: a non-loopback listener that serves TLS meets the rule.
        let mut remote_tls = ok.clone();
        remote_tls.push(("BINLOG_SERVER_LISTEN_ADDR".into(), "0.0.0.0:8080".into()));
        remote_tls.push(("BINLOG_SERVER_API_TLS_CERT_FILE".into(), "/etc/binlog-server/cert.pem".into()));
        remote_tls.push(("BINLOG_SERVER_API_TLS_KEY_FILE".into(), "/etc/binlog-server/key.pem".into()));
        assert!(load(None, &remote_tls, Purpose::Serve).is_ok());
        // Only one of the two files is not TLS.
        remote_tls.pop();
        let err = load(None, &remote_tls, Purpose::Serve).unwrap_err().0;
        assert!(err.contains("api.tls.key_file"), "{err}");
    }

    #[test]
    fn api_tls_needs_both_files() {
        for (set, unset) in [("CERT", "key_file"), ("KEY", "cert_file")] {
            let one = env(&[(format!("BINLOG_SERVER_API_TLS_{set}_FILE").as_str(), "/tmp/x.pem")]);
            let err = load(None, &one, Purpose::Serve).unwrap_err().0;
            assert!(err.contains(&format!("api.tls.{unset}")) && err.contains("set both"), "{err}");
        }
        let both =
            env(&[("BINLOG_SERVER_API_TLS_CERT_FILE", "/tmp/c.pem"), ("BINLOG_SERVER_API_TLS_KEY_FILE", "/tmp/k.pem")]);
        assert!(load(None, &both, Purpose::Serve).unwrap().api.tls.enabled());
    }

    #[test]
    fn the_relay_is_off_by_default_and_plaintext_only_on_loopback_unless_accepted() {
        let s = load(None, &local(), Purpose::Serve).unwrap();
        assert_eq!(s.relay.socket_addr().unwrap(), None);
        let with = |pairs: &[(&str, &str)]| {
            let mut e = local();
            e.extend(env(pairs));
            load(None, &e, Purpose::Serve)
        };
        let on = with(&[("BINLOG_SERVER_RELAY_LISTEN_ADDR", "127.0.0.1:3307")]).unwrap();
        assert_eq!(on.relay.socket_addr().unwrap().map(|a| a.port()), Some(3307));
        let err = with(&[("BINLOG_SERVER_RELAY_LISTEN_ADDR", "0.0.0.0:3307")]).unwrap_err().to_string();
        assert!(
            err.contains("relay.allow_plaintext_remote") && err.contains("BINLOG_SERVER_RELAY_LISTEN_ADDR"),
            "{err}"
        );
        assert!(
            with(&[
                ("BINLOG_SERVER_RELAY_LISTEN_ADDR", "0.0.0.0:3307"),
                ("BINLOG_SERVER_RELAY_ALLOW_PLAINTEXT_REMOTE", "true")
            ])
            .is_ok()
        );
        let err = with(&[("BINLOG_SERVER_RELAY_LISTEN_ADDR", "nonsense")]).unwrap_err().to_string();
        assert!(err.contains("not HOST:PORT"), "{err}");
    }

    #[test]
    fn relay_tls_needs_both_files_and_allows_a_remote_address() {
        let with = |pairs: &[(&str, &str)]| {
            let mut e = local();
            e.extend(env(pairs));
            load(None, &e, Purpose::Serve)
        };
        let remote = ("BINLOG_SERVER_RELAY_LISTEN_ADDR", "0.0.0.0:3307");
        let cert = ("BINLOG_SERVER_RELAY_TLS_CERT_FILE", "/etc/binlog-server/relay.pem");
        let key = ("BINLOG_SERVER_RELAY_TLS_KEY_FILE", "/etc/binlog-server/relay.key");
        let on = with(&[remote, cert, key]).expect("TLS makes a remote relay address acceptable");
        assert!(on.relay.tls.enabled());
        for (pair, unset) in [(cert, "key_file"), (key, "cert_file")] {
            let err = with(&[remote, pair]).unwrap_err().to_string();
            assert!(err.contains(&format!("relay.tls.{unset}")) && err.contains("set both"), "{err}");
            let err = with(&[pair]).unwrap_err().to_string();
            assert!(err.contains("set both"), "checked with the relay off too: {err}");
        }
        // production: a plaintext relay on a remote address is refused even when accepted.
        let prod = [
            ("BINLOG_SERVER_PRODUCTION", "true"),
            ("BINLOG_SERVER_API_AUTH_ENABLED", "true"),
            ("BINLOG_SERVER_API_AUTH_BEARER_TOKEN", "tok-0123456789abcdef"),
        ];
        let mut plain = prod.to_vec();
        plain.extend([remote, ("BINLOG_SERVER_RELAY_ALLOW_PLAINTEXT_REMOTE", "true")]);
        let err = with(&plain).unwrap_err().to_string();
        assert!(err.contains("the relay must serve TLS"), "{err}");
        let mut tls = prod.to_vec();
        tls.extend([remote, cert, key]);
        assert!(with(&tls).is_ok(), "production with a TLS relay");
        let mut local_relay = prod.to_vec();
        local_relay.push(("BINLOG_SERVER_RELAY_LISTEN_ADDR", "127.0.0.1:3307"));
        assert!(with(&local_relay).is_ok(), "production with a loopback relay");
    }

    #[test]
    fn configuration_doc_lists_every_key() {
        let doc = include_str!("../docs/guide/configuration.md");
        for key in known_keys() {
            let row = format!("| `{key}` |");
            assert!(doc.contains(&row), "docs/guide/configuration.md lacks a row for `{key}`");
            assert!(doc.contains(&format!("`{}`", env_name(&key))), "docs lack {}", env_name(&key));
        }
    }
}
