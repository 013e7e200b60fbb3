"""Tokens by signed client assertion (RFC 7523), against a real server; every forgery is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from materials_store.models import UsageRecord
from materials_store.store import disable_client, verify_usage_chain
from tests.api.conftest import Live, Registered, register

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _token_request(live: Live, assertion: str, **form: str) -> httpx.Response:
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion, **form}  # fmt: skip
    with live.client() as http:
        return http.post("/v1/oauth/token", data=data)


def _endpoint(live: Live) -> str:
    return f"{live.url}/v1/oauth/token"


@pytest.mark.parametrize("curve", ["ed25519", "p256"])
def test_a_client_gets_a_token_that_verifies_with_the_published_keys(live: Live, curve: str) -> None:
    window = register(live, "window", curve=curve, org="hz-xihu", region="330106")
    response = _token_request(live, window.assertion(_endpoint(live)))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert 30 <= body["expires_in"] <= 3600
    with live.client() as http:
        keys = KeySet.import_key_set(http.get("/.well-known/jwks.json").json())
        token = jose_jwt.decode(body["access_token"], keys, algorithms=["EdDSA"])
        assert token.claims["sub"] == window.client_id
        assert token.claims["kind"] == "window"
        me = http.get("/v1/clients/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["scopes"] == ["lookup", "read"]
    with live.handle.sessions() as session:
        actions = [r.action for r in session.scalars(select(UsageRecord))]
        assert actions == ["token"]
        assert verify_usage_chain(session).ok


def test_a_replayed_assertion_is_refused(live: Live) -> None:
    window = register(live, "window")
    assertion = window.assertion(_endpoint(live))
    assert _token_request(live, assertion).status_code == 200
    replay = _token_request(live, assertion)
    assert replay.status_code == 401
    assert replay.headers["content-type"].startswith("application/problem+json")
    assert replay.json()["type"] == "urn:onecert:problem:invalid-client"
    assert "already used" in replay.json()["detail"]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _hs256(claims: dict[str, object], secret: bytes, **header: object) -> str:
    """An HS256 token keyed with a public key: the classic algorithm-confusion forgery, built by hand
    (JOSE libraries rightly refuse to make one)."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', **header})}.{_b64(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


def _claims(window: Registered, audience: str, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    return {"iss": window.client_id, "sub": window.client_id, "aud": audience, "iat": now, "exp": now + 120,
            "jti": uuid.uuid4().hex, **overrides}  # fmt: skip


def test_forged_assertions_are_refused(live: Live) -> None:
    window = register(live, "window")
    other = register(live, "window")
    audience = _endpoint(live)
    public_pem = window.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(window, audience))}.",
        "HS256 keyed with the public key": _hs256(_claims(window, audience), public_pem),
        "signed by another client's key": Registered(window.client_id, other.private_key, "EdDSA").assertion(
            audience
        ),
        "wrong audience": window.assertion("https://elsewhere.example/token"),
        "expired": window.assertion(audience, iat=int(time.time()) - 900, exp=int(time.time()) - 600),
        "lives too long": window.assertion(audience, exp=int(time.time()) + 3600),
        "subject is someone else": window.assertion(audience, sub=other.client_id),
        "no jti": window.assertion(audience, jti=None),
        "not a JWT": "garbage",
    }
    for label, assertion in forged.items():
        response = _token_request(live, assertion)
        assert response.status_code == 401, label
        assert response.json()["type"] == "urn:onecert:problem:invalid-client", label


def test_disabled_clients_get_no_token_and_their_tokens_stop_working(live: Live) -> None:
    window = register(live, "window")
    token = _token_request(live, window.assertion(_endpoint(live))).json()["access_token"]
    with live.handle.sessions() as session:
        disable_client(session, client_id=window.client_id)
        session.commit()
    assert _token_request(live, window.assertion(_endpoint(live))).status_code == 401
    with live.client() as http:
        assert http.get("/v1/clients/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_forged_access_tokens_are_refused(live: Live) -> None:
    window = register(live, "window")
    good = _token_request(live, window.assertion(_endpoint(live))).json()["access_token"]
    header, payload, _signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    with live.client() as http:
        jwks = http.get("/.well-known/jwks.json").json()
        hub_public = jwks["keys"][0]["x"].encode()
        forged = {
            "none": f"{_b64({'alg': 'none', 'kid': jwks['keys'][0]['kid']})}.{payload}.",
            "HS256 with the hub's public key": _hs256(claims, hub_public, kid=jwks["keys"][0]["kid"]),
            "signed by a client": Registered(window.client_id, window.private_key, "EdDSA").assertion(
                "onecert-api", kind="window", scope="lookup read"
            ),
            "tampered claims": f"{header}.{_b64({**claims, 'scope': 'steward usage'})}.{_signature}",
        }
        for label, token in forged.items():
            response = http.get("/v1/clients/me", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, label
            assert response.headers["content-type"].startswith("application/problem+json"), label
        assert http.get("/v1/clients/me").status_code == 401


def test_bad_requests_are_problems(live: Live) -> None:
    with live.client() as http:
        missing = http.post("/v1/oauth/token", data={"grant_type": "client_credentials"})
        assert missing.status_code == 422
        assert missing.json()["type"] == "urn:onecert:problem:invalid-request"
        huge = http.post("/v1/oauth/token", content=b"x" * 70_000, headers={"content-type": "text/plain"})
        assert huge.status_code == 413
        assert huge.json()["type"] == "urn:onecert:problem:payload-too-large"
        grant = _token_request(live, "x", grant_type="password")
        assert grant.status_code == 422
        assert grant.json()["error"] == "unsupported_grant_type"
