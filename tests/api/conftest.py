"""A real hub API (uvicorn on loopback) over a fresh store, and clients with locally generated keys."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey, OKPKey

from contracts import load_catalogue
from hub.api.app import create_app
from materials_store.runtime import StoreHandle
from materials_store.settings import get_settings
from materials_store.store import add_client, sync_material_types


@dataclass
class Live:
    url: str
    handle: StoreHandle

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)


@dataclass
class Registered:
    client_id: str
    private_key: Any
    algorithm: str

    def jwk(self) -> Any:
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return (OKPKey if self.algorithm == "EdDSA" else ECKey).import_key(pem)

    def assertion(self, audience: str, **overrides: Any) -> str:
        """A client assertion built with joserfc, a JOSE library the hub does not use."""
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": audience, "iat": now, "exp": now + 120,
                  "jti": uuid.uuid4().hex, **overrides}  # fmt: skip
        return jose_jwt.encode({"alg": self.algorithm}, claims, self.jwk(), algorithms=[self.algorithm])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """Where the API's store lives: SQLite under ONECERT_HOME, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return None
    from tests.store.conftest import _fresh_postgres

    return _fresh_postgres(request.getfixturevalue("postgres_url"))


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    yield from _live(monkeypatch, None)


@pytest.fixture
def live_any(monkeypatch: pytest.MonkeyPatch, store_url: str | None) -> Iterator[Live]:
    """The live API on SQLite and on PostgreSQL."""
    yield from _live(monkeypatch, store_url)


def _live(monkeypatch: pytest.MonkeyPatch, database_url: str | None) -> Iterator[Live]:
    if database_url:
        monkeypatch.setenv("ONECERT_DATABASE_URL", database_url)
    port = _free_port()
    monkeypatch.setenv("ONECERT_PUBLIC_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("ONECERT_MAX_BODY_BYTES", "65536")
    get_settings.cache_clear()
    app = create_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    handle: StoreHandle = app.state.store
    with handle.sessions() as session:
        sync_material_types(session, specs=load_catalogue())
        session.commit()
    yield Live(f"http://127.0.0.1:{port}", handle)
    server.should_exit = True
    thread.join(timeout=10)
    handle.engine.dispose()


def _public_pem(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def register(live: Live, kind: str, *, curve: str = "ed25519", **fields: Any) -> Registered:
    key = (
        ed25519.Ed25519PrivateKey.generate()
        if curve == "ed25519"
        else ec.generate_private_key(ec.SECP256R1())
    )
    with live.handle.sessions() as session:
        client = add_client(
            session, kind=kind, name=f"test {kind}", public_key_pem=_public_pem(key), **fields
        )
        session.commit()
        return Registered(client.id, key, "EdDSA" if curve == "ed25519" else "ES256")
