"""Rate limits answer 429 with Retry-After; /metrics counts requests, lookups and pushes."""

from __future__ import annotations

import gc

import pytest
from fastapi.testclient import TestClient

from hub.api.app import create_app
from materials_store.settings import get_settings
from tests.api.conftest import Live, register
from tests.api.test_lookups import PERSON, _load
from tests.api.test_usage import _token_for


@pytest.fixture
def strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONECERT_RATE_LIMIT_PER_MINUTE", "5")
    get_settings.cache_clear()


def test_a_client_over_its_rate_gets_429(strict: None, live: Live) -> None:
    window = register(live, "window")
    other = register(live, "window")
    headers = {"Authorization": f"Bearer {_token_for(live, window)}"}
    with live.client() as http:
        statuses = [http.get("/v1/clients/me", headers=headers).status_code for _ in range(8)]
        assert statuses[:5] == [200] * 5
        limited = http.get("/v1/clients/me", headers=headers)
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        assert limited.json()["type"] == "urn:onecert:problem:rate-limited"
        # Another client is not affected.
        assert (
            http.get(
                "/v1/clients/me", headers={"Authorization": f"Bearer {_token_for(live, other)}"}
            ).status_code
            == 200
        )


def test_metrics_count_requests_and_lookups_without_ids(live: Live) -> None:
    _load(live)
    window = register(live, "window")
    headers = {"Authorization": f"Bearer {_token_for(live, window)}"}
    with live.client() as http:
        http.post("/v1/lookups", json={"id": PERSON, "case_ref": "C", "purpose": "p"}, headers=headers)
        http.post(
            "/v1/lookups", json={"id": "110101199001011237", "case_ref": "C", "purpose": "p"}, headers=headers
        )
        text = http.get("/metrics").text
    assert 'onecert_lookups_total{outcome="found"} 1.0' in text
    assert 'onecert_lookups_total{outcome="nothing_on_file"} 1.0' in text
    assert 'onecert_requests_total{method="POST",route="/v1/oauth/token",status="200"}' in text
    assert "onecert_request_seconds_bucket" in text
    assert PERSON not in text


def test_a_worker_keeps_its_startup_objects_out_of_the_collectors_sight() -> None:
    """A full collection over every module and code table stalls each request in flight by 100 ms or
    more; the worker freezes what it loaded at startup so collections only walk request garbage."""
    gc.unfreeze()
    with TestClient(create_app()) as http:
        assert gc.get_freeze_count() > 10_000
        assert http.get("/healthz").status_code == 200
    assert gc.get_freeze_count() == 0
