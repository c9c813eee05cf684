"""The binary COPY encoder against PostgreSQL itself: what it encodes, the server reads back."""

from __future__ import annotations

import struct

import numpy as np
import psycopg

from gateway.db import pgcopy
from gateway.db.pgcopy import Column


def test_one_row_matches_the_documented_layout() -> None:
    payload = pgcopy.encode_rows(
        [Column(np.array([7], np.int32), pgcopy.INT4), Column(np.array([1.5]), pgcopy.FLOAT8)]
    )
    expected = (
        b"PGCOPY\n\xff\r\n\x00"
        + struct.pack(">ii", 0, 0)
        + struct.pack(">hi", 2, 4)
        + struct.pack(">i", 7)
        + struct.pack(">i", 8)
        + struct.pack(">d", 1.5)
        + b"\xff\xff"
    )
    assert payload == expected


def test_nan_becomes_null_and_rows_keep_their_values(pg_dsn: str) -> None:
    ts_ns = np.array([0, 1_700_000_000_123_456_000, -1_000, 946_684_800 * 10**9], np.int64)
    value = np.array([1.25, np.nan, -3.0, np.nan])
    speed = np.array([np.nan, 2.5, np.nan, 4.0], np.float32)
    payload = pgcopy.encode_rows(
        [
            Column(np.arange(4, dtype=np.int32), pgcopy.INT4),
            Column(pgcopy.timestamptz(ts_ns), pgcopy.INT8),
            Column(value, pgcopy.FLOAT8, pgcopy.nan_is_null(value)),
            Column(speed, pgcopy.FLOAT4, pgcopy.nan_is_null(speed)),
            Column(np.array([0, 1, 255, 3], np.uint8), pgcopy.INT2),
        ]
    )
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE t (id int, ts timestamptz, v float8, s real, q smallint)")
        with conn.cursor() as cur, cur.copy("COPY t FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(payload)
        rows = conn.execute(
            "SELECT id, (extract(epoch FROM ts) * 1e6)::bigint, v, s, q FROM t ORDER BY id"
        ).fetchall()
    assert rows == [
        (0, 0, 1.25, None, 0),
        (1, 1_700_000_000_123_456, None, 2.5, 1),
        (2, -1, -3.0, None, 255),
        (3, 946_684_800_000_000, None, 4.0, 3),
    ]
