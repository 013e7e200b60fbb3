"""Readiness, as pure logic: every requirement state, merged and chained bundle needs, the decision."""

from __future__ import annotations

import datetime as dt

from contracts.service_items import load_service_catalogue
from hub.api.services.readiness import Evidence, Readiness, assess, plan_for
from materials_store.models import Promise
from materials_store.store import MaterialView

NOW = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.UTC)
DAY = dt.date(2026, 11, 20)


def _view(material_id: str, type_code: str, *, source: str = "police_hukou", valid_until: dt.date | None = None,
          status: str = "valid") -> MaterialView:  # fmt: skip
    return MaterialView(
        id=material_id, subject_id=1, type_code=type_code, issuer=type_code.split(".")[0], source=source,
        source_record_id=f"R-{material_id}", version=1, issued_at=dt.date(2020, 1, 1), valid_until=valid_until,
        status=status, payload_sha256="0" * 64, created_at=NOW,
    )  # fmt: skip


def _assess(code: str, views: list[MaterialView], *, ages: dict[str, int] | None = None, bundle: bool = False,
            promises: dict[str, Promise] | None = None, warnings: dict[str, str] | None = None) -> Readiness:  # fmt: skip
    catalogue = load_service_catalogue()
    plan = plan_for(catalogue, service_item=None if bundle else code, bundle=code if bundle else None)
    confirmed = {v.id: NOW - dt.timedelta(days=(ages or {}).get(v.id, 0)) for v in views}
    return assess(
        plan, catalogue, Evidence(views, confirmed, warnings or {}), now=NOW, day=DAY, promises=promises
    )


def _states(readiness: Readiness) -> dict[tuple[str, ...], str]:
    return {tuple(r.types): r.state for r in readiness.requirements if r.issued_by is None}


def test_every_material_on_file_and_fresh_accepts_now() -> None:
    views = [_view("h", "police.hukou"), _view("i", "police.id_card", source="police_id_card"),
             _view("b", "health.birth_certificate", source="health_births"),
             _view("m", "civil.marriage", source="civil_marriages")]  # fmt: skip
    readiness = _assess("police.newborn_registration", views, ages={"h": 29})
    assert set(_states(readiness).values()) == {"on_file_fresh"}
    hukou = next(r for r in readiness.requirements if r.types == ["police.hukou"])
    assert (hukou.material_id, hukou.online, hukou.max_age_days) == ("h", True, 30)
    assert readiness.summary.decision == "accept_now"
    assert readiness.summary.counts == {"on_file_fresh": 4}


def test_a_material_older_than_its_freshness_limit_is_stale_but_used_with_a_warning() -> None:
    views = [_view("h", "police.hukou"), _view("i", "police.id_card", source="police_id_card")]
    readiness = _assess("medins.resident_enrolment", views, ages={"h": 31},
                        warnings={"police_hukou": "refreshing it failed: the source did not answer"})  # fmt: skip
    hukou = next(r for r in readiness.requirements if r.types == ["police.hukou"])
    assert hukou.state == "on_file_stale" and hukou.material_id == "h"
    assert (
        hukou.warning is not None
        and "older than 30 days" in hukou.warning
        and "did not answer" in hukou.warning
    )
    assert readiness.summary.decision == "accept_now"
    assert readiness.summary.warnings == [hukou.warning]


def test_a_missing_waivable_material_is_accepted_on_promise_with_its_due_date() -> None:
    views = [_view("h", "police.hukou"), _view("i", "police.id_card", source="police_id_card"),
             _view("b", "health.birth_certificate", source="health_births")]  # fmt: skip
    readiness = _assess("police.newborn_registration", views)
    marriage = next(r for r in readiness.requirements if r.types == ["civil.marriage"])
    assert marriage.state == "missing_waivable"
    assert marriage.promise_due_date == DAY + dt.timedelta(days=30)
    assert readiness.summary.decision == "accept_on_promise"
    assert readiness.summary.to_promise == [["civil.marriage"]]
    # A promise the case already made is shown instead of a proposed due date.
    promise = Promise(id="p1", due_date=DAY + dt.timedelta(days=10), state="open")
    readiness = _assess("police.newborn_registration", views, promises={"civil.marriage": promise})
    marriage = next(r for r in readiness.requirements if r.types == ["civil.marriage"])
    assert marriage.promise is not None and marriage.promise.id == "p1" and marriage.promise_due_date is None
    assert readiness.summary.decision == "accept_on_promise"


def test_a_missing_required_material_blocks_and_an_optional_one_does_not() -> None:
    views = [_view("i", "police.id_card", source="police_id_card")]
    readiness = _assess("natres.property_transfer", views)
    states = _states(readiness)
    assert states[("natres.property_title",)] == "missing_blocking"
    assert states[("civil.marriage",)] == "missing_optional"
    assert states[("tax.payment_certificate",)] == "missing_waivable"
    assert states[("police.id_card", "market.business_licence")] == "on_file_fresh"  # either alternative
    assert readiness.summary.decision == "cannot_accept"
    assert readiness.summary.blocking == [["natres.property_title"]]


def test_expired_and_revoked_materials_do_not_count_as_on_file() -> None:
    views = [_view("i", "police.id_card", source="police_id_card", valid_until=DAY - dt.timedelta(days=1)),
             _view("h", "police.hukou", status="revoked")]  # fmt: skip
    readiness = _assess("medins.resident_enrolment", views)
    assert set(_states(readiness).values()) == {"missing_blocking"}
    assert readiness.summary.decision == "cannot_accept"


def test_a_bundle_asks_once_for_shared_materials_and_marks_chained_ones() -> None:
    views = [_view("h", "police.hukou"), _view("i", "police.id_card", source="police_id_card"),
             _view("m", "civil.marriage", source="civil_marriages")]  # fmt: skip
    readiness = _assess("life.newborn", views, bundle=True)
    assert [i.code for i in readiness.items] == [
        "health.birth_certificate_issue", "police.newborn_registration", "medins.resident_enrolment",
    ]  # fmt: skip
    id_card = [r for r in readiness.requirements if r.types == ["police.id_card"]]
    assert len(id_card) == 1 and len(id_card[0].serves) == 3 and id_card[0].state == "on_file_fresh"
    chained = {tuple(r.types): r for r in readiness.requirements if r.state == "issued_in_bundle"}
    assert chained[("health.birth_certificate",)].issued_by == "health.birth_certificate_issue"
    # The newborn's household registration is issued within the bundle, not missing, and not the parent's
    # registration that is on file.
    newborn_hukou = chained[("police.hukou",)]
    assert newborn_hukou.issued_by == "police.newborn_registration" and newborn_hukou.material_id is None
    parents_hukou = next(r for r in readiness.requirements if r.types == ["police.hukou"] and not r.issued_by)
    assert parents_hukou.state == "on_file_fresh" and parents_hukou.material_id == "h"
    assert readiness.summary.decision == "accept_now"
    assert readiness.summary.counts == {"on_file_fresh": 3, "issued_in_bundle": 2}
