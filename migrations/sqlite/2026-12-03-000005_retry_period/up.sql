-- The failure policy (issue 14): since when a task has been failing, and how many attempts
-- failed, beside its last error. Both null while the task has no error.
ALTER TABLE tasks ADD COLUMN last_error_since TIMESTAMP;
ALTER TABLE tasks ADD COLUMN last_error_attempts INTEGER;
