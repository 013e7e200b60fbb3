"""`onecert demo` (what `make demo` runs) creates the keyring and the store and shows the catalogue."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, func, select

from materials_store.models import MaterialType


def test_demo_creates_store_and_shows_catalogue(tmp_path: Path) -> None:
    env = {**os.environ, "ONECERT_HOME": str(tmp_path), "ONECERT_DEV": "0"}
    onecert = Path(sys.executable).with_name("onecert")
    result = subprocess.run([str(onecert), "demo"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "居民户口簿" in result.stdout
    assert "store ready" in result.stdout
    keyring = tmp_path / "keys" / "keyring.json"
    assert oct(keyring.stat().st_mode & 0o777) == "0o600"
    engine = create_engine(f"sqlite:///{tmp_path / 'onecert.db'}")
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(MaterialType)).scalar() == 9
    # Running it again is harmless: the same keyring, the same store.
    again = subprocess.run([str(onecert), "demo"], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0
    assert "created" not in again.stdout
