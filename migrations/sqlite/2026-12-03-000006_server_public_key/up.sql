-- A task's pinned RSA public key of its source, for caching_sha2_password without TLS (SQLite).
ALTER TABLE tasks ADD COLUMN source_server_public_key TEXT;
