"""`python -m devstack up/down`: background stack, env file, and stopping exactly its pids."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest
from azure.eventhub.aio import EventHubProducerClient

from devstack.azurite import ACCOUNT, list_blobs

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _stack(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devstack", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)


def _read_env(path: str) -> dict[str, str]:
    env = {}
    with open(path) as fh:
        for line in fh:
            assert line.startswith("export ")
            key, _, value = line[len("export "):].strip().partition("=")
            env[key] = shlex.split(value)[0]
    return env


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}") and "Z" not in open(f"/proc/{pid}/stat").read().split(")")[1][:3]


@pytest.mark.asyncio
async def test_stack_up_writes_env_and_down_stops_its_processes(tmp_path):
    stack_dir = str(tmp_path / ".stack")
    up = _stack("up", "--dir", stack_dir, "--hubs", "ehx:2,eh2:8")
    assert up.returncode == 0, up.stderr
    try:
        env = _read_env(os.path.join(stack_dir, "env"))
        pids = [int(line.split()[1]) for line in open(os.path.join(stack_dir, "pids"))]
        assert set(env) == {"AMLWH_EVENTHUB__CONNECTION_STRING", "AMLWH_EVENTHUB__NAME",
                            "AMLWH_CHECKPOINT__CONNECTION_STRING", "AMLWH_CHECKPOINT__CONTAINER"}
        assert env["AMLWH_EVENTHUB__NAME"] == "ehx"
        assert "UseDevelopmentEmulator=true" in env["AMLWH_EVENTHUB__CONNECTION_STRING"]
        assert env["AMLWH_CHECKPOINT__CONTAINER"] == "checkpoints"
        assert all(_alive(pid) for pid in pids)
        assert _stack("up", "--dir", stack_dir).returncode == 1  # refuses to start twice

        producer = EventHubProducerClient.from_connection_string(env["AMLWH_EVENTHUB__CONNECTION_STRING"])
        async with producer:
            assert (await producer.get_eventhub_properties())["partition_ids"] == ["0", "1"]
        blob_endpoint = env["AMLWH_CHECKPOINT__CONNECTION_STRING"].split("BlobEndpoint=")[1].rstrip(";")
        assert blob_endpoint.startswith("http://127.0.0.1:") and blob_endpoint.endswith(f"/{ACCOUNT}")
        assert list_blobs(blob_endpoint, "checkpoints") == {}  # the container exists
    finally:
        down = _stack("down", "--dir", stack_dir)
    assert down.returncode == 0, down.stderr
    assert not any(_alive(pid) for pid in pids)
    assert not os.path.exists(os.path.join(stack_dir, "pids"))
