"""Maintained view state: folding newly committed run events into stored results.

A fold opens the views as a reader would, without provisional rows: over the current
state plus the run_events and model files it has not folded in (query/state_views.py says
why those views equal the reference ones). It stores what `runs`, `run_status_history`,
`internal.run_metrics` and `internal.model_metrics` hold as four Parquet files of a new
generation, and the files it read become folded. The work is the touched
runs' events and a rewrite of the stored results; the first fold computes them from all
history, like `amlwh rebuild-state`.

A generation becomes current when its manifest appears (written whole, then renamed,
after its files are durable). The files of the previous generation are retired as
compaction's inputs are (maintenance/retirement.py): a reader that read the old manifest
keeps its files for the grace, then lists again. A crash before the manifest leaves an
unreferenced folder, removed by a later fold once an hour old.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from consumer.maintenance.retirement import retire
from consumer.query.connection import open_views
from consumer.query.state_views import (
    Manifest,
    manifest_path,
    read_manifest,
    views_fingerprint,
)
from consumer.storage.durable import fsync_path
from consumer.storage.layout import STATE_DIR

# what each state file holds, in the order that serves its readers: runs and status history
# by run (a run's row or history is a few row groups' read), metric minutes by time
_MATERIALIZED = {
    "runs": "SELECT * FROM runs ORDER BY run_id, workspace",
    "run_status_history": "SELECT * FROM run_status_history ORDER BY run_id, workspace, entry_number",
    "run_metrics": 'SELECT * FROM internal.run_metrics ORDER BY "time", workspace, metric',
    "model_metrics": 'SELECT * FROM internal.model_metrics ORDER BY "time", workspace, metric',
}
STALE_FOLDER_S = 3600.0


@dataclass
class Fold:
    """A generation written and not yet current (see publish)."""

    generation: int
    state: dict[str, str]  # table -> file relative to the warehouse
    folded: set[str] = field(default_factory=set)  # files of FOLDED_TABLES folded in, relative
    touched_runs: int = 0
    fresh_files: int = 0


def fold(root: Path, *, rebuild: bool = False, memory_limit: str = "1GB") -> tuple[Fold | None, Manifest | None]:
    """Write the next generation's files; (None, manifest) when nothing is new. `rebuild`
    computes it from all history, ignoring the current state."""
    root = Path(root)
    current = read_manifest(root)
    # A first fold or a rebuild starts from an empty state, not from the reference views:
    # those read whatever files exist when they run, and a file committed meanwhile would be
    # in the state without being listed as folded; the model metrics would count it twice.
    con, scope = open_views(root, provisional=False, from_empty_state=rebuild or current is None)
    try:
        con.execute(f"SET memory_limit = '{memory_limit}'")
        if not scope.fresh and current is not None and not rebuild:
            return None, current
        folded = {f for f in scope.manifest.folded if (root / f).exists()}
        folded |= {str(p.relative_to(root)) for p in scope.fresh}
        touched = scope.touched_runs
        generation = max(_generations(root), default=0) + 1
        folder = root / STATE_DIR / f"{generation:012d}"
        folder.mkdir(parents=True, exist_ok=True)
        state = {}
        for name, sql in _MATERIALIZED.items():
            path = folder / f"{name}.parquet"
            con.execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 65536)")
            fsync_path(path)
            state[name] = str(path.relative_to(root))
        fsync_path(folder)
        fsync_path(folder.parent)
    finally:
        con.close()
    return Fold(generation, state, folded, touched, len(scope.fresh)), current


def publish(root: Path, result: Fold, previous: Manifest | None, now_s: float) -> Path:
    """Make `result` the current generation; retire what the previous one used."""
    root = Path(root)
    final = manifest_path(root, result.generation)
    temp = final.with_name(f".{final.name}.tmp")
    body = {"generation": result.generation, "views": views_fingerprint(), "state": result.state,
            "folded": sorted(result.folded), "written_at": now_s}
    temp.write_bytes(json.dumps(body).encode())
    fsync_path(temp)
    os.replace(temp, final)
    fsync_path(final.parent)
    if previous is not None:
        unused = [root / f for f in previous.state.values() if f not in result.state.values()]
        old_manifest = manifest_path(root, previous.generation)
        retire(root, unused + [old_manifest], final, now_s)
    return final


def sweep_abandoned(root: Path, now_s: float) -> None:
    """Remove generation folders a crashed fold left, or a retired manifest no longer
    names: used by no manifest, and an hour old."""
    folder = Path(root) / STATE_DIR
    used = set()
    for manifest in folder.glob("manifest-*.json"):
        try:
            used |= {Path(f).parent.name for f in json.loads(manifest.read_bytes())["state"].values()}
        except FileNotFoundError:
            continue
    for entry in folder.iterdir() if folder.is_dir() else ():
        if entry.is_dir() and entry.name.isdigit() and entry.name not in used:
            try:
                if now_s - entry.stat().st_mtime > STALE_FOLDER_S:
                    shutil.rmtree(entry, ignore_errors=True)
            except FileNotFoundError:
                continue


def _generations(root: Path) -> list[int]:
    folder = Path(root) / STATE_DIR
    names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    numbers = [n.removeprefix("manifest-").removesuffix(".json") for n in names]
    return [int(n) for n in numbers if n.isdigit()]

