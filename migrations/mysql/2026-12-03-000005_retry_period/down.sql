ALTER TABLE tasks DROP COLUMN last_error_attempts, DROP COLUMN last_error_since;
