ALTER TABLE tasks DROP COLUMN last_error_attempts;
ALTER TABLE tasks DROP COLUMN last_error_since;
