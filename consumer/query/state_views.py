"""The headline run views over maintained state, so that their cost follows what is new,
not all history.

A compaction (consumer/maintenance/state.py) stores what `runs`, `run_status_history`
and the two halves of `monitor_metrics` (`internal.run_metrics`, `internal.model_metrics`)
held for the run_events and model files it had read, and records those files as *folded*
in a manifest. A connection then:

1. reads the newest manifest's state files as schema `kept`;
2. takes the run_events rows not folded in yet, the committed files outside the manifest
   and the provisional rows, the runs they touch (`touched.run_keys`), and in one pass over
   the state's runs those of them it holds (`touched.stored_keys`, often none: live traffic
   is mostly new runs). Every retraction below joins with those few keys;
3. recomputes those runs from all their events with the reference SQL of sql/views, in
   schemas `affected` (their new rows) and `retracted` (their rows in the state). Their
   events are read from event dates on from the earliest of the run's stored creation
   date and the new rows' dates: a run in the state has no event before its creation,
   and a run not in the state has only new events;
4. replaces `runs`, `run_status_history` and `internal.run_metrics` by the state with the
   touched runs' rows swapped (sql/state/*.sql). `run_durations`, `failure_rates` and
   `monitor_metrics` keep their reference SQL, over these;
5. adds to the stored `internal.model_metrics` the model events not folded in yet (those
   of which no folded file holds a copy): it counts events, one minute each.

Why this equals the reference views: a run's rows in each of them are a function of that
run's deduplicated events only, and the state holds each run's rows as computed from all
its events in folded files. A run with no event outside those files keeps its stored
rows, which are still exact; any other run is recomputed from all its events, folded or
not. Metric minutes are counts, so taking a run's stored contribution out and its new
one in is exact. The reference views stay available (`open_views(use_state=False)`), and
a property test holds the two equal (tests/consumer/maintenance/test_state.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path

import duckdb

from consumer.storage.layout import STATE_DIR, committed_glob
from consumer.storage.schema import (PARTITION_COLUMN, ddl_columns, read_committed_sql, sql_string, table_ddl,
                                     view_sql)

MANIFEST_GLOB = "manifest-*.json"
_MANIFEST_START, _MANIFEST_END = MANIFEST_GLOB.split("*")
STATE_TABLES = ("runs", "run_status_history", "run_metrics", "model_metrics")
MODEL_TABLES = ("model_registrations", "model_deployments")
FOLDED_TABLES = ("run_events",) + MODEL_TABLES
_REFERENCE = {"runs": "main.runs", "run_status_history": "main.run_status_history",
              "run_metrics": "internal.run_metrics", "model_metrics": "internal.model_metrics"}
# Views the state replaces, and everything bind_state reads to do it (qualified names).
STATE_VIEWS = frozenset(f"main.{name}" if name in ("runs", "run_status_history") else f"internal.{name}"
                        for name in STATE_TABLES)
STATE_READS = STATE_VIEWS | frozenset(f"store.{name}" for name in FOLDED_TABLES)
_CREATE_VIEW = re.compile(r"CREATE VIEW (?:\w+\.)?(\w+) AS")


@dataclass(frozen=True)
class Manifest:
    generation: int
    views: str  # the fingerprint of the SQL the state was computed with
    state: dict[str, str]  # state table -> its file, relative to the warehouse
    folded: frozenset[str]  # files of FOLDED_TABLES folded in, relative to the warehouse


@dataclass(frozen=True)
class StateScope:
    """What a connection read: the manifest, and the files of FOLDED_TABLES it found not
    folded in."""

    manifest: Manifest
    fresh: tuple[Path, ...]
    touched_runs: int


@cache
def state_sql() -> tuple[tuple[str, str], ...]:
    folder = resources.files("sql") / "state"
    entries = sorted((e for e in folder.iterdir() if e.name.endswith(".sql")), key=lambda e: e.name)
    return tuple((e.name, e.read_text()) for e in entries)


@cache
def views_fingerprint() -> str:
    """Changes whenever a reference view's SQL does: a state computed by other SQL is not
    used. The stored state is what the reference views held (a fold over an older state
    equals it too, as the property test holds), so sql/state, which only reads it, is not
    part of it: changing those views needs no rebuild."""
    digest = hashlib.sha256()
    for _, sql in view_sql():
        digest.update(sql.encode())
    return digest.hexdigest()[:16]


def is_manifest(path: str) -> bool:
    """Whether a path relative to the warehouse ("/"-separated) names a state manifest."""
    folder, _, name = path.partition("/")
    return folder == STATE_DIR and name.startswith(_MANIFEST_START) and name.endswith(_MANIFEST_END)


def manifest_path(root: Path, generation: int) -> Path:
    return Path(root) / STATE_DIR / f"manifest-{generation:012d}.json"


def read_manifest(root: Path) -> Manifest | None:
    """The newest manifest computed with this release's SQL, or None."""
    for path in sorted((Path(root) / STATE_DIR).glob(MANIFEST_GLOB), reverse=True):
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            continue  # superseded and deleted since it was listed
        if data["views"] != views_fingerprint():
            return None  # another release's state: read from scratch until it is rebuilt
        return Manifest(data["generation"], data["views"], data["state"], frozenset(data["folded"]))
    return None


def reference_sql(file_name: str, schema: str, *, store: str = "store") -> str:
    """A reference view file's SQL, creating its views in `schema` (which then resolve the
    names they read in `schema` first) and reading stored rows from schema `store`."""
    sql = dict(view_sql())[file_name]
    sql = _CREATE_VIEW.sub(lambda m: f"CREATE VIEW {schema}.{m.group(1)} AS", sql)
    return sql.replace("FROM store.", f"FROM {store}.")


def bind_state(con: duckdb.DuckDBPyConnection, root: Path, manifest: Manifest,
               buffered: dict[str, str]) -> StateScope:
    """Replace the headline run views of `con` (built by query.connection) by views over the
    manifest's state plus what it has not folded in; `buffered` names the tables of
    provisional rows, by stored table."""
    root = Path(root)
    con.execute("CREATE SCHEMA kept")
    for name in STATE_TABLES:
        if name in manifest.state:
            con.execute(f"CREATE VIEW kept.{name} AS SELECT * FROM read_parquet({sql_string(root / manifest.state[name])})")
        else:  # an empty state: the reference view's columns, no rows
            con.execute(f"CREATE TABLE kept.{name} AS SELECT * FROM {_REFERENCE[name]} LIMIT 0")
    con.execute("CREATE SCHEMA touched")
    fresh_models = _new_model_metrics(con, root, manifest, buffered)
    listed = _listed(root, "run_events")
    fresh = tuple(p for p in listed if not _folded(root, manifest, p))
    con.execute("CREATE SCHEMA scope")
    con.execute(f"CREATE VIEW scope.new_run_events AS {_new_run_events(fresh, buffered)}")
    con.execute("CREATE TEMP TABLE new_run_rows AS SELECT workspace, run_id, event_time FROM scope.new_run_events")
    con.execute("CREATE TABLE touched.run_keys AS SELECT DISTINCT workspace, run_id FROM new_run_rows")
    touched = con.execute("SELECT count(*) FROM touched.run_keys").fetchall()[0][0]
    since = None
    if touched:
        # The touched runs that the state holds, found in one pass over its runs' keys: every
        # later step that reads or retracts stored rows joins with these few, not with all.
        con.execute("CREATE TABLE touched.stored_keys AS SELECT s.workspace, s.run_id, s.created_at FROM kept.runs s "
                    "SEMI JOIN touched.run_keys k ON s.run_id = k.run_id AND s.workspace IS NOT DISTINCT FROM k.workspace")
        stored_since = con.execute("SELECT min(created_at) FROM touched.stored_keys").fetchall()[0][0]
        # the earliest a touched run can have been created
        since = con.execute("SELECT min(event_time) FROM new_run_rows").fetchall()[0][0]
        since = since if stored_since is None else min(since, stored_since)
        folded = [p for p in listed if stored_since is not None and p not in fresh
                  and _day(p) >= stored_since.date()]  # UTC: the connection's zone
        _recompute_touched(con, since, folded)
    else:  # nothing new: no need to bind the stored tables at all
        con.execute("CREATE TABLE touched.stored_keys (workspace VARCHAR, run_id VARCHAR, created_at TIMESTAMPTZ)")
        for name in ("runs", "run_status_history", "run_metrics"):
            kind = "VIEW" if name == "run_metrics" else "TABLE"  # as _recompute_touched makes them
            con.execute(f"CREATE {kind} touched.{name} AS SELECT * FROM kept.{name} LIMIT 0")
        con.execute("CREATE TABLE touched.retracted_metrics AS SELECT * FROM kept.run_metrics LIMIT 0")
    con.execute("DROP TABLE new_run_rows")
    at = "TIMESTAMPTZ 'infinity'" if since is None else f"TIMESTAMPTZ '{since.isoformat()}'"
    minute = at if since is None else f"date_trunc('minute', {at})"
    for _, sql in state_sql():
        con.execute(sql.replace("{since_minute}", minute).replace("{since}", at))
    return StateScope(manifest, fresh + fresh_models, touched)


def _new_run_events(fresh: tuple[Path, ...], buffered: dict[str, str]) -> str:
    """The SELECT of the run_events rows not folded in yet: the committed files outside the
    manifest and the provisional rows, with store.run_events' columns."""
    columns = ", ".join(f'"{column}"' for column, _ in ddl_columns(table_ddl()["run_events"]))
    parts = [f"SELECT {columns}, false AS provisional FROM {read_committed_sql(fresh)}"] if fresh else []
    if "run_events" in buffered:
        parts.append(f"SELECT {columns}, true AS provisional FROM {buffered['run_events']}")
    return " UNION ALL BY NAME ".join(parts) or "SELECT *, false AS provisional FROM mem.run_events"


def _recompute_touched(con: duckdb.DuckDBPyConnection, since, folded: list[Path]) -> None:
    """touched.<table>: the touched runs' rows recomputed from all their events, and
    touched.retracted_metrics: their metric rows in the state. Each touched run was created
    at or after `since`, so only stored rows from then on are read. Their events: all the
    new ones, and for the runs the state holds (touched.stored_keys), those in `folded`, the
    folded files from the earliest of their creation dates on. A run the state does not
    hold has no event in a folded file (a fold gives every run it reads a row), so new runs
    alone, as live traffic mostly is, read no folded file."""
    at = f"TIMESTAMPTZ '{since.isoformat()}'"
    folded_rows = ""
    if folded:
        columns = ", ".join(f'"{column}"' for column, _ in ddl_columns(table_ddl()["run_events"]))
        folded_rows = (f" UNION ALL BY NAME SELECT r.* FROM (SELECT {columns}, false AS provisional FROM "
                       f"{read_committed_sql(folded)}) r SEMI JOIN touched.stored_keys k "
                       "ON r.run_id = k.run_id AND r.workspace IS NOT DISTINCT FROM k.workspace")
    con.execute(f"CREATE VIEW scope.run_events AS SELECT * FROM scope.new_run_events{folded_rows}")
    con.execute("CREATE SCHEMA affected")
    con.execute(_only_view(reference_sql("00_deduplicated.sql", "affected", store="scope"), "run_events"))
    for file_name in ("10_runs.sql", "11_run_status_history.sql"):
        con.execute(reference_sql(file_name, "affected"))
    for name in ("runs", "run_status_history"):
        con.execute(f"CREATE TABLE touched.{name} AS SELECT * FROM affected.{name}")
    con.execute(reference_sql("45_run_metrics.sql", "touched"))  # over the two tables just made
    con.execute("CREATE SCHEMA retracted")
    # A run's history rows exist only beside its runs row, so the stored keys find them all;
    # with none (new runs only, as live traffic mostly is) nothing stored is read.
    stored = con.execute("SELECT count(*) FROM touched.stored_keys").fetchall()[0][0]
    for name, time in (("runs", "created_at"), ("run_status_history", "status_at")):
        con.execute(f"CREATE VIEW retracted.{name} AS SELECT s.* FROM kept.{name} s SEMI JOIN touched.stored_keys k "
                    f"ON s.run_id = k.run_id AND s.workspace IS NOT DISTINCT FROM k.workspace "
                    f"WHERE s.{time} >= {at}" + ("" if stored else " AND false"))
    con.execute(reference_sql("45_run_metrics.sql", "retracted"))
    con.execute("CREATE TABLE touched.retracted_metrics AS SELECT * FROM retracted.run_metrics")


def _new_model_metrics(con: duckdb.DuckDBPyConnection, root: Path, manifest: Manifest,
                       buffered: dict[str, str]) -> tuple[Path, ...]:
    """touched.model_metrics: what model events not folded in yet add to the model half of
    monitor_metrics. It counts events, so each new one adds to its minute; an event is new
    when no folded file holds a copy of it, and its copies share its event date, so only the
    folded files of the new rows' dates are read. Returns the model files not folded in."""
    fresh: list[Path] = []
    con.execute("CREATE SCHEMA new_models")
    for name in MODEL_TABLES:
        listed = _listed(root, name)
        new_files = [p for p in listed if not _folded(root, manifest, p)]
        fresh += new_files
        parts = [f"SELECT *, false AS provisional FROM {read_committed_sql(new_files)}"] if new_files else []
        if name in buffered:
            parts.append(f"SELECT *, true AS provisional FROM {buffered[name]}")
        if not parts:
            parts = [f"SELECT *, false AS provisional FROM mem.{name}"]
        con.execute(f"CREATE TEMP TABLE new_{name} AS {' UNION ALL BY NAME '.join(parts)}")
        days = {str(d) for (d,) in con.execute(f"SELECT DISTINCT event_date FROM new_{name}").fetchall()}
        folded = [p for p in listed if _folded(root, manifest, p)
                  and p.parent.name.removeprefix(f"{PARTITION_COLUMN}=") in days]
        anti = (f"ANTI JOIN (SELECT workspace, event_id FROM {read_committed_sql(folded)}) f "
                "ON n.event_id = f.event_id AND n.workspace IS NOT DISTINCT FROM f.workspace") if folded else ""
        con.execute(f"CREATE VIEW new_models.{name}_rows AS SELECT n.* FROM new_{name} n {anti}")
        dedupe = _only_view(reference_sql("00_deduplicated.sql", "new_models"), name)
        con.execute(dedupe.replace(f"FROM store.{name}", f"FROM new_models.{name}_rows"))
    con.execute(reference_sql("46_model_metrics.sql", "new_models"))
    con.execute("CREATE TABLE touched.model_metrics AS SELECT * FROM new_models.model_metrics")
    return tuple(fresh)


def _only_view(sql: str, name: str) -> str:
    """The one statement of a multi-view file that creates `name`."""
    for statement in sql.split(";"):
        if re.search(rf"CREATE VIEW \w+\.{name} AS", statement):
            return statement
    raise ValueError(f"no view {name} in {sql[:80]}")


def _day(path: Path) -> date:
    """The event date of a committed file, from its partition folder."""
    return date.fromisoformat(path.parent.name.removeprefix(f"{PARTITION_COLUMN}="))


def _listed(root: Path, name: str) -> list[Path]:
    """The committed files of table `name`, sorted."""
    pattern = committed_glob(root, name)
    return sorted(pattern.parent.parent.glob(f"{pattern.parent.name}/{pattern.name}"))


def _folded(root: Path, manifest: Manifest, path: Path) -> bool:
    return str(path.relative_to(root)) in manifest.folded
