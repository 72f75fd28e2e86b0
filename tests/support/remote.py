"""A warehouse in Blob Storage (Azurite) as live-worker tests use it: the environment of a
worker with a machine of its own, reading the blobs back (an exact mirror of the listing,
also while compactions replace files), watching the listing, and comparing warehouses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from consumer.query.connection import connect
from consumer.query.state_views import STATE_TABLES
from consumer.storage.schema import table_ddl
from devstack.processes import register
from tests.support.warehouse import VIEWS
from tests.support.worker import worker_env

PREFIX = "warehouses/prod"
_TABLES = "(" + "|".join(map(re.escape, table_ddl())) + ")"
_DAY = r"event_date=\d{4}-\d{2}-\d{2}"
# the only names a writer may leave under the prefix: whole table files under their final
# name (layout.py, stage_files), and the preflight's probe blobs should one not be deleted
TABLE_FILE = re.compile(_TABLES + "/" + _DAY + r"/part-\d{8}T\d{6}-[0-9a-f]{12}\.parquet")
PROBE = re.compile(r"_preflight/[0-9a-f]{32}")
# and what a compaction leaves (maintenance/compaction.py, state.py, retirement.py,
# remote_compaction.py): merged files, the view state's manifests and generations, the
# lease blob, retirement records. Never a temporary or partial name.
MERGED_FILE = re.compile(_TABLES + "/" + _DAY + r"/part-\d{8}T\d{6}-c[0-9a-f]{12}\.parquet")
MANIFEST = re.compile(r"_state/manifest-(\d{12})\.json")
STATE_FILE = re.compile(r"_state/\d{12}/(" + "|".join(STATE_TABLES) + r")\.parquet")
LOCK = re.compile(r"_compaction/lock")
RECORD = re.compile(r"_compaction/retired/\d{20}-[0-9a-f]{12}\.json")
COMPACTION_NAMES = (MERGED_FILE, MANIFEST, STATE_FILE, LOCK, RECORD)
STORED = tuple(f"store.{name}" for name in table_ddl())  # rows as stored, copies included
WALL_CLOCK = ("ingested_at",)  # the one column that differs between two runs of the same events
_TEMP = ".mirror-"  # a download in progress, renamed in once whole (no blob name starts with a dot)
_LISTINGS = 20  # a mirror lists again when a listed blob was deleted before its download


class BlobWarehouse:
    """The warehouse at abfs://<container>/PREFIX, read with the blob SDK."""

    def __init__(self, connection_string: str, container: str, prefix: str = PREFIX):
        self.client = ContainerClient.from_connection_string(connection_string, container)
        self.connection_string = connection_string
        self.container = container
        self.prefix = prefix.rstrip("/") + "/"
        self.url = f"abfs://{container}/{prefix}"
        self.gone = 0  # blobs a mirror found deleted between its listing and their download

    def close(self) -> None:
        self.client.close()

    def listing(self) -> dict[str, str]:
        """Every blob under the prefix, relative to it, with its ETag (none when the
        container is not made yet)."""
        if not self.client.exists():
            return {}
        return {b.name[len(self.prefix):]: b.etag for b in self.client.list_blobs(name_starts_with=self.prefix)}

    def names(self) -> list[str]:
        """Every blob under the prefix, relative to it (none when the container is not made yet)."""
        return sorted(self.listing())

    def cache_views(self, cache_dir: Path) -> Path:
        """Where a process with `cache_dir` makes the folder of one read of this warehouse (a
        query's, or a compaction round's snapshot: storage/blob_cache.py), as storage/remote.py
        names the cache of a warehouse."""
        return (Path(cache_dir) / self.client.account_name / self.container
                / quote("/" + self.prefix.rstrip("/"), safe="") / "views")

    def _get(self, name: str, etag: str, dest: Path) -> None:
        """The listed version of a blob to dest/name: whole under a temporary name, then renamed in."""
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f"{_TEMP}{uuid.uuid4().hex[:8]}-{path.name}")
        try:
            with open(temp, "wb") as fh:
                self.client.download_blob(self.prefix + name, etag=etag,
                                          match_condition=MatchConditions.IfNotModified).readinto(fh)
            os.replace(temp, path)
        except ResourceModifiedError:
            # Azurite answers a conditional read of a deleted blob with 412, as for a changed one
            if not self.client.get_blob_client(self.prefix + name).exists():
                raise ResourceNotFoundError(f"{name} was deleted since the listing") from None
            raise AssertionError(f"{name} was rewritten in place: warehouse files are immutable") from None
        finally:
            temp.unlink(missing_ok=True)

    def mirror(self, dest: Path) -> Path:
        """`dest` made equal to the listing now: the blobs it lacks downloaded, its files whose
        blob is gone (a compaction's retired inputs, an old view state) deleted. Files are
        immutable, so a name held both places needs no new download. A blob deleted between
        the listing and its download (its grace ran out) makes it list again, as a query does:
        the folder then shows one listing of the warehouse, whole."""
        self._sync(dest)
        return dest

    def download(self, dest: Path) -> list[str]:
        """Every blob under the prefix into the new folder `dest`; returns their names."""
        dest.mkdir(parents=True)
        return self._sync(dest)

    def _sync(self, dest: Path) -> list[str]:
        for _ in range(_LISTINGS):
            listed = self.listing()
            held = _files(dest)
            try:
                for name in sorted(set(listed) - held):
                    self._get(name, listed[name], dest)
            except ResourceNotFoundError:
                self.gone += 1
                continue
            for name in held - set(listed):
                (dest / name).unlink()
            return sorted(listed)
        raise AssertionError(f"blobs deleted before their download in {_LISTINGS} listings in a row")


def _files(root: Path) -> set[str]:
    """The files under root, relative ("/"-separated), without temporary downloads."""
    found = set()
    for folder, _, files in os.walk(root):
        relative = Path(folder).relative_to(root).as_posix()
        found |= {name if relative == "." else f"{relative}/{name}" for name in files if not name.startswith(_TEMP)}
    return found


@dataclass
class Seen:
    """When a watch saw a blob: it appeared after `absent_before` and was listed by `listed_by`;
    it was deleted after `last_listed` and before `gone_by` (None: still listed at the end).
    Times are time.monotonic(); each listing counts from when it was asked for to its answer."""

    absent_before: float | None  # None: listed by the watch's first listing
    listed_by: float
    last_listed: float
    gone_by: float | None = None


class Watch(threading.Thread):
    """Lists the warehouse every `period_s` (and the entries of `folders`) until finished:
    when each blob appeared and went (`blobs`), and every entry each folder ever held."""

    def __init__(self, warehouse: BlobWarehouse, folders: dict[str, Path] | None = None, period_s: float = 0.1):
        super().__init__(daemon=True)
        # a client of its own: the test's thread reads with the warehouse's meanwhile
        self.warehouse = BlobWarehouse(warehouse.connection_string, warehouse.container, warehouse.prefix)
        self.folders = dict(folders or {})
        self.period_s = period_s
        self.blobs: dict[str, Seen] = {}
        self.entries: dict[str, set[str]] = {key: set() for key in self.folders}
        self.listings = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        previous: float | None = None  # when the previous listing was asked for
        try:
            while not self._halt.is_set():
                for key, folder in self.folders.items():
                    try:
                        self.entries[key] |= set(os.listdir(folder))
                    except FileNotFoundError:
                        pass
                asked = time.monotonic()
                names = set(self.warehouse.listing())
                answered = time.monotonic()
                for name in names:
                    seen = self.blobs.get(name)
                    if seen is None or seen.gone_by is not None:  # new (or a name written again)
                        self.blobs[name] = Seen(previous, answered, asked)
                    else:
                        seen.last_listed = asked
                for name, seen in self.blobs.items():
                    if seen.gone_by is None and name not in names:
                        seen.gone_by = answered
                previous = asked
                self.listings += 1
                self._halt.wait(self.period_s)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self) -> None:
        self._halt.set()
        self.join(30)
        assert not self.is_alive(), "the listing watch did not stop"
        self.warehouse.close()
        assert self.error is None, f"the listing watch failed: {self.error!r}"


def unexpected_blobs(names: list[str], compaction: bool = True) -> list[str]:
    """Names under the prefix that are neither a table file nor a preflight probe, nor (when
    `compaction`) what a compaction legitimately leaves."""
    allowed = (TABLE_FILE, PROBE) + (COMPACTION_NAMES if compaction else ())
    return [n for n in names if not any(p.fullmatch(n) for p in allowed)]


def new_container() -> str:
    """A container name no test used: the first worker makes the container."""
    return f"wh-{uuid.uuid4().hex[:16]}"


def machine(folder: Path) -> Path:
    """A worker's own folder (its cwd, work_dir and cache_dir live in it), as on a machine of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def remote_worker_env(hub_cs: str, checkpoint_cs: str, checkpoint_container: str, warehouse: BlobWarehouse,
                      storage_cs: str, folder: Path, **extra: str) -> dict:
    """A worker writing to `warehouse`, with a work folder and a read cache under `folder` only."""
    return worker_env(hub_cs, checkpoint_cs, checkpoint_container, warehouse.url,  # type: ignore[arg-type]
                      AMLWH_WAREHOUSE__CONNECTION_STRING=storage_cs,
                      AMLWH_WAREHOUSE__WORK_DIR=str(folder / "work"),
                      AMLWH_WAREHOUSE__CACHE_DIR=str(folder / "cache"), **extra)


def start_worker_in(env: dict, log: Path, cwd: Path) -> subprocess.Popen:
    """tests.support.worker.start_worker, run from `cwd` (no config.toml there: the
    environment is the whole configuration)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "consumer", "run"], env=env, cwd=cwd,
                                stdout=out, stderr=subprocess.STDOUT)
    proc.log_path = Path(log)
    proc.record = register("worker", proc, ["-m consumer run"], group=False)
    return proc


def comparable_rows(root: Path, relations: tuple[str, ...] = VIEWS + STORED) -> dict[str, list]:
    """Each view's (or stored table's) rows, sorted, without the wall-clock columns: equal for
    two warehouses that stored the same events from the same messages."""
    con = connect(root)
    try:
        out = {}
        for name in relations:
            columns = [d[0] for d in con.execute(f"SELECT * FROM {name} LIMIT 0").description]
            dropped = [c for c in WALL_CLOCK if c in columns]
            select = f"* EXCLUDE ({', '.join(dropped)})" if dropped else "*"
            out[name] = sorted(con.execute(f"SELECT {select} FROM {name}").fetchall(), key=repr)
        return out
    finally:
        con.close()
