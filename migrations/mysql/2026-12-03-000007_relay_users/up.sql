-- Relay users (issue 18): who may pull a task's binlog through the relay listener (MySQL/MariaDB).
-- Only the hashes the protocol needs are kept: SHA1(SHA1(password)) for mysql_native_password and
-- SHA256(SHA256(password)) for caching_sha2_password's fast path; never the password.
CREATE TABLE relay_users (
    name VARCHAR(80) NOT NULL PRIMARY KEY,
    task_id BIGINT NOT NULL,
    native_hash VARCHAR(40) NOT NULL,
    sha2_hash VARCHAR(64) NOT NULL,
    created_at DATETIME(6) NOT NULL,
    KEY relay_users_task (task_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
