"""The README's newborn-bundle walkthrough, run as written (with a free port) against a sandbox family."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

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


def _wait(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("the hub did not start")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_readme_walks_a_window_through_the_newborn_bundle(tmp_path: Path) -> None:
    home = get_settings().home
    control.up(home, size=300, seed=7)
    try:
        handle = open_store(get_settings())
        for source in ("police_id_card", "police_hukou", "health_births", "civil_marriages"):
            assert run_sync(source, handle=handle).state == "success", source
        handle.engine.dispose()
        workdir = tmp_path / "shell"
        workdir.mkdir()
        (workdir / ".venv").symlink_to(VENV)
        port = _free_port()
        env = {**os.environ, "ONECERT_PUBLIC_URL": f"http://127.0.0.1:{port}"}
        log = (workdir / "serve.log").open("wb")
        server = subprocess.Popen(  # noqa: S603 - the hub, as the README's reader has it running
            [str(VENV / "bin" / "onecert"), "serve", "--port", str(port)], env=env, stdout=log, stderr=log
        )
        try:
            _wait(f"http://127.0.0.1:{port}/healthz")
            shell = subprocess.run(  # noqa: S603 - bash running the README's own commands
                ["/bin/bash", "-euo", "pipefail", "-c", _block().replace("8000", str(port))], cwd=workdir,
                env=env, capture_output=True, text=True, timeout=240, check=False,
            )  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=10)
            log.close()
    finally:
        control.down(home)
    out = shell.stdout
    assert shell.returncode == 0, f"{out}\n{shell.stderr}\n{(workdir / 'serve.log').read_text()[-3000:]}"
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
    assert "403" in lines  # the 城乡居民医保参保 case cannot open the birth certificate
    assert "[]" in lines  # nothing to promise for this family
    assert '{"case_ref":"NB-2026-0001","alerts":[]}' in lines
    mother = subprocess.run(  # noqa: S603
        [str(VENV / "bin" / "onecert"), "sandbox", "family", "--field", "mother_id"],
        capture_output=True, text=True, check=True, env=dict(os.environ),
    ).stdout.strip()  # fmt: skip
    assert mother and mother not in (workdir / "serve.log").read_text()
