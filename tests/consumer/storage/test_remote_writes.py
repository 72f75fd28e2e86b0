"""Writing a warehouse in Blob Storage (storage/remote_writes.py), against real Azurite: a
backfill gives the views of the same backfill on local disk, in one process or several; a
second one stores nothing again; stock readers (pyarrow.dataset, polars) read the blobs; a
commit whose raw_events upload fails is retried without losing or doubling an event; errors
speak to the operator. The retry policy itself is tested without a network."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError
from azure.storage.blob import ContainerClient

from consumer.errors import WarehouseWriteError
from consumer.storage.remote_writes import RemoteTarget, RemoteWriter
from consumer.storage.schema import table_ddl
from consumer.storage.warehouse import ParquetWarehouse
from devstack.azurite import ACCOUNT, ACCOUNT_KEY
from devstack.synth import generate
from tests.support.cli import amlwh
from tests.support.events import corpus_files
from consumer.query.connection import connect
from tests.support.warehouse import VIEWS, view_rows
from transforms.decode import DecodeRules, decode_body
from transforms.records import Origin
from transforms.rows import TableRows

# what a backfill leaves: its files, a compaction's merged ones, the view state and the lease blob
BLOB_NAME = re.compile(r"(?P<table>[a-z_]+)/event_date=\d{4}-\d{2}-\d{2}/part-\d{8}T\d{6}-c?[0-9a-f]{12}\.parquet"
                       r"|_state/(\d{12}/[a-z_]+\.parquet|manifest-\d{12}\.json)|_compaction/(lock|retired/\d{20}-[0-9a-f]{12}\.json)")


@pytest.fixture
def container(azurite, checkpoint_container):
    """A container name no test used yet; not created: the writer makes it."""
    name = f"wh{checkpoint_container[-20:]}".lower()
    with ContainerClient.from_connection_string(azurite.connection_string, name) as client:
        yield client


def bodies_file(tmp_path: Path) -> tuple[Path, int]:
    """An NDJSON input: generated runs (with redeliveries), the corpus, and bad lines."""
    stream = generate(120, seed=7, payload_bytes=300)
    lines = list(stream.bodies) + list(stream.bodies[:40])  # redelivered copies
    lines += [p.read_bytes().replace(b"\n", b" ") for p in corpus_files()]
    lines += [b"{broken", b'{"eventType": 3}']
    path = tmp_path / "events.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, len(lines)


def env_for(url: str, azurite, tmp_path: Path, name: str) -> dict[str, str]:
    return {"AMLWH_WAREHOUSE__PATH": url, "AMLWH_WAREHOUSE__CONNECTION_STRING": azurite.connection_string,
            "AMLWH_WAREHOUSE__CACHE_DIR": str(tmp_path / f"cache-{name}"),
            "AMLWH_WAREHOUSE__WORK_DIR": str(tmp_path / f"work-{name}")}


def views_but_ingest_time(root: Path) -> dict[str, list]:
    """Every view's rows, sorted, without when a row was stored (two runs differ only there)."""
    con = connect(root)
    try:
        return {v: sorted(con.execute(f"SELECT COLUMNS(lambda c: c != 'ingested_at') FROM {v}").fetchall(), key=repr)
                for v in VIEWS}
    finally:
        con.close()


def download(container: ContainerClient, prefix: str, into: Path) -> list[str]:
    """Every blob under prefix into a local folder (the remote warehouse as files); the names."""
    names = []
    for blob in container.list_blobs(name_starts_with=prefix + "/"):
        name = blob.name[len(prefix) + 1:]
        names.append(name)
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(container.download_blob(blob.name).readall())
    return sorted(names)


def backfill(path: Path, env: dict[str, str], workers: int) -> dict[str, int]:
    out = amlwh("backfill", "files", str(path), "--workers", str(workers), env=env).stdout
    return {m["what"]: int(m["n"].replace(",", "")) for m in re.finditer(r"  (?P<what>[a-z -]+):\s+(?P<n>[\d,]+)\n", out)}


@pytest.mark.integration
@pytest.mark.parametrize("workers", [1, 2])
def test_backfill_to_blob_gives_the_local_views_and_a_second_run_stores_nothing(
        workers, azurite, container, tmp_path):
    path, _ = bodies_file(tmp_path)
    local = tmp_path / "local"
    local_counts = backfill(path, {"AMLWH_WAREHOUSE__PATH": str(local)}, workers)
    url = f"abfs://{container.container_name}/teams/ml"
    env = env_for(url, azurite, tmp_path, "a")
    remote_counts = backfill(path, env, workers)
    assert remote_counts == local_counts and remote_counts["events written"] > 300

    names = download(container, "teams/ml", tmp_path / "mirror")
    assert names and all(BLOB_NAME.fullmatch(n) for n in names), names  # no temporary or stray blob
    assert {BLOB_NAME.fullmatch(n)["table"] for n in names} - {None} <= set(table_ddl())
    assert views_but_ingest_time(tmp_path / "mirror") == views_but_ingest_time(local)
    assert not any((tmp_path / "work-a").iterdir())  # the process's work folder went with it

    # a second writer (another process, empty cache) reads the stored keys from the blobs
    again = backfill(path, env_for(url, azurite, tmp_path, "b"), workers)
    assert again["events written"] == 0
    assert again["duplicates skipped"] == remote_counts["events written"] + remote_counts["duplicates skipped"]
    assert download(container, "teams/ml", tmp_path / "mirror2") == names

    # and `amlwh query` on the URL answers as the local warehouse
    sql = "select run_id, status from runs order by run_id"
    remote = amlwh("query", sql, "--format", "json", env=env).stdout
    assert json.loads(remote) == json.loads(
        amlwh("query", sql, "--format", "json", env={"AMLWH_WAREHOUSE__PATH": str(local)}).stdout)
    assert len(json.loads(remote)) >= 120


@pytest.mark.integration
def test_stock_readers_read_the_blobs_with_the_local_row_counts(azurite, container, tmp_path):
    import polars as pl
    from pyarrow.fs import AzureFileSystem

    path, _ = bodies_file(tmp_path)
    local = tmp_path / "local"
    backfill(path, {"AMLWH_WAREHOUSE__PATH": str(local)}, 1)
    backfill(path, env_for(f"abfs://{container.container_name}/wh", azurite, tmp_path, "a"), 1)
    authority = azurite.blob_endpoint.split("://")[1].removesuffix(f"/{ACCOUNT}")
    fs = AzureFileSystem(account_name=ACCOUNT, account_key=ACCOUNT_KEY, blob_storage_authority=authority,
                         blob_storage_scheme="http", dfs_storage_authority=authority, dfs_storage_scheme="http")
    options = {"account_name": ACCOUNT, "account_key": ACCOUNT_KEY, "endpoint": azurite.blob_endpoint,
               "allow_http": "true"}
    checked = 0
    for table in ("raw_events", "run_events", "dead_letters"):
        expected = ds.dataset(local / table, format="parquet", partitioning="hive").count_rows()
        remote = ds.dataset(f"{container.container_name}/wh/{table}", filesystem=fs, format="parquet",
                            partitioning="hive")
        assert remote.count_rows() == expected > 0, table
        assert "event_date" in remote.schema.names
        frame = pl.scan_parquet(f"az://{container.container_name}/wh/{table}/**/*.parquet",
                                storage_options=options, hive_partitioning=True).select(pl.len()).collect()
        assert frame.item() == expected, table
        checked += 1
    assert checked == 3


def test_retries_transient_failures_until_patience_runs_out():
    clock = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    class Remote:
        where = "container c of account a"

    writer = RemoteWriter(Remote(), patience_s=20.0, sleep=sleep, clock=lambda: clock[0])
    failures = [ServiceRequestError("refused"), _status(503), _status(429)]

    def flaky():
        if failures:
            raise failures.pop(0)
        return "done"

    assert writer.patiently("part-1.parquet", flaky) == "done"
    assert len(slept) == 3 and all(0 < s <= 2.0 for s in slept)  # backoff 0.5, 1, 2 with jitter
    assert slept[2] > slept[0] * 0.9  # it grows

    calls = []

    def down():
        calls.append(clock[0])
        raise ServiceRequestError("Connection refused")

    with pytest.raises(WarehouseWriteError) as err:
        writer.patiently("raw_events/event_date=2025-01-01/part-2.parquet", down)
    message = str(err.value)
    assert "did not take raw_events/event_date=2025-01-01/part-2.parquet" in message
    assert "Nothing of this commit was acknowledged" in message and "run again" in message
    assert clock[0] - calls[0] <= 20.0 and len(calls) >= 4

    refused = []

    def forbidden():
        refused.append(1)
        raise _status(403)

    with pytest.raises(WarehouseWriteError, match="Storage Blob Data Contributor"):
        writer.patiently("part-3.parquet", forbidden)
    assert refused == [1]  # a refusal is not retried


def _status(code: int) -> HttpResponseError:
    exc = HttpResponseError(message=f"status {code}")
    exc.status_code = code
    return exc


class FailingRawUploads(RemoteWriter):
    """Fails every raw_events upload while `failing`: a commit broken between its groups."""

    failing = True

    def upload(self, relative: str, local: Path) -> None:
        if self.failing and relative.startswith("raw_events/"):
            raise WarehouseWriteError(f"injected failure uploading {relative}")
        super().upload(relative, local)


@pytest.mark.integration
def test_a_commit_failing_between_facts_and_raw_loses_and_doubles_nothing(azurite, container, tmp_path):
    bodies = list(generate(30, seed=3, payload_bytes=200).bodies)
    target = RemoteTarget(f"abfs://{container.container_name}/wh", azurite.connection_string,
                          cache_dir=tmp_path / "cache")
    warehouse = ParquetWarehouse(tmp_path / "work", remote=target)
    writer = FailingRawUploads(target.open(), 5.0)
    warehouse._writer = writer  # the same collaborator, with a fault
    warehouse.write(rows_of(bodies))
    with pytest.raises(WarehouseWriteError, match="injected failure"):
        warehouse.flush()
    names = download(container, "wh", tmp_path / "after-failure")
    assert names and not any(n.startswith("raw_events/") for n in names)  # facts only: nothing proven stored
    assert warehouse.pending_rows > 0  # the batch is kept for the retry

    writer.failing = False
    stats = warehouse.flush()
    assert stats.events == len(bodies)
    local = tmp_path / "local"
    plain = ParquetWarehouse(local)
    plain.write(rows_of(bodies))
    plain.flush()
    mirror = tmp_path / "mirror"
    download(container, "wh", mirror)
    assert view_rows(mirror) == view_rows(local)  # the orphaned fact copies are hidden
    stored = ds.dataset(mirror / "run_events", format="parquet", partitioning="hive").count_rows()
    assert stored > ds.dataset(local / "run_events", format="parquet", partitioning="hive").count_rows()
    warehouse.close()


def rows_of(bodies: list[bytes]) -> TableRows:
    rows = TableRows()
    for line, body in enumerate(bodies, start=1):
        rows.add(decode_body(body, Origin("file", file="in.ndjson", line=line), DecodeRules()), 1_700_000_000_000_000)
    return rows


@pytest.mark.integration
def test_a_refused_key_is_said_without_the_secret_and_nothing_is_written(azurite, container, tmp_path):
    path, _ = bodies_file(tmp_path)
    wrong_key = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk="
    env = env_for(f"abfs://{container.container_name}/wh", azurite, tmp_path, "a")
    env["AMLWH_WAREHOUSE__CONNECTION_STRING"] = azurite.connection_string.replace(ACCOUNT_KEY, wrong_key)
    proc = amlwh("backfill", "files", str(path), env=env, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "Blob Storage refused" in proc.stderr and f"container {container.container_name}" in proc.stderr
    assert wrong_key not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    assert not container.exists()


@pytest.mark.integration
def test_a_container_sas_writes_and_one_without_write_permission_is_refused(azurite, container, tmp_path):
    from datetime import datetime, timedelta, timezone

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    container.create_container()  # a SAS is for a container that exists
    path, _ = bodies_file(tmp_path)

    def sas_env(name: str, **permissions) -> dict[str, str]:
        sas = generate_container_sas(ACCOUNT, container.container_name, account_key=ACCOUNT_KEY,
                                     permission=ContainerSasPermissions(**permissions),
                                     expiry=datetime.now(timezone.utc) + timedelta(hours=1))
        env = env_for(f"abfs://{container.container_name}/wh", azurite, tmp_path, name)
        env["AMLWH_WAREHOUSE__CONNECTION_STRING"] = f"BlobEndpoint={azurite.blob_endpoint};SharedAccessSignature={sas}"
        return env

    reader = sas_env("r", read=True, list=True)
    proc = amlwh("backfill", "files", str(path), "--no-compact", env=reader, check=False)
    assert proc.returncode == 1 and "Blob Storage refused to write" in proc.stderr, proc.stderr
    assert "create, write, read and list" in proc.stderr and "sig=" not in proc.stderr
    assert not list(container.list_blobs())

    writer = sas_env("w", read=True, list=True, create=True, write=True, delete=True)
    counts = backfill(path, writer, 1)
    assert counts["events written"] > 300
    assert backfill(path, writer, 1)["events written"] == 0  # the keys are read with the same SAS
