"""`amlwh compact` SIGKILLed at random points: the warehouse stays valid with the same views
after every kill, and a rerun finishes the job."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from devstack.synth import disorder, generate
from tests.support.cli import amlwh, clean_env
from tests.support.events import REPO
from tests.support.warehouse import committed_files, view_rows

pytestmark = pytest.mark.integration


def _compaction(warehouse) -> subprocess.Popen:
    env = clean_env(AMLWH_WAREHOUSE__PATH=str(warehouse), AMLWH_COMPACTION__GRACE_S="0")
    return subprocess.Popen([sys.executable, "-m", "consumer", "compact"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _file_set(warehouse) -> set:
    """Every file of the warehouse: committed, state, retirement records, temporary."""
    return {p for p in warehouse.rglob("*") if p.is_file() and p.name != "lock"}


def test_sigkill_at_random_points_leaves_the_same_views_and_a_rerun_compacts(tmp_path):
    stream = generate(1200, seed=5, span_s=3 * 86400, payload_bytes=1200)
    source = tmp_path / "events.ndjson"
    source.write_bytes(b"\n".join(disorder(stream.bodies, seed=3, dup_share=0.05)) + b"\n")
    warehouse = tmp_path / "wh"
    env = {"AMLWH_WAREHOUSE__PATH": str(warehouse)}
    amlwh("backfill", "files", str(source), "--batch-rows", "300", "--no-compact", "-q", env=env)
    before = view_rows(warehouse)

    rehearsal = tmp_path / "rehearsal"  # how long a whole compaction of this warehouse takes
    shutil.copytree(warehouse, rehearsal)
    started = time.monotonic()
    assert _compaction(rehearsal).wait(120) == 0
    whole = time.monotonic() - started

    pristine = tmp_path / "pristine"  # the uncompacted warehouse, for a compaction that finished
    shutil.copytree(warehouse, pristine)
    rng = random.Random(20261203)
    kills_inside = 0
    for attempt in range(12):
        if attempt >= 6 and kills_inside >= 2:
            break
        # spread over the run: a kill in start-up, in a merge, between merges, in deletions
        delay = whole * (attempt % 6 + rng.random()) / 6
        seen = _file_set(warehouse)
        proc = _compaction(warehouse)
        time.sleep(delay)
        finished = proc.poll() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        kills_inside += not finished and _file_set(warehouse) != seen
        assert view_rows(warehouse) == before, f"after a kill {delay:.2f}s into a {whole:.2f}s compaction"
        if finished:  # nothing was left to interrupt: the next kill gets the whole job again
            shutil.rmtree(warehouse)
            shutil.copytree(pristine, warehouse)

    # The kills landed inside compactions (a fold or a merge had changed files), on a
    # loaded machine too: a run that ended before its kill does not count, and the attempts
    # go on (at most 12) until two did.
    assert kills_inside >= 2
    assert _compaction(warehouse).wait(120) == 0
    assert view_rows(warehouse) == before
    after = committed_files(warehouse)
    assert all(len({p.parent for p in files}) == len(files) for files in after.values())  # one a date
