"""Refuse a breaking change to a data contract unless its major version is bumped.

``datacontract breaking`` (datacontract-cli) compares each contract changed since a base revision with
its version there. A change it calls breaking (a removed field, a changed type, a new required field...)
is refused unless the contract's major version went up, because consumers — the DAGs, the material
catalogue, windows relying on a material's fields — were built against the old one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from contracts import CONTRACTS_DIR

REPO = CONTRACTS_DIR.parent


@dataclass(frozen=True)
class Verdict:
    """What the check decided for one changed contract."""

    path: str
    old_version: str | None
    new_version: str | None
    breaking: bool
    accepted: bool
    detail: str


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)  # noqa: S603, S607


def default_base() -> str | None:
    """``main`` when working on another branch; on main itself, the commit before HEAD."""
    head = _git("rev-parse", "HEAD").stdout.strip()
    main = _git("rev-parse", "--verify", "--quiet", "main").stdout.strip()
    if main and main != head:
        return _git("merge-base", "HEAD", "main").stdout.strip() or "main"
    parent = _git("rev-parse", "--verify", "--quiet", "HEAD~1").stdout.strip()
    return parent or None


def _major(version: str | None) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return -1


def _datacontract() -> str:
    found = shutil.which("datacontract") or str(Path(sys.executable).with_name("datacontract"))
    return found


def check_contract(old_text: str, new_path: Path) -> Verdict:
    """Compare one contract with its earlier text."""
    old_version = str(yaml.safe_load(old_text).get("version"))
    new_version = str(yaml.safe_load(new_path.read_text(encoding="utf-8")).get("version"))
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", encoding="utf-8", delete=False) as old_file:
        old_file.write(old_text)
    try:
        result = subprocess.run(  # noqa: S603 - datacontract-cli, fixed arguments
            [_datacontract(), "breaking", old_file.name, str(new_path)], capture_output=True, text=True, check=False
        )
    finally:
        Path(old_file.name).unlink(missing_ok=True)
    breaking = result.returncode != 0
    bumped = _major(new_version) > _major(old_version)
    relative = str(new_path.resolve().relative_to(REPO)) if new_path.resolve().is_relative_to(REPO) else str(new_path)
    return Verdict(
        path=relative, old_version=old_version, new_version=new_version, breaking=breaking,
        accepted=not breaking or bumped, detail=result.stdout.strip(),
    )  # fmt: skip


def check_against(base: str) -> list[Verdict]:
    """Every contract changed (or added) since ``base``, in the working tree."""
    verdicts = []
    for path in sorted(CONTRACTS_DIR.glob("*.yaml")):
        relative = path.relative_to(REPO).as_posix()
        old = _git("show", f"{base}:{relative}")
        if old.returncode != 0:
            continue  # a new contract breaks nobody
        if old.stdout == path.read_text(encoding="utf-8"):
            continue
        verdicts.append(check_contract(old.stdout, path))
    return verdicts
