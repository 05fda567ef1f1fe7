-- Whether a task replicates semi-synchronously (source.semi_sync; MySQL/MariaDB).
ALTER TABLE tasks ADD COLUMN source_semi_sync BOOLEAN NOT NULL DEFAULT FALSE;
