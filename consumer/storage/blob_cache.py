"""The local cache of a remote warehouse's files, and the per-query folders that show one
listing of it (storage/remote.py lists and downloads).

Warehouse files are immutable: a name is written once, by a rename, and later perhaps
deleted (compaction, retirement), never rewritten. So a cached copy stays valid for as
long as a listing holds that file; only the listing must be fresh. An entry is keyed by
what identifies one version of a blob, its name, size and ETag, so a name deleted and
written again (another version) is never served from the old entry.

    <cache>/objects/<2 hex>/<sha256 of name, size, ETag>   one version of one blob
    <cache>/objects/<2 hex>/.tmp-<uuid>                    a download in progress
    <cache>/views/<uuid>/<the warehouse's own paths>       one query's folder of hard links

A download is written under a temporary name and renamed in once its size is the listed
size: a killed download leaves no entry, only a temporary file, swept an hour later. A
query reads a folder of its own holding hard links to exactly the files of its listing
that it needs, so a file the listing no longer holds is never read, and the folder does
not depend on the cache: a concurrent query may prune an entry (it left the listing) and
the folder linking it still reads it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

TEMP_PREFIX = ".tmp-"
STALE_S = 3600.0  # a temporary download or a query folder this old belongs to a dead process


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to the warehouse prefix, "/"-separated
    size: int
    etag: str

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.path}\0{self.size}\0{self.etag}".encode()).hexdigest()


class BlobGone(Exception):
    """A listed file was deleted or replaced before it was read: list again."""


# Writes one file's bytes, as listed (its ETag), to an open file; BlobGone if it changed.
Download = Callable[[RemoteFile, BinaryIO], None]


class BlobCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.views = self.root / "views"

    def entry(self, file: RemoteFile) -> Path:
        return self.objects / file.key[:2] / file.key

    def holds(self, file: RemoteFile) -> bool:
        # the size check also refuses an entry a power loss truncated after its rename
        try:
            return self.entry(file).stat().st_size == file.size
        except FileNotFoundError:
            return False

    def store(self, file: RemoteFile, download: Download) -> None:
        target = self.entry(file)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            with open(temp, "wb") as out:
                download(file, out)
            if temp.stat().st_size != file.size:
                raise BlobGone(file.path)  # another version than the listed one
            os.replace(temp, target)  # two queries fetching one file both write the same bytes
        finally:
            temp.unlink(missing_ok=True)

    def prune(self, listed: Iterable[RemoteFile], now_s: float) -> int:
        """Delete the entries of files no longer listed (deleted or replaced remotely), and
        what dead processes left; the number of entries deleted."""
        keep = {file.key for file in listed}
        pruned = 0
        for folder in _children(self.objects):
            for entry in _children(folder):
                if entry.name.startswith(TEMP_PREFIX):
                    _remove_if_stale(entry, now_s)
                elif entry.name not in keep:
                    entry.unlink(missing_ok=True)
                    pruned += 1
        for view in _children(self.views):
            _remove_if_stale(view, now_s)
        return pruned


class Snapshot:
    """One query's view of the remote warehouse: the listing made for it, and a folder of its
    own (`root`) holding the files of that listing fetched so far, at their own paths."""

    def __init__(self, listed: dict[str, RemoteFile], cache: BlobCache, download: Download,
                 workers: int) -> None:
        self.listed = listed
        self.cache = cache
        self._download = download
        self._workers = workers
        self._linked: set[str] = set()
        self.downloaded = 0
        self.downloaded_bytes = 0
        cache.views.mkdir(parents=True, exist_ok=True)
        self.root = cache.views / uuid.uuid4().hex
        self.root.mkdir()

    def fetch(self, paths: Iterable[str]) -> None:
        """Download the files of `paths` not cached yet (in parallel), and link them all in."""
        files = []
        for path in dict.fromkeys(paths):
            if path not in self.listed:
                raise BlobGone(path)  # named by a file read meanwhile, gone since the listing
            if path not in self._linked:
                files.append(self.listed[path])
        missing = [file for file in files if not self.cache.holds(file)]
        if missing:
            with ThreadPoolExecutor(min(self._workers, len(missing))) as pool:
                list(pool.map(self._store, missing))
            self.downloaded += len(missing)
            self.downloaded_bytes += sum(file.size for file in missing)
        for file in files:
            self._link(file)

    @property
    def files_read(self) -> frozenset[str]:
        """The paths fetched into the folder: what the query could read."""
        return frozenset(self._linked)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _store(self, file: RemoteFile) -> None:
        self.cache.store(file, self._download)

    def _link(self, file: RemoteFile) -> None:
        parts = file.path.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"unexpected blob name {file.path!r} in the warehouse")
        target = self.root.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(self.cache.entry(file), target)
        except FileNotFoundError:  # pruned by a concurrent query since it was checked
            self._store(file)
            self.downloaded += 1
            self.downloaded_bytes += file.size
            os.link(self.cache.entry(file), target)
        except OSError:  # a file system without hard links: a copy reads the same
            shutil.copyfile(self.cache.entry(file), target)
        self._linked.add(file.path)


def _children(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except FileNotFoundError:
        return []


def _remove_if_stale(path: Path, now_s: float) -> None:
    try:
        if now_s - path.stat().st_mtime < STALE_S:
            return
    except FileNotFoundError:
        return
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
