"""CI refuses a breaking contract change unless the contract's major version is bumped."""

from __future__ import annotations

from pathlib import Path

from contracts import CONTRACTS_DIR
from contracts.breaking import check_contract

ORIGINAL = (CONTRACTS_DIR / "police_hukou.yaml").read_text(encoding="utf-8")


def _changed(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "police_hukou.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_changed_field_type_is_refused_without_a_new_major_version(tmp_path: Path) -> None:
    broken = ORIGINAL.replace("logicalType: date", "logicalType: string", 1)
    verdict = check_contract(ORIGINAL, _changed(tmp_path, broken))
    assert verdict.breaking and not verdict.accepted
    assert "logicalType" in verdict.detail

    minor = broken.replace("version: 1.0.0", "version: 1.1.0", 1)
    assert not check_contract(ORIGINAL, _changed(tmp_path, minor)).accepted  # a minor bump is not enough

    major = broken.replace("version: 1.0.0", "version: 2.0.0", 1)
    bumped = check_contract(ORIGINAL, _changed(tmp_path, major))
    assert bumped.breaking and bumped.accepted and bumped.new_version == "2.0.0"


def test_a_compatible_change_passes(tmp_path: Path) -> None:
    described = ORIGINAL.replace("description: 'Freshness SLA:", "description: 'The freshness SLA:", 1)
    assert described != ORIGINAL
    verdict = check_contract(ORIGINAL, _changed(tmp_path, described))
    assert not verdict.breaking and verdict.accepted
