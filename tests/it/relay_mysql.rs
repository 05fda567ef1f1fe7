//! The MySQL flavor end to end through the relay (issue 19, item 2): real MySQL 8.0 and 9.x
//! binlog files (`shared/fixtures/mysql-binlogs`) are imported into ARCHIVE_ONLY MySQL-flavor
//! tasks, served by the relay to users that log in with `caching_sha2_password`, and pulled back
//! by tasks of the same binlog-server whose source is the relay (flavor `mysql`): by file and
//! position, and by GTID set (COM_BINLOG_DUMP_GTID), a tagged set and a set that begins mid-file
//! among them. The pulled files are the fixtures' bytes.
//!
//! Only MariaDB can be installed here, so this chain is the MySQL client's (src/source) only
//! contact with MySQL's own bytes on the wire.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::replication::{create_task, fast_server_opts, meta_files, start_task, task, wait_failed};
use crate::common::server::{Server, run_cli};
use crate::common::{free_port, poll_until};

const PASSWORD: &str = "relay-Sha2-pw";
const WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// 8.0.28: five GTID transactions of one server (untagged), FDE with `created` set and the
/// in-use flag on (copied while the server wrote it).
const MYSQL_80: &str = "mysql-enum-string-set.000001";
const UUID_80: &str = "93e95066-a2f4-11ec-9b69-9657f0ae95e2";
/// 9.6.0: a tagged GTID transaction (GTID_TAGGED_LOG_EVENT), PREVIOUS_GTIDS in the tagged format.
const MYSQL_96_TAGGED: &str = "binlog_transaction_with_GTID_TAG.000001";
const UUID_96: &str = "55778904-0299-11f1-b1b8-4ef0c4956feb";
/// 8.0.32 with `binlog_transaction_compression`: one TRANSACTION_PAYLOAD, anonymous (gtid_mode
/// OFF), so the file does not name its server: imported with `--source-uuid`, the uuid its
/// PREVIOUS_GTIDS names.
pub(crate) const MYSQL_80_PAYLOAD: &str = "transaction_compression.000001";
pub(crate) const UUID_PAYLOAD: &str = "357df524-4139-11ee-9979-b033ee13919e";

/// The MySQL fixtures, found as the unit tests and fuzz seeds find them; `None` (and a loud line)
/// when this machine does not have them.
pub(crate) fn fixture_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var("BINLOG_FIXTURES").ok(),
        Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/mysql-binlogs").to_string()),
        Some("/work/shared/fixtures/mysql-binlogs".to_string()),
    ];
    let found = candidates.into_iter().flatten().map(PathBuf::from).find(|p| p.join(MYSQL_80).is_file());
    if found.is_none() {
        eprintln!(
            "SKIPPED: the MySQL binlog fixtures (shared/fixtures/mysql-binlogs) are not on this machine; set \
             BINLOG_FIXTURES to the folder holding {MYSQL_80} to run the MySQL end-to-end relay test"
        );
    }
    found
}

/// Events of a binlog file: (offset, type, bytes).
fn events(data: &[u8]) -> Vec<(usize, u8, &[u8])> {
    binlog_server::binlog::event::FileEvents::new(data)
        .expect("a binlog file")
        .map(|(at, ev)| (at, ev[4], ev))
        .collect()
}

/// The fixture as a closed file holds it: the FDE's in-use flag cleared, as a source clears it
/// when it sends the file (the import stores it that way, docs/architecture.md).
fn as_closed(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    out[4 + 17] &= !0x01;
    out
}

/// An archive-only MySQL task holding `file`, served by the relay to `user`.
fn archive(srv: &Server, fixtures: &Path, file: &str, user: &str, source_uuid: Option<&str>) -> i64 {
    let source = json!({"host": "127.0.0.1", "port": 9, "user": "nobody", "password": "unused", "flavor": "mysql"});
    let id = create_task(srv, &format!("archive-{user}"), source, json!({"mode": "ARCHIVE_ONLY"}));
    let data = srv.data_dir().display().to_string();
    let (id_arg, path) = (id.to_string(), fixtures.join(file).display().to_string());
    let mut argv = vec!["import", "--task", &id_arg, &path];
    if let Some(u) = source_uuid {
        argv.extend(["--source-uuid", u]);
    }
    let (code, out, err) = run_cli(&argv, &[("BINLOG_SERVER_DATA_DIR", &data)]);
    assert_eq!(code, 0, "import of {file}: {out}{err}");
    let (status, body) =
        srv.put(&format!("/api/tasks/{id}/relay"), &json!({"users": [{"name": user, "password": PASSWORD}]}));
    assert_eq!(status, 200, "{body}");
    id
}

/// A task of the same binlog-server pulling from the relay as `user`.
fn puller(srv: &Server, relay_port: u16, key: &str, user: &str, start: Value) -> i64 {
    let source =
        json!({"host": "127.0.0.1", "port": relay_port, "user": user, "password": PASSWORD, "flavor": "mysql"});
    let id = create_task(srv, key, source, start);
    start_task(srv, id);
    id
}

/// Waits until task `id` holds `file` of `identity` with exactly `want`; a FAILED task panics
/// with its error.
fn wait_pulled(srv: &Server, id: i64, identity: &str, file: &str, want: &[u8]) {
    let path = srv.data_dir().join(id.to_string()).join(identity).join(file);
    let mut last = Vec::new();
    poll_until(WAIT, &format!("task {id} to hold {file} as served"), || {
        let t = task(srv, id);
        assert_ne!(t["state"], "FAILED", "task {id} failed: {}\n{}", t["last_error"], srv.log_text());
        last = std::fs::read(&path).unwrap_or_default();
        (last == want).then_some(())
    });
}

#[test]
fn mysql_files_imported_then_pulled_through_the_relay_by_position_and_by_gtid_set() {
    let Some(fixtures) = fixture_dir() else { return };
    let relay_port = free_port();
    let srv =
        Server::start(fast_server_opts().env("BINLOG_SERVER_RELAY_LISTEN_ADDR", format!("127.0.0.1:{relay_port}")));
    let f80 = std::fs::read(fixtures.join(MYSQL_80)).unwrap();
    let f96 = std::fs::read(fixtures.join(MYSQL_96_TAGGED)).unwrap();
    let f80z = std::fs::read(fixtures.join(MYSQL_80_PAYLOAD)).unwrap();
    archive(&srv, &fixtures, MYSQL_80, "mysql80", None);
    let archive96 = archive(&srv, &fixtures, MYSQL_96_TAGGED, "mysql96", None);
    archive(&srv, &fixtures, MYSQL_80_PAYLOAD, "mysqlzip", Some(UUID_PAYLOAD));

    // By file and position: the whole 8.0 file.
    let by_pos = puller(&srv, relay_port, "pos80", "mysql80", json!({"mode": "FILE_POS", "file": MYSQL_80, "pos": 4}));
    wait_pulled(&srv, by_pos, UUID_80, MYSQL_80, &as_closed(&f80));

    // TRANSACTION_PAYLOAD (a compressed transaction) stored as received, never unpacked.
    let zip =
        puller(&srv, relay_port, "pos80z", "mysqlzip", json!({"mode": "FILE_POS", "file": MYSQL_80_PAYLOAD, "pos": 4}));
    wait_pulled(&srv, zip, UUID_PAYLOAD, MYSQL_80_PAYLOAD, &as_closed(&f80z));
    assert!(events(&f80z).iter().any(|(_, t, _)| *t == 40), "the fixture holds a TRANSACTION_PAYLOAD event");

    // By a tagged GTID set (COM_BINLOG_DUMP_GTID in the 8.3+ format): the 9.6 file's own
    // PREVIOUS_GTIDS, so the dump starts at its beginning and sends its tagged transaction.
    let (_, _, prev) = events(&f96).into_iter().find(|(_, t, _)| *t == 35).expect("PREVIOUS_GTIDS");
    let tagged = binlog_server::binlog::event::parse_previous_gtids(prev, true).unwrap();
    assert!(tagged.has_tags(), "the 9.6 fixture's PREVIOUS_GTIDS is a tagged set: {tagged}");
    let by_tag = puller(&srv, relay_port, "gtid96", "mysql96", json!({"mode": "GTID", "gtid_set": tagged.to_string()}));
    wait_pulled(&srv, by_tag, UUID_96, MYSQL_96_TAGGED, &as_closed(&f96));

    // LATEST: the client reads the end with the statement of the version the relay announces
    // (9.6: SHOW BINARY LOG STATUS; SHOW MASTER STATUS is gone since 8.4) and dumps from there.
    let latest = puller(&srv, relay_port, "latest96", "mysql96", json!({"mode": "LATEST"}));
    crate::common::replication::wait_running(&srv, latest);
    poll_until(WAIT, "the LATEST task's dump at the archive's end", || {
        let (status, page) = srv.get(&format!("/api/tasks/{archive96}/replicas"));
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        items
            .iter()
            .any(|c| c["mode"] == "position" && c["file"] == MYSQL_96_TAGGED && c["pos"] == f96.len() as u64)
            .then_some(())
    });

    // By a GTID set that ends inside the 8.0 file: its first two transactions are left out. The
    // copy is joined mid-way (docs/architecture.md): the magic, the FDE as a MySQL source sends
    // it for a GTID dump that skips the file's first transaction (`created` zeroed, in-use flag
    // cleared, CRC recomputed), the PREVIOUS_GTIDS, then the file from its third transaction.
    let evs = events(&f80);
    let third = evs.iter().filter(|(_, t, _)| *t == 33).nth(2).expect("a third GTID event").0;
    let (fde_at, _, fde) = evs[0];
    let (prev_at, prev_type, prev) = evs[1];
    assert_eq!((fde_at, prev_type), (4, 35));
    let mut sent_fde = fde.to_vec();
    sent_fde[19 + 2 + 50..19 + 2 + 50 + 4].fill(0);
    sent_fde[17] &= !0x01;
    let n = sent_fde.len() - 4;
    let crc = crc32fast::hash(&sent_fde[..n]);
    sent_fde[n..].copy_from_slice(&crc.to_le_bytes());
    let mut want = f80[..4].to_vec();
    want.extend_from_slice(&sent_fde);
    want.extend_from_slice(prev);
    want.extend_from_slice(&f80[third..]);
    assert_eq!(prev_at + prev.len(), 4 + fde.len() + prev.len());
    let mid =
        puller(&srv, relay_port, "mid80", "mysql80", json!({"mode": "GTID", "gtid_set": format!("{UUID_80}:1-2")}));
    wait_pulled(&srv, mid, UUID_80, MYSQL_80, &want);
    let row = meta_files(&srv.data_dir(), mid).into_iter().find(|r| r.file_name == MYSQL_80).unwrap();
    assert_eq!((row.start_pos, row.header_len), (third as u64, (4 + fde.len() + prev.len()) as u64), "{row:?}");

    // A set the archive cannot serve: the replica has transactions of this source that the
    // archive does not hold. 1236, naming them; the task fails instead of retrying forever.
    let ahead =
        puller(&srv, relay_port, "ahead80", "mysql80", json!({"mode": "GTID", "gtid_set": format!("{UUID_80}:1-100")}));
    let (code, message) = wait_failed(&srv, ahead);
    assert!(
        message.contains("more GTIDs than the master") && message.contains(&format!("{UUID_80}:6-100")),
        "{code}: {message}"
    );
}
