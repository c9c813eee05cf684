-- 0003 (TimescaleDB 2.13+): hypertables, compression and continuous aggregates.
-- Policies (compression, retention, refresh) are not here: their intervals
-- are configurable, so `gateway db migrate` (re)applies them on every run.
--
-- create_hypertable, new interface (2.13+): by_range(column, chunk interval).
-- The tables are empty here (created by 0001), so no migrate_data is needed.
-- Every unique key includes ts, as TimescaleDB requires.
SELECT create_hypertable('readings', by_range('ts', INTERVAL '1 day'), if_not_exists => TRUE);
SELECT create_hypertable('aggregates_1m', by_range('ts', INTERVAL '7 days'), if_not_exists => TRUE);
SELECT create_hypertable('vehicle_positions', by_range('ts', INTERVAL '1 day'), if_not_exists => TRUE);
SELECT create_hypertable('events', by_range('ts', INTERVAL '30 days'), if_not_exists => TRUE);
SELECT create_hypertable('rejects', by_range('ts', INTERVAL '7 days'), if_not_exists => TRUE);

-- Compression: segment by the series key, order by time within a segment.
ALTER TABLE readings SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'stream',
    timescaledb.compress_orderby = 'ts DESC'
);
ALTER TABLE aggregates_1m SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'stream',
    timescaledb.compress_orderby = 'ts DESC'
);
ALTER TABLE vehicle_positions SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'vehicle',
    timescaledb.compress_orderby = 'ts DESC'
);

-- Continuous aggregates over aggregates_1m (a hypertable). WITH NO DATA keeps
-- the statement legal inside the migration's transaction; the refresh
-- policies materialise them. mean is weighted by count; last is the value of
-- the latest minute (TimescaleDB's last(value, time) aggregate).
CREATE MATERIALIZED VIEW aggregates_15m WITH (timescaledb.continuous) AS
SELECT stream,
       time_bucket(INTERVAL '15 minutes', ts) AS bucket,
       sum(count) AS count,
       min(min) AS min,
       max(max) AS max,
       sum(sum) / NULLIF(sum(count), 0) AS mean,
       sum(sum) AS sum,
       last(last, ts) AS last
FROM aggregates_1m
GROUP BY stream, bucket
WITH NO DATA;

CREATE MATERIALIZED VIEW aggregates_1h WITH (timescaledb.continuous) AS
SELECT stream,
       time_bucket(INTERVAL '1 hour', ts) AS bucket,
       sum(count) AS count,
       min(min) AS min,
       max(max) AS max,
       sum(sum) / NULLIF(sum(count), 0) AS mean,
       sum(sum) AS sum,
       last(last, ts) AS last
FROM aggregates_1m
GROUP BY stream, bucket
WITH NO DATA;

CREATE MATERIALIZED VIEW aggregates_1d WITH (timescaledb.continuous) AS
SELECT stream,
       time_bucket(INTERVAL '1 day', ts) AS bucket,
       sum(count) AS count,
       min(min) AS min,
       max(max) AS max,
       sum(sum) / NULLIF(sum(count), 0) AS mean,
       sum(sum) AS sum,
       last(last, ts) AS last
FROM aggregates_1m
GROUP BY stream, bucket
WITH NO DATA;

GRANT SELECT ON aggregates_15m, aggregates_1h, aggregates_1d TO gateway_reader, gateway_writer;
