ALTER TABLE tasks DROP COLUMN source_server_public_key;
