-- 0001: the tables, the same in both modes. Time columns are timestamptz;
-- every time table's unique key includes its time column, as a TimescaleDB
-- hypertable requires. Writers insert with ON CONFLICT on these keys, so a
-- bundle delivered twice adds nothing.

-- (gateway, name) -> global stream id; each gateway interns its own names.
CREATE TABLE IF NOT EXISTS streams (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gateway     text NOT NULL,
    name        text NOT NULL,
    unit        text NOT NULL DEFAULT '',
    kind        text NOT NULL DEFAULT '',
    asset       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (gateway, name)
);

-- vehicle registration -> id; a bus is the same bus whichever depot hears it.
CREATE TABLE IF NOT EXISTS vehicles (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Raw readings, for the streams that opt in. value is NULL when the poll
-- failed; quality holds the gateway.batch.Quality bit flags.
CREATE TABLE IF NOT EXISTS readings (
    stream   integer NOT NULL,
    ts       timestamptz NOT NULL,
    value    double precision,
    quality  smallint NOT NULL DEFAULT 0,
    PRIMARY KEY (stream, ts)
);

-- Per-stream one-minute aggregates; ts is the start of the minute.
CREATE TABLE IF NOT EXISTS aggregates_1m (
    stream  integer NOT NULL,
    ts      timestamptz NOT NULL,
    count   integer NOT NULL,
    min     double precision,
    max     double precision,
    mean    double precision,
    sum     double precision,
    last    double precision,
    PRIMARY KEY (stream, ts)
);

CREATE TABLE IF NOT EXISTS vehicle_positions (
    vehicle  integer NOT NULL,
    ts       timestamptz NOT NULL,
    lat      double precision NOT NULL,
    lon      double precision NOT NULL,
    speed    real,              -- m/s
    heading  real,              -- degrees clockwise from true north
    fix      smallint NOT NULL, -- gateway.batch.FixQuality
    PRIMARY KEY (vehicle, ts)
);

-- One row per alert, upserted by id: the latest lifecycle state wins, and an
-- operator's acknowledgement is never overwritten by the gateway.
CREATE TABLE IF NOT EXISTS alerts (
    id          text PRIMARY KEY,
    gateway     text NOT NULL,
    kind        text NOT NULL,
    asset       text NOT NULL,
    severity    text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    state       text NOT NULL CHECK (state IN ('opened', 'updated', 'cleared')),
    opened_at   timestamptz NOT NULL,
    updated_at  timestamptz,
    cleared_at  timestamptz,
    started_at  timestamptz,
    magnitude   double precision,
    score       double precision,
    message     text NOT NULL DEFAULT '',
    evidence    jsonb NOT NULL DEFAULT '{}',
    needs_ack   boolean NOT NULL DEFAULT false,
    acked_by    text,
    acked_at    timestamptz
);
CREATE INDEX IF NOT EXISTS alerts_open_idx ON alerts (opened_at DESC) WHERE state <> 'cleared';
CREATE INDEX IF NOT EXISTS alerts_asset_idx ON alerts (asset, opened_at DESC);

CREATE TABLE IF NOT EXISTS events (
    ts       timestamptz NOT NULL,
    gateway  text NOT NULL,
    asset    text NOT NULL,
    kind     text NOT NULL,
    message  text NOT NULL DEFAULT '',
    data     jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (gateway, asset, kind, ts)
);

CREATE TABLE IF NOT EXISTS rejects (
    ts       timestamptz NOT NULL,
    gateway  text NOT NULL,
    source   text NOT NULL,
    reason   text NOT NULL,
    detail   text NOT NULL DEFAULT '',
    payload  bytea NOT NULL DEFAULT '',
    PRIMARY KEY (gateway, source, reason, ts)
);
