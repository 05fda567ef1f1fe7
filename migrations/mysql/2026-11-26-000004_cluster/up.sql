-- Cluster mode (MySQL/MariaDB): nodes, task leases, and who wrote each checkpoint.
-- Lease times are written and compared with the database's clock (NOW(6)), never a host's.
CREATE TABLE cluster_nodes (
    node_id VARCHAR(64) NOT NULL PRIMARY KEY,
    version VARCHAR(64) NOT NULL,
    max_tasks INT NOT NULL,
    started_at DATETIME(6) NOT NULL,
    heartbeat_at DATETIME(6) NOT NULL,
    left_at DATETIME(6) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE task_leases (
    task_id BIGINT NOT NULL PRIMARY KEY,
    owner VARCHAR(64) NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at DATETIME(6) NOT NULL,
    acquired_at DATETIME(6) NOT NULL,
    renewed_at DATETIME(6) NOT NULL,
    fence_checks BIGINT NOT NULL DEFAULT 0,
    KEY task_leases_owner (owner, expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

ALTER TABLE checkpoints
    ADD COLUMN node_id VARCHAR(64) NULL,
    ADD COLUMN epoch BIGINT NULL;
