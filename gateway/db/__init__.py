"""The central database: schema, migrations and the binary COPY encoder.

    gateway db migrate --dsn ...  --> migrations/NNNN_*.sql, applied once each
                                      in order, under an advisory lock, recorded
                                      in schema_migrations
    PostgresSink (gateway.sinks.postgres) --> pgcopy.encode_rows --> COPY ... (FORMAT BINARY)
    gateway db status --dsn ...   --> status.read_status: chunks, rollups' lag, jobs

The schema runs in one of two modes, chosen at the first migration and kept:
`timescaledb` (hypertables, compression, continuous aggregates, policies) when
the extension is available, else `postgres` (plain PostgreSQL 14+, BRIN
indexes, rollups the gateway maintains itself). docs/schema.md describes it.
"""
