-- 0004: the sink reads the schema's mode (plain PostgreSQL keeps its own
-- rollups) from schema_migrations, so the writer role may read it.
GRANT SELECT ON schema_migrations TO gateway_writer;
