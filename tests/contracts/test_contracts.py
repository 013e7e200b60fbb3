"""The ODCS contracts: they lint, load into the catalogue, and their suites catch every defect class."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from contracts import contract_paths, load_catalogue, load_contract, load_contracts
from contracts.validation import validate_batch
from hub.cli import app

EXPECTED_TYPES = {
    "police.id_card": ("居民身份证", "police", "person"),
    "police.hukou": ("居民户口簿", "police", "person"),
    "tax.payment_certificate": ("完税证明", "tax", "any"),
    "hrss.social_insurance": ("社会保险参保缴费证明", "hrss", "person"),
    "civil.marriage": ("结婚证", "civil", "person"),
    "market.business_licence": ("营业执照", "market", "organisation"),
    "health.birth_certificate": ("出生医学证明", "health", "person"),
    "medins.enrolment": ("医保参保凭证", "medins", "person"),
    "natres.property_title": ("不动产权证书", "natres", "any"),
    # Push-only: departments push these results; no connector reads them.
    "police.seal_filing": ("印章刻制备案", "police", "organisation"),
    "tax.registration": ("税务登记信息确认", "tax", "organisation"),
    "hrss.employment_registration": ("就业登记证明", "hrss", "person"),
    "hrss.unit_registration": ("社会保险单位登记", "hrss", "organisation"),
    "hrss.startup_subsidy": ("创业补贴核定通知", "hrss", "person"),
    "utility.water_account": ("供水户号", "utility", "any"),
    "utility.power_account": ("供电户号", "utility", "any"),
    "utility.gas_account": ("燃气户号", "utility", "any"),
}
DATACONTRACT = Path(sys.executable).with_name("datacontract")


@pytest.mark.parametrize("path", contract_paths(), ids=lambda p: p.stem)
def test_datacontract_lint_passes(path: Path) -> None:
    result = subprocess.run(
        [str(DATACONTRACT), "lint", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_catalogue_has_every_material_type_with_names() -> None:
    catalogue = {spec.code: spec for spec in load_catalogue()}
    assert set(catalogue) == set(EXPECTED_TYPES)
    for code, (name_zh, department, kind) in EXPECTED_TYPES.items():
        spec = catalogue[code]
        assert (spec.name_zh, spec.department, spec.subject_kind) == (name_zh, department, kind)
        assert spec.name_en and spec.sensitivity and spec.freshness_sla_hours
    assert catalogue["tax.payment_certificate"].validity_days == 90
    assert catalogue["police.hukou"].validity_days is None


def test_every_contract_names_owner_fields_rules_and_sla() -> None:
    for contract in load_contracts():
        assert contract.team, contract.source
        assert {"record_id", "subject_id", "updated_at", "issued_at", "valid_until"} <= set(
            contract.field_names
        )
        assert contract.field("record_id").unique and contract.field("subject_id").required
        assert any(f.required for f in contract.fields if f.name not in ("record_id", "subject_id"))
        assert contract.rules and 0 < contract.quarantine_threshold < 1
        assert contract.freshness_sla_hours > 0 and contract.schedule.total_seconds() > 0
    assert load_contract("hrss_social_insurance").encoding == "gbk"


def test_every_pulled_source_has_a_connector_and_push_only_types_have_none() -> None:
    from connectors.registry import source_names

    pulled = {c.source for c in load_contracts() if not c.push_only}
    assert pulled == set(source_names())
    assert {c.material_type.code for c in load_contracts() if c.push_only} >= {"utility.water_account"}


GOOD = {
    "record_id": "P1",
    "subject_id": "11010519491231002X",
    "updated_at": "2026-11-01T10:00:00+08:00",
    "issued_at": "2020-01-01",
    "valid_until": None,
    "name": "张三",
    "sex": "男",
    "birth_date": "1949-12-31",
    "ethnicity": "汉",
    "address": "北京市朝阳区",
    "issuing_authority": "北京市公安局朝阳分局",
    "card_valid_from": "2020-01-01",
    "card_valid_until": "2040-01-01",
}


def _frame(*changes: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame([{**GOOD, "record_id": f"P{i}", **change} for i, change in enumerate(changes)])


def _rules(validation: object, row: int) -> set[str]:
    return {f["rule"] for f in validation.failures.get(row, [])}  # type: ignore[attr-defined]


def test_valid_rows_pass() -> None:
    result = validate_batch(load_contract("police_id_card"), _frame({}, {}, {"card_valid_until": None}))
    assert result.valid_mask.tolist() == [True, True, True] and not result.failures
    assert all(outcome.success for outcome in result.results)


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"name": None}, "name_required"),
        ({"birth_date": "2023-02-30"}, "birth_date_real_date"),
        ({"birth_date": "2099-01-01"}, "birth_date_not_in_future"),
        ({"issued_at": "2099-01-01"}, "issued_at_not_in_future"),
        ({"sex": "未知"}, "sex_in_code_list"),
        ({"subject_id": "11010519491231002"}, "subject_id_pattern"),
        ({"updated_at": "yesterday"}, "updated_at_timestamp_format"),
    ],
)
def test_each_defect_is_reported_on_its_row_with_its_rule(change: dict[str, object], rule: str) -> None:
    result = validate_batch(load_contract("police_id_card"), _frame({}, change, {}))
    assert result.valid_mask.tolist() == [True, False, True]
    assert rule in _rules(result, 1)
    for failure in result.failures[1]:
        for value in change.values():
            if value:
                assert str(value) not in failure["message"]


def test_duplicate_records_quarantine_every_copy() -> None:
    frame = _frame({}, {}, {})
    frame.loc[2, "record_id"] = "P1"
    result = validate_batch(load_contract("police_id_card"), frame)
    assert result.valid_mask.tolist() == [True, False, False]
    assert _rules(result, 1) == _rules(result, 2) == {"record_id_unique"}


def test_invalid_subject_ids_flagged_by_the_pipeline_are_reported() -> None:
    frame = _frame({}, {})
    frame["_subject_id_valid"] = [True, False]
    frame["_subject_id_reason"] = [None, "wrong_check_character"]
    result = validate_batch(load_contract("police_id_card"), frame)
    assert result.valid_mask.tolist() == [True, False]
    [failure] = result.failures[1]
    assert failure["rule"] == "valid_subject_id" and "wrong_check_character" in failure["message"]


def test_numbers_are_typed_and_ranged() -> None:
    contract = load_contract("tax_certificates")
    row = {
        "record_id": "T1",
        "subject_id": "91110000600037341L",
        "updated_at": "2026-11-01T10:00:00",
        "issued_at": "2026-10-01",
        "valid_until": None,
        "taxpayer_name": "某公司",
        "tax_type": "增值税",
        "amount": "1200.50",
        "period_start": "2026-09-01",
        "period_end": "2026-09-30",
        "certificate_no": "WS2026100100000001",
    }
    frame = pd.DataFrame(
        [row, {**row, "record_id": "T2", "amount": "abc"}, {**row, "record_id": "T3", "amount": -5}]
    )
    result = validate_batch(contract, frame)
    assert result.valid_mask.tolist() == [True, False, False]
    assert _rules(result, 1) == {"amount_type"} and _rules(result, 2) == {"amount_range"}


def test_validation_history_has_one_outcome_per_expectation() -> None:
    result = validate_batch(load_contract("police_id_card"), _frame({}, {"name": None}))
    by_rule = {outcome.rule: outcome for outcome in result.results}
    assert by_rule["name_required"].unexpected_count == 1 and not by_rule["name_required"].success
    assert by_rule["record_id_unique"].success and by_rule["record_id_unique"].element_count == 2


def test_catalogue_command_text_and_json() -> None:
    runner = CliRunner()
    listed = json.loads(runner.invoke(app, ["catalogue", "--json"]).output)
    assert {row["code"] for row in listed} == set(EXPECTED_TYPES)
    assert all(set(row) == {"code", "name_zh", "name_en", "department", "subject_kind"} for row in listed)
    text = runner.invoke(app, ["catalogue"], terminal_width=200)
    assert text.exit_code == 0 and "police.hukou" in text.output and "居民户口簿" in text.output
