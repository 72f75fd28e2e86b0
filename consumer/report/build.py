"""The data behind each chart: the queries of sql/report, run over the views of a
read-only query connection. One query per chart; its result is also the table printed
under the chart, so what is drawn and what is listed cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path

import duckdb

from consumer.query.connection import read_warehouse
from consumer.report.thresholds import DriftThresholds


@dataclass(frozen=True)
class Table:
    """A query result: column names and rows."""

    columns: tuple[str, ...]
    rows: tuple[tuple, ...]

    def column(self, name: str) -> list:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def where(self, name: str, value) -> Table:
        """The rows whose column `name` equals `value`."""
        index = self.columns.index(name)
        return Table(self.columns, tuple(row for row in self.rows if row[index] == value))

    def distinct(self, name: str) -> list:
        """The values of column `name`, each once, in order of first appearance."""
        return list(dict.fromkeys(self.column(name)))


@cache
def _report_queries() -> tuple[tuple[str, str, str], ...]:
    """(chart, file name, SQL) of sql/report/NN_<chart>.sql, in file-name order."""
    folder = resources.files("sql") / "report"
    entries = sorted((e for e in folder.iterdir() if e.name.endswith(".sql")), key=lambda e: e.name)
    return tuple((e.name.removesuffix(".sql").split("_", 1)[1], e.name, e.read_text()) for e in entries)


def report_sql() -> dict[str, str]:
    """chart -> its SELECT."""
    return {chart: sql for chart, _, sql in _report_queries()}


def report_files() -> dict[str, str]:
    """chart -> its SQL file, as the repository spells it."""
    return {chart: f"sql/report/{name}" for chart, name, _ in _report_queries()}


def run_report_queries(con: duckdb.DuckDBPyConnection, since: date | None,
                       thresholds: DriftThresholds) -> dict[str, Table]:
    """Each chart's table, from a connection with the views; `since`: the first UTC day
    to include (None: all)."""
    tables = {}
    for chart, sql in report_sql().items():
        result = con.execute(sql, {"since": since})
        columns = tuple(d[0] for d in result.description)
        tables[chart] = Table(columns, tuple(result.fetchall()))
    tables["drift"] = with_thresholds(tables["drift"], thresholds)
    return tables


def with_thresholds(drift: Table, thresholds: DriftThresholds) -> Table:
    """The drift table with each monitor's threshold, and whether the coefficient is above it."""
    monitor, coefficient = drift.columns.index("monitor"), drift.columns.index("coefficient")
    rows = []
    for row in drift.rows:
        threshold = thresholds.of(row[monitor])
        rows.append(row[:coefficient + 1] + (threshold, row[coefficient] > threshold)
                    + row[coefficient + 1:])
    columns = (drift.columns[:coefficient + 1] + ("threshold", "above_threshold")
               + drift.columns[coefficient + 1:])
    return Table(columns, tuple(rows))


def load_report_data(warehouse: Path, since: date | None,
                     thresholds: DriftThresholds) -> dict[str, Table]:
    """Each chart's table, read from the warehouse on one fresh connection (all charts see
    the same files). Started again when a compaction deleted a file it had listed."""
    return read_warehouse(warehouse, lambda con: run_report_queries(con, since, thresholds))
