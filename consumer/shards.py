"""Parallel backfill: decode processes that also write the Parquet files.

The parent reads nothing but newlines and keys. Chunk k of the input goes to decode
process k mod N, which decodes it into Arrow tables and *keeps* them; it sends back
only the counts and the dedupe keys and event days of the self-keyed tables (~12
bytes a row instead of ~3.4 KB). At each commit the parent decides, over all chunks
in input order, which rows are new (exactly the single-process rule:
ParquetWarehouse.fresh_mask), and each process writes its own share of the files:

1. every process writes and fsyncs its fact, dead-letter and ignored files;
2. only when all have, every process writes its raw_events files.

So a raw_events row on disk still proves its facts are on disk (the rule the writer's
key skipping relies on), whichever process holds them. What changes against one
writer: a commit makes one file per table and date *per process*.

Why: shipping decoded tables to one writing parent cost ~3.3 us/event of parent CPU
to receive (pipe reads, unpickling, page faults) on top of the serial Parquet
encoding, and the parent was the bottleneck of the whole backfill.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pyarrow as pa

from consumer.batch import OWNER_COLUMN, ArrowBatch
from consumer.sqlfiles import PARTITION_COLUMN
from consumer.warehouse import FlushStats, ParquetWarehouse, WarehouseWriteError
from transforms.rows import EVENT_TABLES

_PR_SET_PDEATHSIG = 1
SELF_KEYED = ("raw_events", "dead_letters", "ignored_events")
FIRST_PHASE = EVENT_TABLES + ("dead_letters", "ignored_events")


class DecodeProcessError(RuntimeError):
    """A decode process failed or died; the message says which and why."""


@dataclass
class ChunkKeys:
    """What the parent learns of one decoded chunk."""

    chunk: int
    counts: tuple[int, int, int, int, int, int]  # bodies, blank, events, ignored, dead, bytes
    keys: dict[str, tuple[np.ndarray, np.ndarray]]  # self-keyed table -> (keys, days)
    rows: int  # rows over all tables


def chunk_keys(chunk: int, batch: ArrowBatch, counts: tuple) -> ChunkKeys:
    keys = {}
    for name in SELF_KEYED:
        table = batch.tables.get(name)
        if table is not None:
            keys[name] = (table["dedupe_key"].to_numpy(),
                          table[PARTITION_COLUMN].cast(pa.int32()).to_numpy())
    return ChunkKeys(chunk, counts, keys, sum(t.num_rows for t in batch.tables.values()))


# -- the decode process ----------------------------------------------------------
def _process_main(conn, root: str, compression: str, row_group_size: int) -> None:
    from consumer.backfill import BackfillInputError, _decode_worker_setup, decode_chunk

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    _die_with_parent()
    _decode_worker_setup()
    warehouse = ParquetWarehouse(Path(root), compression=compression, row_group_size=row_group_size)
    held: dict[int, ArrowBatch] = {}
    masks: dict[int, dict[str, np.ndarray]] = {}
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent is gone (killed): nothing to answer to
            return
        kind = message[0]
        try:
            if kind == "decode":
                _, number, chunk = message
                decoded = decode_chunk(chunk)
                held[number] = decoded.batch
                counts = (decoded.bodies, decoded.blank_lines, decoded.events, decoded.ignored,
                          decoded.dead_letters, decoded.bytes_read)
                conn.send(("decoded", chunk_keys(number, decoded.batch, counts)))
            elif kind == "facts":
                _, stamp, chunk_masks = message
                masks = chunk_masks
                conn.send(("written", _write(warehouse, held, masks, FIRST_PHASE, stamp)))
            elif kind == "raw":
                _, stamp = message
                stats = _write(warehouse, held, masks, ("raw_events",), stamp)
                for number in masks:
                    del held[number]
                masks = {}
                conn.send(("written", stats))
            elif kind == "stop":
                return
        except BackfillInputError as exc:
            conn.send(("input_error", str(exc)))
        except OSError as exc:
            conn.send(("write_error", (exc.errno, exc.strerror, exc.filename)))
        except Exception:  # a bug: the parent stops with the traceback
            conn.send(("failed", traceback.format_exc()))


def _die_with_parent() -> None:
    """Linux: a killed parent takes its decode processes with it, so none writes on
    behind it while the operator already reruns. Elsewhere they stop at the closed pipe."""
    prctl = getattr(ctypes.CDLL(None), "prctl", None)
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before prctl: go now
            os._exit(1)


def _write(warehouse: ParquetWarehouse, held: dict[int, ArrowBatch],
           masks: dict[int, dict[str, np.ndarray]], names: Iterable[str], stamp: str) -> FlushStats:
    """Write this process's share of `names` for the chunks in `masks` (input order): all of
    it durable and in place on return, as one publication (consumer/durable.py)."""
    stats = FlushStats()
    files = warehouse.publication()
    try:
        for name in names:
            tables, keeps = [], []
            for number, chunk_masks in masks.items():
                table = held[number].tables.get(name)
                if table is None:
                    continue
                if name in EVENT_TABLES:  # a fact row is kept when its raw row is
                    keep = chunk_masks["raw_events"][table[OWNER_COLUMN].to_numpy()]
                else:
                    keep = chunk_masks[name]
                tables.append(table)
                keeps.append(keep)
            if not tables:
                continue
            keep = np.concatenate(keeps)
            stats.rows[name] = warehouse.stage_files(name, tables, keep, stamp, files)
            stats.duplicates[name] = int(len(keep) - keep.sum())
        stats.files.extend(files.publish())
    except BaseException:
        files.discard()
        raise
    return stats


# -- the parent's side -------------------------------------------------------------
class ShardPool:
    """N decode-and-write processes; `decode` yields chunk keys in input order, `commit`
    writes everything decoded so far. Use as a context manager."""

    def __init__(self, workers: int, warehouse: ParquetWarehouse, read_ahead: int) -> None:
        self.warehouse = warehouse
        self.read_ahead = read_ahead
        context = multiprocessing.get_context("spawn")  # see backfill._decoded: no fork
        self._conns = []
        self._procs = []
        for _ in range(workers):
            parent_end, child_end = context.Pipe()
            proc = context.Process(
                target=_process_main, daemon=True,
                args=(child_end, str(warehouse.root), warehouse.compression,
                      warehouse.row_group_size))
            proc.start()
            child_end.close()
            self._conns.append(parent_end)
            self._procs.append(proc)
        self._stash: list[deque] = [deque() for _ in range(workers)]
        self._pending: list[ChunkKeys] = []

    def __enter__(self) -> ShardPool:
        return self

    def __exit__(self, exc_type, *_: Any) -> None:
        if exc_type is None:
            for w in range(len(self._conns)):
                self._send(w, ("stop",))
            for proc in self._procs:
                proc.join(timeout=30)
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self._conns:
            conn.close()

    def _receive(self, worker: int, kind: str):
        """The next reply of `kind` from a process; replies of other kinds wait in order."""
        stash = self._stash[worker]
        for i, (got, payload) in enumerate(stash):
            if got == kind:
                del stash[i]
                return payload
        while True:
            try:
                got, payload = self._conns[worker].recv()
            except (EOFError, OSError):
                raise self._died(worker) from None
            if got == kind:
                return payload
            if got == "input_error":
                from consumer.backfill import BackfillInputError
                raise BackfillInputError(payload)
            if got == "write_error":
                errno_, strerror, filename = payload
                raise WarehouseWriteError(
                    self.warehouse.explain(OSError(errno_, strerror, filename)))
            if got == "failed":
                raise DecodeProcessError(f"decode process {worker} failed:\n{payload}")
            stash.append((got, payload))

    def _send(self, worker: int, message: tuple) -> None:
        try:
            self._conns[worker].send(message)
        except OSError:  # BrokenPipeError: the process is gone
            raise self._died(worker) from None

    def _died(self, worker: int) -> DecodeProcessError:
        self._procs[worker].join(timeout=5)
        return DecodeProcessError(
            f"decode process {worker} died (exit code {self._procs[worker].exitcode}); nothing "
            "of the current commit was acknowledged. Check memory limits (dmesg, container "
            "limits) and run again: events already stored are skipped.")

    def decode(self, chunks: Iterator) -> Iterator[ChunkKeys]:
        workers = len(self._conns)
        sent = received = 0
        for chunk in chunks:
            self._send(sent % workers, ("decode", sent, chunk))
            sent += 1
            if sent - received >= self.read_ahead * workers:  # bounded: memory stays flat
                yield self._take(received)
                received += 1
        while received < sent:
            yield self._take(received)
            received += 1

    def _take(self, number: int) -> ChunkKeys:
        keys = self._receive(number % len(self._conns), "decoded")
        self._pending.append(keys)
        return keys

    def commit(self) -> FlushStats:
        """Commit every chunk taken so far: decide which rows are new, then the two phases."""
        stats = FlushStats()
        pending, self._pending = self._pending, []
        if not pending:
            return stats
        masks, new_keys = self._decide(pending)
        stamp = self.warehouse.file_stamp()
        workers = range(len(self._conns))
        per_worker = [{c.chunk: masks[c.chunk] for c in pending if c.chunk % len(workers) == w}
                      for w in workers]
        for phase in ("facts", "raw"):
            for w in workers:
                self._send(w, ("facts", stamp, per_worker[w]) if phase == "facts" else ("raw", stamp))
            for w in workers:  # every process has finished the phase before the next starts
                part = self._receive(w, "written")
                stats.files.extend(part.files)
                for name, rows in part.rows.items():
                    stats.rows[name] = stats.rows.get(name, 0) + rows
                for name, dups in part.duplicates.items():
                    stats.duplicates[name] = stats.duplicates.get(name, 0) + dups
        self.warehouse.remember(new_keys)
        return stats

    def _decide(self, pending: list[ChunkKeys]):
        """Per chunk, keep-masks of its self-keyed tables: the single-writer rule applied
        to the keys of all pending chunks in input order."""
        masks: dict[int, dict[str, np.ndarray]] = {c.chunk: {} for c in pending}
        new_keys: dict[tuple[str, int], np.ndarray] = {}
        for name in SELF_KEYED:
            having = [c for c in pending if name in c.keys]
            if not having:
                continue
            keys = np.concatenate([c.keys[name][0] for c in having])
            days = np.concatenate([c.keys[name][1] for c in having])
            keep = self.warehouse.fresh_mask(name, keys, days, new_keys)
            bounds = np.cumsum([len(c.keys[name][0]) for c in having])[:-1]
            for c, part in zip(having, np.split(keep, bounds)):
                masks[c.chunk][name] = part
        for c in pending:  # no raw rows in a chunk: its facts (there are none) keep nothing
            masks[c.chunk].setdefault("raw_events", np.zeros(0, dtype=bool))
        return masks, new_keys
