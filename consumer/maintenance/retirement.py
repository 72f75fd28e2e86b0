"""Retired files: inputs of a compaction, deleted once their grace has passed.

A compaction writes one record per merged partition, after the merged file is durable and
visible: `_compaction/retired/<time>-<id>.json` with the inputs' paths (relative to the
warehouse) and when they were retired. Whoever compacts next deletes the files of records
older than the grace, then the record. Why the grace: a reader that listed a file just
before it was retired may still open it (consumer/maintenance/compaction.py).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from consumer.storage.durable import fsync_path
from consumer.storage.layout import COMPACTION_DIR

RETIRED_DIR = "retired"


def retired_dir(root: Path) -> Path:
    return Path(root) / COMPACTION_DIR / RETIRED_DIR


def retire(root: Path, files: list[Path], replaced_by: Path, now_s: float) -> Path:
    """Record `files` as replaced by `replaced_by` at `now_s`; durable when it returns."""
    folder = retired_dir(root)
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        fsync_path(folder.parent)
    record = {
        "retired_at": now_s,
        "files": [str(p.relative_to(root)) for p in files],
        "replaced_by": str(replaced_by.relative_to(root)),
    }
    final = folder / f"{int(now_s * 1e6):020d}-{uuid.uuid4().hex[:12]}.json"
    temp = folder / f".{final.name}.tmp"
    temp.write_bytes(json.dumps(record).encode())
    fsync_path(temp)
    os.replace(temp, final)
    fsync_path(folder)
    return final


def delete_retired(root: Path, now_s: float, grace_s: float) -> int:
    """Delete the files of records retired at least `grace_s` ago, oldest record first;
    returns how many files were deleted. A file already gone counts as deleted (a crash
    after some deletions leaves the record: the next run finishes it)."""
    deleted = 0
    folder = retired_dir(root)
    if not folder.is_dir():
        return 0
    for record in sorted(folder.glob("*.json")):
        try:
            entry = json.loads(record.read_bytes())
        except FileNotFoundError:
            continue
        if now_s - entry["retired_at"] < grace_s:
            continue
        for relative in entry["files"]:
            try:
                os.unlink(Path(root) / relative)
                deleted += 1
            except FileNotFoundError:
                pass
        record.unlink(missing_ok=True)
    return deleted


def pending_retirements(root: Path) -> int:
    """Files retired and not deleted yet."""
    folder = retired_dir(root)
    if not folder.is_dir():
        return 0
    return sum(len(json.loads(p.read_bytes())["files"]) for p in folder.glob("*.json"))
