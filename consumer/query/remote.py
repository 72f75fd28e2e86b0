"""`amlwh query` and `views` over a warehouse in Blob Storage: the files a statement needs
are fetched into a folder of the query's own (storage/remote.py), which the code of a local
warehouse (connection.py) then reads.

A statement needs the stored tables it reads through the views (reads.py), the provisional
rows of those tables, and, when it reads a run view, the view state its newest manifest
names. Anything it cannot be sure of gets every table, as a local connection binds them
all then. `views` needs no file: a warehouse's views and columns are those of sql/, whatever
its files hold.
"""

from __future__ import annotations

import duckdb

from consumer.query.connection import check_read_only, connect, describe_views, read_warehouse, run_query
from consumer.query.reads import closure, statement_reads, stored_name
from consumer.query.state_views import STATE_READS, STATE_VIEWS, is_manifest, read_manifest
from consumer.storage.blob_cache import Snapshot
from consumer.storage.layout import PROVISIONAL_DIR
from consumer.storage.remote import RemoteWarehouse
from consumer.storage.schema import table_ddl



def query_remote(remote: RemoteWarehouse, sql: str) -> tuple[list[str], list[tuple]]:
    """query_warehouse (connection.py) over the remote warehouse as listed now."""
    with duckdb.connect(":memory:") as parser:  # the statement is checked before anything is listed
        check_read_only(sql, parser)
        reads = statement_reads(parser, sql)

    def work(snapshot: Snapshot) -> tuple[list[str], list[tuple]]:
        fetch_needed(snapshot, reads)
        return read_warehouse(snapshot.root, lambda con: run_query(con, sql), reads=reads)

    return remote.read(work)


def describe_remote(remote: RemoteWarehouse) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """describe_views of the remote warehouse; it lists it (so a wrong credential or
    container is said) and downloads nothing."""
    def work(snapshot: Snapshot):
        con = connect(snapshot.root)
        try:
            return describe_views(con)
        finally:
            con.close()

    return remote.read(work)


def fetch_needed(snapshot: Snapshot, reads: frozenset[str] | None) -> None:
    """Fetch what a statement reading `reads` (None: anything) reads, as open_views binds it."""
    state = reads is None or bool(reads & STATE_VIEWS)
    if reads is not None and state:
        reads = closure(reads | STATE_READS)  # what bind_state reads besides the views
    tables = {name for name in table_ddl() if reads is None or stored_name(name) in reads}
    snapshot.fetch(path for path in snapshot.listed if table_of(path) in tables)
    if not state:
        return
    manifests = sorted(path for path in snapshot.listed if is_manifest(path))
    if manifests:  # the newest only: read_manifest reads no other
        snapshot.fetch(manifests[-1:])
        manifest = read_manifest(snapshot.root)  # None: another release's state, not read
        if manifest is not None:
            snapshot.fetch(manifest.state.values())


def table_of(path: str) -> str | None:
    """The table whose rows the file at `path` holds, committed or provisional, as the local
    globs find them (layout.py); None for anything else."""
    parts = path.split("/")
    if len(parts) != 3 or not parts[2].endswith(".parquet"):
        return None
    table = parts[1] if parts[0] == PROVISIONAL_DIR else parts[0]
    return table if table in table_ddl() else None  # _state/<generation>/runs.parquet is not one
