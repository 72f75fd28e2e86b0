"""A managed identity token endpoint for tests, in the App Service / Azure Functions shape
that azure-identity's ManagedIdentityCredential (and so DefaultAzureCredential) uses when
IDENTITY_ENDPOINT and IDENTITY_HEADER are set:

    GET <IDENTITY_ENDPOINT>?api-version=2019-08-01&resource=<resource>[&client_id=<id>]
    X-IDENTITY-HEADER: <IDENTITY_HEADER>
    -> 200 {"access_token", "expires_on" (epoch s), "resource", "token_type": "Bearer", "client_id"}

Each request is recorded (resource, client_id), so a test can check which scopes a process
asked for: azure-identity turns a scope "<resource>/.default" into the resource. The tokens
are JWTs made by devstack/jwt_tokens.py with `aud` = the resource asked for, unless
`audience` overrides it (a token for the wrong service). Runs in a thread of the test process.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .jwt_tokens import make_token

API_VERSION = "2019-08-01"


@dataclass(frozen=True)
class TokenRequest:
    resource: str
    client_id: str | None


class IdentityEndpoint:
    def __init__(self, *, audience: str | None = None, lifetime_s: int = 3600, host: str = "127.0.0.1"):
        self.audience = audience  # None: each token's aud is the resource asked for
        self.lifetime_s = lifetime_s
        self.secret = secrets.token_urlsafe(16)
        self.requests: list[TokenRequest] = []
        self.refusals: list[str] = []  # requests refused, and why
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/msi/token"

    @property
    def env(self) -> dict[str, str]:
        """The variables that point azure-identity's managed identity credential here."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.secret}

    def resources(self) -> set[str]:
        with self._lock:
            return {r.resource for r in self.requests}

    def client_ids(self) -> set[str | None]:
        with self._lock:
            return {r.client_id for r in self.requests}

    def start(self) -> IdentityEndpoint:
        self._thread = threading.Thread(target=self._server.serve_forever, name="identity-endpoint", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> IdentityEndpoint:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _answer(self, path: str, headers) -> tuple[int, dict]:
        url = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path != "/msi/token":
            return 404, {"error": "not_found", "error_description": f"no such path {url.path}"}
        if headers.get("X-IDENTITY-HEADER") != self.secret:
            return 401, {"error": "unauthorized", "error_description": "X-IDENTITY-HEADER is missing or wrong"}
        if query.get("api-version") != API_VERSION or not query.get("resource"):
            return 400, {"error": "invalid_request",
                         "error_description": f"expected api-version={API_VERSION} and a resource, got {query}"}
        resource, client_id = query["resource"], query.get("client_id")
        with self._lock:
            self.requests.append(TokenRequest(resource, client_id))
        token, expires_on = make_token(self.audience or resource, lifetime_s=self.lifetime_s, client_id=client_id)
        return 200, {"access_token": token, "expires_on": str(expires_on), "resource": resource,
                     "token_type": "Bearer", "client_id": client_id or ""}

    def _handler(self):
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = endpoint._answer(self.path, self.headers)
                if status != 200:
                    with endpoint._lock:
                        endpoint.refusals.append(body["error_description"])
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:  # quiet: the test reads `requests`
                pass

        return Handler
