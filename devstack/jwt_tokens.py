"""Azure AD access tokens for the local stack: made by the test identity endpoint
(devstack/identity_endpoint.py) and checked by the local hub's CBS node.

Without Azure AD's signing keys no party here can verify a signature, so the hub checks what
Event Hubs checks that needs none: the token is a JWT (three base64url parts, JSON header and
claims), Azure AD issued it (`iss` is an STS address), it is for Event Hubs (`aud` is
https://eventhubs.azure.net/ or the namespace's own address) and it is in its lifetime
(`nbf`, `exp`). Refusals use the service's words ("InvalidAudience: ...").
Azurite's `--oauth basic` makes the same kind of checks for storage tokens.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass

TENANT_ID = "72f988bf-0000-4000-8000-00000000a11d"  # a made-up tenant
ISSUER = f"https://sts.windows.net/{TENANT_ID}/"
# the issuers Azure AD signs access tokens as (v1 and v2 endpoints, public and national clouds)
_ISSUER_PREFIXES = ("https://sts.windows.net/", "https://login.microsoftonline.com/",
                    "https://sts.chinacloudapi.cn/", "https://login.microsoftonline.us/")
EVENTHUBS_AUDIENCES = ("https://eventhubs.azure.net", "https://eventhubs.azure.net/")
_NAMESPACE_AUDIENCE = re.compile(r"^https://[a-z0-9-]+\.servicebus\.windows\.net/?$", re.IGNORECASE)
SYSTEM_ASSIGNED_CLIENT_ID = "0a5e5e5e-0000-4000-8000-000000000001"  # a made-up system-assigned identity
CLOCK_SKEW_S = 300  # what Azure AD's validators allow by default


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(audience: str, *, lifetime_s: int = 3600, client_id: str | None = None,
               issuer: str = ISSUER, now: float | None = None) -> tuple[str, int]:
    """(a JWT shaped like Azure AD's v1 access tokens for a managed identity, its exp). The
    signature is random bytes: nothing here holds Azure AD's keys."""
    now = int(now if now is not None else time.time())
    header = {"typ": "JWT", "alg": "RS256", "kid": "local-stack"}
    claims = {"aud": audience, "iss": issuer, "iat": now, "nbf": now, "exp": now + lifetime_s,
              "appid": client_id or SYSTEM_ASSIGNED_CLIENT_ID, "appidacr": "2",
              "idtyp": "app", "oid": str(uuid.uuid4()), "sub": str(uuid.uuid4()), "tid": TENANT_ID,
              "ver": "1.0"}
    token = ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()),
                      _b64(secrets.token_bytes(256))])
    return token, now + lifetime_s


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith("SharedAccessSignature ")


@dataclass(frozen=True)
class JwtClaims:
    audience: str
    expires_at: float
    claims: dict


def _namespace_audiences(cbs_audience: str | None) -> tuple[str, ...]:
    # the namespace's own address, for the namespace the client dialled (sb://<host>/<hub>)
    if not cbs_audience or "://" not in cbs_audience:
        return ()
    host = cbs_audience.split("://", 1)[1].split("/", 1)[0]
    return (f"https://{host}", f"https://{host}/")


def validate_jwt(token: str, cbs_audience: str | None = None, *, now: float | None = None
                 ) -> tuple[JwtClaims | None, str]:
    """(claims, "") when Event Hubs would take the token as far as can be checked without
    Azure AD's keys, else (None, the reason as the service words it). `cbs_audience` is the
    `name` of the put-token request (sb://<namespace>/<hub>)."""
    now = time.time() if now is None else now
    parts = token.split(".")
    try:
        if len(parts) != 3 or not all(parts):
            raise ValueError("not three parts")
        header, claims = json.loads(_unb64(parts[0])), json.loads(_unb64(parts[1]))
        if not isinstance(header, dict) or not isinstance(claims, dict) or "alg" not in header:
            raise ValueError("no JSON header and claims")
        expires = float(claims["exp"])
        not_before = float(claims.get("nbf", 0))
    except (ValueError, KeyError, TypeError):
        return None, "InvalidToken: The token is malformed."
    issuer = str(claims.get("iss") or "")
    if not issuer.startswith(_ISSUER_PREFIXES):
        return None, "InvalidIssuer: Token issuer is invalid."
    audience = claims.get("aud")
    allowed = EVENTHUBS_AUDIENCES + _namespace_audiences(cbs_audience)
    if not isinstance(audience, str) or not (audience in allowed or _NAMESPACE_AUDIENCE.match(audience)):
        return None, "InvalidAudience: The authorization header contains a token with a wrong audience."
    if expires + CLOCK_SKEW_S < now:
        return None, "ExpiredToken: The token is expired."
    if not_before - CLOCK_SKEW_S > now:
        return None, "InvalidToken: The token is not valid yet."
    return JwtClaims(audience, expires, claims), ""
