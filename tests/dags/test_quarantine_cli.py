"""``onecert quarantine``: a steward works the queue from a shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from connectors.pipeline import run_sync
from materials_store.runtime import StoreHandle
from materials_store.store import count_quarantine


def _onecert(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, env=dict(os.environ), timeout=120
    )


def test_a_steward_lists_fixes_and_discards_rows_from_the_cli(sandbox: Path, store: StoreHandle) -> None:
    run_sync("police_hukou", handle=store)
    listed = _onecert("quarantine", "list", "--source", "police_hukou", "--rule", "issued_at_real_date", "--json")
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    target = page["items"][0]["id"]
    with store.sessions() as session:
        before = count_quarantine(session, source="police_hukou")

    shown = json.loads(_onecert("quarantine", "show", str(target)).stdout)
    assert shown["row"]["issued_at"] == "2023-02-30"
    refused = _onecert("quarantine", "resolve", str(target), "--set", "issued_at=2023-02-31")
    assert refused.returncode == 1 and "issued_at_real_date" in refused.stderr
    assert shown["row"]["subject_id"] not in refused.stderr
    fixed = _onecert("quarantine", "resolve", str(target), "--set", "issued_at=2026-02-28")
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["status"] == "resolved"

    other = next(item["id"] for item in json.loads(_onecert("quarantine", "list", "--json").stdout)["items"])
    assert _onecert("quarantine", "discard", str(other), "--reason", "source withdrew it").returncode == 0
    with store.sessions() as session:
        assert count_quarantine(session, source="police_hukou") == before - 2
    missing = _onecert("quarantine", "show", "999999")
    assert missing.returncode == 1 and "no such quarantine row" in missing.stderr
