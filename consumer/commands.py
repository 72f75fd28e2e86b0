"""What each `amlwh` command does (consumer/cli.py parses the command line and reports
errors). Each imports what it uses when it runs: `query` and `views` import DuckDB (~0.1 s)
and nothing heavier; the settings models (~0.25 s), pyarrow (~0.15 s) and the Azure SDK
(~0.1 s) are for the other commands (bench/NOTES.md, "Query CLI start-up")."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from consumer.clock import pause_s, wall_us
from consumer.config_file import plain_warehouse_path
from consumer.errors import ConfigError
from consumer.logs import configure_logging
from consumer.tuning import tune_live_worker, tune_short_command

if TYPE_CHECKING:
    from consumer.config import Settings

log = logging.getLogger("amlwh")
DEFAULT_CONFIG = Path("config.toml")


def _config_path(args: argparse.Namespace) -> Path:
    return args.config if args.config is not None else DEFAULT_CONFIG


def _settings(args: argparse.Namespace) -> Settings:
    from consumer.config import load_settings

    settings = load_settings(_config_path(args), required=args.config is not None)
    configure_logging("DEBUG" if args.verbose else settings.logging.level, settings.logging.format)
    return settings


def _warehouse_path(args: argparse.Namespace, *, remote: bool = False):
    """[warehouse] path without the settings models. When the [warehouse] inputs are not
    plainly valid, the models validate them and word the mistake as for every command.
    A Blob Storage URL needs the models (its credentials): with `remote`, the
    RemoteWarehouse it names; otherwise a ConfigError (not supported yet)."""
    path = plain_warehouse_path(_config_path(args), required=args.config is not None)
    if path is not None:
        return path
    settings = _settings(args)
    if remote and settings.warehouse.remote:
        return _remote_warehouse(settings)
    return settings.warehouse.local_path


def _remote_target(settings: Settings):
    from consumer.config_file import user_cache_dir
    from consumer.storage.remote_writes import RemoteTarget

    w = settings.warehouse
    secret = w.connection_string.get_secret_value() if w.connection_string is not None else None
    return RemoteTarget(w.path, secret, w.account_url, settings.identity.client_id, w.connection_verify,
                        w.cache_dir or user_cache_dir(), w.upload_patience_s)


def _remote_warehouse(settings: Settings):
    return _remote_target(settings).open()


def _work_dir(parent: Path | None) -> Path:
    """A folder of this process's own for staging commits to a remote warehouse, removed at
    exit: several workers on one machine (or one volume) never share one."""
    import atexit
    import shutil
    import tempfile

    try:
        if parent is not None:
            Path(parent).mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="amlwh-work-", dir=parent))
    except OSError as exc:
        raise ConfigError(
            f"cannot make a work folder in {exc.filename or parent or tempfile.gettempdir()}: "
            f"{exc.strerror or exc}. Set [warehouse] work_dir (AMLWH_WAREHOUSE__WORK_DIR) to a "
            "local folder this user can write") from None
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def _rules(settings: Settings):
    from transforms.decode import DecodeRules

    return DecodeRules.build(list(settings.filter.workspaces), list(settings.filter.event_types))


def _warehouse(settings: Settings):
    """The writers' sink: the local folder, or a work folder staging uploads to Blob Storage."""
    from consumer.storage.warehouse import ParquetWarehouse

    w = settings.warehouse
    if w.remote:
        return ParquetWarehouse(_work_dir(w.work_dir), compression=w.compression, now_us=wall_us,
                                remote=_remote_target(settings))
    return ParquetWarehouse(w.local_path, compression=w.compression, now_us=wall_us)


def cmd_backfill_files(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from consumer.backfill.run import backfill_files
    from transforms.fastpath import scan_runs

    if scan_runs is None:
        log.warning("the native line scanner (transforms/_linescan.c) is not built, so run "
                    "events are decoded in Python: same rows, ~15%% slower. To build it, "
                    "install gcc and the Python headers, then reinstall (`make install`)")

    def progress(summary, path) -> None:
        rate = summary.bodies / summary.seconds if summary.seconds else 0.0
        print(
            f"  {path.name}: {summary.bodies:,} bodies, {summary.events_written:,} events "
            f"committed, {rate:,.0f} bodies/s",
            file=sys.stderr,
        )

    batch_rows = args.batch_rows or settings.backfill.batch_rows
    summary = backfill_files(
        [Path(p) for p in args.paths], _warehouse(settings), _rules(settings),
        batch_rows=batch_rows, now_us=wall_us, progress=None if args.quiet else progress,
        workers=args.workers if args.workers is not None else settings.backfill.workers,
    )
    rate = summary.bodies / summary.seconds if summary.seconds else 0.0
    print(
        f"backfill done: {summary.files} file(s), {summary.bodies:,} bodies in "
        f"{summary.seconds:.1f}s ({rate:,.0f}/s, {summary.workers} decode process(es))\n"
        f"  events written:      {summary.events_written:,}\n"
        f"  duplicates skipped:  {summary.duplicates_skipped:,}\n"
        f"  ignored:             {summary.ignored:,}\n"
        f"  dead-lettered:       {summary.dead_lettered:,}\n"
        f"  warehouse:           {settings.warehouse.path}"
    )
    if args.no_compact:
        return 0
    return _compact(settings, quiet=args.quiet)  # one file a date, and the view state up to date


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    import asyncio

    from consumer.live.preflight import run_preflight
    from consumer.live.worker import Worker

    warehouse = _warehouse(settings)
    run_preflight(settings, warehouse)  # a wrong port, key, group, container or path: said now, in seconds
    tune_live_worker()  # process-wide: here at the entry point, not in the Worker object
    worker = Worker(settings, warehouse, _rules(settings),
                    stop_when_idle_s=args.stop_when_idle)
    return asyncio.run(worker.run())


def cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from consumer.clock import wall_s
    from consumer.eventhub.status import status, to_json, to_table

    report = status(settings, wall_s)
    if args.json:
        import json

        print(json.dumps(to_json(report), indent=2))
    else:
        print(to_table(report))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from consumer.eventhub.clients import eventhub_name
    from consumer.eventhub.publish import publish

    hub = eventhub_name(settings.eventhub)
    summary = publish([Path(p) for p in args.paths], settings,
                      key_by_subject=args.partition_key == "subject")
    print(f"published {summary.sent:,} event(s) to {hub}"
          + (f" ({summary.keyed:,} keyed by subject)" if args.partition_key == "subject" else ""))
    if summary.failed:
        print(f"amlwh: {summary.failed:,} event(s) were not sent; first error: {summary.first_error}",
              file=sys.stderr)
        return 1
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    warehouse = _warehouse_path(args, remote=True)
    from consumer.query.formats import format_csv, format_json, format_table

    tune_short_command()
    if isinstance(warehouse, Path):
        from consumer.query.connection import query_warehouse

        columns, rows = query_warehouse(warehouse, args.sql)
    else:
        from consumer.query.remote import query_remote

        with warehouse:
            columns, rows = query_remote(warehouse, args.sql)
    formatter = {"table": format_table, "csv": format_csv, "json": format_json}[args.format]
    sys.stdout.write(formatter(columns, rows).rstrip("\n") + "\n")
    return 0


def _compact(settings: Settings, *, quiet: bool, **options) -> int:
    from consumer.clock import wall_s
    from consumer.maintenance.compaction import compact

    c = settings.compaction
    options.update(now_s=wall_s, grace_s=c.grace_s, compression=settings.warehouse.compression,
                   memory_limit=c.memory_limit)
    if settings.warehouse.remote:
        from consumer.maintenance.remote_compaction import compact_remote

        writer = _remote_target(settings).writer()  # the round's snapshot lives in the read cache
        try:
            report = compact_remote(writer, **options)
        finally:
            writer.close()
    else:
        report = compact(settings.warehouse.local_path, **options)
    if report.busy:
        print(f"amlwh: another compaction of {settings.warehouse.path} is running; nothing done",
              file=sys.stderr)
        return 0
    if not quiet:
        fold = report.fold
        state = ("view state: unchanged" if fold is None else
                 f"view state: generation {fold.generation}, {fold.fresh_files:,} new run or model "
                 f"file(s) folded in")
        rows_in = sum(m.rows_in for m in report.merged)
        rows_out = sum(m.rows_out for m in report.merged)
        print(f"compacted {len(report.merged):,} partition(s): {report.files_before:,} -> "
              f"{report.files_after:,} committed files, {rows_in:,} -> {rows_out:,} rows "
              f"(duplicates dropped)\n  {state}\n  replaced files deleted: {report.deleted:,} "
              f"(the others go {settings.compaction.grace_s:g}s after they were replaced)")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from consumer.storage.schema import table_ddl

    settings = _settings(args)
    unknown = [t for t in args.table or () if t not in table_ddl()]
    if unknown:
        raise ConfigError(f"unknown table(s) {unknown}; choose from {sorted(table_ddl())}")
    return _compact(settings, quiet=args.quiet, tables=tuple(args.table or ()) or None,
                    before=args.before, min_files=args.min_files,
                    wait=pause_s if args.wait_for_grace else None)


def cmd_rebuild_state(args: argparse.Namespace) -> int:
    return _compact(_settings(args), quiet=args.quiet, rebuild_state=True, min_files=10**9)


def cmd_views(args: argparse.Namespace) -> int:
    warehouse = _warehouse_path(args, remote=True)
    from consumer.query.connection import connect, describe_views

    tune_short_command()
    if isinstance(warehouse, Path):
        con = connect(warehouse)
        try:
            described = describe_views(con)
        finally:
            con.close()
    else:
        from consumer.query.remote import describe_remote

        with warehouse:
            described = describe_remote(warehouse)
    for schema, name, columns in described:
        if schema == "store" and not args.all:
            continue
        label = name if schema == "main" else f"{schema}.{name}"
        print(label)
        for column, dtype in columns:
            print(f"    {column:<24} {dtype}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    warehouse = _warehouse_path(args, remote=True)
    from datetime import datetime, timezone

    from consumer.clock import wall_s
    from consumer.report.page import make_report
    from consumer.report.thresholds import DriftThresholds

    def report(folder: Path) -> dict[str, int]:
        return make_report(folder, args.out, since=args.since,
                           thresholds=DriftThresholds.from_options(args.drift_threshold or []),
                           generated_at=datetime.fromtimestamp(wall_s(), timezone.utc))

    if isinstance(warehouse, Path):
        if not warehouse.is_dir():
            print(f"amlwh: no warehouse at {warehouse} ([warehouse] path, AMLWH_WAREHOUSE__PATH): "
                  "the report shows no data", file=sys.stderr)
        rows = report(warehouse)
    else:  # every table and the view state, as listed now, through the cache
        from consumer.query.remote import fetch_needed

        with warehouse:
            rows = warehouse.read(lambda snapshot: (fetch_needed(snapshot, None), report(snapshot.root))[1])
    counts = ", ".join(f"{chart} {n:,}" for chart, n in rows.items())
    print(f"report written to {args.out.resolve()} (table rows: {counts})")
    return 0
