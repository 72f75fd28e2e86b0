"""Maintained view state equals the reference views (run views and both halves of
monitor_metrics): whatever the order, the duplicates, the late arrivals, and wherever a
compaction stopped."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer.maintenance import compaction
from consumer.maintenance.compaction import compact
from consumer.maintenance.state import fold
from consumer.query.connection import open_views
from consumer.query.state_views import read_manifest
from tests.support.events import RC, WS, run_event
from tests.support.warehouse import store_copies

RUN_VIEWS = ("runs", "run_status_history", "run_durations", "failure_rates", "monitor_metrics")
OTHER_WS = "/subscriptions/x/resourceGroups/y/providers/Microsoft.MachineLearningServices/workspaces/other"
T = "Microsoft.MachineLearningServices."
STATUSES = ("NotStarted", "Queued", "Running", "Finalizing", "Completed", "Failed", "Canceled")


def _stream() -> list[bytes]:
    """Runs over three dates with ties, terminal races, RunCompleted echoes, and two
    workspaces (one run id in both)."""
    bodies = []
    for i in range(7):
        run = f"run-{i % 6}"
        extra = {"workspace": OTHER_WS} if i == 6 else {}
        for step, status in enumerate(STATUSES[: 3 + i % 5]):
            bodies.append(run_event(run, status, f"2025-01-0{1 + i % 3}T23:5{step}:00Z",
                                    experiment=f"exp{i % 2}", run_type=("automl", None)[i % 2], **extra))
        if i % 3 == 0:  # a terminal status at the same instant as Running
            bodies.append(run_event(run, "Canceled", f"2025-01-0{1 + i % 3}T23:52:00Z", **extra))
        bodies.append(run_event(run, None, f"2025-01-0{2 + i % 3}T00:09:00Z", event_type=RC, **extra))
    return bodies


def _model_events() -> list[bytes]:
    """Registrations and deployments (two models each) over two dates, two in one minute."""
    bodies = []
    for i in range(4):
        time = f"2025-01-0{1 + i % 2}T23:5{i}:30Z"
        bodies.append(orjson.dumps({
            "topic": WS, "subject": f"models/m{i}:1", "eventType": T + "ModelRegistered",
            "eventTime": time, "id": f"reg-{i}", "dataVersion": "2",
            "data": {"modelName": f"m{i}", "modelVersion": "1", "modelTags": {}, "modelProperties": {}}}))
        bodies.append(orjson.dumps({
            "topic": WS, "subject": f"endpoints/svc{i % 2}", "eventType": T + "ModelDeployed",
            "eventTime": time, "id": f"dep-{i}", "dataVersion": "2",
            "data": {"serviceName": f"svc{i % 2}", "serviceComputeType": "ACI",
                     "modelIds": f"m{i}:1,m{i + 1}:1", "serviceTags": {}, "serviceProperties": {}}}))
    return bodies


STREAM = _stream() + _model_events()


class Crash(Exception):
    """Stands for a process killed at that point."""


def views(root: Path, *, use_state: bool) -> dict[str, list]:
    con, _ = open_views(root, use_state=use_state)
    try:
        return {v: sorted(con.execute(f"SELECT * FROM {v}").fetchall(), key=repr) for v in RUN_VIEWS}
    finally:
        con.close()


def step(root: Path, action: str, clock: list[float]) -> None:
    clock[0] += 10
    now = lambda: clock[0]  # noqa: E731
    if action == "compact":
        compact(root, now_s=now, grace_s=15)
    elif action == "fold only":
        compact(root, now_s=now, grace_s=15, min_files=10**6)
    elif action == "crash after the state files":
        fold(root)  # a generation written, never published
    elif action == "crash before the manifest":
        with mock.patch.object(compaction, "publish", side_effect=Crash), pytest.raises(Crash):
            compact(root, now_s=now, grace_s=15)


ACTIONS = ("nothing", "compact", "fold only", "crash after the state files", "crash before the manifest")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(len(STREAM))),
       dups=st.lists(st.integers(0, len(STREAM) - 1), max_size=10),
       cuts=st.lists(st.integers(1, len(STREAM)), min_size=1, max_size=4),
       actions=st.lists(st.sampled_from(ACTIONS), min_size=5, max_size=5))
def test_maintained_state_equals_the_reference_views(tmp_path_factory, order, dups, cuts, actions):
    root = tmp_path_factory.mktemp("wh")
    bodies = [STREAM[i] for i in order] + [STREAM[i] for i in dups]
    bounds = sorted(set(cuts) | {0, len(bodies)})
    clock = [1000.0]
    for n, (start, end) in enumerate(zip(bounds, bounds[1:])):
        store_copies(root, bodies[start:end], n)
        step(root, actions[n % len(actions)], clock)
        assert views(root, use_state=True) == views(root, use_state=False), actions
    step(root, "compact", clock)
    assert read_manifest(root) is not None
    assert views(root, use_state=True) == views(root, use_state=False)


def test_the_state_is_used_and_a_rebuild_gives_the_same_rows(tmp_path):
    store_copies(tmp_path, STREAM[::2], 0)
    compact(tmp_path, now_s=lambda: 0.0)
    store_copies(tmp_path, STREAM[1::2], 1)
    con, scope = open_views(tmp_path)
    assert scope is not None and scope.fresh and scope.touched_runs > 0
    con.close()
    before = views(tmp_path, use_state=True)

    report = compact(tmp_path, now_s=lambda: 10.0, rebuild_state=True)
    assert report.fold is not None
    _, scope = open_views(tmp_path)
    assert scope is not None and not scope.fresh and scope.touched_runs == 0
    assert views(tmp_path, use_state=True) == before == views(tmp_path, use_state=False)
