"""Writing a warehouse in Blob Storage: `run` and `backfill` commit through here.

A commit is staged as local files first (in the writer's own work folder), exactly as a
local commit stages its temporary files, then each file is uploaded under its final name,
group by group: every fact table's file, then the raw_events files (storage/durable.py).

Why what makes the local warehouse safe still holds:
- **A file appears whole or not at all.** A blob becomes visible when its upload is
  committed (one Put Blob, or Put Block List for a large file); a reader never lists a
  partial blob. Names are unique (time + random id), so no upload replaces anything, and
  every upload is conditional on the name being free (If-None-Match: *).
- **Facts before raw.** The raw_events uploads start only after every fact upload of the
  commit succeeded, so a raw_events blob proves its events' fact rows are stored: the key
  index may skip those events. A failure between the groups leaves fact rows without their
  raw row; the events are written again and the views' dedupe hides the copy, as after a
  local crash between the groups.
- **Nothing acknowledged that is not durable.** `publish` returns after the last upload
  succeeded; Blob Storage acknowledges an upload once it is durably stored. Only then does
  the worker checkpoint.
- **Several machines.** The key index reads the stored keys of a (table, date) from the
  blobs as listed then, through the read cache. Another worker's commit after that listing
  is not seen; its events, if delivered here too, are stored twice and the views keep one,
  as with two local workers whose indexes were read before each other's commits.

Transient failures (no connection, a timeout, 408/429/5xx) are retried with backoff and
jitter for up to `patience_s`: a worker rides out a short outage with its batch held and
nothing checkpointed. Anything else, or an outage longer than that, is a
WarehouseWriteError that says what to do; nothing of the commit was acknowledged.
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow.parquet as pq

from consumer.clock import mono_s
from consumer.errors import RemoteWarehouseError, WarehouseWriteError
from consumer.storage.blob_cache import BlobGone, RemoteFile
from consumer.storage.durable import Publication
from consumer.storage.layout import partition_dir

log = logging.getLogger("amlwh.remote")
T = TypeVar("T")

UPLOADERS = 8  # parallel uploads of one group: each mostly waits on the network
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 15.0
_COMPARE_BYTES_BELOW = 1 << 20  # a name found taken: files this small are compared byte for byte


@dataclass(frozen=True)
class RemoteTarget:
    """Where a remote warehouse is and how to reach it: what a writer (or a backfill's decode
    process, which gets a pickled copy) needs to open it. The secret is not in its repr."""

    url: str
    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None
    client_id: str | None = None
    connection_verify: str | None = None
    cache_dir: Path = Path(".amlwh-cache")  # the read cache (the key index reads through it)
    patience_s: float = 300.0  # how long a commit rides out transient failures

    def open(self):
        from consumer.storage.remote import open_remote

        return open_remote(self.url, connection_string=self.connection_string,
                           account_url=self.account_url, client_id=self.client_id,
                           cache_dir=self.cache_dir,
                           connection_verify=self.connection_verify,
                           retries=0)  # RemoteWriter.patiently retries, so patience_s holds

    def writer(self) -> RemoteWriter:
        """Uploads, deletions and key reads against the warehouse, with this patience."""
        return RemoteWriter(self.open(), self.patience_s)


def is_transient(exc: BaseException) -> bool:
    """A failure worth retrying: the request did not get through or the service was busy."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return True
    return isinstance(exc, HttpResponseError) and exc.status_code in TRANSIENT_STATUS


class RemoteWriter:
    """Uploads and stored-key reads against one remote warehouse, each retried on transient
    failures for up to `patience_s`. `sleep` and `clock` are injected for tests."""

    def __init__(self, remote, patience_s: float, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = mono_s) -> None:
        self.remote = remote
        self.patience_s = patience_s
        self._sleep = sleep
        self._clock = clock
        self._container_checked = False

    def close(self) -> None:
        self.remote.close()

    # -- retries -----------------------------------------------------------------
    def patiently(self, what: str, call: Callable[[], T], patience_s: float | None = None) -> T:
        """call(), retried while it fails transiently and patience lasts."""
        patience_s = self.patience_s if patience_s is None else patience_s
        started = self._clock()
        delay = FIRST_BACKOFF_S
        attempt = 0
        while True:
            attempt += 1
            try:
                return call()
            except Exception as exc:
                if not is_transient(exc):
                    raise self._terminal(what, exc) from None
                waited = self._clock() - started
                if waited + delay > patience_s:
                    raise WarehouseWriteError(
                        f"Blob Storage ({self.remote.where}) did not take {what} for {waited:.0f}s "
                        f"({attempt} attempts, last: {_short(exc)}). Nothing of this commit was "
                        "acknowledged and no checkpoint moved past it. Check the storage account's "
                        "health and the network path to it, then run again: events already "
                        "stored are skipped") from None
                log.warning("Blob Storage did not take %s (%s); attempt %d, retrying in %.1fs",
                            what, _short(exc), attempt, delay, extra={"file": what})
                self._sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, MAX_BACKOFF_S)

    def _terminal(self, what: str, exc: Exception) -> Exception:
        if isinstance(exc, (WarehouseWriteError, BlobGone)):
            return exc
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            return WarehouseWriteError(
                f"Blob Storage refused to write {what} in {self.remote.where} ({status}). The "
                "identity needs the Storage Blob Data Contributor role on the container, or "
                "AMLWH_WAREHOUSE__CONNECTION_STRING an account key or a SAS with create, write, "
                "read and list permissions")
        if status is None and type(exc).__name__ == "ClientAuthenticationError":  # no token at all
            return WarehouseWriteError(
                f"no Azure AD token for {self.remote.where}: {getattr(exc, 'message', exc)}. Run with a "
                "managed or workload identity ([identity] client_id), sign in (az login), or set "
                "AMLWH_WAREHOUSE__CONNECTION_STRING")
        if isinstance(exc, RemoteWarehouseError):
            return WarehouseWriteError(str(exc))
        if isinstance(exc, OSError):
            return exc  # the local staging folder: the warehouse's own explain() says it
        code = getattr(exc, "error_code", None) or type(exc).__name__
        return WarehouseWriteError(
            f"Blob Storage failed {what} in {self.remote.where}: {status or ''} {getattr(code, 'value', code)}. "
            "Nothing of this commit was acknowledged; run again (already stored events are skipped)")

    # -- the container -----------------------------------------------------------
    def ensure_container(self) -> None:
        """Create the warehouse's container unless it exists (once per writer)."""
        if self._container_checked:
            return
        self.patiently("the container", self._create_container)
        self._container_checked = True

    def _create_container(self) -> None:
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        try:
            self.remote.client.create_container()
            log.info("created %s", self.remote.where)
        except ResourceExistsError:
            pass
        except HttpResponseError as exc:
            # a container SAS (or a role scoped to the container) may not create containers:
            # listing it proves it exists, and the writer needs to list anyway
            if exc.status_code != 403:
                raise
            try:
                next(iter(self.remote.client.list_blobs(results_per_page=1).by_page()), None)
            except HttpResponseError:
                raise exc from None

    def probe(self, patience_s: float) -> None:
        """The preflight's check: the container exists (or is made), and a blob can be
        written there (and is deleted again when the identity may delete)."""
        from azure.core.exceptions import HttpResponseError

        self.patiently("the container", self._create_container, patience_s)
        self._container_checked = True
        blob = self.remote.client.get_blob_client(
            f"{self.remote.location.blob_prefix}_preflight/{uuid.uuid4().hex}")
        self.patiently("a probe blob", lambda: blob.upload_blob(b"amlwh preflight\n"), patience_s)
        try:
            blob.delete_blob()
        except HttpResponseError:  # a writer needs no delete permission; a leftover is harmless
            pass

    # -- uploads -----------------------------------------------------------------
    def upload(self, relative: str, local: Path, *, exact: bool = False) -> None:
        """Upload a local file as the blob at `relative` (under the prefix), whole or not at
        all, on condition that the name is free. `exact`: a blob found there counts as this
        upload's own (an earlier attempt whose answer was lost) only with the same bytes;
        otherwise a small file is compared by its bytes and a large one by its size."""
        from azure.core.exceptions import ResourceExistsError

        blob = self.remote.client.get_blob_client(self.remote.location.blob_prefix + relative)
        size = local.stat().st_size

        def put() -> None:
            try:
                with open(local, "rb") as fh:
                    stored = blob.upload_blob(fh, length=size, overwrite=False, max_concurrency=1)
                # a listing spells the ETag without the quotes its header has
                self._keep_in_cache(RemoteFile(relative, size, stored["etag"].strip('"')), local)
            except ResourceExistsError:
                if exact or size <= _COMPARE_BYTES_BELOW:
                    same = blob.download_blob().readall() == local.read_bytes()
                else:
                    same = blob.get_blob_properties().size == size
                if not same:
                    raise WarehouseWriteError(
                        f"{relative} already exists in {self.remote.where} with other content: "
                        "another writer (or compaction) used the same name. Nothing after it was "
                        "published; run again") from None

        self.patiently(relative, put)

    def _keep_in_cache(self, file: RemoteFile, local: Path) -> None:
        """A file just uploaded, into the read cache as the blob it now is: the compaction
        or query that runs next on this machine need not download it. Best effort."""
        entry = self.remote.cache.entry(file)
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            os.link(local, entry)
        except OSError:  # already there, another file system, no room: it is only a cache
            pass

    def delete(self, relative: str) -> None:
        """Delete the blob at `relative`; one already gone counts as deleted."""
        from azure.core.exceptions import ResourceNotFoundError

        blob = self.remote.client.get_blob_client(self.remote.location.blob_prefix + relative)

        def remove() -> None:
            try:
                blob.delete_blob()
            except ResourceNotFoundError:
                pass

        self.patiently(f"the deletion of {relative}", remove)

    # -- stored keys -------------------------------------------------------------
    def read_keys(self, folder: str) -> list[np.ndarray]:
        """The dedupe keys of every Parquet file under `folder` (relative, "/"-separated),
        as listed now: downloaded into the read cache once, then read from it."""
        self.ensure_container()  # the first thing a writer does: a missing container is made
        prefix = self.remote.location.blob_prefix + folder.rstrip("/") + "/"
        start = len(self.remote.location.blob_prefix)
        client = self.remote.client
        while True:
            listed = self.patiently(f"the listing of {folder}", lambda: [
                RemoteFile(b.name[start:], b.size, b.etag)
                for b in client.list_blobs(name_starts_with=prefix) if b.name.endswith(".parquet")])
            try:
                return [self._keys_of(file) for file in sorted(listed, key=lambda f: f.path)]
            except BlobGone:  # retired by a compaction since the listing: its merge is listed now
                continue

    def _keys_of(self, file: RemoteFile) -> np.ndarray:
        cache = self.remote.cache
        if not cache.holds(file):
            self.patiently(file.path, lambda: cache.store(file, self.remote.download_listed))
        return pq.read_table(cache.entry(file), columns=["dedupe_key"])["dedupe_key"].to_numpy()


class RemotePublication(Publication):
    """A commit's files staged under the local `root` and uploaded to the same paths relative
    to the remote warehouse's prefix, group by group (module docstring: why)."""

    def __init__(self, root: Path, writer: RemoteWriter) -> None:
        super().__init__(None)
        self._root = Path(root)
        self._writer = writer

    def publish(self) -> list[Path]:
        self._writer.ensure_container()
        for group in sorted({g for g, _, _ in self._files}):
            files = [(temp, final) for g, temp, final in self._files if g == group]
            with ThreadPoolExecutor(min(UPLOADERS, len(files))) as pool:
                list(pool.map(lambda tf: self._writer.upload(self.relative(tf[1]), tf[0]), files))
        self.discard()  # the staged copies: the blobs are the warehouse's files now
        return [final for _, _, final in self._files]

    def relative(self, final: Path) -> str:
        return final.relative_to(self._root).as_posix()


def stored_keys_reader(root: Path, writer: RemoteWriter) -> Callable[[str, int], list[np.ndarray]]:
    """KeyIndex's reader of a (table, day)'s stored keys, from the remote warehouse."""
    def read(name: str, day: int) -> list[np.ndarray]:
        return writer.read_keys(partition_dir(root, name, day).relative_to(root).as_posix())
    return read


def _short(exc: BaseException) -> str:
    """An SDK error in a few words, without its message (which may quote a signed URL)."""
    status = getattr(exc, "status_code", None)
    return f"{type(exc).__name__} {status}" if status else type(exc).__name__
