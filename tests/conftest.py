"""Shared fixtures. Every test runs with its own ONECERT_HOME and a clean settings cache."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from materials_store.settings import Settings, get_settings

# Airflow reads its configuration once, at its first import: point it at a throwaway home for the whole
# session (metadata DB initialised by the ``airflow_home`` fixture), our DAGs folder, and no examples.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="onecert-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"


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


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """Airflow's metadata database, migrated once per session (``dag.test()`` needs it)."""
    import subprocess
    import sys

    subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=dict(os.environ)
    )
    return _AIRFLOW_HOME
