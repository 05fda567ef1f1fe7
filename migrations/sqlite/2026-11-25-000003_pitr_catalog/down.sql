ALTER TABLE binlog_files DROP COLUMN summary_pos;
ALTER TABLE binlog_files DROP COLUMN gtid_added;
ALTER TABLE binlog_files DROP COLUMN gtid_end;
ALTER TABLE binlog_files DROP COLUMN gtid_start;
ALTER TABLE binlog_files DROP COLUMN last_gtid;
ALTER TABLE binlog_files DROP COLUMN first_gtid;
ALTER TABLE binlog_files DROP COLUMN last_event_at;
ALTER TABLE binlog_files DROP COLUMN first_event_at;
