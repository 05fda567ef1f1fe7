-- Whether a task replicates semi-synchronously (source.semi_sync; SQLite).
ALTER TABLE tasks ADD COLUMN source_semi_sync BOOLEAN NOT NULL DEFAULT 0;
