//! The command line as operators use it: `--version`, configuration errors (exit code 2, naming
//! the key and where it came from, promptly, before anything is created) and the `migrate`
//! commands on the embedded SQLite store.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::server::run_cli;
use crate::common::{find_binary, free_port, output_with_deadline, temp_dir};

/// A configuration error must stop start-up at once, not after a timeout.
const PROMPT: Duration = Duration::from_secs(10);

/// A temp dir with a data dir path (not created) and a loopback listen address, so a config
/// that is wrongly accepted starts nothing outside the sandbox.
struct Sandbox {
    dir: tempfile::TempDir,
    listen: String,
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox { dir: temp_dir("binlog-it-cli-"), listen: format!("127.0.0.1:{}", free_port()) }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn data_dir_str(&self) -> String {
        self.data_dir().to_str().expect("temp paths are UTF-8").to_string()
    }

    /// Writes `name` in the sandbox; returns its path as a string.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path.to_str().expect("temp paths are UTF-8").to_string()
    }

    /// `BINLOG_SERVER_DATA_DIR` and `BINLOG_SERVER_LISTEN_ADDR` pointing into the sandbox.
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("BINLOG_SERVER_DATA_DIR".into(), self.data_dir_str()),
            ("BINLOG_SERVER_LISTEN_ADDR".into(), self.listen.clone()),
        ]
    }
}

fn run(args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    run_cli(args, &env)
}

/// Runs `serve` with a configuration that must be refused: exit code 2 within [`PROMPT`], a
/// stderr that names every string in `must_name`, and no metadata database created.
fn assert_config_error(sandbox: &Sandbox, args: &[&str], env: &[(String, String)], must_name: &[&str]) -> String {
    let what = format!("binlog-server {} with {env:?}", args.join(" "));
    let started = Instant::now();
    let (code, stdout, stderr) = run(args, env);
    let took = started.elapsed();
    assert_eq!(code, 2, "{what}: exit code (stdout {stdout:?}, stderr {stderr:?})");
    assert!(took < PROMPT, "{what}: a configuration error must stop start-up promptly, took {took:?}");
    for name in must_name {
        assert!(stderr.contains(name), "{what}: the message must name {name:?}: {stderr:?}");
    }
    assert!(stderr.contains("configuration error"), "{what}: says what kind of error: {stderr:?}");
    assert!(
        !sandbox.data_dir().join("meta.db").exists(),
        "{what}: nothing may be created before the configuration is valid"
    );
    stderr
}

#[test]
fn version_prints_the_crate_version() {
    let (code, stdout, stderr) = run_cli(&["--version"], &[]);
    assert_eq!(code, 0, "--version: {stderr}");
    assert_eq!(stdout.trim(), format!("binlog-server {}", env!("CARGO_PKG_VERSION")), "--version output");
}

#[test]
fn unknown_key_in_the_config_file_is_named_with_the_file() {
    let sb = Sandbox::new();
    let cfg = sb.file("typo.yaml", "log:\n  levle: debug\n");
    assert_config_error(&sb, &["serve", "--config", &cfg], &sb.env(), &["log.levle", &cfg]);
}

#[test]
fn bad_value_in_the_config_file_is_named_with_the_file() {
    let sb = Sandbox::new();
    let cfg = sb.file("bad-type.yaml", "meta_pool_size: lots\n");
    assert_config_error(&sb, &["serve", "--config", &cfg], &sb.env(), &["meta_pool_size", &cfg]);
    let cfg = sb.file("out-of-range.yaml", "meta_pool_size: 0\n");
    assert_config_error(&sb, &["serve", "--config", &cfg], &sb.env(), &["meta_pool_size", &cfg]);
    let cfg = sb.file("bad-enum.yaml", "log:\n  level: loud\n");
    assert_config_error(&sb, &["serve", "--config", &cfg], &sb.env(), &["log.level", &cfg]);
}

#[test]
fn broken_yaml_names_the_file() {
    let sb = Sandbox::new();
    let cfg = sb.file("broken.yaml", "listen_addr: [unclosed\n");
    assert_config_error(&sb, &["serve", "--config", &cfg], &sb.env(), &[&cfg]);
    let missing = sb.dir.path().join("missing.yaml");
    let missing = missing.to_str().expect("UTF-8");
    assert_config_error(&sb, &["serve", "--config", missing], &sb.env(), &[missing]);
}

#[test]
fn bad_environment_variables_are_named() {
    let sb = Sandbox::new();
    let mut env = sb.env();
    env.push(("BINLOG_SERVER_LISTEN_ADR".into(), "127.0.0.1:1".into()));
    assert_config_error(&sb, &["serve"], &env, &["BINLOG_SERVER_LISTEN_ADR"]);

    let mut env = sb.env();
    env.push(("BINLOG_SERVER_META_POOL_SIZE".into(), "lots".into()));
    assert_config_error(&sb, &["serve"], &env, &["meta_pool_size", "BINLOG_SERVER_META_POOL_SIZE"]);

    // The environment overrides the file, and the error says which one it came from.
    let cfg = sb.file("fine.yaml", "meta_pool_size: 4\n");
    let mut env = sb.env();
    env.push(("BINLOG_SERVER_META_POOL_SIZE".into(), "0".into()));
    let stderr = assert_config_error(
        &sb,
        &["serve", "--config", &cfg],
        &env,
        &["meta_pool_size", "BINLOG_SERVER_META_POOL_SIZE"],
    );
    assert!(!stderr.contains(&cfg), "the bad value came from the environment, not {cfg}: {stderr}");
}

#[test]
fn a_remote_listen_addr_without_auth_is_refused() {
    let sb = Sandbox::new();
    let remote = format!("0.0.0.0:{}", free_port());
    let mut env = sb.env();
    env.retain(|(k, _)| k != "BINLOG_SERVER_LISTEN_ADDR");
    env.push(("BINLOG_SERVER_LISTEN_ADDR".into(), remote.clone()));
    assert_config_error(
        &sb,
        &["serve"],
        &env,
        &["listen_addr", "api.auth.allow_insecure_remote", "BINLOG_SERVER_LISTEN_ADDR"],
    );

    let cfg = sb.file("remote.yaml", &format!("listen_addr: {remote}\n"));
    let mut env = sb.env();
    env.retain(|(k, _)| k != "BINLOG_SERVER_LISTEN_ADDR");
    assert_config_error(
        &sb,
        &["serve", "--config", &cfg],
        &env,
        &["listen_addr", "api.auth.allow_insecure_remote", &cfg],
    );

    // Auth on without a token is no way around it.
    env.push(("BINLOG_SERVER_API_AUTH_ENABLED".into(), "true".into()));
    assert_config_error(&sb, &["serve", "--config", &cfg], &env, &["api.auth.bearer_token"]);
}

/// `api.auth.enabled` alone is no protection: a remote address needs the API actually guarded.
#[test]
fn a_remote_listen_addr_needs_the_api_protected_not_just_auth_enabled() {
    let sb = Sandbox::new();
    let mut env = sb.env();
    env.retain(|(k, _)| k != "BINLOG_SERVER_LISTEN_ADDR");
    env.push(("BINLOG_SERVER_LISTEN_ADDR".into(), format!("0.0.0.0:{}", free_port())));
    env.push(("BINLOG_SERVER_API_AUTH_ENABLED".into(), "true".into()));
    env.push(("BINLOG_SERVER_API_AUTH_BEARER_TOKEN".into(), "a-token-of-32-characters-0123456".into()));
    env.push(("BINLOG_SERVER_API_AUTH_PROTECT_API".into(), "false".into()));
    env.push(("BINLOG_SERVER_API_AUTH_PROTECT_METRICS".into(), "false".into()));
    assert_config_error(
        &sb,
        &["serve"],
        &env,
        &["listen_addr", "api.auth.protect_api", "api.auth.allow_insecure_remote"],
    );
}

/// A token anyone could guess (blank, one character, short) stops start-up, without printing it.
#[test]
fn short_or_blank_tokens_are_refused_at_start_up() {
    let sb = Sandbox::new();
    let cases: &[(&str, &str, &str)] = &[
        ("bearer", "BINLOG_SERVER_API_AUTH_BEARER_TOKEN_FILE", "   \n"),
        ("bearer", "BINLOG_SERVER_API_AUTH_BEARER_TOKEN_FILE", "x\n"),
        ("bearer", "BINLOG_SERVER_API_AUTH_BEARER_TOKEN", "short-token-15c"),
        ("api_key", "BINLOG_SERVER_API_AUTH_API_KEY", "key-8c3f5a71e2"),
        ("bearer", "BINLOG_SERVER_API_AUTH_BEARER_TOKEN", " padded-token-0123456789 "),
    ];
    for (i, (mode, var, value)) in cases.iter().enumerate() {
        let mut env = sb.env();
        env.push(("BINLOG_SERVER_API_AUTH_ENABLED".into(), "true".into()));
        env.push(("BINLOG_SERVER_API_AUTH_MODE".into(), (*mode).into()));
        let value = if var.ends_with("_FILE") { sb.file(&format!("token-{i}"), value) } else { value.to_string() };
        env.push(((*var).into(), value.clone()));
        let key = var.trim_start_matches("BINLOG_SERVER_").to_ascii_lowercase().replacen('_', ".", 2);
        let stderr = assert_config_error(&sb, &["serve"], &env, &[key.as_str()]);
        if !var.ends_with("_FILE") {
            assert!(!stderr.contains(value.trim()), "the token is not printed: {stderr}");
        }
    }
    // 16 characters are enough.
    let mut env = sb.env();
    env.push(("BINLOG_SERVER_API_AUTH_ENABLED".into(), "true".into()));
    env.push(("BINLOG_SERVER_API_AUTH_BEARER_TOKEN".into(), "tok-4b1d9e0c7a2f".into()));
    let (code, stdout, stderr) = run(&["migrate", "status"], &env);
    assert_eq!(code, 3, "a 16-character token is accepted (status then says migrations are pending): {stdout}{stderr}");
}

/// The versions of the SQLite migrations this source tree carries (diesel's version: the
/// directory name up to `_`, without dashes), oldest first.
fn sqlite_migration_versions() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut versions: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .map(|name| name.split('_').next().unwrap_or_default().replace('-', ""))
        .collect();
    versions.sort();
    assert!(!versions.is_empty(), "no migrations in {}", dir.display());
    versions
}

/// Table names in a SQLite file (sqlite3 CLI); `None` when the CLI is not installed.
fn sqlite_tables(db: &Path) -> Option<Vec<String>> {
    let Some(sqlite3) = find_binary("sqlite3") else {
        eprintln!("sqlite3 CLI not installed: skipping the table check of {}", db.display());
        return None;
    };
    let sql = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name";
    let out = output_with_deadline(Command::new(sqlite3).arg(db).arg(sql), PROMPT, "sqlite3");
    assert!(out.status.success(), "sqlite3 {}: {}", db.display(), String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
}

#[test]
fn migrate_status_up_and_down_on_a_fresh_sqlite_data_dir() {
    let sb = Sandbox::new();
    let env = sb.env();
    let versions = sqlite_migration_versions();
    let last = versions.last().expect("at least one").clone();
    let db = sb.data_dir().join("meta.db");

    let (code, stdout, stderr) = run(&["migrate", "status"], &env);
    assert_eq!(code, 3, "status on a fresh dir: pending migrations exit 3: {stdout}{stderr}");
    for v in &versions {
        assert!(stdout.contains(&format!("pending  {v}")), "status lists {v} as pending: {stdout}");
    }
    assert!(stdout.contains("NOT up to date"), "a fresh store is not up to date: {stdout}");
    assert!(stdout.contains(&db.display().to_string()), "status names the database: {stdout}");

    let (code, stdout, stderr) = run(&["migrate", "up"], &env);
    assert_eq!(code, 0, "up: {stdout}{stderr}");
    for v in &versions {
        assert!(stdout.contains(&format!("applied {v}")), "up applies {v}: {stdout}");
    }
    if let Some(tables) = sqlite_tables(&db) {
        for t in ["tasks", "checkpoints", "task_events", "binlog_files", "__diesel_schema_migrations"] {
            assert!(tables.iter().any(|n| n == t), "after up, {t} exists: {tables:?}");
        }
    }

    let (code, stdout, stderr) = run(&["migrate", "status"], &env);
    assert_eq!(code, 0, "status after up: {stdout}{stderr}");
    for v in &versions {
        assert!(stdout.contains(&format!("applied  {v}")), "status lists {v} as applied: {stdout}");
    }
    assert!(!stdout.contains("pending") && !stdout.contains("NOT up to date"), "nothing pending: {stdout}");
    assert!(stdout.contains(": up to date"), "status says up to date: {stdout}");

    let (code, stdout, stderr) = run(&["migrate", "up"], &env);
    assert_eq!(code, 0, "up again: {stdout}{stderr}");
    assert!(stdout.contains("schema is up to date") && !stdout.contains("applied"), "a second up is a no-op: {stdout}");

    let (code, stdout, stderr) = run(&["migrate", "down"], &env);
    assert_eq!(code, 0, "down: {stdout}{stderr}");
    assert!(stdout.contains(&format!("reverted {last}")), "down reverts the newest migration {last}: {stdout}");
    if versions.len() == 1
        && let Some(tables) = sqlite_tables(&db)
    {
        assert!(!tables.iter().any(|n| n == "tasks"), "after down, the schema is gone: {tables:?}");
    }
    let (code, stdout, stderr) = run(&["migrate", "status"], &env);
    assert_eq!(code, 3, "status after down: {stdout}{stderr}");
    assert!(stdout.contains(&format!("pending  {last}")), "the reverted migration is pending again: {stdout}");
    assert!(stdout.contains("NOT up to date"), "{stdout}");
}

/// A schema migrated by a newer binlog-server: `migrate status` exits 4 (not 0, not 3: `migrate
/// up` cannot fix it) and names the version it does not know.
#[test]
fn migrate_status_exits_4_when_the_schema_is_ahead_of_the_binary() {
    use diesel::{Connection, RunQueryDsl};
    const FUTURE: &str = "99991231235959";
    let sb = Sandbox::new();
    let env = sb.env();
    let (code, stdout, stderr) = run(&["migrate", "up"], &env);
    assert_eq!(code, 0, "up: {stdout}{stderr}");
    let db = sb.data_dir().join("meta.db");
    let mut conn = diesel::SqliteConnection::establish(db.to_str().expect("UTF-8")).expect("open meta.db");
    diesel::sql_query(format!("INSERT INTO __diesel_schema_migrations (version) VALUES ('{FUTURE}')"))
        .execute(&mut conn)
        .expect("record a migration from the future");
    drop(conn);
    let (code, stdout, stderr) = run(&["migrate", "status"], &env);
    assert_eq!(code, 4, "a schema ahead of the binary exits 4: {stdout}{stderr}");
    assert!(stdout.contains(&format!("unknown  {FUTURE}")), "status names the unknown version: {stdout}");
    assert!(stdout.contains("newer than this binary"), "status says what is wrong: {stdout}");
}

/// README, Makefile and the service's own refusal message all say
/// `binlog-server migrate up --meta-dsn ...`: that spelling must work.
#[test]
fn migrate_takes_meta_dsn_after_the_action_as_documented() {
    let sb = Sandbox::new();
    let db = sb.dir.path().join("elsewhere.db");
    let dsn = format!("sqlite://{}", db.display());
    let (code, stdout, stderr) = run(&["migrate", "up", "--meta-dsn", &dsn], &sb.env());
    assert_eq!(code, 0, "migrate up --meta-dsn {dsn}: stdout {stdout:?}, stderr {stderr:?}");
    assert!(stdout.contains("applied"), "{stdout}");
    let (code, stdout, stderr) = run(&["migrate", "status", "--meta-dsn", &dsn], &sb.env());
    assert_eq!(code, 0, "migrate status --meta-dsn {dsn}: stdout {stdout:?}, stderr {stderr:?}");
    assert!(stdout.contains(": up to date"), "{stdout}");
    assert!(!sb.data_dir().join("meta.db").exists(), "--meta-dsn is used instead of the data dir's store");
}

/// `migrate` serves nothing: a non-loopback listen address with auth off must not stop it.
#[test]
fn migrate_runs_with_the_default_listen_settings() {
    let sb = Sandbox::new();
    let env = vec![
        ("BINLOG_SERVER_DATA_DIR".to_string(), sb.data_dir_str()),
        ("BINLOG_SERVER_LISTEN_ADDR".to_string(), "0.0.0.0:8080".to_string()),
    ];
    let (code, stdout, stderr) = run(&["migrate", "up"], &env);
    assert_eq!(code, 0, "migrate up with only a data dir configured: stdout {stdout:?}, stderr {stderr:?}");
    assert!(stdout.contains("applied"), "{stdout}");
}

/// Completions and man pages come from the real command line: bash completes a command name,
/// and `man --dir` writes a page for every command the top page lists. Neither reads a
/// configuration (a broken one in the environment does not matter).
#[test]
fn completions_and_man_pages_cover_every_command() {
    let sb = Sandbox::new();
    let env = vec![("BINLOG_SERVER_NO_SUCH_KEY".to_string(), "x".to_string())];

    let (code, script, stderr) = run(&["completions", "bash"], &env);
    assert_eq!(code, 0, "completions bash: {stderr}");
    let completion = sb.file("binlog-server.bash", &script);
    let bash = find_binary("bash").expect("bash");
    let out = output_with_deadline(
        Command::new(bash).arg("-c").arg(format!(
            "source {completion}; COMP_WORDS=(binlog-server mig); COMP_CWORD=1; \
             _binlog__server binlog-server mig binlog-server; echo \"${{COMPREPLY[@]}}\""
        )),
        PROMPT,
        "bash completion",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "migrate", "{}", String::from_utf8_lossy(&out.stderr));

    let pages = sb.dir.path().join("man");
    std::fs::create_dir_all(&pages).unwrap();
    let (code, stdout, stderr) = run(&["man", "--dir", pages.to_str().unwrap()], &env);
    assert_eq!(code, 0, "man --dir: {stderr}");
    let top = std::fs::read_to_string(pages.join("binlog-server.1")).expect("the top page");
    for command in ["serve", "migrate", "doctor", "replay", "completions", "man"] {
        let page = format!("binlog-server-{command}.1");
        assert!(top.contains(&format!("binlog\\-server\\-{command}(1)")), "the top page lists {command}");
        assert!(pages.join(&page).is_file(), "{page} is written (stdout: {stdout})");
    }
    assert!(pages.join("binlog-server-migrate-up.1").is_file(), "nested commands get pages too");

    let (code, printed, _) = run(&["man"], &env);
    assert_eq!((code, printed.as_str()), (0, top.as_str()), "`man` prints the top page");
}

/// A bare `binlog-server serve` (nothing configured but the data dir) starts: the default
/// listen address is loopback, so the refusal of an unprotected remote address does not apply.
/// Port 8080 may be taken on a shared machine: then the process must fail to *bind* 127.0.0.1:8080
/// (exit 1), never refuse its configuration (exit 2).
#[test]
fn a_bare_serve_listens_on_loopback_8080() {
    let sb = Sandbox::new();
    let console = sb.dir.path().join("console.log");
    let mut child = Command::new(crate::common::server::BINARY)
        .arg("serve")
        // Nothing inherited: no BINLOG_SERVER_* from a developer's shell, no NOTIFY_SOCKET.
        .env_clear()
        .env("BINLOG_SERVER_DATA_DIR", sb.data_dir_str())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&console).expect("console file"))
        .spawn()
        .expect("spawn binlog-server serve");
    let pid = child.id();
    let outcome = crate::common::poll_until(Duration::from_secs(30), "serve to listen on 8080 or exit", || {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(Err(status));
        }
        crate::common::pid_listens_on(pid, 8080).then_some(Ok(()))
    });
    let stderr = || std::fs::read_to_string(&console).unwrap_or_default();
    match outcome {
        Ok(()) => {
            let text = crate::common::poll_until(PROMPT, "the `listening` log line", || {
                let t = stderr();
                t.contains("listening").then_some(t)
            });
            assert!(text.contains("127.0.0.1:8080"), "listens on the loopback default: {text}");
            crate::common::send_signal(pid, "TERM");
            let status = crate::common::wait_child(&mut child, Duration::from_secs(45));
            if status.is_none() {
                crate::common::kill_and_reap(&mut child);
            }
            assert_eq!(status.and_then(|s| s.code()), Some(0), "an orderly stop: {}", stderr());
        }
        Err(status) => {
            let text = stderr();
            assert_eq!(
                status.code(),
                Some(1),
                "port 8080 taken by another process: a bind error, not a refusal: {text}"
            );
            assert!(text.contains("cannot listen on 127.0.0.1:8080"), "{text}");
        }
    }
}

/// `${VAR}` and `${VAR:-default}` in the config file come from the environment; an unset one
/// without a default stops start-up naming the key, the variable and the file.
#[test]
fn placeholders_in_the_config_file_are_expanded() {
    let sb = Sandbox::new();
    let db = sb.data_dir().join("meta.db");
    let mut env = sb.env();
    env.retain(|(k, _)| k != "BINLOG_SERVER_DATA_DIR");
    let cfg = sb.file("vars.yaml", "data_dir: ${IT_BINLOG_DATA}\nmeta_pool_size: ${IT_POOL:-2}\n");
    let mut with_var = env.clone();
    with_var.push(("IT_BINLOG_DATA".into(), sb.data_dir_str()));
    let (code, stdout, stderr) = run(&["migrate", "status", "--config", &cfg], &with_var);
    assert_eq!(code, 3, "status on a fresh store: {stdout}{stderr}");
    assert!(stdout.contains(&db.display().to_string()), "data_dir came from IT_BINLOG_DATA: {stdout}");

    let defaulted = sb.file("default.yaml", &format!("data_dir: ${{IT_UNSET_DIR:-{}}}\n", sb.data_dir_str()));
    let (code, stdout, stderr) = run(&["migrate", "status", "--config", &defaulted], &env);
    assert_eq!(code, 3, "status with the default: {stdout}{stderr}");
    assert!(stdout.contains(&db.display().to_string()), "data_dir came from the default: {stdout}");

    std::fs::remove_dir_all(sb.data_dir()).expect("remove the data dir");
    assert_config_error(&sb, &["serve", "--config", &cfg], &env, &["data_dir", "IT_BINLOG_DATA", &cfg]);
    assert!(!Path::new("${IT_BINLOG_DATA}").exists(), "no folder named after the placeholder");
}

/// Upload settings given while upload is off are named in a start-up warning (never a value).
#[test]
fn upload_settings_without_upload_enabled_are_warned_about() {
    use crate::common::server::{Server, ServerOpts};
    let server = Server::start(
        ServerOpts::default()
            .env("BINLOG_SERVER_UPLOAD_ENDPOINT", "http://127.0.0.1:9")
            .env("BINLOG_SERVER_UPLOAD_BUCKET", "forgotten")
            .env("BINLOG_SERVER_UPLOAD_SECRET_KEY", "sk-it-never-logged-0123"),
    );
    let log = crate::common::poll_until(PROMPT, "the ignored-upload warning", || {
        let t = server.log_text();
        t.contains("upload.enabled is false").then_some(t)
    });
    let line = log.lines().find(|l| l.contains("upload.enabled is false")).expect("the warning line");
    for key in ["upload.endpoint", "upload.bucket", "upload.secret_key"] {
        assert!(line.contains(key), "the warning names {key}: {line}");
    }
    assert!(!line.contains("upload.region"), "keys left at their default are not named: {line}");
    assert!(!log.contains("sk-it-never-logged-0123"), "the secret is never logged");
}

/// `production: true` refuses to start, naming every unmet rule, until auth protects the API and
/// metrics and the listener is loopback.
#[test]
fn production_refuses_to_start_naming_each_unmet_rule() {
    let sb = Sandbox::new();
    let mut env = sb.env();
    env.push(("BINLOG_SERVER_PRODUCTION".into(), "true".into()));
    let stderr =
        assert_config_error(&sb, &["serve"], &env, &["production", "api.auth.enabled", "BINLOG_SERVER_PRODUCTION"]);
    assert!(!stderr.contains("listen_addr must"), "the sandbox listens on loopback: {stderr}");
    env.push(("BINLOG_SERVER_API_AUTH_ENABLED".into(), "true".into()));
    env.push(("BINLOG_SERVER_API_AUTH_BEARER_TOKEN".into(), "prod-token-0123456789abcdef".into()));
    env.push(("BINLOG_SERVER_API_AUTH_PROTECT_METRICS".into(), "false".into()));
    env.push(("BINLOG_SERVER_API_AUTH_ALLOW_INSECURE_REMOTE".into(), "true".into()));
    env.retain(|(k, _)| k != "BINLOG_SERVER_LISTEN_ADDR");
    env.push(("BINLOG_SERVER_LISTEN_ADDR".into(), format!("0.0.0.0:{}", free_port())));
    let stderr = assert_config_error(
        &sb,
        &["serve"],
        &env,
        &["3 rule(s)", "api.auth.protect_metrics", "api.auth.allow_insecure_remote", "listen_addr must"],
    );
    assert!(!stderr.contains("prod-token-0123456789abcdef"), "the token is not printed");
    // Meeting every rule, the server starts.
    let server = crate::common::server::Server::start(
        crate::common::server::ServerOpts::default()
            .env("BINLOG_SERVER_PRODUCTION", "true")
            .env("BINLOG_SERVER_API_AUTH_ENABLED", "true")
            .env("BINLOG_SERVER_API_AUTH_BEARER_TOKEN", "prod-token-0123456789abcdef")
            .header("Authorization", "Bearer prod-token-0123456789abcdef"),
    );
    let (status, body) = server.get("/api/tasks");
    assert_eq!(status, 200, "{body}");
}

/// `http.request_timeout_sec` bounds the time to send headers (408); `http.keep_alive_sec: 0`
/// closes every connection after its response.
#[test]
fn request_timeout_and_keep_alive_are_configurable() {
    use crate::common::server::{Server, ServerOpts};
    let server = Server::start(
        ServerOpts::default()
            .env("BINLOG_SERVER_HTTP_REQUEST_TIMEOUT_SEC", "1")
            .env("BINLOG_SERVER_HTTP_KEEP_ALIVE_SEC", "0"),
    );
    let r = server
        .raw_exchange(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", Duration::from_secs(10))
        .expect("an answer");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "keep_alive_sec 0: {r:?}");
    // Headers never finished: the server answers 408 after request_timeout_sec, within the deadline.
    let r = server.raw_exchange(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n", Duration::from_secs(10));
    assert_eq!(r.map(|r| r.status), Some(408), "unfinished headers time out");
}
