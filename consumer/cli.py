"""`amlwh`: the command line. Configuration errors end with a message, not a traceback.

The parser and the one place errors become exit codes; what each command does is in
consumer/commands.py, which imports only what a command uses when it runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from consumer.commands import (
    cmd_backfill_files,
    cmd_compact,
    cmd_publish,
    cmd_query,
    cmd_rebuild_state,
    cmd_report,
    cmd_run,
    cmd_status,
    cmd_views,
)
from consumer.errors import AmlwhError
from consumer.logs import configure_logging
from consumer.tuning import prepare_environment


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
