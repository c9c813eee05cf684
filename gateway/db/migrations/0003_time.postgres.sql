-- 0003 (plain PostgreSQL 14+): BRIN indexes for time-range scans, and rollup
-- tables the gateway maintains itself. The rows arrive nearly in time order,
-- so a BRIN index on ts is a few pages where a btree would be gigabytes; the
-- primary keys already serve per-stream lookups.
CREATE INDEX IF NOT EXISTS readings_ts_brin ON readings USING brin (ts);
CREATE INDEX IF NOT EXISTS aggregates_1m_ts_brin ON aggregates_1m USING brin (ts);
CREATE INDEX IF NOT EXISTS vehicle_positions_ts_brin ON vehicle_positions USING brin (ts);
CREATE INDEX IF NOT EXISTS events_ts_brin ON events USING brin (ts);
CREATE INDEX IF NOT EXISTS rejects_ts_brin ON rejects USING brin (ts);

-- The same columns as the TimescaleDB continuous aggregates, so readers do not
-- care which mode a database is in.
CREATE TABLE IF NOT EXISTS aggregates_15m (
    stream  integer NOT NULL,
    bucket  timestamptz NOT NULL,
    count   bigint NOT NULL,
    min     double precision,
    max     double precision,
    mean    double precision,
    sum     double precision,
    last    double precision,
    PRIMARY KEY (stream, bucket)
);
CREATE TABLE IF NOT EXISTS aggregates_1h (LIKE aggregates_15m INCLUDING ALL);
CREATE TABLE IF NOT EXISTS aggregates_1d (LIKE aggregates_15m INCLUDING ALL);

-- Recompute the rollup buckets that cover [since, until] for the given
-- streams from aggregates_1m. The sink calls it in the transaction that
-- writes the minutes, so a rollup never lags its source. SECURITY DEFINER:
-- the writer role may not update rollup rows directly.
CREATE OR REPLACE FUNCTION gateway_refresh_rollups(
    p_streams integer[], p_since timestamptz, p_until timestamptz
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    target text;
    width interval;
BEGIN
    FOR target, width IN
        SELECT * FROM (VALUES ('aggregates_15m', interval '15 minutes'),
                              ('aggregates_1h', interval '1 hour'),
                              ('aggregates_1d', interval '1 day')) AS r(t, w)
    LOOP
        EXECUTE format($q$
            INSERT INTO %I AS r (stream, bucket, count, min, max, mean, sum, last)
            SELECT stream, date_bin($1, ts, timestamptz '2000-01-01 00:00+00') AS bucket,
                   sum(count), min(min), max(max),
                   sum(sum) / NULLIF(sum(count), 0), sum(sum),
                   (array_agg(last ORDER BY ts DESC))[1]
            FROM aggregates_1m
            WHERE stream = ANY($2)
              AND ts >= date_bin($1, $3, timestamptz '2000-01-01 00:00+00')
              AND ts < date_bin($1, $4, timestamptz '2000-01-01 00:00+00') + $1
            GROUP BY 1, 2
            ON CONFLICT (stream, bucket) DO UPDATE SET
                count = excluded.count, min = excluded.min, max = excluded.max,
                mean = excluded.mean, sum = excluded.sum, last = excluded.last
            $q$, target)
        USING width, p_streams, p_since, p_until;
    END LOOP;
END
$$;

-- Retention without chunks: delete rows older than each horizon (NULL keeps
-- everything). Called by the sink about once an hour.
CREATE OR REPLACE FUNCTION gateway_prune(
    p_readings interval, p_positions interval, p_aggregates interval, p_rejects interval
) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    gone bigint := 0;
    n bigint;
BEGIN
    IF p_readings IS NOT NULL THEN
        DELETE FROM readings WHERE ts < now() - p_readings;
        GET DIAGNOSTICS n = ROW_COUNT; gone := gone + n;
    END IF;
    IF p_positions IS NOT NULL THEN
        DELETE FROM vehicle_positions WHERE ts < now() - p_positions;
        GET DIAGNOSTICS n = ROW_COUNT; gone := gone + n;
    END IF;
    IF p_aggregates IS NOT NULL THEN
        DELETE FROM aggregates_1m WHERE ts < now() - p_aggregates;
        GET DIAGNOSTICS n = ROW_COUNT; gone := gone + n;
    END IF;
    IF p_rejects IS NOT NULL THEN
        DELETE FROM rejects WHERE ts < now() - p_rejects;
        GET DIAGNOSTICS n = ROW_COUNT; gone := gone + n;
    END IF;
    RETURN gone;
END
$$;

REVOKE ALL ON FUNCTION gateway_refresh_rollups(integer[], timestamptz, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION gateway_prune(interval, interval, interval, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION gateway_refresh_rollups(integer[], timestamptz, timestamptz)
    TO gateway_writer;
GRANT EXECUTE ON FUNCTION gateway_prune(interval, interval, interval, interval) TO gateway_writer;
GRANT SELECT ON aggregates_15m, aggregates_1h, aggregates_1d TO gateway_reader, gateway_writer;
