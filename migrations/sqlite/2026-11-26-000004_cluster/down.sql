ALTER TABLE checkpoints DROP COLUMN epoch;
ALTER TABLE checkpoints DROP COLUMN node_id;
DROP INDEX task_leases_owner;
DROP TABLE task_leases;
DROP TABLE cluster_nodes;
