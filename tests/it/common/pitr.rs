//! Point-in-time recovery as an operator does it: a logical snapshot (`mariadb-dump`), a replay
//! plan's command run by a real shell into a fresh server, and table checksums to compare; plus
//! the binary downloads (`replay/archive`, single files) the API serves.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::mariadb::MariaDb;
use super::server::Server;
use super::{output_with_deadline, require_binary};

const WAIT: Duration = Duration::from_secs(120);

/// `CHECKSUM TABLE test.<t>` for each table, in order.
pub fn checksums(db: &MariaDb, tables: &[&str]) -> Vec<String> {
    tables.iter().map(|t| db.sql(&format!("CHECKSUM TABLE test.{t}"))[0][1].clone()).collect()
}

/// `mariadb-dump --master-data=2 --single-transaction` of the `test` database (with `--gtid`
/// when `gtid`: the position is then `gtid_slave_pos`).
pub fn dump(db: &MariaDb, gtid: bool) -> String {
    let mut cmd = Command::new(require_binary("mariadb-dump"));
    cmd.args(["--no-defaults", "-h127.0.0.1", &format!("-P{}", db.port()), "-uroot"])
        .args(["--master-data=2", "--single-transaction", "--databases", "test"])
        .env_remove("MYSQL_PWD");
    if gtid {
        cmd.arg("--gtid");
    }
    let out = output_with_deadline(&mut cmd, WAIT, "mariadb-dump");
    assert!(out.status.success(), "mariadb-dump failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("the dump is UTF-8")
}

/// The text between `start` and the next `end` in a dump (`MASTER_LOG_FILE='`, `'`).
pub fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let at = text.find(start).unwrap_or_else(|| panic!("{start:?} not in the dump")) + start.len();
    let rest = &text[at..];
    &rest[..rest.find(end).unwrap_or_else(|| panic!("no {end:?} after {start:?}"))]
}

/// Loads `snapshot` into `target`, then runs `bash -c "set -o pipefail; <command> | mariadb ..."`:
/// the replay command exactly as a plan prints it, piped into the client.
pub fn restore(target: &MariaDb, snapshot: &str, command: &str) {
    let client = require_binary("mariadb");
    let connect = format!("{} --no-defaults -h127.0.0.1 -P{} -uroot", client.display(), target.port());
    let mut load = Command::new("sh");
    load.args(["-c", &connect]).stdin(Stdio::piped()).env_remove("MYSQL_PWD");
    let mut child = load.spawn().expect("mariadb client");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), snapshot.as_bytes()).expect("load the dump");
    assert!(child.wait().expect("client").success(), "loading the snapshot failed");
    let mut replay = Command::new("bash");
    replay.args(["-c", &format!("set -o pipefail; {command} | {connect}")]).env_remove("MYSQL_PWD");
    let out = output_with_deadline(&mut replay, WAIT, "the replay pipeline");
    assert!(out.status.success(), "replay `{command}` failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// (status, content type, body bytes) of a GET: downloads are binary.
pub fn get_bytes(srv: &Server, path: &str) -> (u16, String, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut resp = agent.get(&srv.url(path)).call().expect("GET");
    let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = resp.body_mut().with_config().limit(u64::MAX).read_to_vec().expect("body");
    (resp.status().as_u16(), ctype, body)
}

/// (name, size) of each entry of a ustar archive; checks the end-of-archive blocks.
pub fn tar_entries(data: &[u8]) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 512 <= data.len() && data[at..at + 512].iter().any(|&b| b != 0) {
        let h = &data[at..at + 512];
        let name = String::from_utf8_lossy(&h[..h[..100].iter().position(|&b| b == 0).unwrap_or(100)]).into_owned();
        let size = u64::from_str_radix(std::str::from_utf8(&h[124..135]).expect("octal"), 8).expect("size");
        out.push((name, size));
        at += 512 + (size as usize).div_ceil(512) * 512;
    }
    assert_eq!(data.len(), at + 1024, "the archive ends with two zero blocks");
    out
}

/// URL-encodes a query value.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
