ALTER TABLE tasks DROP COLUMN source_semi_sync;
