"""`amlwh query` and `views` on a warehouse in Blob Storage (real Azurite, real files): the
same answers as on the local copy, a warm cache that downloads nothing, a listing that is
always fresh (files compacted away or written again under their name), operator errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from azure.storage.blob import ContainerClient, ContainerSasPermissions, generate_container_sas

from consumer.cli import main
from consumer.errors import ConfigError
from consumer.live.provisional import ProvisionalFiles
from consumer.maintenance.compaction import compact
from consumer.query.connection import query_warehouse, read_warehouse, run_query
from consumer.query.remote import fetch_needed, query_remote, table_of
from consumer.storage.blob_cache import BlobCache, BlobGone, RemoteFile, Snapshot
from consumer.storage.remote import open_remote, parse_url
from consumer.storage.schema import table_ddl
from devstack.azurite import ACCOUNT, ACCOUNT_KEY
from devstack.processes import free_port
from tests.support.cli import amlwh
from tests.support.events import RC, corpus_files, run_event
from tests.support.rows import held_rows
from tests.support.warehouse import VIEWS, store_copies

pytestmark = pytest.mark.integration

PREFIX = "warehouses/prod"
STORED = tuple(f"store.{name}" for name in table_ddl())  # rows as stored: a stale file shows here


def runs(first: int, last: int, day: int) -> list[bytes]:
    bodies = []
    for i in range(first, last):
        for step, status in enumerate(("Queued", "Running", ("Completed", "Failed")[i % 2])):
            bodies.append(run_event(f"r{i}", status, f"2025-01-0{day}T10:0{step}:00Z", experiment=f"exp{i % 2}"))
        bodies.append(run_event(f"r{i}", None, f"2025-01-0{day}T10:09:00Z", event_type=RC))
    return bodies


def build(root: Path) -> None:
    """Two batches folded into the view state by a compaction, then a batch not folded in
    (runs old and new touched again) and a live worker's provisional rows."""
    corpus = [p.read_bytes() for p in corpus_files()]
    store_copies(root, corpus[:20] + runs(0, 4, 1), 1)
    store_copies(root, corpus[15:] + runs(2, 6, 2) + [b"{broken"], 2)
    compact(root, now_s=lambda: 1e9, grace_s=0)
    store_copies(root, runs(5, 9, 3) + [run_event("r1", "Failed", "2025-01-01T11:00:00Z")], 3)
    ProvisionalFiles(root, "zstd").publish(
        1, [held_rows([run_event("r20", "Running", "2025-01-03T00:01:00Z")])], now=1000.0)


def local_files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}


def sync(root: Path, container: ContainerClient) -> None:
    """What `azcopy sync --delete-destination` leaves: the remote prefix holds the local files."""
    remote = {b.name.removeprefix(PREFIX + "/") for b in container.list_blobs(name_starts_with=PREFIX + "/")}
    files = local_files(root)
    for name, path in files.items():
        if name not in remote:
            container.upload_blob(f"{PREFIX}/{name}", path.read_bytes())
    for name in remote - set(files):
        container.delete_blob(f"{PREFIX}/{name}")


@pytest.fixture
def container(azurite, checkpoint_container) -> ContainerClient:
    with ContainerClient.from_connection_string(azurite.connection_string, checkpoint_container) as client:
        yield client


@pytest.fixture
def mirror(tmp_path, container) -> Path:
    """A local warehouse, and the same files in the container under PREFIX."""
    root = tmp_path / "warehouse"
    build(root)
    sync(root, container)
    return root


@pytest.fixture
def remote_env(azurite, container, tmp_path, monkeypatch) -> dict[str, str]:
    env = {"AMLWH_WAREHOUSE__PATH": f"abfs://{container.container_name}/{PREFIX}",
           "AMLWH_WAREHOUSE__CONNECTION_STRING": azurite.connection_string,
           "AMLWH_WAREHOUSE__CACHE_DIR": str(tmp_path / "cache")}
    monkeypatch.chdir(tmp_path)  # no ./config.toml
    return env


def cli_json(monkeypatch, capsys, env: dict[str, str], *args: str):
    with monkeypatch.context() as m:
        for name, value in env.items():
            m.setenv(name, value)
        code = main(list(args))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def query_both(monkeypatch, capsys, remote_env, root: Path, sql: str) -> tuple[list, list]:
    remote = json.loads(cli_json(monkeypatch, capsys, remote_env, "query", sql, "--format", "json"))
    local = json.loads(cli_json(monkeypatch, capsys, {"AMLWH_WAREHOUSE__PATH": str(root)},
                                "query", sql, "--format", "json"))
    return sorted(remote, key=repr), sorted(local, key=repr)


def open_for(env: dict[str, str]):
    return open_remote(env["AMLWH_WAREHOUSE__PATH"], connection_string=env["AMLWH_WAREHOUSE__CONNECTION_STRING"],
                       account_url=None, client_id=None, cache_dir=Path(env["AMLWH_WAREHOUSE__CACHE_DIR"]))


def cache_entries(env: dict[str, str]) -> dict[str, tuple[int, int]]:
    """Every cached file: (inode, mtime in ns)."""
    objects = Path(env["AMLWH_WAREHOUSE__CACHE_DIR"])
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in objects.rglob("objects/*/*")}


def test_every_view_and_stored_table_reads_as_on_the_local_copy(mirror, remote_env, monkeypatch, capsys):
    for view in VIEWS + STORED:
        remote, local = query_both(monkeypatch, capsys, remote_env, mirror, f"SELECT * FROM {view}")
        assert remote == local, view
        assert local or view in ("store.ignored_events", "ignored_events"), view  # the check has rows
    remote, local = query_both(monkeypatch, capsys, remote_env, mirror,
                               "SELECT count(*) FILTER (provisional) AS buffered FROM run_events")
    assert remote == local == [{"buffered": 1}]
    remote = cli_json(monkeypatch, capsys, remote_env, "views", "--all")
    assert remote == cli_json(monkeypatch, capsys, {"AMLWH_WAREHOUSE__PATH": str(mirror)}, "views", "--all")
    assert "run_durations" in remote and "store.run_events" in remote


def test_a_query_reads_only_the_tables_it_needs_and_a_repeat_downloads_nothing(mirror, remote_env):
    with open_for(remote_env) as remote:
        sql = "SELECT count(*) FROM models"
        assert query_remote(remote, sql) == query_warehouse(mirror, sql)
        models = remote.last.downloaded
        assert models == len(remote.last.files_read) > 0
        assert {table_of(path) for path in remote.last.files_read} == {"model_registrations"}
        assert any(path.startswith("_provisional/") for path in remote.last.files_read)  # its anchor
        assert query_remote(remote, "SELECT count(*) FROM runs") == query_warehouse(mirror, "SELECT count(*) FROM runs")
        runs_too = remote.last.downloaded  # the run files and the state: the model files are cached
        read = remote.last.files_read
        assert {table_of(path) for path in read} == {"run_events", "model_registrations", "model_deployments", None}
        manifests = [p for p in remote.last.listed if p.startswith("_state/manifest-")]
        assert len(read) == runs_too + models and max(manifests) in read
        assert len([p for p in read if p.startswith("_state/")]) == 1 + 4  # the manifest, its four files
        before = cache_entries(remote_env)
        assert len(before) == models + runs_too
        for sql in ("SELECT count(*) FROM runs", "SELECT count(*) FROM models"):
            assert query_remote(remote, sql) == query_warehouse(mirror, sql)
            assert remote.last.downloaded == 0 and remote.last.files_read
        assert cache_entries(remote_env) == before  # nothing written again
    views = Path(remote_env["AMLWH_WAREHOUSE__CACHE_DIR"]).rglob("views/*")
    assert list(views) == []  # each query's folder is gone after it


def test_files_compacted_away_or_written_again_are_never_read_from_the_cache(mirror, remote_env, container):
    every = "SELECT * FROM " + " UNION ALL SELECT * FROM ".join(
        f"(SELECT '{t}' AS t, count(*) AS n FROM {t})" for t in STORED + ("runs", "run_status_history"))
    with open_for(remote_env) as remote:
        assert sorted(query_remote(remote, every)[1]) == sorted(query_warehouse(mirror, every)[1])
        warm = set(cache_entries(remote_env))

        # a compaction of the local copy, synced: merged files in, their inputs deleted
        store_copies(mirror, runs(8, 12, 3), 4)
        compact(mirror, now_s=lambda: 2e9, grace_s=0)
        sync(mirror, container)
        assert sorted(query_remote(remote, every)[1]) == sorted(query_warehouse(mirror, every)[1])
        assert remote.last.downloaded > 0
        assert warm - set(cache_entries(remote_env))  # entries of deleted files are pruned

        # a file written again under its name with other rows of the same size: a new version
        # (only its ETag tells), downloaded again
        name, path = next((n, p) for n, p in local_files(mirror).items() if n.startswith("run_events/"))
        rows = pq.ParquetFile(path).read()
        sql = "SELECT list(event_id ORDER BY event_id) FROM store.run_events"
        sizes = []
        for version in (rows, rows.set_column(rows.schema.get_field_index("event_id"), "event_id", pa.array(
                [event_id[:-1] + ("x" if event_id[-1] != "x" else "y") for event_id in rows["event_id"].to_pylist()]))):
            # no compression, dictionary or statistics: equal lengths give equal file sizes
            pq.write_table(version, path, compression="none", use_dictionary=False, write_statistics=False)
            container.upload_blob(f"{PREFIX}/{name}", path.read_bytes(), overwrite=True)
            sizes.append(path.stat().st_size)
            assert query_remote(remote, sql) == query_warehouse(mirror, sql)
            assert remote.last.downloaded == 1
        assert sizes[0] == sizes[1]


def test_files_deleted_or_replaced_after_the_listing_make_the_query_list_again(mirror, remote_env, container):
    sql = "SELECT * FROM " + " UNION ALL SELECT * FROM ".join(
        f"(SELECT '{t}' AS t, count(*) AS n, count(DISTINCT {key}) AS e FROM {t})"
        for t, key in (("store.run_events", "event_id"), ("store.raw_events", "event_id"), ("runs", "run_id")))
    listings = []

    def work(snapshot: Snapshot, change) -> list:
        listings.append(snapshot.listed)
        if len(listings) == 1:
            change()  # between the listing and the downloads
        fetch_needed(snapshot, None)
        return sorted(read_warehouse(snapshot.root, lambda con: run_query(con, sql))[1])

    def compaction() -> None:
        store_copies(mirror, runs(8, 12, 3), 4)
        compact(mirror, now_s=lambda: 2e9, grace_s=0)
        sync(mirror, container)

    with open_for(remote_env) as remote:  # a cold cache: every listed file is downloaded
        assert remote.read(lambda snapshot: work(snapshot, compaction)) == sorted(query_warehouse(mirror, sql)[1])
        assert len(listings) == 2 and set(listings[0]) - set(listings[1])  # files went: listed again

        listings.clear()
        name, path = next((n, p) for n, p in local_files(mirror).items() if n.startswith("run_events/"))

        def write(rows) -> None:  # no compression, dictionary or statistics: same lengths, same size
            pq.write_table(rows, path, compression="none", use_dictionary=False, write_statistics=False)
            container.upload_blob(f"{PREFIX}/{name}", path.read_bytes(), overwrite=True)

        rows = pq.ParquetFile(path).read()
        write(rows)
        size = path.stat().st_size

        def rewrite() -> None:  # the same name and size, other bytes: only the ETag condition notices
            write(rows.set_column(rows.schema.get_field_index("event_id"), "event_id", pa.array(
                [event_id[:-1] + ("x" if event_id[-1] != "x" else "y") for event_id in rows["event_id"].to_pylist()])))
            assert path.stat().st_size == size

        shutil.rmtree(remote.cache.root)  # cold again, so the file is downloaded after the change
        assert remote.read(lambda snapshot: work(snapshot, rewrite)) == sorted(query_warehouse(mirror, sql)[1])
        assert len(listings) == 2 and listings[0][name].etag != listings[1][name].etag


def test_concurrent_queries_share_a_cold_cache(mirror, remote_env):
    sqls = ["SELECT * FROM run_durations", "SELECT * FROM failure_rates", "SELECT * FROM monitor_metrics",
            "SELECT * FROM run_status_history"]
    results: dict[str, object] = {}

    def one(sql: str) -> None:
        with open_for(remote_env) as remote:
            try:
                results[sql] = sorted(query_remote(remote, sql)[1], key=repr)
            except Exception as exc:  # noqa: BLE001 -- reported below
                results[sql] = exc

    threads = [threading.Thread(target=one, args=(sql,)) for sql in sqls * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {sql: sorted(query_warehouse(mirror, sql)[1], key=repr) for sql in sqls} == results


def test_a_sas_connection_string_reads_the_warehouse(mirror, remote_env, azurite, container, monkeypatch, capsys):
    sas = generate_container_sas(ACCOUNT, container.container_name, account_key=ACCOUNT_KEY,
                                 permission=ContainerSasPermissions(read=True, list=True),
                                 expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    env = dict(remote_env, AMLWH_WAREHOUSE__CONNECTION_STRING=f"BlobEndpoint={azurite.blob_endpoint};"
                                                               f"SharedAccessSignature={sas}")
    remote, local = query_both(monkeypatch, capsys, env, mirror, "SELECT * FROM runs")
    assert remote == local and local
    signature = dict(part.split("=", 1) for part in sas.split("&"))["sig"]
    proc = run_cli(env, "-v", "query", "SELECT count(*) FROM models")  # debug logs: every request
    assert proc.returncode == 0 and "amlwh.remote" in proc.stderr and "GET" in proc.stderr
    assert signature not in proc.stderr and signature not in unquote(proc.stderr)


def run_cli(env: dict[str, str], *args: str):
    proc = amlwh(*args, env=env, cwd=Path(env["AMLWH_WAREHOUSE__CACHE_DIR"]).parent, check=False)
    assert "Traceback" not in proc.stderr
    return proc


def test_a_wrong_key_or_container_is_an_operator_error_without_the_secret(mirror, remote_env, azurite):
    wrong_key = ACCOUNT_KEY[:10] + ("A" if ACCOUNT_KEY[10] != "A" else "B") + ACCOUNT_KEY[11:]
    env = dict(remote_env, AMLWH_WAREHOUSE__CONNECTION_STRING=azurite.connection_string.replace(ACCOUNT_KEY, wrong_key))
    proc = run_cli(env, "query", "SELECT count(*) FROM runs")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"amlwh: remote warehouse: Blob Storage refused access to container "
                                  f"{remote_env['AMLWH_WAREHOUSE__PATH'].split('/')[2]} of account {ACCOUNT} (403")
    assert "AMLWH_WAREHOUSE__CONNECTION_STRING" in proc.stderr
    for secret in (ACCOUNT_KEY, wrong_key, ACCOUNT_KEY[:12], wrong_key[:12]):
        assert secret not in proc.stderr + proc.stdout

    env = dict(remote_env, AMLWH_WAREHOUSE__PATH=f"az://nosuchcontainer/{PREFIX}")
    proc = run_cli(env, "views")
    assert proc.returncode == 1
    assert "there is no container nosuchcontainer of account devstoreaccount1" in proc.stderr

    nowhere = azurite.connection_string.replace(f":{azurite.port}/", f":{free_port('127.0.0.1')}/")
    proc = run_cli(dict(remote_env, AMLWH_WAREHOUSE__CONNECTION_STRING=nowhere), "query", "SELECT 1")
    assert proc.returncode == 1
    assert "cannot reach the Blob Storage endpoint 127.0.0.1:" in proc.stderr and "Connection refused" in proc.stderr

    not_a_folder = Path(remote_env["AMLWH_WAREHOUSE__CACHE_DIR"]).parent / "a-file"
    not_a_folder.write_text("")
    proc = run_cli(dict(remote_env, AMLWH_WAREHOUSE__CACHE_DIR=str(not_a_folder)), "query", "SELECT count(*) FROM runs")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"amlwh: remote warehouse: cannot keep files in the cache at {not_a_folder}/")
    assert "AMLWH_WAREHOUSE__CACHE_DIR" in proc.stderr

    env = dict(remote_env, AMLWH_WAREHOUSE__CONNECTION_STRING="not a connection string")
    proc = run_cli(env, "query", "SELECT 1")
    assert proc.returncode == 2 and "is not a storage account connection string" in proc.stderr
    assert "not a connection string" not in proc.stderr


def test_report_on_a_remote_warehouse_shows_what_the_local_copy_shows(mirror, remote_env, tmp_path):
    remote = run_cli(remote_env, "report", "--out", str(tmp_path / "remote.html"))
    local = amlwh("report", "--out", str(tmp_path / "local.html"), env={"AMLWH_WAREHOUSE__PATH": str(mirror)})
    assert remote.returncode == local.returncode == 0, remote.stderr + local.stderr
    rows = re.search(r"\(table rows: (.*)\)", remote.stdout)
    assert rows and rows.group(1) == re.search(r"\(table rows: (.*)\)", local.stdout).group(1)
    assert re.search(r"[1-9]", rows.group(1)), rows.group(1)  # the report has rows
    assert ACCOUNT_KEY not in remote.stdout + remote.stderr


def test_a_download_that_fails_midway_leaves_no_cached_file(tmp_path):
    cache = BlobCache(tmp_path / "cache")
    file = RemoteFile("run_events/event_date=2025-01-01/part-1.parquet", 10, '"0x1"')

    def broken(_, out) -> None:
        out.write(b"12345")
        raise ConnectionResetError("the network went away")

    with pytest.raises(ConnectionResetError):
        cache.store(file, broken)
    assert not cache.holds(file) and not cache.entry(file).exists()
    cache.store(file, lambda _, out: out.write(b"0123456789"))
    assert cache.holds(file) and cache.entry(file).read_bytes() == b"0123456789"

    short = RemoteFile("run_events/event_date=2025-01-01/part-2.parquet", 10, '"0x2"')
    with pytest.raises(BlobGone):  # fewer bytes than listed: another version, not cached
        cache.store(short, lambda _, out: out.write(b"01234"))
    assert not cache.holds(short)

    leftover = cache.entry(file).parent / ".tmp-from-a-killed-query"  # what SIGKILL leaves
    leftover.write_bytes(b"123")
    assert not cache.holds(file) or cache.entry(file) != leftover
    assert cache.prune([file], now_s=leftover.stat().st_mtime + 10) == 0 and leftover.exists()
    cache.prune([file], now_s=leftover.stat().st_mtime + 2 * 3600)
    assert not leftover.exists() and cache.holds(file)
    assert cache.prune([], now_s=0) == 1 and not cache.holds(file)  # no longer listed: pruned


@pytest.mark.parametrize("url, container, prefix, account", [
    ("abfs://data/warehouses/prod", "data", "warehouses/prod", None),
    ("az://data/", "data", "", None),
    ("az://data", "data", "", None),
    ("ABFSS://data@acct.dfs.core.windows.net/wh/", "data", "wh", "acct"),
    ("abfss://data@acct.blob.core.windows.net", "data", "", "acct"),
])
def test_urls_name_the_container_prefix_and_account(url, container, prefix, account):
    location = parse_url(url)
    assert (location.container, location.prefix, location.account) == (container, prefix, account)


@pytest.mark.parametrize("url", ["abfs://", "abfs:///prefix", "s3://bucket/x", "abfs://c/p?sig=x"])
def test_a_url_that_names_no_container_is_a_config_error(url):
    with pytest.raises(ConfigError, match="is not a Blob Storage URL"):
        parse_url(url)


@pytest.mark.parametrize("container", ["r1", "Data", "my_data", "-data", "data-", "da--ta", "d" * 64])
def test_a_container_name_blob_storage_refuses_is_a_config_error(container):
    with pytest.raises(ConfigError, match=f"names the container '{container}', which Blob Storage does not"):
        parse_url(f"abfs://{container}/wh")
    assert parse_url(f"abfs://{'d' * 63}/wh").container == "d" * 63


def test_an_entry_pruned_by_another_query_is_downloaded_again_and_links_outlive_pruning(tmp_path):
    cache = BlobCache(tmp_path / "cache")
    file = RemoteFile("model_registrations/event_date=2025-01-01/part-1.parquet", 10, '"0x1"')
    downloads = []

    def download(listed: RemoteFile, out) -> None:
        downloads.append(listed.path)
        out.write(b"0123456789")

    cache.store(file, download)
    snapshot = Snapshot({file.path: file}, cache, download, workers=2)
    held = cache.holds

    def held_then_pruned(listed: RemoteFile) -> bool:  # another query prunes it right after the check
        answer = held(listed)
        cache.prune([], now_s=0)
        return answer

    cache.holds = held_then_pruned
    snapshot.fetch([file.path])
    linked = snapshot.root / file.path
    assert linked.read_bytes() == b"0123456789" and snapshot.downloaded == 1 and len(downloads) == 2

    cache.prune([], now_s=0)  # the entry goes; the query's own link still reads
    assert not cache.entry(file).exists() and linked.read_bytes() == b"0123456789"
    snapshot.close()
    assert not snapshot.root.exists()
