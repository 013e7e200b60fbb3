"""The live API fixtures of tests/api, for the service-item tests."""

from __future__ import annotations

from tests.api.conftest import live, live_any, store_url

__all__ = ["live", "live_any", "store_url"]
