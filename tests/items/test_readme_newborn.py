"""The README's newborn-bundle walkthrough, run as written (with a free port) against a sandbox family."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from connectors.pipeline import run_sync
from connectors.sandbox import control
from materials_store.runtime import open_store
from materials_store.settings import get_settings

README = Path(__file__).resolve().parents[2] / "README.md"
VENV = Path(sys.executable).parent.parent


def _block() -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- walkthrough:newborn -->\n```bash\n(.*?)\n```", text, re.DOTALL)
    assert found, "the README lost its newborn walkthrough"
    return found.group(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_readme_walks_a_window_through_the_newborn_bundle(tmp_path: Path) -> None:
    home = get_settings().home
    control.up(home, size=300, seed=7)
    try:
        handle = open_store(get_settings())
        for source in (
            "police_id_card",
            "police_hukou",
            "health_births",
            "civil_marriages",
            "hrss_social_insurance",
        ):
            assert run_sync(source, handle=handle).state == "success", source
        handle.engine.dispose()
        workdir = tmp_path / "shell"
        workdir.mkdir()
        (workdir / ".venv").symlink_to(VENV)
        script = _block().replace("8000", str(_free_port()))
        shell = subprocess.Popen(  # noqa: S603 - bash running the README's own commands
            ["/bin/bash", "-euo", "pipefail", "-c", script], cwd=workdir, env=dict(os.environ),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            out, err = shell.communicate(timeout=240)
        finally:
            try:
                os.killpg(shell.pid, signal.SIGTERM)  # the server it started, if the script stopped early
            except ProcessLookupError:
                pass
    finally:
        control.down(home)
    assert shell.returncode == 0, f"{out}\n{err}\n{(workdir / 'serve.log').read_text()[-3000:]}"
    lines = out.splitlines()
    states = [line.split("\t") for line in lines if line.count("\t") == 2]
    assert [state for state, _name, _for in states] == [
        "on_file_fresh", "on_file_fresh", "issued_in_bundle", "on_file_fresh", "issued_in_bundle",
    ]  # fmt: skip
    assert ["on_file_fresh", "居民身份证", "health.birth_certificate_issue, police.newborn_registration, "
            "medins.resident_enrolment"] in states  # fmt: skip
    assert '"decision":"accept_now"' in out
    assert "valid signature: answer for case NB-2026-0001, accept_now" in out
    assert "valid seal: health.birth_certificate" in out
    assert "403" in lines  # a material the bundle does not need stays closed
    assert "[]" in lines  # nothing to promise for this family
    assert '{"case_ref":"NB-2026-0001","alerts":[]}' in lines
    mother = subprocess.run(  # noqa: S603
        [str(VENV / "bin" / "onecert"), "sandbox", "family", "--field", "mother_id"],
        capture_output=True, text=True, check=True, env=dict(os.environ),
    ).stdout.strip()  # fmt: skip
    assert mother and mother not in (workdir / "serve.log").read_text()
