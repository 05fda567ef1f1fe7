-- Relay users (issue 18): who may pull a task's binlog through the relay listener (SQLite).
-- Only the hashes the protocol needs are kept: SHA1(SHA1(password)) for mysql_native_password and
-- SHA256(SHA256(password)) for caching_sha2_password's fast path; never the password.
CREATE TABLE relay_users (
    name TEXT PRIMARY KEY NOT NULL,
    task_id BIGINT NOT NULL,
    native_hash TEXT NOT NULL,
    sha2_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX relay_users_task ON relay_users (task_id);
