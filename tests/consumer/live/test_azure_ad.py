"""`amlwh publish` and `amlwh run` with Azure AD instead of connection strings, end to end.

The real DefaultAzureCredential in the real CLI processes takes its tokens from a managed
identity endpoint (App Service shape, devstack/identity_endpoint.py) that records which
resources it was asked for. The local hub serves AMQP over TLS with a certificate made here
and checks the JWTs it gets by CBS put-token (type `jwt`, devstack/jwt_tokens.py); Azurite
serves HTTPS with the same certificate and `--oauth basic`, so the checkpoint store (and a
warehouse in Blob Storage) runs on bearer tokens. No connection string is set anywhere in
the workers' environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from consumer.query.connection import connect
from devstack.azurite import Azurite
from devstack.identity_endpoint import IdentityEndpoint
from devstack.local_hub import LocalHub
from devstack.tls import make_self_signed_cert
from tests.support.cli import amlwh, clean_env
from tests.support.events import REPO
from tests.support.worker import FAST

pytestmark = pytest.mark.integration

NAMESPACE = "amlwh-aad.servicebus.windows.net"  # what tokens and checkpoints name; dialled at the TLS port
CLIENT_ID = "3c1d6a5e-7b9f-4c2a-9d8e-aad000000001"  # a user-assigned identity
EVENTS = REPO / "tests" / "data" / "hand_checked.ndjson"
# what the SDKs ask for: azure-eventhub's scope is "https://eventhubs.azure.net//.default"
# and azure-identity sends a managed identity endpoint the scope without "/.default"
EVENTHUBS_RESOURCE = "https://eventhubs.azure.net/"
STORAGE_RESOURCE = "https://storage.azure.com"


@pytest.fixture(scope="module")
def tls_stack(tmp_path_factory):
    """A local hub with a TLS listener and an HTTPS, OAuth-checking Azurite, one certificate."""
    root = tmp_path_factory.mktemp("aad")
    cert = make_self_signed_cert(root / "tls")
    (root / "hub").mkdir()
    hub = LocalHub("aad:2", work_dir=str(root / "hub"), tls_cert=str(cert.cert), tls_key=str(cert.key))
    azurite = Azurite(location=str(root / "azurite"), tls=cert)
    hub.start()
    try:
        azurite.start()
        yield hub, azurite, cert
    finally:
        azurite.cleanup()
        hub.cleanup()


@pytest.fixture
def aad_env(tls_stack, tmp_path):
    """The workers' environment without a connection string or another Azure identity."""
    hub, azurite, cert = tls_stack
    container = f"aad{uuid.uuid4().hex[:8]}"
    azurite.create_container(container)
    hub_name = f"h{uuid.uuid4().hex[:8]}"
    hub.create_hub(hub_name, 2)
    env = {k: v for k, v in clean_env().items()
           if not k.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_"))}
    env.update(FAST, AMLWH_EVENTHUB__FULLY_QUALIFIED_NAMESPACE=NAMESPACE, AMLWH_EVENTHUB__CUSTOM_ENDPOINT_ADDRESS=hub.fully_qualified_namespace, AMLWH_EVENTHUB__CONNECTION_VERIFY=str(cert.cert), AMLWH_EVENTHUB__NAME=hub_name, AMLWH_CHECKPOINT__ACCOUNT_URL=azurite.account_url, AMLWH_CHECKPOINT__CONNECTION_VERIFY=str(cert.cert), AMLWH_CHECKPOINT__CONTAINER=container, AMLWH_IDENTITY__CLIENT_ID=CLIENT_ID, AMLWH_WAREHOUSE__PATH=str(tmp_path / "wh"))
    assert not any("CONNECTION_STRING" in k for k in env)
    return {"env": env, "hub": hub_name, "container": container, "azurite": azurite,
            "warehouse": tmp_path / "wh", "tmp": tmp_path}


def run_worker(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "consumer", "run", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=90, check=False)


# what a live run and a backfill of the same file agree on (not when rows were stored)
COMPARED = {view: f"SELECT * FROM {view}" for view in ("runs", "run_status_history", "models", "deployments", "drift")}
COMPARED["dead_letters"] = "SELECT reason, payload_text FROM dead_letters"


def rows_of(env: dict, sql: str) -> list:
    """A statement's rows as `amlwh query` gives them, sorted."""
    out = amlwh("query", sql, "--format", "json", env=env).stdout
    return sorted(json.loads(out), key=repr)


@pytest.mark.parametrize("where", ["local", "blob"])
def test_run_consumes_and_checkpoints_with_managed_identity_tokens(aad_env, where):
    env, hub = aad_env["env"], aad_env["hub"]
    if where == "blob":  # the warehouse too: a container the worker makes, on the same tokens
        env = dict(env, AMLWH_WAREHOUSE__PATH=f"abfs://wh{aad_env['container']}/teams/ml",
                   AMLWH_WAREHOUSE__ACCOUNT_URL=aad_env["azurite"].account_url,
                   AMLWH_WAREHOUSE__CONNECTION_VERIFY=env["AMLWH_CHECKPOINT__CONNECTION_VERIFY"],
                   AMLWH_WAREHOUSE__CACHE_DIR=str(aad_env["tmp"] / "cache"),
                   AMLWH_WAREHOUSE__WORK_DIR=str(aad_env["tmp"] / "work"))
    with IdentityEndpoint() as identity:
        env = dict(env, **identity.env)
        published = amlwh("publish", str(EVENTS), "--partition-key", "subject", env=env)
        assert f"event(s) to {hub}" in published.stdout
        sent = int(published.stdout.split()[1].replace(",", ""))
        done = run_worker(env, "--stop-when-idle", "2")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "stopped: flushed and checkpointed 2 partition(s)" in done.stderr

        # exactly the real scopes, for the configured user-assigned identity, nothing refused
        assert identity.resources() == {EVENTHUBS_RESOURCE, STORAGE_RESOURCE}
        assert identity.client_ids() == {CLIENT_ID}
        assert identity.refusals == []

        # the rows: what a backfill of the same file stores
        files = aad_env["tmp"] / "files"
        amlwh("backfill", "files", str(EVENTS), "-q", env={"AMLWH_WAREHOUSE__PATH": str(files)})
        if where == "blob":  # read back with `amlwh query` on the same identity
            assert not (aad_env["warehouse"]).exists()
            assert not any((aad_env["tmp"] / "work").iterdir())
            local = {"AMLWH_WAREHOUSE__PATH": str(files)}
            for view, sql in COMPARED.items():
                expected = rows_of(local, sql)
                assert rows_of(env, sql) == expected and (expected or view == "drift"), view
            assert identity.client_ids() == {CLIENT_ID} and identity.refusals == []
    if where == "local":
        assert_same_views(aad_env["warehouse"], files)
    assert_checkpoints(aad_env, hub, sent)


def assert_same_views(warehouse, files) -> None:
    live, want = connect(warehouse), connect(files)
    try:
        for view, sql in COMPARED.items():
            got, expected = (sorted(c.execute(sql).fetchall(), key=repr) for c in (live, want))
            assert got == expected, view
        assert live.execute("SELECT count(*) FROM runs").fetchone()[0] > 0
    finally:
        live.close()
        want.close()


def assert_checkpoints(aad_env, hub: str, sent: int) -> None:
    """Checkpoints and ownership in the HTTPS Azurite, under the namespace, covering every event sent."""
    prefix = f"{NAMESPACE}/{hub}/$default/".lower()
    blobs = aad_env["azurite"].list_blobs(aad_env["container"], prefix)
    checkpoints = {name.rsplit("/", 1)[1]: meta for name, meta in blobs.items() if "/checkpoint/" in name}
    assert set(checkpoints) == {"0", "1"}, blobs
    assert sum(int(meta["sequencenumber"]) + 1 for meta in checkpoints.values()) == sent
    assert {name.rsplit("/", 1)[1] for name in blobs if "/ownership/" in name} == {"0", "1"}


def test_a_token_for_another_audience_is_refused_by_the_hub(aad_env):
    """A token the identity endpoint issues for the wrong service: the hub refuses the CBS
    put-token as Event Hubs does, and `amlwh run` stops in its preflight with what to check."""
    with IdentityEndpoint(audience="https://management.azure.com/") as identity:
        done = run_worker(dict(aad_env["env"], **identity.env))
        assert identity.resources() == {EVENTHUBS_RESOURCE}  # it got no further than the hub
    assert done.returncode == 1, done.stderr[-3000:]
    assert (f"the hub refused the Azure AD token for event hub '{aad_env['hub']}' at "
            f"{aad_env['env']['AMLWH_EVENTHUB__CUSTOM_ENDPOINT_ADDRESS']}") in done.stderr
    assert "InvalidAudience: The authorization header contains a token with a wrong audience." in done.stderr
    assert "Azure Event Hubs Data Receiver" in done.stderr
    assert "Traceback" not in done.stderr
    assert aad_env["azurite"].list_blobs(aad_env["container"]) == {}
    assert not os.path.exists(aad_env["warehouse"] / "raw_events")


def test_no_usable_identity_is_said_before_the_hub_is_asked(aad_env):
    """The managed identity endpoint refuses the process (here: a wrong IDENTITY_HEADER, as
    for an identity not assigned to the host): the preflight says no token was had."""
    with IdentityEndpoint() as identity:
        done = run_worker({**aad_env["env"], **identity.env, "IDENTITY_HEADER": "not-the-secret"})
        assert identity.requests == [] and identity.refusals
    assert done.returncode == 1, done.stderr[-3000:]
    assert f"no Azure AD token for event hub '{aad_env['hub']}'" in done.stderr
    assert "[identity] client_id" in done.stderr and "Traceback" not in done.stderr
    assert "not-the-secret" not in done.stderr
