-- Cluster mode tables (SQLite). Cluster mode itself needs MySQL/MariaDB; the tables exist here
-- too so that both backends have one schema.
CREATE TABLE cluster_nodes (
    node_id TEXT NOT NULL PRIMARY KEY,
    version TEXT NOT NULL,
    max_tasks INTEGER NOT NULL,
    started_at TIMESTAMP NOT NULL,
    heartbeat_at TIMESTAMP NOT NULL,
    left_at TIMESTAMP
);

CREATE TABLE task_leases (
    task_id BIGINT NOT NULL PRIMARY KEY,
    owner TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    acquired_at TIMESTAMP NOT NULL,
    renewed_at TIMESTAMP NOT NULL,
    fence_checks BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX task_leases_owner ON task_leases (owner, expires_at);

ALTER TABLE checkpoints ADD COLUMN node_id TEXT;
ALTER TABLE checkpoints ADD COLUMN epoch BIGINT;
