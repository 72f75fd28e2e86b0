"""`amlwh`: the command line. Configuration errors end with a message, not a traceback.

Each command imports what it uses when it runs. `query` and `views` import DuckDB (~0.1 s)
and nothing heavier: the settings models (~0.25 s), pyarrow (~0.15 s) and the Azure SDK
(~0.1 s) are for the other commands (bench/NOTES.md, "Query CLI start-up").
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from consumer.clock import pause_s, wall_us
from consumer.config_file import plain_warehouse_path
from consumer.errors import AmlwhError, ConfigError
from consumer.logs import configure_logging
from consumer.tuning import prepare_environment, tune_live_worker, tune_short_command

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


def _remote_warehouse(settings: Settings):
    from consumer.config_file import user_cache_dir
    from consumer.storage.remote import open_remote

    w = settings.warehouse
    secret = w.connection_string.get_secret_value() if w.connection_string is not None else None
    return open_remote(w.path, connection_string=secret, account_url=w.account_url,
                       client_id=settings.identity.client_id, cache_dir=w.cache_dir or user_cache_dir(),
                       connection_verify=w.connection_verify)


def _rules(settings: Settings):
    from transforms.decode import DecodeRules

    return DecodeRules.build(list(settings.filter.workspaces), list(settings.filter.event_types))


def _warehouse(settings: Settings):
    from consumer.storage.warehouse import ParquetWarehouse

    return ParquetWarehouse(
        settings.warehouse.local_path, compression=settings.warehouse.compression, now_us=wall_us)


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

    warehouse = _warehouse(settings)  # a remote path is refused before anything is dialled
    run_preflight(settings)  # a wrong port, key, group, container or path: said now, in seconds
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
    report = compact(settings.warehouse.local_path, now_s=wall_s, grace_s=c.grace_s,
                     compression=settings.warehouse.compression, memory_limit=c.memory_limit, **options)
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
    warehouse = _warehouse_path(args)
    from datetime import datetime, timezone

    from consumer.clock import wall_s
    from consumer.report.page import make_report
    from consumer.report.thresholds import DriftThresholds

    if not Path(warehouse).is_dir():
        print(f"amlwh: no warehouse at {warehouse} ([warehouse] path, AMLWH_WAREHOUSE__PATH): "
              "the report shows no data", file=sys.stderr)
    rows = make_report(warehouse, args.out, since=args.since,
                       thresholds=DriftThresholds.from_options(args.drift_threshold or []),
                       generated_at=datetime.fromtimestamp(wall_s(), timezone.utc))
    counts = ", ".join(f"{chart} {n:,}" for chart, n in rows.items())
    print(f"report written to {args.out.resolve()} (table rows: {counts})")
    return 0


def _drift_threshold(text: str) -> tuple[str | None, float]:
    from consumer.report.thresholds import parse_threshold

    try:
        return parse_threshold(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _date(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="amlwh",
        description="Azure ML events warehouse: Event Hubs -> Parquet, queried with DuckDB.",
    )
    parser.add_argument(
        "--config", type=Path, default=None,
        help="TOML settings file (default ./config.toml if present); env AMLWH_* overrides it",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    backfill = commands.add_parser("backfill", help="load stored event bodies into the warehouse")
    sources = backfill.add_subparsers(dest="source", metavar="SOURCE", required=True)
    files = sources.add_parser(
        "files", help="NDJSON (.ndjson/.jsonl, one body per line) or .json files, .gz allowed",
        description="Each line of an .ndjson/.jsonl file is one message body; a .json file is "
        "one body. Directories are searched recursively. Already stored events are skipped.",
    )
    files.add_argument("paths", nargs="+", metavar="PATH")
    files.add_argument("--batch-rows", type=int, default=None, help="rows per Parquet commit")
    files.add_argument("--workers", type=int, default=None,
                       help="decode processes (default [backfill] workers; 0 = one per core for large inputs)")
    files.add_argument("--no-compact", action="store_true",
                       help="leave the files as written (default: compact at the end, as `amlwh compact`)")
    files.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    files.set_defaults(handler=cmd_backfill_files)

    run = commands.add_parser(
        "run", help="the long-running worker: Event Hubs -> Parquet, with blob checkpoints",
        description="Consumes the hub in [eventhub] with blob checkpoints in [checkpoint], "
        "shares partitions with other workers on the same consumer group, and stops cleanly on "
        "SIGTERM/SIGINT (flush, checkpoint, exit 0).",
    )
    run.add_argument(
        "--stop-when-idle", type=float, default=None, metavar="SECONDS",
        help="stop cleanly once no event arrived for SECONDS (catch up, then exit: for scheduled runs)")
    run.set_defaults(handler=cmd_run)

    status = commands.add_parser(
        "status", help="per partition: owner, checkpoint, last enqueued event and lag",
        description="Reads the checkpoint store ([checkpoint]) and the hub's partition properties "
        "([eventhub]) without joining the consumer group: per partition, the owning worker, the "
        "checkpointed offset and sequence number, the last enqueued sequence number and time, and "
        "the lag in events and seconds. See docs/worker.md.")
    status.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    status.set_defaults(handler=cmd_status)

    publish = commands.add_parser(
        "publish", help="send each line of NDJSON files as one event to the configured hub",
        description="Sends each line (one message body) with the azure-eventhub producer to the "
        "hub named by [eventhub] (AMLWH_EVENTHUB__CONNECTION_STRING / __NAME). For demos, tests "
        "and replaying dumps into staging hubs.",
    )
    publish.add_argument("paths", nargs="+", metavar="PATH")
    publish.add_argument(
        "--partition-key", choices=("none", "subject"), default="none",
        help="'subject': key each event by its subject so one run's events share a partition",
    )
    publish.set_defaults(handler=cmd_publish)

    query = commands.add_parser(
        "query", help="run a read-only SQL query over the views",
        description="Runs one read-only statement (SELECT/EXPLAIN) against the views; "
        "`amlwh views` lists them. Statements that would write are refused.",
    )
    query.add_argument("sql", metavar="SQL")
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.set_defaults(handler=cmd_query)

    compact = commands.add_parser(
        "compact", help="merge each table's files per event date, and fold new run events "
        "into the view state",
        description="Merges every partition (table, event date) with at least --min-files "
        "files into one file holding each event once, sorted for the views; the files it "
        "replaced are deleted [compaction] grace_s later. First it folds new run events into "
        "the stored state the run views read. Safe beside live workers, backfills, readers "
        "and a killed earlier run; a second compaction of the same warehouse waits its turn "
        "by doing nothing.")
    compact.add_argument("--table", action="append", metavar="TABLE",
                         help="only this table (repeatable; default all)")
    compact.add_argument("--before", type=_date, metavar="YYYY-MM-DD",
                         help="only event dates before this one")
    compact.add_argument("--min-files", type=int, default=2, metavar="N",
                         help="merge partitions with at least N files (default 2)")
    compact.add_argument("--wait-for-grace", action="store_true",
                         help="then wait [compaction] grace_s and delete the files it replaced")
    compact.add_argument("-q", "--quiet", action="store_true", help="no summary")
    compact.set_defaults(handler=cmd_compact)

    rebuild = commands.add_parser(
        "rebuild-state", help="compute the view state from all stored events again",
        description="Recomputes what the run views keep (runs, status history, metric "
        "minutes) from the stored run events, ignoring the current state; for after a "
        "restore or a manual change to the files.")
    rebuild.add_argument("-q", "--quiet", action="store_true", help="no summary")
    rebuild.set_defaults(handler=cmd_rebuild_state)

    views = commands.add_parser("views", help="list the views and their columns")
    views.add_argument("--all", action="store_true", help="also list the stored tables (store.*)")
    views.set_defaults(handler=cmd_views)

    report = commands.add_parser(
        "report", help="write a self-contained HTML report with charts of the views",
        description="Writes one HTML file (plotly.js inlined, opens offline) with charts of run "
        "duration p50/p95 and failure rate per experiment, runs by status, model registrations "
        "and deployments, and drift per monitor, each with the table behind it. "
        "See docs/report.md.")
    report.add_argument("--out", type=Path, default=Path("report.html"), metavar="PATH",
                        help="the HTML file to write (default report.html)")
    report.add_argument("--since", type=_date, metavar="YYYY-MM-DD",
                        help="only data on or after this UTC date (default: all)")
    report.add_argument("--drift-threshold", type=_drift_threshold, action="append",
                        metavar="[MONITOR=]VALUE",
                        help="the drift threshold line: VALUE for every monitor, MONITOR=VALUE for "
                        "one (repeatable; default 0.2, Azure ML's default)")
    report.set_defaults(handler=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    prepare_environment()  # before anything imports numpy or pyarrow (consumer/tuning.py)
    args = build_parser().parse_args(argv)
    # defaults until a command reads its settings ([logging]); the Azure SDKs' INFO lines are
    # kept out below DEBUG (consumer/logs.py)
    configure_logging(logging.DEBUG if args.verbose else logging.INFO, "auto")
    try:
        return args.handler(args)
    except AmlwhError as exc:
        label = f"{exc.label}: " if exc.label else ""
        print(f"amlwh: {label}{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("amlwh: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = _explain_library_error(exc)
        if message is None:
            raise
        print(f"amlwh: {message}", file=sys.stderr)
        return 1


def _explain_library_error(exc: Exception) -> str | None:
    """Operator wording for errors of the libraries we drive; None for real bugs.

    A library that was never imported raised nothing, so each is looked up, not imported:
    importing the Azure SDK to explain a failed query would cost ~0.1 s."""
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None and isinstance(exc, duckdb.Error):  # mistakes in user SQL are the common case
        return f"query failed: {exc}"
    eventhub = sys.modules.get("azure.eventhub.exceptions")
    if eventhub is None:
        return None
    if isinstance(exc, eventhub.AuthenticationError):
        return ("Event Hubs rejected the credentials (check the SAS key name and key in "
                f"AMLWH_EVENTHUB__CONNECTION_STRING, or the identity's role): {exc}")
    if isinstance(exc, eventhub.EventHubError):
        return (f"Event Hubs error: {exc}. Check the namespace, the hub name and the network "
                "path to it, then retry.")
    return None
