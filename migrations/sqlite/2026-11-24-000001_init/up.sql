-- Initial schema (SQLite). Keep in step with migrations/mysql: one logical schema, two dialects.
CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL,
    cluster_key TEXT NOT NULL,
    source_host TEXT NOT NULL,
    source_port INTEGER NOT NULL,
    source_user TEXT NOT NULL,
    source_password TEXT NOT NULL,
    source_flavor TEXT NOT NULL,
    source_server_id BIGINT,
    source_tls_mode TEXT NOT NULL,
    source_tls_ca_file TEXT,
    start_mode TEXT NOT NULL,
    start_file TEXT,
    start_pos BIGINT,
    start_gtid_set TEXT,
    retention_days INTEGER NOT NULL,
    desired_state TEXT NOT NULL,
    state TEXT NOT NULL,
    last_error_code TEXT,
    last_error_message TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX tasks_cluster_key ON tasks (cluster_key);
CREATE INDEX tasks_state ON tasks (state);

CREATE TABLE checkpoints (
    task_id BIGINT PRIMARY KEY NOT NULL,
    source_identity TEXT,
    file_name TEXT,
    pos BIGINT,
    gtid_set TEXT,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE task_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    task_id BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX task_events_task ON task_events (task_id, id);

CREATE TABLE binlog_files (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    task_id BIGINT NOT NULL,
    source_identity TEXT NOT NULL,
    file_name TEXT NOT NULL,
    state TEXT NOT NULL,
    start_pos BIGINT NOT NULL,
    header_len BIGINT NOT NULL,
    end_pos BIGINT,
    size BIGINT NOT NULL,
    sha256 TEXT,
    created_at TIMESTAMP NOT NULL,
    sealed_at TIMESTAMP
);
CREATE UNIQUE INDEX binlog_files_name ON binlog_files (task_id, source_identity, file_name);
