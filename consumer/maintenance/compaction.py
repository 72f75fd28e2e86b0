"""Compaction: a (table, event date)'s files merged into one, each event once, sorted;
and, first, the fold of new run events into the view state (maintenance/state.py).

The live worker writes one file per table and event date at every flush, and duplicates
(redeliveries, overlapping backfills) are stored as more rows. Compaction reads every file
of a partition, keeps the copy of each key that the views pick (sql/compaction/<table>.sql
spells the same dedupe as sql/views/00_deduplicated.sql, then an order that suits the
views' lookups), and writes it as one file. The files it replaced are *retired*: deleted
`grace_s` later, not at once.

Why readers and writers never lose or double an event:
- Files stay immutable. The merged file is written under a hidden temporary name, fsynced
  and renamed in (storage/durable.py), so it appears whole, and only then are its inputs
  retired. At every moment each stored key has at least one copy in a visible file: the
  writer's "stored raw row proves its facts" and its key index stay true.
- While a partition holds the merged file and its retired inputs, an event is stored
  twice with identical rows; the views keep one row per key, the same row as before (the
  merged file keeps the earliest copy by the views' own order). A stock reader sees the
  copies, as it sees redeliveries (docs/storage.md).
- Inputs are deleted only `grace_s` after the merged file was visible. A reader that listed
  an input before that and opens it after gets "file not found"; the query side then lists
  again and reruns (query/connection.py), and the new listing has the merged file.
- Files written into the partition after the listing are not inputs, so a live worker or a
  backfill writing meanwhile loses nothing; they are merged by the next compaction.
- A crash at any step leaves a valid warehouse: hidden temporary files (swept after an
  hour by the next writer to that folder), or a merged file next to inputs not yet retired
  (the views hide the copies; the next compaction merges them all again), or retirement
  records whose deletions did not all run (the next compaction runs them). Inputs are
  retired only after the state's manifest lists the merged files (maintenance/state.py).
- One compaction at a time per warehouse (a lock under `_compaction/`); a second one
  skips. Two at once would still be safe, only wasteful: each keeps every key it read.
"""

from __future__ import annotations

import fcntl
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator

import duckdb

from consumer.maintenance.retirement import delete_retired, retire
from consumer.maintenance.state import Fold, fold, publish, sweep_abandoned
from consumer.query.state_views import FOLDED_TABLES
from consumer.storage.durable import Publication
from consumer.storage.layout import COMPACTION_DIR, table_dir
from consumer.storage.parquet_files import write_batches
from consumer.storage.schema import PARTITION_COLUMN, sql_string, table_ddl, table_schemas

ROW_GROUP_ROWS = 128 * 1024


@cache
def compaction_sql() -> dict[str, str]:
    """table -> the SELECT over `source` (the partition's files) that a merged file holds."""
    folder = resources.files("sql") / "compaction"
    return {e.name.removesuffix(".sql"): e.read_text() for e in folder.iterdir() if e.name.endswith(".sql")}


@dataclass(frozen=True)
class MergedPartition:
    table: str
    day: str
    inputs: tuple[Path, ...]
    rows_in: int
    rows_out: int
    file: Path


@dataclass
class CompactionReport:
    merged: list[MergedPartition] = field(default_factory=list)
    files_before: int = 0  # committed files of the tables looked at, before
    files_after: int = 0
    deleted: int = 0  # retired files deleted by this run (their grace had passed)
    busy: bool = False  # another compaction held the lock: nothing was done
    fold: Fold | None = None  # the state generation this run made current, if any


def compact(
    root: Path,
    *,
    now_s: Callable[[], float],
    tables: tuple[str, ...] | None = None,
    before: date | None = None,
    min_files: int = 2,
    grace_s: float = 60.0,
    compression: str = "zstd",
    memory_limit: str = "1GB",
    rebuild_state: bool = False,
    wait: Callable[[float], None] | None = None,
) -> CompactionReport:
    """Under the warehouse's maintenance lock: fold new run events into the view state
    (maintenance/state.py), then merge every partition of `tables` (all by default) with
    at least `min_files` files, event dates before `before` only if given. Retired files
    past their grace are deleted first and last; with `wait`, files this run retired are
    waited for (`wait(grace_s)`) and deleted too, so a background round leaves none behind."""
    root = Path(root)
    names = tuple(tables) if tables else tuple(table_ddl())
    report = CompactionReport()
    with maintenance_lock(root) as held:
        if not held:
            report.busy = True
            return report
        report.deleted += delete_retired(root, now_s(), grace_s)
        sweep_abandoned(root, now_s())
        result, current = fold(root, rebuild=rebuild_state, memory_limit=memory_limit)
        folded = set(result.folded if result else current.folded if current else ())
        con = _connection(root, memory_limit)
        try:
            for name in names:
                for folder in partitions(root, name, before):
                    listed = sorted(folder.glob("*.parquet"))
                    report.files_before += len(listed)
                    report.files_after += len(listed)
                    files = listed
                    if name in FOLDED_TABLES:  # only what the state holds: the rest stays new
                        files = [p for p in listed if str(p.relative_to(root)) in folded]
                    if len(files) < min_files:
                        continue
                    merged = merge_partition(con, name, folder, files, compression, file_stamp(now_s()))
                    report.merged.append(merged)
                    report.files_after += 1 - len(files)
        finally:
            con.close()
        merged_folded = [m for m in report.merged if m.table in FOLDED_TABLES]
        if merged_folded and result is None and current is not None:  # same state, new file names
            result = Fold(current.generation + 1, dict(current.state), set(current.folded))
        if result is not None:
            # a merged file holds folded events only; its inputs stay folded until deleted
            result.folded |= {str(m.file.relative_to(root)) for m in merged_folded}
            publish(root, result, current, now_s())
            report.fold = result
        # Inputs are retired only once the manifest lists their merged file as folded: a
        # model event counts as new when no folded file holds a copy, so an input deleted
        # while its merged file is not yet folded would make its events count twice.
        for m in report.merged:
            retire(root, list(m.inputs), m.file, now_s())
        if wait is not None and report.merged:
            wait(grace_s)
        report.deleted += delete_retired(root, now_s(), grace_s)
    return report


def partitions(root: Path, name: str, before: date | None) -> list[Path]:
    """The event-date folders of a table, oldest first (before `before` if given)."""
    prefix = f"{PARTITION_COLUMN}="
    folders = sorted(p for p in table_dir(root, name).glob(prefix + "*") if p.is_dir())
    if before is not None:
        folders = [p for p in folders if p.name.removeprefix(prefix) < before.isoformat()]
    return folders


def merge_partition(con: duckdb.DuckDBPyConnection, name: str, folder: Path, files: list[Path],
                    compression: str, stamp: str) -> MergedPartition:
    """Write `files`' rows, deduplicated and sorted, as one new file in `folder`; return it
    once it is durable and visible. The inputs are untouched."""
    final = folder / f"part-{stamp}-c{uuid.uuid4().hex[:12]}.parquet"
    listed = ", ".join(sql_string(p) for p in files)
    con.execute(f"CREATE OR REPLACE TEMP VIEW source AS SELECT * FROM read_parquet([{listed}], "
                "union_by_name = true, hive_partitioning = false)")
    rows_in = con.execute("SELECT count(*) FROM source").fetchall()[0][0]
    batches = con.sql(compaction_sql()[name]).to_arrow_reader(ROW_GROUP_ROWS)
    with Publication() as publication:  # hidden, fsynced, then renamed in (storage/durable.py)
        with publication.create(folder, final.name, 0) as fh:
            rows_out = write_batches(batches, table_schemas()[name], fh, compression, ROW_GROUP_ROWS)
        publication.publish()
    return MergedPartition(name, folder.name.removeprefix(f"{PARTITION_COLUMN}="), tuple(files),
                           rows_in, rows_out, final)


@contextmanager
def maintenance_lock(root: Path) -> Iterator[bool]:
    """Yields True while this process holds the warehouse's compaction lock, False when
    another holds it. The kernel drops the lock when its holder dies, so a crash leaves none."""
    folder = Path(root) / COMPACTION_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _connection(root: Path, memory_limit: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = {sql_string(memory_limit)}")
    spill = Path(root) / COMPACTION_DIR / "spill"
    con.execute(f"SET temp_directory = {sql_string(str(spill))}")  # a large day sorts out of core
    return con


def file_stamp(now_s: float) -> str:
    """The time part of a merged file's name, as the writer names its files."""
    return datetime.fromtimestamp(now_s, timezone.utc).strftime("%Y%m%dT%H%M%S")
