"""The service catalogue: real items and bundles load; broken ones fail with a message naming the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts import load_catalogue
from contracts.service_items import build_catalogue, load_service_catalogue
from hub.cli import app
from materials_store.errors import ConfigurationError

TYPES = {spec.code for spec in load_catalogue()}


def test_the_catalogue_has_real_items_across_departments_and_the_four_bundles() -> None:
    catalogue = load_service_catalogue()
    assert len(catalogue.items) >= 12
    assert {item.department for item in catalogue.items.values()} >= {
        "police", "health", "medins", "market", "natres", "hrss", "tax", "utility",
    }  # fmt: skip
    names = {bundle.name_zh for bundle in catalogue.bundles.values()}
    assert names >= {"新生儿出生一件事", "开办企业一件事", "不动产与水电气联动过户", "青年入乡就业创业一件事"}
    newborn = catalogue.bundle("life.newborn")
    assert [catalogue.item(code).name_zh for code in newborn.items] == [
        "出生医学证明签发", "新生儿入户", "城乡居民医保参保",
    ]  # fmt: skip
    # Every type an item needs or issues exists in the material catalogue, push-only ones included.
    for item in catalogue.items.values():
        assert item.types | set(item.issues) <= TYPES


def test_a_bundle_asks_for_a_shared_material_once_naming_every_item_it_serves() -> None:
    catalogue = load_service_catalogue()
    needs = catalogue.bundle_needs("property.transfer_with_utilities")
    identity = [n for n in needs if set(n.types) == {"police.id_card", "market.business_licence"}]
    assert len(identity) == 1
    assert identity[0].serves == (
        "natres.property_transfer", "utility.water_transfer", "utility.power_transfer", "utility.gas_transfer",
    )  # fmt: skip


def test_a_later_item_uses_what_an_earlier_item_of_the_bundle_issues() -> None:
    catalogue = load_service_catalogue()
    needs = catalogue.bundle_needs("life.newborn")
    hukou = [n for n in needs if n.types == ("police.hukou",)]
    # The parents' household registration is asked for; the newborn's is issued by 新生儿入户 itself.
    assert sorted((n.serves, n.issued_by) for n in hukou) == [
        (("medins.resident_enrolment",), "police.newborn_registration"),
        (("police.newborn_registration",), None),
    ]
    birth = next(n for n in needs if n.types == ("health.birth_certificate",))
    assert birth.issued_by == "health.birth_certificate_issue"
    # Merged: 出生医学证明签发 takes the marriage certificate as optional, 新生儿入户 requires it but lets
    # it wait 30 days: required, waivable, due in 30 days.
    marriage = next(n for n in needs if n.types == ("civil.marriage",))
    assert (marriage.required, marriage.waivable, marriage.due_days) == (True, True, 30)
    # Alone, an item chains nothing.
    assert all(n.issued_by is None for n in catalogue.item_needs("medins.resident_enrolment"))


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _item(code: str, needs: str, issues: str = "[]", extra: str = "") -> str:
    return (
        f"code: {code}\nname_zh: 测试\nname_en: Test\ndepartment: police\nissues: {issues}\n{extra}"
        f"requirements:\n  - types: {needs}\n"
    )


def test_an_unknown_material_type_is_a_load_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "service_items", "police.a", _item("police.a", "[police.passport]"))
    with pytest.raises(
        ConfigurationError, match=r"police\.a\.yaml.*unknown material types: police\.passport"
    ):
        build_catalogue([path], [], TYPES)


def test_a_waivable_requirement_without_a_due_period_is_a_load_error(tmp_path: Path) -> None:
    text = _item("police.a", "[civil.marriage]").replace(
        "types: [civil.marriage]", "types: [civil.marriage]\n    waivable: true"
    )
    path = _write(tmp_path / "service_items", "police.a", text)
    with pytest.raises(ConfigurationError, match="waivable but has no due period"):
        build_catalogue([path], [], TYPES)


def test_misspelt_keys_and_misnamed_files_are_load_errors(tmp_path: Path) -> None:
    text = _item("police.a", "[civil.marriage]").replace("requirements:", "requirments:")
    path = _write(tmp_path / "service_items", "police.a", text)
    with pytest.raises(ConfigurationError, match="requirments"):
        build_catalogue([path], [], TYPES)
    path = _write(tmp_path / "service_items", "police.b", _item("police.a", "[civil.marriage]"))
    with pytest.raises(ConfigurationError, match=r"named after its code \(police\.a\.yaml\)"):
        build_catalogue([path], [], TYPES)


def test_a_bundle_naming_an_unknown_item_is_a_load_error(tmp_path: Path) -> None:
    item = _write(tmp_path / "service_items", "police.a", _item("police.a", "[civil.marriage]"))
    bundle = _write(
        tmp_path / "bundles",
        "life.x",
        "code: life.x\nname_zh: 测\nname_en: X\nitems: [police.a, police.zz]\n",
    )
    with pytest.raises(ConfigurationError, match=r"life\.x\.yaml: unknown service items: police\.zz"):
        build_catalogue([item], [bundle], TYPES)


def test_items_that_need_each_others_results_are_a_cycle(tmp_path: Path) -> None:
    a = _write(
        tmp_path / "service_items", "police.a", _item("police.a", "[civil.marriage]", issues="[police.hukou]")
    )
    b = _write(
        tmp_path / "service_items", "civil.b", _item("civil.b", "[police.hukou]", issues="[civil.marriage]")
    )
    bundle = _write(
        tmp_path / "bundles", "life.x", "code: life.x\nname_zh: 测\nname_en: X\nitems: [police.a, civil.b]\n"
    )
    with pytest.raises(
        ConfigurationError, match=r"life\.x\.yaml: items need each other's results in a cycle"
    ):
        build_catalogue([a, b], [bundle], TYPES)


def test_onecert_catalogue_lists_items_and_bundles() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["catalogue", "items"])
    assert result.exit_code == 0, result.output
    assert "新生儿入户" in result.output and "police.newborn_registration" in result.output
    result = runner.invoke(app, ["catalogue", "bundles", "--json"])
    assert result.exit_code == 0, result.output
    assert '"life.newborn"' in result.output and "新生儿出生一件事" in result.output
    result = runner.invoke(app, ["catalogue", "--json"])
    assert '"utility.water_account"' in result.output
