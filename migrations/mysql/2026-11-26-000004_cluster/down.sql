ALTER TABLE checkpoints DROP COLUMN epoch, DROP COLUMN node_id;
DROP TABLE task_leases;
DROP TABLE cluster_nodes;
