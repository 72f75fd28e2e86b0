"""A warehouse in Blob Storage (Azurite) as live-worker tests use it: the environment of a
worker with a machine of its own, reading the blobs back, and comparing warehouses."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

from azure.storage.blob import ContainerClient

from consumer.query.connection import connect
from consumer.storage.schema import table_ddl
from devstack.processes import register
from tests.support.warehouse import VIEWS
from tests.support.worker import worker_env

PREFIX = "warehouses/prod"
# the only names a writer may leave under the prefix: whole table files under their final
# name (layout.py, stage_files), and the preflight's probe blobs should one not be deleted
TABLE_FILE = re.compile("(" + "|".join(map(re.escape, table_ddl())) + ")"
                        r"/event_date=\d{4}-\d{2}-\d{2}/part-\d{8}T\d{6}-[0-9a-f]{12}\.parquet")
PROBE = re.compile(r"_preflight/[0-9a-f]{32}")
STORED = tuple(f"store.{name}" for name in table_ddl())  # rows as stored, copies included
WALL_CLOCK = ("ingested_at",)  # the one column that differs between two runs of the same events


class BlobWarehouse:
    """The warehouse at abfs://<container>/PREFIX, read with the blob SDK."""

    def __init__(self, connection_string: str, container: str, prefix: str = PREFIX):
        self.client = ContainerClient.from_connection_string(connection_string, container)
        self.prefix = prefix.rstrip("/") + "/"
        self.url = f"abfs://{container}/{prefix}"
        self._mirrored: set[str] = set()

    def close(self) -> None:
        self.client.close()

    def names(self) -> list[str]:
        """Every blob under the prefix, relative to it (none when the container is not made yet)."""
        if not self.client.exists():
            return []
        return sorted(b.name[len(self.prefix):] for b in self.client.list_blobs(name_starts_with=self.prefix))

    def _get(self, name: str, dest: Path) -> None:
        path = dest / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            self.client.download_blob(self.prefix + name).readinto(fh)

    def download(self, dest: Path) -> list[str]:
        """Every blob under the prefix into the new folder `dest`; returns their names."""
        dest.mkdir(parents=True)
        names = self.names()
        for name in names:
            self._get(name, dest)
        return names

    def mirror(self, dest: Path) -> Path:
        """`dest` with the table files it lacks: for polling while workers run (files are
        immutable, and nothing deletes them as long as no compaction runs: a worker compacts
        at most every [compaction] interval_s, 300 s by default)."""
        for name in self.names():
            if name not in self._mirrored and TABLE_FILE.fullmatch(name):
                self._get(name, dest)
                self._mirrored.add(name)
        return dest


def unexpected_blobs(names: list[str]) -> list[str]:
    """Names under the prefix that are neither a table file nor a preflight probe."""
    return [n for n in names if not (TABLE_FILE.fullmatch(n) or PROBE.fullmatch(n))]


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
