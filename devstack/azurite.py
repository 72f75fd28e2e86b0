"""Azurite (blob service only) for checkpoint stores, with a tiny SharedKey client for setup.

Data lives in a work directory (not in memory), so stop()/start() on the same port models a
storage outage: blobs written before it are still there after it.

With `tls=` (a devstack.tls.SelfSignedCert) it serves HTTPS with that certificate and
`--oauth basic`: it then also takes bearer tokens (the blob SDK sends them over HTTPS only),
checking that they are JWTs for storage (`aud` https://storage.azure.com or the account's
blob address), from an Azure AD issuer (`iss` https://sts.windows.net/...) and in their
lifetime (`iat`, `nbf`, `exp`); it cannot check signatures. SharedKey still works beside them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

from .processes import ChildProcess, free_port, terminate, wait_for_port

REPO_ROOT = Path(__file__).resolve().parents[1]
AZURITE_BIN = REPO_ROOT / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
API_VERSION = "2021-08-06"
START_TIMEOUT_S = 30.0


class Azurite(ChildProcess):
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, location: str | None = None, tls=None):
        if not AZURITE_BIN.exists():
            raise RuntimeError(f"Azurite is not installed at {AZURITE_BIN}; run `make install` "
                               "(it runs npm install --prefix .tools/azurite azurite@3.35.0)")
        self.host = host
        self.port = port or free_port(host)
        self.tls = tls  # SelfSignedCert: HTTPS with --oauth basic
        self._own_location = location is None
        self.location = location or tempfile.mkdtemp(prefix="amlwh-azurite-")
        os.makedirs(self.location, exist_ok=True)
        self.log_path = os.path.join(self.location, "azurite.log")
        self._proc: subprocess.Popen | None = None

    @property
    def blob_endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/{ACCOUNT}"

    @property
    def account_url(self) -> str:
        """The blob endpoint as `[checkpoint] account_url` (path-style: the account in the path)."""
        return self.blob_endpoint

    @property
    def connection_string(self) -> str:
        protocol = "https" if self.tls else "http"
        return (f"DefaultEndpointsProtocol={protocol};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.blob_endpoint};")

    def start(self) -> Azurite:
        if self.running:
            return self
        cmd = [str(AZURITE_BIN), "--blobHost", self.host, "--blobPort", str(self.port),
               "--location", self.location, "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"]
        if self.tls is not None:
            cmd += ["--cert", str(self.tls.cert), "--key", str(self.tls.key), "--oauth", "basic"]
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
        finally:
            log.close()
        # recorded until stop(), so a reaper stops it if this process dies first
        self._track("azurite", ["azurite", "--location", self.location])
        if not wait_for_port(self.host, self.port, START_TIMEOUT_S, self._proc):
            self.stop()
            with open(self.log_path, errors="replace") as fh:
                raise RuntimeError(f"Azurite did not start on port {self.port}:\n{fh.read()[-2000:]}")
        return self

    def stop(self) -> None:
        if self._proc is None:
            return
        terminate(self._proc, 10, group=True)  # azurite-blob is a node script: stop its group
        self._proc = None
        self._untrack()

    def cleanup(self) -> None:
        self.stop()
        if self._own_location:
            shutil.rmtree(self.location, ignore_errors=True)

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def _context(self):
        return self.tls.client_context() if self.tls is not None else None

    def create_container(self, name: str) -> bool:
        return create_container(self.blob_endpoint, name, context=self._context())

    def list_blobs(self, container: str, prefix: str = "") -> dict[str, dict[str, str]]:
        return list_blobs(self.blob_endpoint, container, prefix, context=self._context())


# ---------------------------------------------------------------- minimal blob REST (SharedKey)
# Enough to set up containers and inspect checkpoint blobs without another SDK dependency.


def _request(blob_endpoint: str, method: str, path: str, query: dict[str, str], context=None) -> bytes:
    url = f"{blob_endpoint}/{path}" + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": API_VERSION}
    headers["Authorization"] = _shared_key(method, url, headers)
    request = urllib.request.Request(url, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=10, context=context) as resp:
        return resp.read()


def create_container(blob_endpoint: str, name: str, *, context=None) -> bool:
    """Create a container on the devstoreaccount1 endpoint; False if it already existed.
    `context`: the SSL context for an HTTPS endpoint."""
    try:
        _request(blob_endpoint, "PUT", name, {"restype": "container"}, context)
        return True
    except urllib.error.HTTPError as exc:
        if exc.code == 409:
            return False
        raise


def list_blobs(blob_endpoint: str, container: str, prefix: str = "", *, context=None) -> dict[str, dict[str, str]]:
    """Blob name -> metadata (lower-cased keys), e.g. for checkpoint and ownership blobs."""
    query = {"restype": "container", "comp": "list", "include": "metadata"}
    if prefix:
        query["prefix"] = urllib.request.quote(prefix, safe="")
    root = ET.fromstring(_request(blob_endpoint, "GET", container, query, context))
    blobs = {}
    for blob in root.iter("Blob"):
        meta = blob.find("Metadata")
        blobs[blob.findtext("Name")] = {m.tag.lower(): m.text or "" for m in (meta if meta is not None else [])}
    return blobs


def _shared_key(method: str, url: str, headers: dict[str, str]) -> str:
    parsed = urlparse(url)
    ms_headers = "".join(f"{k.lower()}:{v}\n" for k, v in sorted(headers.items()) if k.lower().startswith("x-ms-"))
    resource = f"/{ACCOUNT}{parsed.path}"
    for key, value in sorted(parse_qsl(parsed.query)):
        resource += f"\n{key.lower()}:{value}"
    # VERB, 11 standard headers (all empty here), canonical x-ms headers, canonical resource.
    string_to_sign = method + "\n" * 12 + ms_headers + resource
    digest = hmac.new(base64.b64decode(ACCOUNT_KEY), string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    return f"SharedKey {ACCOUNT}:{base64.b64encode(digest).decode()}"
