"""The DAG tests reuse the connector tests' sandbox and store fixtures."""

from __future__ import annotations

from tests.connectors.conftest import sandbox, store

__all__ = ["sandbox", "store"]
