"""The decode-and-write process of a parallel backfill (the parent: backfill/pool.py).

It decodes the chunks it is sent and keeps the Arrow tables; it answers each with the
chunk's counts and dedupe keys only. A commit arrives with the parent's keep-masks for
some of its chunks, between decode requests, and is handled in the order it arrives:
the kept rows of those chunks are published as one commit (facts before raw_events,
storage/durable.py) and the chunks are let go. (A writer thread beside decoding was
measured: 10% more CPU from GIL hand-offs and 50% more peak memory, no shorter run.)
"""

from __future__ import annotations

import ctypes
import os
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from consumer.backfill.chunks import DecodedChunk, decode_chunk
from consumer.errors import BackfillInputError, WarehouseWriteError
from consumer.storage.arrow import OWNER_COLUMN, ArrowBatch
from consumer.storage.key_index import SELF_KEYED, key_columns
from consumer.storage.warehouse import COMMIT_ORDER, FlushStats, ParquetWarehouse
from consumer.tuning import tune_decode_process
from transforms.fastpath import LineCounts
from transforms.rows import EVENT_TABLES

_PR_SET_PDEATHSIG = 1


@dataclass
class ChunkKeys:
    """What the parent learns of one decoded chunk."""

    chunk: int
    counts: LineCounts
    bytes_read: int
    keys: dict[str, tuple[np.ndarray, np.ndarray]]  # self-keyed table -> (keys, days)
    rows: int  # rows over all tables


def chunk_keys(chunk: int, decoded: DecodedChunk) -> ChunkKeys:
    batch = decoded.batch
    keys = {}
    for name in SELF_KEYED:
        table = batch.tables.get(name)
        if table is not None:
            keys[name] = key_columns(table)
    return ChunkKeys(chunk, decoded.counts, decoded.bytes_read, keys,
                     sum(t.num_rows for t in batch.tables.values()))


def process_main(conn, root: str, compression: str, row_group_size: int, remote=None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    _die_with_parent()
    tune_decode_process()
    # a remote warehouse (a RemoteTarget): this process uploads what it writes itself
    warehouse = ParquetWarehouse(Path(root), compression=compression, row_group_size=row_group_size,
                                 remote=remote)
    held: dict[int, ArrowBatch] = {}  # decoded chunks not committed yet, by number
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the parent is gone (killed): nothing to answer to
            return
        kind = message[0]
        if kind == "stop":
            # Everything this process wrote is committed and acknowledged, and it holds
            # nothing else: exit without tearing down the interpreter (freeing every held
            # object and module took ~50-80 ms that the parent waited for at the end).
            conn.close()
            os._exit(0)
        try:
            if kind == "decode":
                _, number, chunk = message
                decoded = decode_chunk(chunk)
                held[number] = decoded.batch
                reply = ("decoded", chunk_keys(number, decoded))
            else:  # "commit"
                _, stamp, masks = message
                reply = ("written", _write(warehouse, held, masks, stamp))
                for number in masks:
                    del held[number]
        except BackfillInputError as exc:
            reply = ("input_error", str(exc))
        except WarehouseWriteError as exc:
            reply = ("remote_error", str(exc))
        except OSError as exc:
            reply = ("write_error", (exc.errno, exc.strerror, exc.filename))
        except Exception:  # a bug: the parent stops with the traceback
            reply = ("failed", traceback.format_exc())
        conn.send(reply)


def _die_with_parent() -> None:
    """Linux: a killed parent takes its decode processes with it, so none writes on
    behind it while the operator already reruns. Elsewhere they stop at the closed pipe."""
    prctl = getattr(ctypes.CDLL(None), "prctl", None)
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before prctl: go now
            os._exit(1)


def _write(warehouse: ParquetWarehouse, held: dict[int, ArrowBatch],
           masks: dict[int, dict[str, np.ndarray]], stamp: str) -> FlushStats:
    """Write the kept rows of the chunks in `masks` (input order): all of it durable and in
    place on return, as one publication with raw_events renamed in last."""
    stats = FlushStats()
    with warehouse.publication() as files:
        for name in COMMIT_ORDER:
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
    return stats


