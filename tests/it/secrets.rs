//! Source passwords at rest: the metadata database holds only ciphertext; a wrong key stops
//! the service at start-up with a clear message; clear-text rows from before encryption are
//! encrypted at start-up; the key can come from a file.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::common::server::{Server, ServerOpts, run_cli};
use crate::common::{free_port, require_binary};

const PASSWORD: &str = "Distinctive-Pw-7h3x";

fn sqlite(data_dir: &Path, sql: &str) -> String {
    let out = Command::new(require_binary("sqlite3")).arg(data_dir.join("meta.db")).arg(sql).output().expect("sqlite3");
    assert!(out.status.success(), "sqlite3 {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn create(srv: &Server, key: &str) -> i64 {
    let (status, t) = srv.post(
        "/api/tasks",
        &json!({"name": key, "cluster_key": key,
                "source": {"host": "127.0.0.1", "port": 3306, "user": "repl", "password": PASSWORD, "flavor": "mariadb"},
                "start": {"mode": "LATEST"}}),
    );
    assert_eq!(status, 201, "{t}");
    t["id"].as_i64().expect("id")
}

#[test]
fn passwords_are_ciphertext_at_rest_and_a_wrong_key_is_refused() {
    let mut srv = Server::start(ServerOpts::default());
    let id = create(&srv, "enc");
    let data = srv.data_dir();
    srv.stop();
    let stored = sqlite(&data, &format!("SELECT source_password FROM tasks WHERE id = {id}"));
    assert!(stored.starts_with("enc:v1:") && !stored.contains(PASSWORD), "stored: {stored}");
    let whole_db = std::fs::read(data.join("meta.db")).expect("meta.db");
    assert!(!whole_db.windows(PASSWORD.len()).any(|w| w == PASSWORD.as_bytes()), "the clear password is in meta.db");
    let key_file = data.join("secrets.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_file).expect("generated key").permissions().mode() & 0o777, 0o600);

    // Another key: refused at start-up, naming the setting, not at some later request.
    let listen = format!("127.0.0.1:{}", free_port());
    let other_key = "aa".repeat(32);
    let (code, _, stderr) = run_cli(
        &["serve"],
        &[
            ("BINLOG_SERVER_DATA_DIR", data.to_str().expect("utf-8")),
            ("BINLOG_SERVER_LISTEN_ADDR", &listen),
            ("BINLOG_SERVER_SECRETS_KEY", &other_key),
        ],
    );
    assert_ne!(code, 0, "a wrong key must stop the service");
    assert!(stderr.contains("secrets.key"), "the message names the setting: {stderr}");
    assert!(!stderr.contains(PASSWORD) && !stderr.contains(&other_key), "no secret in the message: {stderr}");
    // A malformed key is a configuration error (exit 2).
    let (code, _, stderr) = run_cli(
        &["serve"],
        &[
            ("BINLOG_SERVER_DATA_DIR", data.to_str().expect("utf-8")),
            ("BINLOG_SERVER_LISTEN_ADDR", &listen),
            ("BINLOG_SERVER_SECRETS_KEY", "not-a-key"),
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("secrets.key"), "{stderr}");

    // The right key from a file works, and a clear-text row from before encryption is
    // encrypted at start-up.
    sqlite(&data, &format!("UPDATE tasks SET source_password = 'legacy-clear-pw' WHERE id = {id}"));
    let copy = data.parent().expect("root").join("key-copy");
    std::fs::copy(&key_file, &copy).expect("copy key");
    srv.set_env("BINLOG_SERVER_SECRETS_KEY_FILE", copy.to_str().expect("utf-8"));
    srv.restart();
    let (status, t) = srv.get(&format!("/api/tasks/{id}"));
    assert_eq!(status, 200, "{t}");
    let stored = sqlite(&data, &format!("SELECT source_password FROM tasks WHERE id = {id}"));
    assert!(stored.starts_with("enc:v1:") && !stored.contains("legacy-clear-pw"), "re-encrypted: {stored}");
}
