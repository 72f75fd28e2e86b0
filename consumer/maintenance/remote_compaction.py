"""Compaction of a warehouse in Blob Storage: the local compaction run over a snapshot of it,
and what it changed pushed back in a safe order.

One round:
1. **The lock** is a lease on the blob `_compaction/lock` (60 s, renewed every 15 s while
   the round runs). A round that finds it leased does nothing, as a local one that finds
   the lock file held. A compactor that dies leaves no lock: its lease runs out.
2. **A snapshot.** The warehouse is listed once; every table file, the view state
   (`_state/`) and the retirement records are fetched into the read cache (once per file
   and machine) and hard-linked into a folder of the round's own, at their paths.
3. **The local compaction** (maintenance/compaction.py) runs on that folder: it folds new
   run events into the view state, merges partitions, writes retirement records, and
   deletes what retired records allow, all locally.
4. **The push**, from the difference between the folder before and after:
   - new table and state files, uploaded under their (unique) names;
   - then the new manifest, created on condition that its name is free: a second
     compactor that somehow made the same generation fails here, before it retires
     anything (and the lease is checked once more first);
   - then the new retirement records;
   - then the deletions: files first, their records last, so a crash between leaves a
     record whose next round finishes it.
   A round that waits out the grace and deletes what it retired (the worker's background
   rounds, `--wait-for-grace`) pushes its new files and manifest before it waits, and its
   deletions after: the local round waits from when its merged files appeared in the
   snapshot, but here they appear at the push.

Why readers and writers stay right: this is the local order (storage/durable.py,
compaction.py) with uploads for renames. A merged file is visible before its inputs are
retired, inputs are deleted only a grace after their merged file appeared, a manifest appears after its
state files. Files committed by live workers after the listing are not in the snapshot, so
they are neither merged nor folded: the next round takes them. A crash anywhere leaves
extra copies the views hide, or a state generation no manifest names (harmless; not swept
remotely yet), never a missing event.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from consumer.errors import WarehouseWriteError
from consumer.maintenance.compaction import CompactionReport, compact
from consumer.maintenance.retirement import RETIRED_DIR
from consumer.query.state_views import is_manifest
from consumer.storage.blob_cache import Snapshot
from consumer.storage.layout import COMPACTION_DIR, STATE_DIR
from consumer.storage.remote_writes import UPLOADERS, RemoteWriter
from consumer.storage.schema import table_ddl

log = logging.getLogger("amlwh.compaction")

LOCK_BLOB = f"{COMPACTION_DIR}/lock"
LEASE_S = 60
RENEW_EVERY_S = 15.0
_RECORDS = f"{COMPACTION_DIR}/{RETIRED_DIR}/"


def compact_remote(writer: RemoteWriter, **options) -> CompactionReport:
    """compact() (same options) on the remote warehouse `writer` writes to."""
    writer.ensure_container()
    with compaction_lease(writer) as lease:
        if lease is None:
            return CompactionReport(busy=True)

        def work(snapshot: Snapshot) -> CompactionReport:
            snapshot.fetch(path for path in snapshot.listed if mirrored(path))
            pushed = local_files(snapshot.root)
            wait = options.get("wait")

            def publish_then_wait(grace_s: float) -> None:
                """A round that waits out the grace (the worker's) deletes what it retired
                at its end. Locally the grace runs from when its merged files appeared; here
                they appear at the push: push them (and the manifest) first, then wait, so
                that their inputs still go a grace after them. Its records are not pushed:
                they are deleted at the end of this round, and a round killed meanwhile
                leaves inputs beside their merged files, which the next round merges again."""
                nonlocal pushed
                now = {p for p in local_files(snapshot.root) if p in pushed or not p.startswith(_RECORDS)}
                push(writer, snapshot.root, pushed, now, lease)
                pushed = now
                wait(grace_s)

            report = compact(snapshot.root, **{**options, "wait": publish_then_wait if wait else None})
            push(writer, snapshot.root, pushed, local_files(snapshot.root), lease)
            return report

        return writer.remote.read(work)


def mirrored(path: str) -> bool:
    """Whether a listed blob takes part in a compaction: table files, the view state, records."""
    parts = path.split("/")
    if parts[0] in table_ddl():
        return len(parts) == 3 and parts[2].endswith(".parquet")
    if parts[0] == STATE_DIR:
        return True
    return path.startswith(_RECORDS) and path.endswith(".json")


def local_files(root: Path) -> set[str]:
    """Every visible file under root, relative ("/"-separated): what the round compares.
    The local lock and DuckDB's spill folder are the round's own; hidden names are temporary."""
    found = set()
    for folder, dirs, files in os.walk(root):
        relative = Path(folder).relative_to(root).as_posix()
        if relative == COMPACTION_DIR:
            dirs[:] = [d for d in dirs if d == RETIRED_DIR]
        for name in files:
            if not name.startswith("."):
                found.add(name if relative == "." else f"{relative}/{name}")
    found.discard(LOCK_BLOB)
    return found


def push(writer: RemoteWriter, root: Path, before: set[str], after: set[str], lease) -> None:
    """Upload what the local round made and delete what it deleted, in the safe order."""
    created, deleted = sorted(after - before), sorted(before - after)
    manifests = [p for p in created if is_manifest(p)]
    records = [p for p in created if p.startswith(_RECORDS)]
    data = [p for p in created if p not in manifests and p not in records]
    _each(lambda p: writer.upload(p, root / p), data)
    if manifests:
        lease.check()
        for path in manifests:
            writer.upload(path, root / path, exact=True)
    _each(lambda p: writer.upload(p, root / p), records)
    _each(writer.delete, [p for p in deleted if not p.startswith(_RECORDS)])
    _each(writer.delete, [p for p in deleted if p.startswith(_RECORDS)])
    if created or deleted:
        log.info("compaction of %s: %d file(s) uploaded, %d deleted", writer.remote.where,
                 len(created), len(deleted))


def _each(call: Callable[[str], None], paths: list[str]) -> None:
    if not paths:
        return
    with ThreadPoolExecutor(min(UPLOADERS, len(paths))) as pool:
        list(pool.map(call, paths))


class Lease:
    """A held compaction lease, renewed in the background until released."""

    def __init__(self, client, writer: RemoteWriter) -> None:
        self._client = client
        self._writer = writer
        self._stop = threading.Event()
        self.lost: Exception | None = None
        self._thread = threading.Thread(target=self._renew_forever, name="amlwh-lease", daemon=True)
        self._thread.start()

    def _renew_forever(self) -> None:
        while not self._stop.wait(RENEW_EVERY_S):
            try:
                self._client.renew()
            except Exception as exc:  # the push checks it before it publishes anything
                self.lost = exc

    def check(self) -> None:
        """Raise unless the lease is still this round's (renewed now)."""
        try:
            self._client.renew()
        except Exception as exc:
            self.lost = exc
        if self.lost is not None:
            raise WarehouseWriteError(
                f"the compaction lease on {LOCK_BLOB} in {self._writer.remote.where} was lost "
                f"({type(self.lost).__name__}); nothing was published. Another compaction may run "
                "now; the next round takes over")

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self._client.release()
        except Exception:  # it runs out by itself
            pass


@contextmanager
def compaction_lease(writer: RemoteWriter) -> Iterator[Lease | None]:
    """The warehouse's compaction lease while inside, or None when another holds it."""
    from azure.core.exceptions import HttpResponseError, ResourceExistsError

    remote = writer.remote
    blob = remote.client.get_blob_client(remote.location.blob_prefix + LOCK_BLOB)

    def make() -> None:
        try:
            blob.upload_blob(b"", overwrite=False)
        except ResourceExistsError:
            pass
        except HttpResponseError as exc:
            if exc.status_code != 412:  # leased by somebody right now: it exists
                raise

    def acquire():
        try:
            return blob.acquire_lease(lease_duration=LEASE_S)
        except HttpResponseError as exc:
            if exc.status_code == 409:  # leased: another compaction is running
                return None
            raise

    writer.patiently("the compaction lock", make)
    client = writer.patiently("the compaction lock", acquire)
    if client is None:
        yield None
        return
    lease = Lease(client, writer)
    try:
        yield lease
    finally:
        lease.release()
