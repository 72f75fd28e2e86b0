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

import multiprocessing
from typing import Any, Iterator

import numpy as np

from consumer.shard_process import ChunkKeys, process_main
from consumer.warehouse import SELF_KEYED, FlushStats, ParquetWarehouse, WarehouseWriteError


class DecodeProcessError(RuntimeError):
    """A decode process failed or died; the message says which and why."""


class ShardPool:
    """N decode-and-write processes; `decode` yields chunk keys in input order, `commit`
    writes everything decoded so far. Use as a context manager."""

    def __init__(self, workers: int, warehouse: ParquetWarehouse, read_ahead: int) -> None:
        self.warehouse = warehouse
        self.read_ahead = read_ahead
        # spawn, not fork: the parent has Arrow thread pools that fork would copy mid-state
        context = multiprocessing.get_context("spawn")
        self._conns = []
        self._procs = []
        for _ in range(workers):
            parent_end, child_end = context.Pipe()
            proc = context.Process(
                target=process_main, daemon=True,
                args=(child_end, str(warehouse.root), warehouse.compression,
                      warehouse.row_group_size))
            proc.start()
            child_end.close()
            self._conns.append(parent_end)
            self._procs.append(proc)
        self._decoded: list[dict[int, ChunkKeys]] = [{} for _ in range(workers)]
        self._pending: list[ChunkKeys] = []
        self._sent = self._received = 0  # chunks sent out / taken back, in input order
        self._written: list[FlushStats | None] = [None] * workers  # a phase's answers

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

    # -- messages ----------------------------------------------------------------
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

    def _pump(self, worker: int) -> None:
        """Read and act on one message from a process (blocks until there is one)."""
        try:
            got, payload = self._conns[worker].recv()
        except (EOFError, OSError):
            raise self._died(worker) from None
        if got == "decoded":
            self._decoded[worker][payload.chunk] = payload
        elif got == "written":
            self._written[worker] = payload
        elif got == "input_error":
            from consumer.backfill import BackfillInputError
            raise BackfillInputError(payload)
        elif got == "write_error":
            errno_, strerror, filename = payload
            raise WarehouseWriteError(self.warehouse.explain(OSError(errno_, strerror, filename)))
        else:  # "failed"
            raise DecodeProcessError(f"decode process {worker} failed:\n{payload}")

    # -- decoding ----------------------------------------------------------------
    def decode(self, chunks: Iterator) -> Iterator[ChunkKeys]:
        """Send the chunks out and yield their keys in input order (chunks are numbered
        across calls: a chunk's number says which process has it)."""
        workers = len(self._conns)
        for chunk in chunks:
            self._send(self._sent % workers, ("decode", self._sent, chunk))
            self._sent += 1
            if self._sent - self._received >= self.read_ahead * workers:  # memory stays flat
                yield self._take()
        while self._received < self._sent:
            yield self._take()

    def _take(self) -> ChunkKeys:
        number = self._received
        self._received += 1
        worker = number % len(self._conns)
        while number not in self._decoded[worker]:
            self._pump(worker)
        keys = self._decoded[worker].pop(number)
        self._pending.append(keys)
        return keys

    # -- committing --------------------------------------------------------------
    def commit(self) -> FlushStats:
        """Commit every chunk taken so far: decide which rows are new, then the two phases,
        each finished by every process before the next starts. (Running commits in the
        background while decoding went on was measured: no shorter run, more memory.)"""
        stats = FlushStats()
        pending, self._pending = self._pending, []
        if not pending:
            return stats
        masks, new_keys = self._decide(pending)
        stamp = self.warehouse.file_stamp()
        workers = len(self._conns)
        shares = [{c.chunk: masks[c.chunk] for c in pending if c.chunk % workers == w}
                  for w in range(workers)]
        merged = None
        for phase in ("facts", "raw"):
            for w in range(workers):
                self._send(w, ("facts", stamp, shares[w]) if phase == "facts" else ("raw", stamp))
            if merged is None:  # while the processes write, not after (they would wait)
                merged = self.warehouse.merged_keys(new_keys)
            for w in range(workers):
                while self._written[w] is None:
                    self._pump(w)
                part, self._written[w] = self._written[w], None
                stats.files.extend(part.files)
                for name, rows in part.rows.items():
                    stats.rows[name] = stats.rows.get(name, 0) + rows
                for name, dups in part.duplicates.items():
                    stats.duplicates[name] = stats.duplicates.get(name, 0) + dups
        self.warehouse.install_keys(merged)
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
        return masks, new_keys
