-- Run once by the postgres image when its volume is first initialised (compose.yaml mounts this
-- folder at /docker-entrypoint-initdb.d): n8n keeps its state in a database of its own beside
-- tunebridge's (POSTGRES_DB), owned by the same role.
CREATE DATABASE n8n;
