"""Parallel backfill: decode processes that also write the Parquet files.

The parent reads nothing but newlines and keys. Chunk k of the input goes to decode
process k mod N, which decodes it into Arrow tables and *keeps* them; it sends back
only the counts and the dedupe keys and event days of the self-keyed tables (~12
bytes a row instead of ~3.4 KB). At each commit the parent decides, over all chunks
in input order, which rows are new (exactly the single-process rule:
KeyIndex.fresh_mask), counts those keys as stored from then on, and sends each
process the keep-masks of its chunks. Each process publishes its share as one commit of
its own, in the single writer's order (storage/durable.py): all files written and
fsynced, then the fact, dead-letter and ignored files renamed in, then raw_events.

So a raw_events row on disk still proves its facts are on disk (the rule the writer's
key skipping relies on): an event's rows are all decoded, held and written by one
process. The parent does not wait for a commit's answers before sending more chunks;
it reads them as they come and waits for all of them only at the end. What changes
against one writer: a commit makes one file per table and date *per process*.

Counting a commit's keys as stored before its files are: a later commit then skips
redeliveries of those events. If any process then fails its commit, the run stops with
the error, and those events are on disk nowhere; the rerun the error asks for reads
them again, and stores them, because dedupe on a rerun reads the keys actually on disk.

Why: shipping decoded tables to one writing parent cost ~3.3 us/event of parent CPU
to receive (pipe reads, unpickling, page faults) on top of the serial Parquet
encoding, and the parent was the bottleneck of the whole backfill.
"""

from __future__ import annotations

import multiprocessing
from typing import Any, Iterator

import numpy as np

from consumer.backfill.decode_process import ChunkKeys, process_main
from consumer.errors import BackfillInputError, DecodeProcessError, WarehouseWriteError
from consumer.storage.key_index import SELF_KEYED
from consumer.storage.warehouse import FlushStats, ParquetWarehouse


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
                      warehouse.row_group_size, warehouse.remote))
            proc.start()
            child_end.close()
            self._conns.append(parent_end)
            self._procs.append(proc)
        self._decoded: list[dict[int, ChunkKeys]] = [{} for _ in range(workers)]
        self._pending: list[ChunkKeys] = []
        self._sent = self._received = 0  # chunks sent out / taken back, in input order
        self._unanswered = [0] * workers  # commits sent to each process, not answered yet
        self._answered = FlushStats()  # what the answered commits wrote, not reported yet

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
            self._unanswered[worker] -= 1
            self._answered.add(payload)
        elif got == "input_error":
            raise BackfillInputError(payload)
        elif got == "remote_error":  # said for the operator already (storage/remote_writes.py)
            raise WarehouseWriteError(payload)
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
    def commit(self, wait: bool = True) -> FlushStats:
        """Commit every chunk taken so far: decide which rows are new, count their keys as
        stored, and send each process its share. Returns what the commits answered since
        the last call wrote; with `wait`, after every commit sent so far is answered.

        Why not wait for every commit: a process that finished its share sat idle until
        the slowest had (measured ~0.4 s per process over the 1M bench file, with two
        rounds of waiting when facts and raw_events were separate phases)."""
        pending, self._pending = self._pending, []
        if pending:
            masks, new_keys = self._decide(pending)
            self.warehouse.keys.remember(new_keys)
            stamp = self.warehouse.file_stamp()
            workers = len(self._conns)
            for w in range(workers):
                share = {c.chunk: masks[c.chunk] for c in pending if c.chunk % workers == w}
                if share:
                    self._send(w, ("commit", stamp, share))
                    self._unanswered[w] += 1
        if wait:
            for w in range(len(self._conns)):
                while self._unanswered[w]:
                    self._pump(w)
        answered, self._answered = self._answered, FlushStats()
        return answered

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
            keep = self.warehouse.keys.fresh_mask(name, keys, days, new_keys)
            bounds = np.cumsum([len(c.keys[name][0]) for c in having])[:-1]
            for c, part in zip(having, np.split(keep, bounds)):
                masks[c.chunk][name] = part
        return masks, new_keys
