"""The README's walkthrough, command by command: `onecert serve`, keys, registration, tokens, a window's
lookup and a department's push."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ONECERT = Path(sys.executable).with_name("onecert")
PERSON = "11010519491231002X"


def _run(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run([str(ONECERT), *args], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hub = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ONECERT_HOME": str(tmp_path / "home"),
        "ONECERT_PUBLIC_URL": hub,
        "ONECERT_DEV": "0",
    }
    _run("keys", "init", env=env)
    _run("db", "upgrade", env=env)
    server = subprocess.Popen([str(ONECERT), "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{hub}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield hub, env
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_window_lookup_and_department_push_from_the_shell(
    served: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    hub, env = served
    _run("caller", "keygen", "--out", str(tmp_path / "tax"), "--curve", "p256", env=env)
    _run("caller", "keygen", "--out", str(tmp_path / "window"), env=env)
    assert oct((tmp_path / "tax" / "private.pem").stat().st_mode & 0o777) == "0o600"
    tax_id = _run("clients", "add", "--kind", "department", "--name", "税务局", "--types", "tax.payment_certificate",
                  "--public-key", str(tmp_path / "tax" / "public.pem"), env=env)  # fmt: skip
    window_id = _run("clients", "add", "--kind", "window", "--name", "西湖区政务服务中心 3 号窗口",
                     "--org", "hz-xihu", "--region", "330106",
                     "--public-key", str(tmp_path / "window" / "public.pem"), env=env)  # fmt: skip

    # The department pushes a tax payment certificate.
    material = {"type": "tax.payment_certificate", "subject_id": PERSON, "record_id": "WS2026110100000001",
                "issued_at": "2026-11-01", "valid_until": "2027-01-30", "data": {"tax_type": "个人所得税", "amount": "1200.50"}}  # fmt: skip
    (tmp_path / "material.json").write_text(json.dumps(material, ensure_ascii=False), encoding="utf-8")
    body = _run(
        "caller",
        "sign",
        str(tmp_path / "material.json"),
        "--key",
        str(tmp_path / "tax" / "private.pem"),
        env=env,
    )
    tax_token = _run("caller", "token", "--client-id", tax_id, "--key", str(tmp_path / "tax" / "private.pem"),
                     "--hub", hub, env=env)  # fmt: skip
    pushed = httpx.post(f"{hub}/v1/materials", content=body, headers={
        "Authorization": f"Bearer {tax_token}", "Content-Type": "application/jose", "Idempotency-Key": "demo-0000001"})  # fmt: skip
    assert pushed.status_code == 201, pushed.text

    # The window looks the citizen up and reuses the certificate.
    window_token = _run("caller", "token", "--client-id", window_id, "--key", str(tmp_path / "window" / "private.pem"),
                        "--hub", hub, env=env)  # fmt: skip
    headers = {"Authorization": f"Bearer {window_token}"}
    found = httpx.post(f"{hub}/v1/lookups", json={"id": PERSON, "case_ref": "HZ-2026-0001", "purpose": "创业补贴申领"},
                       headers=headers)  # fmt: skip
    assert found.status_code == 200, found.text
    assert found.headers["X-Signature"].count(".") == 2
    [listed] = found.json()["materials"]
    assert listed["id"] == pushed.json()["id"]
    reused = httpx.get(
        f"{hub}/v1/materials/{listed['id']}", headers={**headers, "X-Case-Ref": "HZ-2026-0001"}
    )
    assert reused.status_code == 200
    (tmp_path / "saved.json").write_text(reused.text, encoding="utf-8")
    assert "valid seal" in _run("verify", str(tmp_path / "saved.json"), env=env)
    assert "chain intact" in _run("audit", "verify", env=env)
