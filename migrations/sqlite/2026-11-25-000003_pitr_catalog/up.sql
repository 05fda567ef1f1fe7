-- Point-in-time recovery catalog: what each binlog file holds, by time and GTID (SQLite).
-- summary_pos: the source position the other columns describe the file up to (0: never
-- summarised; the service rebuilds such rows from the file).
ALTER TABLE binlog_files ADD COLUMN first_event_at TIMESTAMP;
ALTER TABLE binlog_files ADD COLUMN last_event_at TIMESTAMP;
ALTER TABLE binlog_files ADD COLUMN first_gtid TEXT;
ALTER TABLE binlog_files ADD COLUMN last_gtid TEXT;
ALTER TABLE binlog_files ADD COLUMN gtid_start TEXT;
ALTER TABLE binlog_files ADD COLUMN gtid_end TEXT;
ALTER TABLE binlog_files ADD COLUMN gtid_added TEXT;
ALTER TABLE binlog_files ADD COLUMN summary_pos BIGINT NOT NULL DEFAULT 0;
