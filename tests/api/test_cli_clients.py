"""`onecert clients add|list|disable` through the real command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

ONECERT = Path(sys.executable).with_name("onecert")


def _pem(key: object, path: Path) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ONECERT), *args], env=dict(os.environ), capture_output=True, text=True, check=False
    )


def test_clients_add_list_disable(tmp_path: Path) -> None:
    pem = _pem(ed25519.Ed25519PrivateKey.generate(), tmp_path / "window.pem")
    added = _run("clients", "add", "--kind", "window", "--name", "西湖区政务服务中心 3 号窗口",
                 "--public-key", str(pem), "--org", "hz-xihu", "--region", "330106")  # fmt: skip
    assert added.returncode == 0, added.stderr
    client_id = added.stdout.strip()
    assert client_id.startswith("win-")
    assert "\n" not in client_id
    department = _run("clients", "add", "--kind", "department", "--name", "税务局", "--public-key", str(pem),
                      "--types", "tax.payment_certificate")  # fmt: skip
    assert department.returncode == 0, department.stderr
    rsa_pem = _pem(rsa.generate_private_key(65537, 2048), tmp_path / "rsa.pem")
    refused = _run("clients", "add", "--kind", "window", "--name", "x", "--public-key", str(rsa_pem))
    assert refused.returncode == 1
    assert "Ed25519" in refused.stderr
    citizen = _run("clients", "add", "--kind", "citizen", "--name", "me", "--public-key", str(pem),
                   "--subject-id", "110105194912310021")  # fmt: skip
    assert citizen.returncode == 1
    assert "110105194912310021" not in citizen.stderr
    assert _run("clients", "disable", client_id).returncode == 0
    listing = _run("clients", "list").stdout
    assert client_id in listing
    assert "disabled" in listing
