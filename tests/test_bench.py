"""`onecert bench store` and `onecert bench ingest`, small: they print their figures, and what they made in
temporary folders (a store; the sandbox's data when no --home is given) is gone when they end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ONECERT = Path(sys.executable).with_name("onecert")


def _bench(scratch: Path, *args: str) -> str:
    env = {**os.environ, "TMPDIR": str(scratch), "COLUMNS": "200"}
    result = subprocess.run(
        [str(ONECERT), "bench", *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _figure(output: str, label: str) -> str:
    line = next(line for line in output.splitlines() if label in line)
    return line.split("│")[2].strip()


def test_bench_store_prints_its_figures_and_leaves_no_store_behind(tmp_path: Path) -> None:
    output = _bench(tmp_path, "store", "--rows", "2000", "--batch", "500", "--lookups", "100")
    assert re.fullmatch(r"[\d,]+ rows/s", _figure(output, "batch upsert"))
    assert float(_figure(output, "ratio upsert / raw")) > 0
    assert list(tmp_path.iterdir()) == []


def test_bench_ingest_without_a_home_removes_the_sandbox_data_it_generated(tmp_path: Path) -> None:
    output = _bench(tmp_path, "ingest", "--rows", "1000", "--batch", "500", "--page", "200")
    loaded, quarantined = (
        int(n.replace(",", "")) for n in _figure(output, "loaded / quarantined").split(" / ")
    )
    assert loaded > 900 and quarantined > 0
    assert re.fullmatch(r"[\d,]+ records/s", _figure(output, "end to end"))
    assert list(tmp_path.iterdir()) == []


def test_bench_ingest_keeps_the_sandbox_data_of_a_home_it_is_given(tmp_path: Path) -> None:
    home, scratch = tmp_path / "home", tmp_path / "scratch"
    scratch.mkdir()
    _bench(scratch, "ingest", "--rows", "1000", "--batch", "500", "--home", str(home))
    assert (home / "sandbox" / "police.db").exists()
    assert list(scratch.iterdir()) == []
