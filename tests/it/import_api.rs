//! `POST /api/tasks/{id}/import` with `source_uuid`: a real MySQL 8.0 file without a GTID
//! transaction of its own (`shared/fixtures/mysql-binlogs`, gtid_mode OFF, one compressed
//! transaction) cannot say which server wrote it; the API refuses it until the operator names the
//! server, as `binlog-server import --source-uuid` does, and refuses a uuid that is not one.

use serde_json::json;

use crate::common::replication::{create_task, fast_server_opts, meta_files};
use crate::common::server::Server;
use crate::relay_mysql::{MYSQL_80_PAYLOAD, UUID_PAYLOAD, fixture_dir};

#[test]
fn an_api_import_of_files_that_do_not_name_their_server_takes_the_source_uuid() {
    let Some(fixtures) = fixture_dir() else { return };
    let imports = crate::common::temp_dir("import-api-");
    std::fs::copy(fixtures.join(MYSQL_80_PAYLOAD), imports.path().join(MYSQL_80_PAYLOAD)).unwrap();
    let srv =
        Server::start(fast_server_opts().env("BINLOG_SERVER_STORAGE_IMPORT_DIR", imports.path().display().to_string()));
    let source = json!({"host": "127.0.0.1", "port": 9, "user": "nobody", "password": "unused", "flavor": "mysql"});
    let id = create_task(&srv, "mysql-archive", source, json!({"mode": "ARCHIVE_ONLY"}));
    let path = format!("/api/tasks/{id}/import");

    let (status, body) = srv.post(&path, &json!({"path": MYSQL_80_PAYLOAD}));
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("source_uuid"), "the refusal names the field: {body}");
    assert!(meta_files(&srv.data_dir(), id).is_empty(), "a refused import catalogues nothing");

    let (status, body) = srv.post(&path, &json!({"path": MYSQL_80_PAYLOAD, "source_uuid": "not-a-uuid"}));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("source_uuid"), "{body}");

    let (status, body) = srv.post(&path, &json!({"path": MYSQL_80_PAYLOAD, "source_uuid": UUID_PAYLOAD}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source_identity"], UUID_PAYLOAD, "{body}");
    let rows = meta_files(&srv.data_dir(), id);
    assert_eq!(rows.iter().map(|r| r.file_name.as_str()).collect::<Vec<_>>(), [MYSQL_80_PAYLOAD], "{rows:?}");
    let stored = srv.data_dir().join(id.to_string()).join(UUID_PAYLOAD).join(MYSQL_80_PAYLOAD);
    assert!(stored.is_file(), "{} is not there", stored.display());
}
