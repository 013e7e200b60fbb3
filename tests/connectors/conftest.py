"""A real sandbox (processes on loopback) and a fresh store for each connector test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.sandbox import control
from materials_store.runtime import StoreHandle, open_store
from materials_store.settings import get_settings

SIZE = 300


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Path]:
    """A sandbox of its own (tests switch faults and change data), with small pages and quick retries."""
    home = tmp_path / "home"
    os.environ["ONECERT_HOME"] = str(home)
    get_settings.cache_clear()
    control.up(home, size=SIZE, seed=7)
    for source in ("POLICE_ID_CARD", "POLICE_HUKOU", "TAX_CERTIFICATES", "HEALTH_BIRTHS",
                   "MARKET_LICENCES", "CIVIL_MARRIAGES", "NATRES_TITLES"):  # fmt: skip
        os.environ[f"ONECERT_SOURCE_{source}_PAGE_SIZE"] = "40"
        os.environ[f"ONECERT_SOURCE_{source}_BACKOFF"] = "0.01"
        os.environ[f"ONECERT_SOURCE_{source}_TIMEOUT"] = "1"
    yield home
    control.down(home)


@pytest.fixture
def store(sandbox: Path) -> StoreHandle:
    return open_store(get_settings())
