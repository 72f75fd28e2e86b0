"""The writer's index of stored dedupe keys: which rows of a batch are new.

Per (self-keyed table, event date), the sorted 64-bit keys already stored there, read
from that date's files on first touch and kept for the life of the process (8 bytes an
event). A key counts as stored once `remember` is told so: a single writer after its
files are committed, a parallel backfill from its decision (backfill/pool.py).

This is the second layer of exactly-once; the views' dedupe is the guarantee
(docs/storage.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from consumer.storage.layout import partition_dir
from consumer.storage.parquet_files import event_days

# Tables whose rows are deduplicated against their own stored keys. The fact tables
# follow raw_events' decision for the same event.
SELF_KEYED = ("raw_events", "dead_letters", "ignored_events")

NewKeys = dict[tuple[str, int], np.ndarray]  # (table, day) -> keys kept by a decision


def key_columns(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(dedupe keys, event days) of a self-keyed table's rows: what fresh_mask decides on."""
    return table["dedupe_key"].to_numpy(), event_days(table)


class KeyIndex:
    """`read_keys(table, day)` reads the stored keys of a date's files; by default from the
    local folder under `root` (a remote warehouse's: storage/remote_writes.py)."""

    def __init__(self, root: Path, read_keys: Callable[[str, int], list[np.ndarray]] | None = None) -> None:
        self.root = Path(root)
        self._read = read_keys or (lambda name, day: _read_keys(partition_dir(self.root, name, day)))
        self._stored: dict[tuple[str, int], np.ndarray] = {}

    def fresh_mask(self, name: str, keys: np.ndarray, days: np.ndarray, new_keys: NewKeys) -> np.ndarray:
        """Keep-mask over rows of `name` with these keys and event days, in write order:
        the first copy of each key, unless already stored. Adds the kept keys to
        `new_keys`, for `remember`."""
        keep = np.zeros(len(keys), dtype=bool)
        keep[np.unique(keys, return_index=True)[1]] = True  # first copy within the batch
        for day in np.unique(days).tolist():
            in_day = days == day
            stored = self._stored_keys(name, day)
            if stored.size:
                keep[in_day] &= ~in_sorted(keys[in_day], stored)
            new_keys[(name, day)] = keys[in_day & keep]
        return keep

    def fresh_mask_of(self, name: str, tables: list[pa.Table], new_keys: NewKeys) -> np.ndarray:
        """fresh_mask over the rows of several tables, in order."""
        # per table, then concatenated: ChunkedArray.to_numpy over many chunks costs ~0.25 us
        # a row, two orders of magnitude more than this
        columns = [key_columns(t) for t in tables]
        keys = np.concatenate([k for k, _ in columns])
        days = np.concatenate([d for _, d in columns])
        return self.fresh_mask(name, keys, days, new_keys)

    def remember(self, new_keys: NewKeys) -> None:
        """Count fresh_mask's `new_keys` as stored from now on."""
        for (name, day), keys in new_keys.items():
            current = self._stored.get((name, day))
            if current is None:
                self._stored[(name, day)] = np.unique(keys)
            else:
                # fresh_mask's new keys are unique and not stored: no unique() needed, and
                # a stable sort of int64 is a radix sort, linear in the stored keys
                both = np.concatenate((current, keys))
                both.sort(kind="stable")
                self._stored[(name, day)] = both

    def _stored_keys(self, name: str, day: int) -> np.ndarray:
        """Sorted keys already committed for (table, day), read once per process."""
        cached = self._stored.get((name, day))
        if cached is not None:
            return cached
        parts = self._read(name, day)
        keys = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
        self._stored[(name, day)] = keys
        return keys


def in_sorted(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """np.isin(values, sorted_keys) for a sorted, non-empty sorted_keys: a binary search
    per value instead of sorting both together (half the time at 30k stored keys)."""
    at = np.searchsorted(sorted_keys, values)
    at[at == len(sorted_keys)] = 0
    return sorted_keys[at] == values


def _read_keys(folder: Path) -> list[np.ndarray]:
    """The dedupe keys of every file in folder. A file listed and gone when read was
    retired by a compaction, whose merged file holds its keys and was visible before the
    deletion: listing again finds it."""
    while True:
        try:
            return [pq.read_table(path, columns=["dedupe_key"])["dedupe_key"].to_numpy()
                    for path in sorted(folder.glob("*.parquet"))]
        except FileNotFoundError:
            continue
