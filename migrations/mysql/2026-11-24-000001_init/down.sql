DROP TABLE binlog_files;
DROP TABLE task_events;
DROP TABLE checkpoints;
DROP TABLE tasks;
