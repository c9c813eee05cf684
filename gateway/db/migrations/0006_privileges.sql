-- 0006: least privilege, three roles.
--   gateway_writer    edge gateways: insert everything, upsert alerts' lifecycle
--   gateway_reader    feeds, boards, dashboards: read only
--   gateway_operator  the control room: read, acknowledge alerts (and, in later
--                     migrations, write planned works and service alerts)
-- All three are NOLOGIN group roles; a deployment makes one login per gateway
-- and per reading service, and one per operator (docs/schema.md, "Roles").
--
-- PUBLIC keeps PostgreSQL's default CONNECT and TEMPORARY on a new database,
-- so any login could connect and make temporary tables; only the roles get
-- them now. (PUBLIC's CREATE on schema public, a default before PostgreSQL 15,
-- goes too.)
DO $$
BEGIN
    CREATE ROLE gateway_operator NOLOGIN;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- roles are cluster-wide: another database made it already
END
$$;

DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO gateway_writer, gateway_reader, '
                   'gateway_operator', current_database());
    -- the sink stages each COPY in a temporary table
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO gateway_writer', current_database());
END
$$;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO gateway_operator;

-- The writer upserts an alert's lifecycle but never its acknowledgement: column
-- grants, so "the gateway never overwrites an acknowledgement" holds in the
-- database and not only in the sink's SQL. An acknowledgement that reaches an
-- edge gateway (an operator's command to it) comes in through
-- gateway_acknowledge, which sets it once, for that gateway's own alerts.
REVOKE UPDATE ON alerts FROM gateway_writer;
GRANT UPDATE (severity, state, updated_at, cleared_at, started_at, magnitude, score, message,
              evidence, needs_ack) ON alerts TO gateway_writer;

CREATE FUNCTION gateway_acknowledge(p_gateway text, p_id text, p_by text, p_at timestamptz)
RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    WITH acked AS (
        UPDATE alerts SET acked_by = p_by, acked_at = p_at
        WHERE id = p_id AND gateway = p_gateway AND acked_by IS NULL
        RETURNING 1
    )
    SELECT EXISTS (SELECT FROM acked)
$$;
REVOKE ALL ON FUNCTION gateway_acknowledge(text, text, text, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gateway_acknowledge(text, text, text, timestamptz) TO gateway_writer;

-- Readers read; acknowledging is the operator's.
REVOKE UPDATE ON alerts FROM gateway_reader;
GRANT gateway_reader TO gateway_operator;
GRANT UPDATE (acked_by, acked_at) ON alerts TO gateway_operator;
