//! HTTPS on the HTTP listener (`api.tls.*`) through the real binary, with self-signed
//! certificates made by `openssl` for the test and verified by `curl --cacert`: plain HTTP gets
//! no answer, SIGHUP swaps the certificate while a connection opened before keeps working, a
//! broken reload keeps the certificate in use, and an unreadable file stops the start-up.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::server::{Server, ServerOpts, run_cli};
use crate::common::{poll_until, require_binary, temp_dir};

const WAIT: Duration = Duration::from_secs(30);

/// A self-signed certificate for `IP:127.0.0.1` (its own CA file for `curl --cacert`).
pub(crate) fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    let out = Command::new(require_binary("openssl"))
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", &format!("/CN=binlog-server-{name}"), "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl req: {}", String::from_utf8_lossy(&out.stderr));
    (cert, key)
}

/// `curl --cacert ca url`: whether it succeeded, and the body.
fn curl(ca: Option<&Path>, url: &str) -> (bool, String) {
    let mut cmd = Command::new(require_binary("curl"));
    cmd.args(["-sS", "--max-time", "5"]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    let out = cmd.arg(url).output().expect("run curl");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sighup(server: &Server) {
    // SAFETY: kill(2) on the pid of the child this test started and still owns.
    let rc = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(rc, 0, "kill -HUP {}", server.pid());
}

/// One TLS connection kept open (`openssl s_client`), to send several requests over it.
struct KeptConnection {
    child: Child,
    stdin: std::process::ChildStdin,
    chunks: mpsc::Receiver<Vec<u8>>,
}

impl KeptConnection {
    fn open(port: u16, ca: &Path) -> KeptConnection {
        let mut child = Command::new(require_binary("openssl"))
            .args(["s_client", "-quiet", "-verify_return_error", "-connect", &format!("127.0.0.1:{port}")])
            .arg("-CAfile")
            .arg(ca)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn openssl s_client");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let (tx, chunks) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        KeptConnection { child, stdin, chunks }
    }

    /// Sends `GET /healthz` on this connection and waits (with a deadline) for `200` and `ok`.
    fn healthz(&mut self) -> String {
        self.stdin
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .and_then(|()| self.stdin.flush())
            .expect("write on the kept connection");
        let deadline = Instant::now() + WAIT;
        let mut got = Vec::new();
        while !(got.starts_with(b"HTTP/1.1 200") && got.ends_with(b"\r\n\r\nok")) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => got.extend(chunk),
                Err(e) => panic!("no complete answer on the kept connection ({e}): {}", String::from_utf8_lossy(&got)),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }
}

impl Drop for KeptConnection {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn https_listener_verifies_refuses_plain_http_and_reloads_on_sighup() {
    let dir = temp_dir("binlog-it-https-");
    let (first, first_key) = self_signed(dir.path(), "first");
    let (live, live_key) = (dir.path().join("live.pem"), dir.path().join("live.key"));
    std::fs::copy(&first, &live).unwrap();
    std::fs::copy(&first_key, &live_key).unwrap();
    let server = Server::start(
        ServerOpts::default()
            .env("BINLOG_SERVER_API_TLS_CERT_FILE", live.display().to_string())
            .env("BINLOG_SERVER_API_TLS_KEY_FILE", live_key.display().to_string())
            .env("BINLOG_SERVER_HTTP_KEEP_ALIVE_SEC", "600")
            .https(&first),
    );
    let https = server.url("/healthz");
    assert!(https.starts_with("https://"), "{https}");
    assert_eq!(curl(Some(&first), &https), (true, "ok".to_string()));
    let plain = format!("http://127.0.0.1:{}/healthz", server.port());
    let (plain_ok, plain_body) = curl(None, &plain);
    assert!(!plain_ok && plain_body.is_empty(), "plain HTTP answered: {plain_body:?}");

    let mut kept = KeptConnection::open(server.port(), &first);
    kept.healthz();

    let (second, second_key) = self_signed(dir.path(), "second");
    assert!(!curl(Some(&second), &https).0, "the second certificate is served before the reload");
    std::fs::copy(&second, &live).unwrap();
    std::fs::copy(&second_key, &live_key).unwrap();
    sighup(&server);
    poll_until(WAIT, "curl --cacert second.pem to verify the reloaded certificate", || {
        (curl(Some(&second), &https) == (true, "ok".to_string())).then_some(())
    });
    assert!(!curl(Some(&first), &https).0, "the first certificate is still served after the reload");
    // The connection made before the reload was not dropped.
    kept.healthz();

    // A reload that fails keeps the certificate in use and names the file.
    std::fs::write(&live_key, "not a key\n").unwrap();
    sighup(&server);
    let live_key_name = live_key.display().to_string();
    poll_until(WAIT, "the log to say the reload failed", || {
        let log = server.log_text();
        log.lines().any(|l| l.contains("NOT reloaded") && l.contains(&live_key_name)).then_some(())
    });
    assert!(!server.log_text().contains("not a key"), "the key file's content was logged");
    assert_eq!(curl(Some(&second), &https), (true, "ok".to_string()));
    kept.healthz();
}

#[test]
fn an_unreadable_certificate_stops_the_start_up_naming_the_file() {
    let dir = temp_dir("binlog-it-https-bad-");
    let (cert, _) = self_signed(dir.path(), "only");
    let missing_key = dir.path().join("missing.key");
    let data = dir.path().join("data");
    let (code, stdout, stderr) = run_cli(
        &["serve"],
        &[
            ("BINLOG_SERVER_DATA_DIR", &data.display().to_string()),
            ("BINLOG_SERVER_LISTEN_ADDR", "127.0.0.1:0"),
            ("BINLOG_SERVER_API_TLS_CERT_FILE", &cert.display().to_string()),
            ("BINLOG_SERVER_API_TLS_KEY_FILE", &missing_key.display().to_string()),
        ],
    );
    let output = format!("{stdout}{stderr}");
    assert_ne!(code, 0, "{output}");
    assert!(output.contains(&missing_key.display().to_string()), "{output}");
}

#[test]
fn sighup_without_tls_keeps_the_server_running() {
    let mut server = Server::start(ServerOpts::default());
    sighup(&server);
    poll_until(WAIT, "the log to acknowledge SIGHUP", || {
        server.log_text().contains("SIGHUP: nothing to reload").then_some(())
    });
    assert!(server.is_running(), "SIGHUP ended the server");
    assert_eq!(server.get_raw("/healthz").status, 200);
}
