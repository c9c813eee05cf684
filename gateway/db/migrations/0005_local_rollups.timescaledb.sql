-- 0005 (TimescaleDB 2.13+): 1-hour and 1-day continuous aggregates in local
-- hours and days. 0003 bucketed them with time_bucket(width, ts), which is
-- UTC, so in Pune (UTC+05:30) a "day" ran from 05:30 to 05:30 IST and an
-- "hour" from :30 to :30.
--
-- The zone is the deployment's `rollup_timezone` ([postgres] in the config,
-- `gateway db migrate --rollup-timezone`, default Asia/Kolkata). A continuous
-- aggregate's definition must hold it as a constant (a function of the
-- session's TimeZone is refused), and migrations are static files, so
-- `gateway db migrate` checks the name (an IANA zone known to Python's
-- zoneinfo and to this server's pg_timezone_names) and puts it into this file
-- as a quoted literal where :'rollup_timezone' stands; the checksum is of the
-- file as written. The choice is kept in `rollup_settings`, where the read side
-- finds the zone of the bucket boundaries, and a later migrate with another
-- zone is refused: the buckets already stored would not match.
--
-- time_bucket(bucket_width INTERVAL, ts TIMESTAMPTZ, timezone TEXT,
-- origin TIMESTAMPTZ = NULL, "offset" INTERVAL = NULL) buckets in the zone's
-- local time, daylight saving included (since 2.8; allowed in continuous
-- aggregates). The untyped literal resolves to the `timezone` variant (text),
-- not `origin` or `offset`. 15-minute buckets stay as 0003 made them: every
-- zone in use today is offset from UTC by a multiple of 15 minutes, and so are
-- its DST shifts, so the UTC grid is the local one.
--
-- A continuous aggregate's query cannot be altered: the two views are dropped
-- and made again, WITH NO DATA so that this runs in the migration's
-- transaction. DROP MATERIALIZED VIEW also removes the views' refresh
-- policies; `gateway db migrate` adds them again after this file, as on every
-- run. The policies materialise their window (refresh_window_days, 30 by
-- default); older buckets need a one-off CALL refresh_continuous_aggregate(...)
-- outside a transaction (docs/schema.md). Buckets whose minutes retention has
-- already dropped cannot be rebuilt: they go with the old views.

CREATE TABLE rollup_settings (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    timezone  text NOT NULL
);
INSERT INTO rollup_settings (timezone) VALUES (:'rollup_timezone');
GRANT SELECT ON rollup_settings TO gateway_reader, gateway_writer;

DROP MATERIALIZED VIEW aggregates_1h;
DROP MATERIALIZED VIEW aggregates_1d;

CREATE MATERIALIZED VIEW aggregates_1h WITH (timescaledb.continuous) AS
SELECT stream,
       time_bucket(INTERVAL '1 hour', ts, :'rollup_timezone') AS bucket,
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
       time_bucket(INTERVAL '1 day', ts, :'rollup_timezone') AS bucket,
       sum(count) AS count,
       min(min) AS min,
       max(max) AS max,
       sum(sum) / NULLIF(sum(count), 0) AS mean,
       sum(sum) AS sum,
       last(last, ts) AS last
FROM aggregates_1m
GROUP BY stream, bucket
WITH NO DATA;

GRANT SELECT ON aggregates_1h, aggregates_1d TO gateway_reader, gateway_writer;
