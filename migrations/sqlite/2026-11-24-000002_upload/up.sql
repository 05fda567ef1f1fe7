-- Upload of sealed files to S3-compatible storage, and retention (SQLite).
ALTER TABLE tasks ADD COLUMN bucket_retention_days INTEGER NOT NULL DEFAULT 30;
ALTER TABLE binlog_files ADD COLUMN upload_state TEXT NOT NULL DEFAULT 'LOCAL_ONLY';
ALTER TABLE binlog_files ADD COLUMN upload_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE binlog_files ADD COLUMN upload_error TEXT;
ALTER TABLE binlog_files ADD COLUMN next_upload_at TIMESTAMP;
ALTER TABLE binlog_files ADD COLUMN object_key TEXT;
ALTER TABLE binlog_files ADD COLUMN uploaded_at TIMESTAMP;
ALTER TABLE binlog_files ADD COLUMN upload_verified BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE binlog_files ADD COLUMN local_deleted_at TIMESTAMP;
ALTER TABLE binlog_files ADD COLUMN remote_deleted_at TIMESTAMP;
CREATE INDEX binlog_files_upload ON binlog_files (task_id, upload_state);
