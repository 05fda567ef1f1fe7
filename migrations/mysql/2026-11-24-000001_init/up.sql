-- Initial schema (MySQL/MariaDB). Keep in step with migrations/sqlite.
CREATE TABLE tasks (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    cluster_key VARCHAR(128) NOT NULL,
    source_host VARCHAR(255) NOT NULL,
    source_port INT NOT NULL,
    source_user VARCHAR(255) NOT NULL,
    source_password TEXT NOT NULL,
    source_flavor VARCHAR(16) NOT NULL,
    source_server_id BIGINT NULL,
    source_tls_mode VARCHAR(32) NOT NULL,
    source_tls_ca_file TEXT NULL,
    start_mode VARCHAR(16) NOT NULL,
    start_file VARCHAR(255) NULL,
    start_pos BIGINT NULL,
    start_gtid_set TEXT NULL,
    retention_days INT NOT NULL,
    desired_state VARCHAR(32) NOT NULL,
    state VARCHAR(32) NOT NULL,
    last_error_code VARCHAR(64) NULL,
    last_error_message TEXT NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    UNIQUE KEY tasks_cluster_key (cluster_key),
    KEY tasks_state (state)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE checkpoints (
    task_id BIGINT NOT NULL PRIMARY KEY,
    source_identity VARCHAR(255) NULL,
    file_name VARCHAR(255) NULL,
    pos BIGINT NULL,
    gtid_set MEDIUMTEXT NULL,
    updated_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE task_events (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    task_id BIGINT NOT NULL,
    event_type VARCHAR(64) NOT NULL,
    message TEXT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    KEY task_events_task (task_id, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE binlog_files (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    task_id BIGINT NOT NULL,
    source_identity VARCHAR(255) NOT NULL,
    file_name VARCHAR(255) NOT NULL,
    state VARCHAR(16) NOT NULL,
    start_pos BIGINT NOT NULL,
    header_len BIGINT NOT NULL,
    end_pos BIGINT NULL,
    size BIGINT NOT NULL,
    sha256 CHAR(64) NULL,
    created_at DATETIME(6) NOT NULL,
    sealed_at DATETIME(6) NULL,
    UNIQUE KEY binlog_files_name (task_id, source_identity, file_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
