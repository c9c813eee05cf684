-- 0002: roles. Both are group roles (NOLOGIN); grant them to login users:
--   CREATE ROLE edge_dma07 LOGIN PASSWORD '...' IN ROLE gateway_writer;
-- gateway_writer inserts and reads; the only rows it changes are alerts (an
-- upsert keeps each alert's latest state). gateway_reader reads everything and
-- may acknowledge alerts (the control room's `gateway alerts ack`).
DO $$
BEGIN
    CREATE ROLE gateway_writer NOLOGIN;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- roles are cluster-wide: another database made it already
END
$$;
DO $$
BEGIN
    CREATE ROLE gateway_reader NOLOGIN;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO gateway_writer, gateway_reader;
GRANT SELECT, INSERT ON streams, vehicles, readings, aggregates_1m, vehicle_positions,
    alerts, events, rejects TO gateway_writer;
GRANT UPDATE ON alerts TO gateway_writer;
GRANT USAGE ON SEQUENCE streams_id_seq, vehicles_id_seq TO gateway_writer;
GRANT SELECT ON streams, vehicles, readings, aggregates_1m, vehicle_positions,
    alerts, events, rejects, schema_migrations TO gateway_reader;
GRANT UPDATE (acked_by, acked_at) ON alerts TO gateway_reader;
-- The sink stages each COPY in a temporary table.
DO $$
BEGIN
    EXECUTE format('GRANT TEMPORARY, CONNECT ON DATABASE %I TO gateway_writer', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO gateway_reader', current_database());
END
$$;
