-- Point-in-time recovery catalog: what each binlog file holds, by time and GTID (MySQL/MariaDB).
-- summary_pos: the source position the other columns describe the file up to (0: never
-- summarised; the service rebuilds such rows from the file).
ALTER TABLE binlog_files
    ADD COLUMN first_event_at DATETIME(6) NULL,
    ADD COLUMN last_event_at DATETIME(6) NULL,
    ADD COLUMN first_gtid TEXT NULL,
    ADD COLUMN last_gtid TEXT NULL,
    ADD COLUMN gtid_start TEXT NULL,
    ADD COLUMN gtid_end TEXT NULL,
    ADD COLUMN gtid_added TEXT NULL,
    ADD COLUMN summary_pos BIGINT NOT NULL DEFAULT 0;
