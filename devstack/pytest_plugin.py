"""pytest fixtures for the local stack, registered for the whole suite by `-p devstack.pytest_plugin` (pyproject addopts).

- local_hub (session): a LocalHub with hub eh1 (4 partitions).
- azurite (session): Azurite blob service.
- fresh_hub_name: a new uniquely named hub (4 partitions) on local_hub, so tests never see each
  other's events; hub faults are reset (and a stopped hub restarted) afterwards.
- make_hub: factory for hubs with other partition counts / consumer groups.
- checkpoint_container: a new empty container on azurite.
- local_hub_factory: private LocalHubs (for tests that kill, restart or persist a hub).

Hubs and Azurites run in process groups of their own and are recorded while they run
(devstack/processes.py): a session first stops those that dead sessions left behind (their
pytest was SIGKILLed or crashed), and at its end stops any of its own still running.
"""

from __future__ import annotations

import itertools
import os
import sys
import uuid

import pytest

from .azurite import Azurite
from .local_hub import LocalHub
from .processes import reap_orphans

_counter = itertools.count()


def _unique(prefix: str) -> str:
    return f"{prefix}{next(_counter)}-{uuid.uuid4().hex[:8]}"


def _report(config, what: str, stopped: list[dict]) -> None:
    if not stopped:
        return
    line = f"devstack: stopped {len(stopped)} {what}: " + ", ".join(
        f"{e['kind']} pid {e['pid']} (owner {e['owner']})" for e in stopped)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)
    else:
        print(line, file=sys.stderr)


def pytest_sessionstart(session):
    # hubs and Azurites whose pytest died (SIGKILL, crash) before its fixtures could stop them
    _report(session.config, "process(es) left behind by dead test sessions", reap_orphans())


def pytest_unconfigure(config):
    # anything this session started and did not stop (a test that forgot cleanup())
    _report(config, "process(es) this session left running", reap_orphans(owned_by=os.getpid()))


@pytest.fixture(scope="session")
def local_hub(tmp_path_factory):
    hub = LocalHub("eh1:4", work_dir=str(tmp_path_factory.mktemp("local-hub")))
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    server = Azurite(location=str(tmp_path_factory.mktemp("azurite")))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_hub(local_hub):
    def create(partitions: int = 4, consumer_groups: tuple[str, ...] = ()) -> str:
        name = _unique("t")
        local_hub.create_hub(name, partitions, consumer_groups)
        return name

    yield create
    if not local_hub.running:
        local_hub.start()
    local_hub.reset_faults()


@pytest.fixture
def fresh_hub_name(make_hub) -> str:
    return make_hub(4)


@pytest.fixture
def checkpoint_container(azurite) -> str:
    if not azurite.running:
        azurite.start()
    name = _unique("cp")
    azurite.create_container(name)
    return name


@pytest.fixture
def local_hub_factory(tmp_path):
    hubs: list[LocalHub] = []

    def create(hubs_spec: str = "eh1:4", **kwargs) -> LocalHub:
        kwargs.setdefault("work_dir", str(tmp_path / f"hub{len(hubs)}"))
        (tmp_path / f"hub{len(hubs)}").mkdir(exist_ok=True)
        hub = LocalHub(hubs_spec, **kwargs)
        hubs.append(hub)
        return hub.start()

    yield create
    for hub in hubs:
        hub.kill()
