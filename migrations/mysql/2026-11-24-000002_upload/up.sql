-- Upload of sealed files to S3-compatible storage, and retention (MySQL/MariaDB).
ALTER TABLE tasks ADD COLUMN bucket_retention_days INT NOT NULL DEFAULT 30;
ALTER TABLE binlog_files
    ADD COLUMN upload_state VARCHAR(16) NOT NULL DEFAULT 'LOCAL_ONLY',
    ADD COLUMN upload_attempts INT NOT NULL DEFAULT 0,
    ADD COLUMN upload_error TEXT NULL,
    ADD COLUMN next_upload_at DATETIME(6) NULL,
    ADD COLUMN object_key TEXT NULL,
    ADD COLUMN uploaded_at DATETIME(6) NULL,
    ADD COLUMN upload_verified BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN local_deleted_at DATETIME(6) NULL,
    ADD COLUMN remote_deleted_at DATETIME(6) NULL,
    ADD KEY binlog_files_upload (task_id, upload_state);
