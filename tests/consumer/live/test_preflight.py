"""`amlwh run` checks the hub, the consumer group, the checkpoint container and the warehouse
before it starts: each mistake, made for real against the local hub and Azurite, ends the
real CLI within seconds with exit code 1 and a message naming what, where and what to do."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error

import pytest

from devstack.azurite import ACCOUNT_KEY
from devstack.processes import free_port
from tests.support.events import REPO
from tests.support.worker import worker_env

pytestmark = pytest.mark.integration

SAS_KEY = "U1VQRVJTRUNSRVRLRVk="  # a wrong SharedAccessKey
ACCOUNT_SECRET = "V1JPTkdBQ0NPVU5US0VZV1JPTkdBQ0NPVU5US0VZ"  # a wrong AccountKey
SECRETS = (SAS_KEY, ACCOUNT_SECRET, ACCOUNT_KEY)


@pytest.fixture
def stack(tmp_path, local_hub, make_hub, azurite, checkpoint_container):
    hub = make_hub(2, consumer_groups=("Workers",))
    env = worker_env(local_hub.connection_string(hub), azurite.connection_string, checkpoint_container,
                     tmp_path / "wh")
    return {"hub": hub, "env": env, "local_hub": local_hub, "azurite": azurite,
            "container": checkpoint_container, "tmp": tmp_path}


def run(env: dict, *args: str):
    """`amlwh run ARGS` to its end; a worker that got past a check it should have failed is
    stopped after 60 s, and the test fails on its exit code."""
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "consumer", "run", *args], capture_output=True, text=True,
                              env=env, cwd=REPO, timeout=60, check=False)
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
        raise AssertionError(f"amlwh run was still running after 60s:\n{output[-3000:]}") from None
    return proc, proc.stdout + proc.stderr, time.monotonic() - started


def assert_refused(stack, env: dict, *says: str) -> str:
    proc, output, took = run(env)
    assert proc.returncode == 1, output
    for text in says:
        assert text in output, output
    assert "Traceback" not in output and "Unclosed" not in output, output
    assert not any(secret in output for secret in SECRETS), output
    assert took < 30, f"the check took {took:.1f}s"
    # refused before the worker started: it claimed nothing, and the probes left nothing behind
    assert stack["azurite"].list_blobs(stack["container"]) == {}
    return output


def test_an_unreachable_hub(stack):
    port = free_port()
    cs = f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=k;SharedAccessKey={SAS_KEY};" \
         f"UseDevelopmentEmulator=true;EntityPath={stack['hub']}"
    assert_refused(stack, dict(stack["env"], AMLWH_EVENTHUB__CONNECTION_STRING=cs),
                   f"cannot reach the hub at 127.0.0.1:{port}: connection refused",
                   "AMLWH_EVENTHUB__CONNECTION_STRING")


def test_a_hub_name_that_does_not_resolve(stack):
    cs = f"Endpoint=sb://no-such-namespace.invalid/;SharedAccessKeyName=k;SharedAccessKey={SAS_KEY};EntityPath=eh1"
    assert_refused(stack, dict(stack["env"], AMLWH_EVENTHUB__CONNECTION_STRING=cs),
                   "cannot reach the hub at no-such-namespace.invalid:5671: the name does not resolve")


def test_a_wrong_shared_access_key(stack):
    cs = stack["local_hub"].connection_string(stack["hub"], key=SAS_KEY)
    assert_refused(stack, dict(stack["env"], AMLWH_EVENTHUB__CONNECTION_STRING=cs),
                   f"the hub refused the credentials for event hub '{stack['hub']}'", "SharedAccessKey in")


def test_an_event_hub_that_does_not_exist(stack):
    assert_refused(stack, dict(stack["env"], AMLWH_EVENTHUB__NAME="no-such-hub"),
                   "there is no event hub 'no-such-hub'", "AMLWH_EVENTHUB__NAME")


def test_a_consumer_group_that_does_not_exist(stack):
    assert_refused(stack, dict(stack["env"], AMLWH_EVENTHUB__CONSUMER_GROUP="reporting"),
                   f"the event hub '{stack['hub']}' at", "has no consumer group 'reporting'",
                   "AMLWH_EVENTHUB__CONSUMER_GROUP")


def test_a_missing_checkpoint_container(stack):
    assert_refused(stack, dict(stack["env"], AMLWH_CHECKPOINT__CONTAINER="no-such-container"),
                   "the checkpoint container", "/devstoreaccount1/no-such-container does not exist",
                   "az storage container create --name no-such-container")
    with pytest.raises(urllib.error.HTTPError, match="404"):  # nothing created it
        stack["azurite"].list_blobs("no-such-container")


def test_a_wrong_account_key(stack):
    cs = stack["azurite"].connection_string.replace(ACCOUNT_KEY, ACCOUNT_SECRET)
    assert_refused(stack, dict(stack["env"], AMLWH_CHECKPOINT__CONNECTION_STRING=cs),
                   "refused the credentials for the checkpoint container", "AccountKey")


def test_an_unreachable_checkpoint_store(stack):
    cs = stack["azurite"].connection_string.replace(f":{stack['azurite'].port}/", f":{free_port()}/")
    assert_refused(stack, dict(stack["env"], AMLWH_CHECKPOINT__CONNECTION_STRING=cs),
                   "cannot reach the checkpoint store at http://127.0.0.1:", "AMLWH_CHECKPOINT__CONNECTION_STRING")


def test_an_unwritable_warehouse(stack):
    blocker = stack["tmp"] / "a-file"
    blocker.write_text("a regular file where the warehouse's parent should be\n")  # stops even root
    assert_refused(stack, dict(stack["env"], AMLWH_WAREHOUSE__PATH=str(blocker / "wh")),
                   f"cannot write to the warehouse at {blocker / 'wh'}", "AMLWH_WAREHOUSE__PATH")
    assert blocker.read_text().startswith("a regular file")


def test_a_good_setup_passes_and_the_probes_leave_nothing_behind(stack):
    # the consumer group is matched as the service matches it: case-insensitively
    env = dict(stack["env"], AMLWH_EVENTHUB__CONSUMER_GROUP="workers")
    proc, output, _ = run(env, "--stop-when-idle", "1")
    assert proc.returncode == 0, output
    assert "receiving from" in output and "has no consumer group" not in output
    blobs = stack["azurite"].list_blobs(stack["container"])
    assert not [name for name in blobs if name.startswith("amlwh-preflight/")], blobs
    assert any("/workers/ownership/" in name for name in blobs), blobs  # the worker ran
    assert not list((stack["tmp"] / "wh").glob(".amlwh-preflight-*"))


@pytest.mark.parametrize("variable", ["AMLWH_EVENTHUB__CONNECTION_STRING", "AMLWH_CHECKPOINT__CONNECTION_STRING"])
def test_a_malformed_connection_string_is_a_configuration_error_before_anything_is_dialled(stack, variable):
    section = variable.split("__")[0].removeprefix("AMLWH_").lower()
    proc, output, _ = run(dict(stack["env"], **{variable: f"SharedAccessKey={SAS_KEY};EntityPath=eh1"}))
    assert proc.returncode == 2, output
    assert f"configuration error: [{section}] connection_string ({variable}): Connection string" in output, output
    assert "Traceback" not in output and SAS_KEY not in output, output


def test_an_sdk_without_the_receiver_the_group_check_drives_skips_it_with_a_warning(caplog):
    """The consumer-group probe drives azure-eventhub's own receiver (probes.py says why); a
    version without it must cost the check, not the start."""
    import asyncio

    from consumer.config import EventHubSettings
    from consumer.eventhub.probes import probe_consumer_group

    class OtherSdkClient:  # a consumer client of an SDK version without `_create_consumer`
        pass

    class OtherSdkReceiver:  # one whose receiver lacks the methods the probe drives
        async def close(self) -> None:
            self.closed = True

    class ClientWithOtherReceiver:
        def __init__(self) -> None:
            self.receiver = OtherSdkReceiver()

        def _create_consumer(self, *args, **kwargs):
            return self.receiver

    settings = EventHubSettings(consumer_group="analytics")
    with caplog.at_level("WARNING", logger="amlwh.preflight"):
        asyncio.run(probe_consumer_group(OtherSdkClient(), settings, "hub", "0"))
        other = ClientWithOtherReceiver()
        asyncio.run(probe_consumer_group(other, settings, "hub", "0"))
    warnings = [r for r in caplog.records if "consumer group 'analytics' not checked" in r.getMessage()]
    assert len(warnings) == 2
    assert other.receiver.closed
