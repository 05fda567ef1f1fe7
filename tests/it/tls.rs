//! TLS towards the source, against a real MariaDB with certificates made by `openssl` for the
//! test: every `tls_mode` connects or refuses as the MySQL client's modes do.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use binlog_server::api::dto::ReplicationDto;
use binlog_server::domain::TaskState;
use serde_json::json;

use crate::common::mariadb::{MariaDb, MariaDbOpts, REPL_PASSWORD, REPL_USER};
use crate::common::server::{Server, ServerOpts};
use crate::common::{poll_until, require_binary, temp_dir};

const WAIT: Duration = Duration::from_secs(60);

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(require_binary("openssl")).current_dir(dir).args(args).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a server certificate signed by it for `san` (e.g. `IP:127.0.0.1`).
pub(crate) fn make_pki(dir: &Path, prefix: &str, san: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = format!("{prefix}-ca.key");
    let ca = format!("{prefix}-ca.pem");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
            "-days",
            "2",
            "-subj",
            &format!("/CN={prefix} test CA"),
        ],
    );
    let key = format!("{prefix}-server.key");
    let csr = format!("{prefix}-server.csr");
    let cert = format!("{prefix}-server.pem");
    openssl(
        dir,
        &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", "/CN=binlog test server"],
    );
    let ext = format!("{prefix}-ext.cnf");
    std::fs::write(dir.join(&ext), format!("subjectAltName={san}\n")).expect("ext file");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
    (dir.join(ca), dir.join(cert), dir.join(key))
}

fn task(srv: &Server, db: &MariaDb, key: &str, tls_mode: &str, ca: Option<&Path>) -> i64 {
    let mut source = json!({"host": "127.0.0.1", "port": db.port(), "user": REPL_USER, "password": REPL_PASSWORD,
                            "flavor": "mariadb", "tls_mode": tls_mode});
    if let Some(ca) = ca {
        // A name in replication.tls_ca_dir (the PKI directory, see the server's options).
        source["tls_ca_file"] = json!(ca.file_name().and_then(|n| n.to_str()).expect("a file name"));
    }
    let id = srv.create(&json!({"name": key, "cluster_key": key, "source": source, "start": {"mode": "LATEST"}})).id;
    srv.start_task(id);
    id
}

/// Waits for RUNNING or FAILED; returns the replication status.
fn settle(srv: &Server, id: i64) -> ReplicationDto {
    poll_until(WAIT, &format!("task {id} RUNNING or FAILED"), || {
        let r = srv.replication(id);
        matches!(r.state, TaskState::Running | TaskState::Failed).then_some(r)
    })
}

/// The message of the replication status's `last_error` ("" without one).
fn error_message(r: &ReplicationDto) -> &str {
    r.last_error.as_ref().map_or("", |e| e.message.as_str())
}

#[test]
fn each_tls_mode_connects_or_refuses_like_the_mysql_client() {
    let pki = temp_dir("tls-pki");
    let (ca, cert, key) = make_pki(pki.path(), "good", "IP:127.0.0.1");
    let (other_ca, _, _) = make_pki(pki.path(), "other", "IP:127.0.0.1");
    let (_, wrong_name_cert, wrong_name_key) = make_pki(pki.path(), "named", "DNS:db.example.invalid");
    let db = MariaDb::start(
        MariaDbOpts::default()
            .arg(format!("--ssl-ca={}", ca.display()))
            .arg(format!("--ssl-cert={}", cert.display()))
            .arg(format!("--ssl-key={}", key.display())),
    );
    let srv = Server::start(
        ServerOpts::default().env("BINLOG_SERVER_REPLICATION_TLS_CA_DIR", pki.path().to_str().expect("utf-8 path")),
    );

    for (mode, ca_file) in
        [("preferred", None), ("required", None), ("verify_ca", Some(&ca)), ("verify_identity", Some(&ca))]
    {
        let id = task(&srv, &db, &format!("ok-{mode}"), mode, ca_file.map(|p| p.as_path()));
        let r = settle(&srv, id);
        assert_eq!(r.state, TaskState::Running, "{mode}: {r:?}");
        assert!(r.tls, "{mode} must encrypt: {r:?}");
    }
    let id = task(&srv, &db, "ok-disabled", "disabled", None);
    let r = settle(&srv, id);
    assert_eq!((r.state, r.tls), (TaskState::Running, false), "{r:?}");

    // A certificate from another CA fails verification: permanent, with a readable reason.
    let id = task(&srv, &db, "bad-ca", "verify_ca", Some(&other_ca));
    let r = settle(&srv, id);
    assert_eq!(r.state, TaskState::Failed, "{r:?}");
    assert!(error_message(&r).contains("TLS"), "{r:?}");

    // A server whose certificate names another host: verify_identity refuses, verify_ca accepts.
    let named = MariaDb::start(
        MariaDbOpts::default()
            .arg(format!("--ssl-ca={}", ca.display()))
            .arg(format!("--ssl-cert={}", wrong_name_cert.display()))
            .arg(format!("--ssl-key={}", wrong_name_key.display())),
    );
    let named_ca = pki.path().join("named-ca.pem");
    let id = task(&srv, &named, "name-identity", "verify_identity", Some(&named_ca));
    assert_eq!(settle(&srv, id).state, TaskState::Failed);
    let id = task(&srv, &named, "name-ca", "verify_ca", Some(&named_ca));
    assert_eq!(settle(&srv, id).state, TaskState::Running);

    // A server without TLS: `required` refuses, `preferred` falls back to plain text.
    let plain = MariaDb::start(MariaDbOpts::default());
    let id = task(&srv, &plain, "plain-required", "required", None);
    let r = settle(&srv, id);
    assert_eq!(r.state, TaskState::Failed, "{r:?}");
    assert!(error_message(&r).contains("does not offer TLS"), "{r:?}");
    let id = task(&srv, &plain, "plain-preferred", "preferred", None);
    let r = settle(&srv, id);
    assert_eq!((r.state, r.tls), (TaskState::Running, false), "{r:?}");
}
