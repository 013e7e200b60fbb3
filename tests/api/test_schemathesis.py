"""Property-based requests over the OpenAPI schema: no input makes the hub answer with a server error."""

from __future__ import annotations

import time
import uuid

import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from contracts import load_catalogue
from hub.api.app import create_app
from materials_store.settings import get_settings
from materials_store.store import add_client, sync_material_types
from tests.api.conftest import Registered, _public_pem


@pytest.fixture
def api_schema(monkeypatch: pytest.MonkeyPatch) -> schemathesis.BaseSchema:
    monkeypatch.setenv("ONECERT_PUBLIC_URL", "http://testserver")
    get_settings.cache_clear()
    app = create_app()
    key = ed25519.Ed25519PrivateKey.generate()
    with app.state.store.sessions() as session:
        sync_material_types(session, specs=load_catalogue())
        client = add_client(session, kind="window", name="fuzz window", public_key_pem=_public_pem(key))
        session.commit()
    window = Registered(client.id, key, "EdDSA")
    issued = app.state.tokens.issue(client)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.window = window  # type: ignore[attr-defined]
    schema.token = issued.token  # type: ignore[attr-defined]
    return schema


def test_no_server_errors(api_schema: schemathesis.BaseSchema) -> None:
    """Every operation, with generated inputs and a real window token: never a 5xx."""
    window, token = api_schema.window, api_schema.token  # type: ignore[attr-defined]
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8

    for operation in operations:

        @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
            if case.path == "/v1/oauth/token" and isinstance(case.body, dict) and uuid.uuid4().int % 2:
                # Half the time a real assertion, so the deeper paths of the token endpoint run too.
                case.body["client_assertion"] = window.assertion(
                    "http://testserver/v1/oauth/token", exp=int(time.time()) + 60
                )
            case.call_and_validate(checks=[not_a_server_error])

        check()
