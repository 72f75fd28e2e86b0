"""Message bodies of buffered events, kept on local disk instead of in memory.

A live partition holds every event for `[ordering] max_lateness_s`, so its
memory grows with rate x lateness (1,000 events/s x 30 s = 30k bodies of
~1.5 KB). Deep buffers keep an event as its body and re-decode it at release
(live/partition.py); this puts those bodies in append-only segment files
and keeps only a (segment, start, length) reference in memory. A segment is
deleted once every body in it has been taken back and a newer one is being
written. Nothing here is durable state: after a crash the hub still has every
event past the checkpoint, so the folder is simply removed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NamedTuple

from consumer.clock import wall_s
from consumer.storage.layout import SPILL_DIR


class SpillError(OSError):
    """The spill folder cannot be written or read (its cause is the OSError)."""


class SpillRef(NamedTuple):
    segment: int
    start: int
    length: int


class BodySpill:
    """One partition's spilled bodies. Not thread-safe: the partition's guard serializes it."""

    def __init__(self, folder: Path, segment_bytes: int = 16 << 20) -> None:
        self.folder = Path(folder)
        self.segment_bytes = segment_bytes
        self._fds: dict[int, int] = {}  # segment -> open fd
        self._live: dict[int, int] = {}  # segment -> bodies not taken back yet
        self._active = -1
        self._size = 0

    def put(self, body: bytes) -> SpillRef:
        try:
            if self._active < 0 or self._size >= self.segment_bytes:
                self._rotate()
            start = self._size
            written = os.pwrite(self._fds[self._active], body, start)
        except OSError as exc:
            raise SpillError(exc.errno, exc.strerror, exc.filename or str(self.folder)) from exc
        if written != len(body):
            raise SpillError(f"short write to {self._path(self._active)}")
        self._size += written
        self._live[self._active] += 1
        return SpillRef(self._active, start, written)

    def take(self, ref: SpillRef) -> bytes:
        try:
            body = os.pread(self._fds[ref.segment], ref.length, ref.start)
        except OSError as exc:
            raise SpillError(exc.errno, exc.strerror, str(self._path(ref.segment))) from exc
        if len(body) != ref.length:
            raise SpillError(f"short read from {self._path(ref.segment)}")
        left = self._live[ref.segment] - 1
        self._live[ref.segment] = left
        if left == 0 and ref.segment != self._active:
            self._drop(ref.segment)
        return body

    def clear(self) -> None:
        """Forget every body (partition reset); the next put starts a new segment."""
        for segment in list(self._fds):
            self._drop(segment)
        self._active = -1

    def close(self) -> None:
        self.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def segments(self) -> int:
        return len(self._fds)

    def _rotate(self) -> None:
        if self._active >= 0 and self._live.get(self._active) == 0:
            self._drop(self._active)
        self.folder.mkdir(parents=True, exist_ok=True)
        segment = self._active + 1
        fd = os.open(self._path(segment), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        # the new segment becomes active only once open: a failed open leaves the spill as it
        # was, so the next put fails the same way instead of on a segment with no file
        self._active = segment
        self._fds[segment] = fd
        self._live[segment] = 0
        self._size = 0

    def _drop(self, segment: int) -> None:
        os.close(self._fds.pop(segment))
        self._live.pop(segment, None)
        self._path(segment).unlink(missing_ok=True)

    def _path(self, segment: int) -> Path:
        return self.folder / f"{segment:08d}.bodies"



def sweep_spill_folders(warehouse: Path, older_than_s: float = 3600.0) -> None:
    """Remove what crashed workers left (a running worker writes its folder constantly)."""
    root = Path(warehouse) / SPILL_DIR
    if not root.is_dir():
        return
    now = wall_s()
    for folder in root.iterdir():
        try:
            newest = max([p.stat().st_mtime for p in folder.rglob("*")] + [folder.stat().st_mtime])
        except FileNotFoundError:
            continue
        if now - newest > older_than_s:
            shutil.rmtree(folder, ignore_errors=True)
