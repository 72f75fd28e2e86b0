"""Where things live under the warehouse root; the one place that spells its paths.

    <root>/<table>/event_date=YYYY-MM-DD/part-<UTC time>-<uuid>.parquet   committed rows
    <root>/_provisional/<table>/<worker>-<version>.parquet                 buffered rows (live/provisional.py)
    <root>/_provisional/<table>/_anchor.parquet                           an empty file: the glob always matches
    <root>/_spill/<worker>/...                                             a live worker's scratch (live/spill.py)
    <root>/_compaction/retired/<time>-<id>.json                          files a compaction replaced, deleted later
    <root>/_state/manifest-<generation>.json, <root>/_state/<generation>/   maintained view state

Stock readers see committed rows only: they read `<root>/<table>/` with hive partitioning.
"""

from __future__ import annotations

from pathlib import Path

from consumer.storage.schema import PARTITION_COLUMN
from transforms.timeparse import date_of_day

PROVISIONAL_DIR = "_provisional"
ANCHOR = "_anchor.parquet"
SPILL_DIR = "_spill"
COMPACTION_DIR = "_compaction"
STATE_DIR = "_state"


def table_dir(root: Path, table: str) -> Path:
    return Path(root) / table


def partition_dir(root: Path, table: str, day: int) -> Path:
    """The folder of one table's rows of one event date (days since the epoch)."""
    return Path(root) / table / f"{PARTITION_COLUMN}={date_of_day(day)}"


def committed_glob(root: Path, table: str) -> Path:
    return Path(root) / table / "*" / "*.parquet"


def provisional_dir(root: Path, table: str) -> Path:
    return Path(root) / PROVISIONAL_DIR / table
