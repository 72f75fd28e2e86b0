"""The local hub's checks of Azure AD tokens (CBS put-token of type `jwt`): what Event Hubs
refuses without needing Azure AD's signing keys, in the service's words."""

from __future__ import annotations

import time

from devstack.jwt_tokens import make_token, validate_jwt

CBS_NAME = "sb://amlwh-aad.servicebus.windows.net/eh1"


def test_a_token_for_event_hubs_is_taken_until_it_expires():
    for audience in ("https://eventhubs.azure.net/", "https://eventhubs.azure.net",
                     "https://amlwh-aad.servicebus.windows.net/"):
        token, expires = make_token(audience)
        claims, reason = validate_jwt(token, CBS_NAME)
        assert reason == "" and claims.audience == audience and claims.expires_at == expires


def test_refusals_name_what_is_wrong():
    now = time.time()
    cases = {
        make_token("https://storage.azure.com")[0]:
            "InvalidAudience: The authorization header contains a token with a wrong audience.",
        make_token("https://other-ns.servicebus.windows.net.evil.example/")[0]:
            "InvalidAudience: The authorization header contains a token with a wrong audience.",
        make_token("https://eventhubs.azure.net/", issuer="https://issuer.example/")[0]:
            "InvalidIssuer: Token issuer is invalid.",
        make_token("https://eventhubs.azure.net/", now=now - 7200, lifetime_s=3600)[0]:
            "ExpiredToken: The token is expired.",
        make_token("https://eventhubs.azure.net/", now=now + 3600)[0]:
            "InvalidToken: The token is not valid yet.",
        "not.a-jwt": "InvalidToken: The token is malformed.",
        "SharedAccessSignature sr=x&sig=y&se=1&skn=z": "InvalidToken: The token is malformed.",
    }
    for token, reason in cases.items():
        assert validate_jwt(token, CBS_NAME) == (None, reason), token
