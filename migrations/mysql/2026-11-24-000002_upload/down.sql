ALTER TABLE binlog_files
    DROP KEY binlog_files_upload,
    DROP COLUMN remote_deleted_at,
    DROP COLUMN local_deleted_at,
    DROP COLUMN upload_verified,
    DROP COLUMN uploaded_at,
    DROP COLUMN object_key,
    DROP COLUMN next_upload_at,
    DROP COLUMN upload_error,
    DROP COLUMN upload_attempts,
    DROP COLUMN upload_state;
ALTER TABLE tasks DROP COLUMN bucket_retention_days;
