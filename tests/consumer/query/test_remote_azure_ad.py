"""`amlwh query` on a warehouse in Blob Storage with Azure AD instead of a connection string:
the real DefaultAzureCredential of the CLI process takes a token from a managed identity
endpoint (devstack/identity_endpoint.py) for the configured user-assigned identity, and an
HTTPS Azurite with `--oauth basic` checks it (as in tests/consumer/live/test_azure_ad.py)."""

from __future__ import annotations

import json
import uuid

import pytest
from azure.storage.blob import ContainerClient

from consumer.query.connection import query_warehouse
from devstack.azurite import Azurite
from devstack.identity_endpoint import IdentityEndpoint
from devstack.tls import make_self_signed_cert
from tests.consumer.query.test_remote import PREFIX, build, sync
from tests.support.cli import amlwh, clean_env

pytestmark = pytest.mark.integration

CLIENT_ID = "3c1d6a5e-7b9f-4c2a-9d8e-aad000000002"
SQL = "SELECT run_id, status FROM runs ORDER BY ALL"


@pytest.fixture(scope="module")
def https_azurite(tmp_path_factory):
    root = tmp_path_factory.mktemp("aad-wh")
    cert = make_self_signed_cert(root / "tls")
    with Azurite(location=str(root / "azurite"), tls=cert) as azurite:
        yield azurite, cert


def test_query_reads_a_remote_warehouse_with_managed_identity_tokens(https_azurite, tmp_path):
    azurite, cert = https_azurite
    name = f"wh{uuid.uuid4().hex[:8]}"
    azurite.create_container(name)
    root = tmp_path / "warehouse"
    build(root)
    with ContainerClient.from_connection_string(azurite.connection_string, name,
                                                connection_verify=str(cert.cert)) as container:
        sync(root, container)
    env = {k: v for k, v in clean_env().items() if not k.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_"))}
    env.update(AMLWH_WAREHOUSE__PATH=f"abfss://{name}/{PREFIX}", AMLWH_WAREHOUSE__ACCOUNT_URL=azurite.account_url,
               AMLWH_WAREHOUSE__CONNECTION_VERIFY=str(cert.cert), AMLWH_IDENTITY__CLIENT_ID=CLIENT_ID,
               AMLWH_WAREHOUSE__CACHE_DIR=str(tmp_path / "cache"))
    assert not any("CONNECTION_STRING" in k for k in env)
    with IdentityEndpoint() as identity:
        proc = amlwh("query", SQL, "--format", "json", env=dict(env, **identity.env), cwd=tmp_path)
        assert identity.resources() == {"https://storage.azure.com"}
        assert identity.client_ids() == {CLIENT_ID}
    columns, rows = query_warehouse(root, SQL)
    assert json.loads(proc.stdout) == [dict(zip(columns, row)) for row in rows] != []

    # no identity to take a token as: an operator message, no traceback
    with IdentityEndpoint() as identity:
        refused = {**env, **identity.env, "IDENTITY_HEADER": "wrong"}
        proc = amlwh("query", SQL, env=refused, cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"amlwh: remote warehouse: no Azure AD token for container {name}"), proc.stderr
