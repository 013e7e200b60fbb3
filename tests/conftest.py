"""Shared fixtures. Every test runs with its own ONECERT_HOME and a clean settings cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from materials_store.settings import Settings, get_settings


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point ONECERT_HOME at a fresh folder, turn dev mode on, and restore the environment after."""
    saved = dict(os.environ)
    home = tmp_path_factory.mktemp("onecert-home")
    for name in [n for n in os.environ if n.startswith("ONECERT_")]:
        del os.environ[name]
    os.environ["ONECERT_HOME"] = str(home)
    os.environ["ONECERT_DEV"] = "1"
    get_settings.cache_clear()
    yield home
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()


@pytest.fixture
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL for the whole session (started once, stopped at the end)."""
    from tests.support.postgres import throwaway_postgres

    with throwaway_postgres() as url:
        yield url
