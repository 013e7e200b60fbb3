"""`onecert demo` (what `make demo` runs) creates the keyring and the store, shows the catalogue, starts
the sandbox and syncs every source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, func, select

from materials_store.models import Material, MaterialType, QuarantineRow

ONECERT = Path(sys.executable).with_name("onecert")
KEYS = {"source", "extracted", "loaded", "new_versions", "unchanged", "quarantined", "cursor", "last_run_at"}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ONECERT), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_demo_creates_store_syncs_the_sandbox_and_reports_sources(tmp_path: Path) -> None:
    env = {**os.environ, "ONECERT_HOME": str(tmp_path), "ONECERT_DEV": "0"}
    try:
        result = _run(env, "demo", "--size", "200", "--no-airflow")
        assert result.returncode == 0, result.stderr
        assert "居民户口簿" in result.stdout
        assert "store ready" in result.stdout
        keyring = tmp_path / "keys" / "keyring.json"
        assert oct(keyring.stat().st_mode & 0o777) == "0o600"
        engine = create_engine(f"sqlite:///{tmp_path / 'onecert.db'}")
        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(MaterialType)).scalar() == 9
            assert connection.execute(select(func.count()).select_from(Material)).scalar() > 500
            assert connection.execute(select(func.count()).select_from(QuarantineRow)).scalar() > 0
        listed = json.loads(_run(env, "sources", "--json").stdout)
        assert len(listed) == 9
        for row in listed:
            assert set(row) == KEYS
            assert row["extracted"] == row["loaded"] + row["unchanged"] + row["quarantined"]
            assert row["extracted"] > 0
        # Running it again is harmless: the same keyring and store, and nothing new to load.
        again = _run(env, "demo", "--size", "200", "--no-airflow")
        assert again.returncode == 0, again.stderr
        assert "created" not in again.stdout
        assert all(row["loaded"] == 0 for row in json.loads(_run(env, "sources", "--json").stdout))
    finally:
        _run(env, "sandbox", "down")
