"""The I/O side of amlwh: Event Hubs, checkpoints, the Parquet warehouse, queries, the CLI.

Stages, each a package; imports go one way (tests/test_layout.py holds them to it):

    cli ──> live ─────┐
        ├─> backfill ─┼─> storage ──> transforms, sql
        ├─> query ────┘
        └─> eventhub (clients, checkpoints, publish)

- live/      `amlwh run`: the worker, per-partition pipelines, the flush cycle, spill,
             provisional files, metrics
- backfill/  `amlwh backfill files`: input blocks, decode chunks, decode processes
- storage/   the warehouse: schema from the DDL, Arrow conversion, Parquet files,
             durable publication, the key index, the path layout
- eventhub/  SDK clients, the blob checkpoint store, `amlwh publish`
- query/     read-side DuckDB connections and result formats

At the root: cli.py (the parser, errors to exit codes), commands.py (what each command
does), config.py (the one settings object), errors.py (the one error root),
clock.py (every clock read) and tuning.py (every process-wide knob).
"""
