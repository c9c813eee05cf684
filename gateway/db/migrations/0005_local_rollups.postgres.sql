-- 0005 (plain PostgreSQL 14+): 1-hour and 1-day rollups in local hours and
-- days. 0003 bucketed them in UTC, so in Pune (UTC+05:30) a "day" ran from
-- 05:30 to 05:30 IST and an "hour" from :30 to :30.
--
-- The zone is the deployment's `rollup_timezone` ([postgres] in the config,
-- `gateway db migrate --rollup-timezone`, default Asia/Kolkata). Migrations are
-- static files, so `gateway db migrate` checks the name (an IANA zone known to
-- Python's zoneinfo and to this server's pg_timezone_names) and puts it into
-- this file as a quoted literal where :'rollup_timezone' stands; the checksum
-- is of the file as written. The choice is kept in `rollup_settings`, where the
-- read side finds the zone of the bucket boundaries, and a later migrate with
-- another zone is refused: the buckets already stored would not match.
--
-- Buckets: date_trunc('hour' | 'day', ts, zone) (PostgreSQL 12+), which
-- follows the zone's daylight-saving rules (a Berlin day in late October has
-- 25 hours, one in late March 23). 15-minute buckets stay on the UTC grid of
-- 0003: every zone in use today is offset from UTC by a multiple of 15 minutes,
-- and so are its DST shifts, so that grid is the local one everywhere.

CREATE TABLE rollup_settings (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    timezone  text NOT NULL
);
INSERT INTO rollup_settings (timezone) VALUES (:'rollup_timezone');
GRANT SELECT ON rollup_settings TO gateway_reader, gateway_writer;

-- As in 0003, but 1 h and 1 d buckets are local. The minutes read are those of
-- every bucket that [since, until] touches, whole: bounded below by the first
-- bucket's start, above by until plus the longest bucket of its kind (a day
-- may last 25 hours), and cut to the buckets from since's to until's.
CREATE OR REPLACE FUNCTION gateway_refresh_rollups(
    p_streams integer[], p_since timestamptz, p_until timestamptz
) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    zone constant text := :'rollup_timezone';
    target text;
    unit text;
    reach interval;
BEGIN
    INSERT INTO aggregates_15m AS r (stream, bucket, count, min, max, mean, sum, last)
    SELECT stream, date_bin(interval '15 minutes', ts, timestamptz '2000-01-01 00:00+00'),
           sum(count), min(min), max(max),
           sum(sum) / NULLIF(sum(count), 0), sum(sum),
           (array_agg(last ORDER BY ts DESC))[1]
    FROM aggregates_1m
    WHERE stream = ANY (p_streams)
      AND ts >= date_bin(interval '15 minutes', p_since, timestamptz '2000-01-01 00:00+00')
      AND ts < date_bin(interval '15 minutes', p_until, timestamptz '2000-01-01 00:00+00')
               + interval '15 minutes'
    GROUP BY 1, 2
    ON CONFLICT (stream, bucket) DO UPDATE SET
        count = excluded.count, min = excluded.min, max = excluded.max,
        mean = excluded.mean, sum = excluded.sum, last = excluded.last;

    FOR target, unit, reach IN
        SELECT * FROM (VALUES ('aggregates_1h', 'hour', interval '2 hours'),
                              ('aggregates_1d', 'day', interval '26 hours')) AS r(t, u, w)
    LOOP
        EXECUTE format($q$
            INSERT INTO %I AS r (stream, bucket, count, min, max, mean, sum, last)
            SELECT stream, date_trunc($1, ts, $5) AS bucket,
                   sum(count), min(min), max(max),
                   sum(sum) / NULLIF(sum(count), 0), sum(sum),
                   (array_agg(last ORDER BY ts DESC))[1]
            FROM aggregates_1m
            WHERE stream = ANY ($2)
              AND ts >= date_trunc($1, $3, $5)
              AND ts < $4 + $6
              AND date_trunc($1, ts, $5) <= date_trunc($1, $4, $5)
            GROUP BY 1, 2
            ON CONFLICT (stream, bucket) DO UPDATE SET
                count = excluded.count, min = excluded.min, max = excluded.max,
                mean = excluded.mean, sum = excluded.sum, last = excluded.last
            $q$, target)
        USING unit, p_streams, p_since, p_until, zone, reach;
    END LOOP;
END
$$;

-- Rebuild the 1 h and 1 d rollups in local buckets from the minutes. Rollup
-- rows older than the oldest minute still kept (retention: aggregates_days)
-- cannot be recomputed and go; docs/schema.md says how to keep a copy first.
TRUNCATE aggregates_1h, aggregates_1d;
INSERT INTO aggregates_1h (stream, bucket, count, min, max, mean, sum, last)
SELECT stream, date_trunc('hour', ts, :'rollup_timezone'),
       sum(count), min(min), max(max),
       sum(sum) / NULLIF(sum(count), 0), sum(sum),
       (array_agg(last ORDER BY ts DESC))[1]
FROM aggregates_1m
GROUP BY 1, 2;
INSERT INTO aggregates_1d (stream, bucket, count, min, max, mean, sum, last)
SELECT stream, date_trunc('day', ts, :'rollup_timezone'),
       sum(count), min(min), max(max),
       sum(sum) / NULLIF(sum(count), 0), sum(sum),
       (array_agg(last ORDER BY ts DESC))[1]
FROM aggregates_1m
GROUP BY 1, 2;
