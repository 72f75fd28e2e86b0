"""Compaction of a warehouse in Blob Storage (maintenance/remote_compaction.py), against real
Azurite: the same merge and view state as the same compaction on local disk; a held lease
makes a round do nothing; a round that fails at any step of its push leaves the views
exact, and the next round finishes the work."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

from consumer.errors import WarehouseWriteError
from consumer.maintenance.compaction import compact
from consumer.maintenance.remote_compaction import LOCK_BLOB, compact_remote
from consumer.query.connection import connect
from consumer.storage.key_index import KeyIndex
from consumer.storage.remote_writes import RemoteTarget, RemoteWriter
from consumer.storage.warehouse import ParquetWarehouse
from devstack.synth import generate
from tests.support.cli import amlwh
from tests.support.warehouse import VIEWS
from transforms.decode import DecodeRules, decode_body
from transforms.records import Origin
from transforms.rows import TableRows

pytestmark = pytest.mark.integration

PREFIX = "wh"
INGESTED_US = 1_767_300_000_000_000


@pytest.fixture
def container(azurite, checkpoint_container):
    name = f"cw{checkpoint_container[-20:]}".lower()
    with ContainerClient.from_connection_string(azurite.connection_string, name) as client:
        yield client


def batches() -> list[list[bytes]]:
    """Three overlapping batches of one stream: several files per partition, with copies."""
    bodies = list(generate(50, seed=11, payload_bytes=200).bodies)
    third = len(bodies) // 3
    return [bodies[:2 * third], bodies[third:], bodies[:third] + bodies[-20:]]


def rows_of(bodies: list[bytes], n: int) -> TableRows:
    rows = TableRows()
    for line, body in enumerate(bodies, start=1):
        rows.add(decode_body(body, Origin("file", file=f"batch-{n}.ndjson", line=line), DecodeRules()),
                 INGESTED_US + n * 1_000_000)
    return rows


def fill(warehouse: ParquetWarehouse) -> None:
    """Each batch committed by a writer that has not seen the others (copies are stored)."""
    for n, bodies in enumerate(batches()):
        warehouse.keys = KeyIndex(warehouse.root / "_nothing", lambda name, day: [])
        warehouse.write(rows_of(bodies, n))
        warehouse.flush()


def target_for(azurite, container, tmp_path: Path) -> RemoteTarget:
    return RemoteTarget(f"abfs://{container.container_name}/{PREFIX}", azurite.connection_string,
                        cache_dir=tmp_path / "cache", patience_s=2.0)


def download(container: ContainerClient, into: Path) -> dict[str, int]:
    """The remote warehouse as local files; each file's size by name."""
    names = {}
    for blob in container.list_blobs(name_starts_with=PREFIX + "/"):
        name = blob.name[len(PREFIX) + 1:]
        names[name] = blob.size
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(container.download_blob(blob.name).readall())
    return names


def views(root: Path) -> dict[str, list]:
    con = connect(root)
    try:
        return {v: sorted(con.execute(f"SELECT * FROM {v}").fetchall(), key=repr) for v in VIEWS}
    finally:
        con.close()


def table_files(names) -> dict[str, int]:
    """Committed files per (table, date) folder."""
    counts: dict[str, int] = {}
    for name in names:
        if re.fullmatch(r"[a-z_]+/event_date=[\d-]+/[^/]+\.parquet", name):
            folder = name.rsplit("/", 1)[0]
            counts[folder] = counts.get(folder, 0) + 1
    return counts


def test_a_round_on_blob_merges_and_folds_as_the_same_round_on_disk(azurite, container, tmp_path):
    local = tmp_path / "local"
    fill(ParquetWarehouse(local, now_us=lambda: INGESTED_US))
    target = target_for(azurite, container, tmp_path)
    with ParquetWarehouse(tmp_path / "work", remote=target) as remote:
        fill(remote)
    before = download(container, tmp_path / "before")
    assert views(tmp_path / "before") == views(local)
    writer = target.writer()  # as `amlwh compact` makes it: another process, the same cache
    try:
        # what a writer uploaded is in this machine's read cache already: nothing to download
        fetched = writer.remote.read(
            lambda snap: (snap.fetch(p for p in snap.listed if p.endswith(".parquet")), snap)[1])
        assert fetched.downloaded == 0 and len(fetched.files_read) == len(before) > 20
        options = dict(now_s=lambda: 2e9, grace_s=0.0, compression="zstd", memory_limit="500MB")
        local_report = compact(local, **options)
        remote_report = compact_remote(writer, **options)
    finally:
        writer.close()

    assert not remote_report.busy
    assert [(m.table, m.day, m.rows_in, m.rows_out) for m in remote_report.merged] == \
        [(m.table, m.day, m.rows_in, m.rows_out) for m in local_report.merged] != []
    assert remote_report.fold.generation == local_report.fold.generation == 1
    after = download(container, tmp_path / "after")
    assert views(tmp_path / "after") == views(local) == views(tmp_path / "before")
    assert set(table_files(after).values()) == {1} and table_files(after).keys() == table_files(before).keys()
    assert "_state/manifest-000000000001.json" in after
    assert not any(n.startswith("_compaction/retired/") for n in after)  # grace 0: all deleted
    # the local code would write exactly these files from the same inputs
    local_names = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    shape = re.compile(r"part-\d{8}T\d{6}-c?[0-9a-f]{12}\.parquet")
    assert {shape.sub("part", n) for n in after if n != LOCK_BLOB} == \
        {shape.sub("part", n) for n in local_names if n != LOCK_BLOB}


def test_a_round_finds_the_lease_held_and_does_nothing(azurite, container, tmp_path):
    env = {"AMLWH_WAREHOUSE__PATH": f"abfs://{container.container_name}/{PREFIX}",
           "AMLWH_WAREHOUSE__CONNECTION_STRING": azurite.connection_string,
           "AMLWH_WAREHOUSE__CACHE_DIR": str(tmp_path / "cache"), "AMLWH_COMPACTION__GRACE_S": "0"}
    with ParquetWarehouse(tmp_path / "work", remote=target_for(azurite, container, tmp_path)) as remote:
        fill(remote)
    lock = container.get_blob_client(f"{PREFIX}/{LOCK_BLOB}")
    lock.upload_blob(b"", overwrite=True)
    lease = lock.acquire_lease(lease_duration=-1)
    names = set(download(container, tmp_path / "held"))
    proc = amlwh("compact", env=env)
    assert "another compaction of abfs://" in proc.stderr and "nothing done" in proc.stderr
    assert set(download(container, tmp_path / "still")) == names
    lease.release()
    proc = amlwh("compact", env=env)
    assert re.search(r"compacted [1-9]\d* partition", proc.stdout), proc.stdout + proc.stderr
    assert set(table_files(download(container, tmp_path / "done")).values()) == {1}
    proc = amlwh("rebuild-state", env=env)
    assert "generation 2" in proc.stdout, proc.stdout + proc.stderr


class FailingAt(RemoteWriter):
    """Fails its `at`-th upload or deletion (counting from 0); counts them all."""

    def __init__(self, remote, at: int) -> None:
        super().__init__(remote, 2.0)
        self.at = at
        self.calls: list[str] = []

    def _step(self, what: str) -> None:
        self.calls.append(what)
        if len(self.calls) - 1 == self.at:
            raise WarehouseWriteError(f"injected failure at {what}")

    def upload(self, relative, local, *, exact=False):
        self._step(f"upload {relative}")
        super().upload(relative, local, exact=exact)

    def delete(self, relative):
        self._step(f"delete {relative}")
        super().delete(relative)


@pytest.mark.parametrize("waits", [False, True], ids=["rounds-a-grace-apart", "a-round-that-waits"])
def test_a_round_failing_at_any_step_of_its_push_leaves_exact_views(azurite, container, tmp_path, waits):
    """Two rounds a grace apart (merge, fold, retire; then delete), or one that waits out the
    grace and deletes what it retired (as the worker's rounds do), failing at one step."""
    target = target_for(azurite, container, tmp_path)
    local = tmp_path / "local"
    fill(ParquetWarehouse(local, now_us=lambda: INGESTED_US))
    expected = views(local)
    options = dict(grace_s=0.0 if waits else 100.0, compression="zstd", memory_limit="500MB")

    def rounds(writer: RemoteWriter, start_s: float) -> None:
        compact_remote(writer, now_s=lambda: start_s, wait=(lambda s: None) if waits else None, **options)
        if not waits:
            compact_remote(writer, now_s=lambda: start_s + 150, **options)  # the grace has passed

    def scenario(at: int, run: int) -> list[str]:
        for blob in container.list_blobs(name_starts_with=PREFIX + "/") if container.exists() else ():
            container.delete_blob(blob.name)
        with ParquetWarehouse(tmp_path / f"work{run}", remote=target) as remote:
            fill(remote)
        writer = FailingAt(target.open(), at)
        try:
            rounds(writer, 2e9)
        except WarehouseWriteError:
            pass
        finally:
            writer.close()
        download(container, tmp_path / f"broken{run}")
        assert views(tmp_path / f"broken{run}") == expected, f"after a failure at {writer.calls[at:at + 1]}"
        writer_again = RemoteWriter(target.open(), 2.0)
        try:
            rounds(writer_again, 2e9 + 1000)
        finally:
            writer_again.close()
        fixed = download(container, tmp_path / f"fixed{run}")
        assert views(tmp_path / f"fixed{run}") == expected
        assert set(table_files(fixed).values()) == {1}, "the next rounds merge what is left"
        assert not [n for n in fixed if n.startswith("_compaction/retired/")], "and delete what they retired"
        return writer.calls

    steps = scenario(10**6, 0)  # no failure: the steps two rounds take
    kinds = [s.split()[0] + (" manifest" if "manifest-" in s else " record" if "/retired/" in s else "") for s in steps]
    # a round that waits deletes its records before its push: they never reach the container
    assert ({"upload", "upload manifest", "delete"} | ({"upload record", "delete record"} if not waits else set())
            ) == set(kinds), kinds
    # the first step of each kind: every boundary between the push's phases
    chosen = sorted({kinds.index(k) for k in set(kinds)})
    for run, at in enumerate(chosen, start=1):
        scenario(at, run)


def test_the_workers_background_round_compacts_a_blob_warehouse(azurite, container, tmp_path, monkeypatch):
    """The worker's child `amlwh compact` (run with no config file) gets the remote
    warehouse's credentials and folders from the worker's settings."""
    import asyncio

    from consumer.config import load_settings
    from consumer.live.compaction_timer import BackgroundCompaction
    from consumer.live.worker import remote_env

    with ParquetWarehouse(tmp_path / "work", remote=target_for(azurite, container, tmp_path)) as remote:
        fill(remote)
    config = tmp_path / "config.toml"  # the credential in the file, not in the worker's environment
    config.write_text(f'[warehouse]\npath = "abfs://{container.container_name}/{PREFIX}"\n'
                      f'connection_string = "{azurite.connection_string}"\n'
                      f'cache_dir = "{tmp_path / "cache"}"\nwork_dir = "{tmp_path / "scratch"}"\n'
                      '[compaction]\ngrace_s = 0\nmin_files = 2\n')
    for name in [n for n in os.environ if n.startswith("AMLWH_")]:
        monkeypatch.delenv(name)
    settings = load_settings(config, required=True)
    env = remote_env(settings)
    assert env["AMLWH_WAREHOUSE__CONNECTION_STRING"] == azurite.connection_string
    rounds = []
    background = BackgroundCompaction(settings.warehouse.path, "zstd", settings.compaction, lambda: 1,
                                      lambda seconds, ok: rounds.append(ok), env)
    assert asyncio.run(background.run_once()) == 0
    assert rounds == [True]
    names = download(container, tmp_path / "after")
    assert set(table_files(names).values()) == {1} and "_state/manifest-000000000001.json" in names
    scratch = tmp_path / "scratch"  # the child stages nothing there: its snapshot is in the cache
    assert not scratch.exists() or not any(scratch.iterdir())
