"""Service items over HTTP: the catalogue, signed readiness lookups, purpose binding, promises that close
on push, and alerts to the cases that reused a material that changed."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import httpx
from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy import select

from materials_store.cases import flag_overdue_promises, list_promises, open_promise
from materials_store.errors import DataError
from materials_store.identity import parse_identifier
from materials_store.models import Promise, UsageRecord
from materials_store.store import MaterialInput, ensure_subject, today, upsert_materials
from tests.api.conftest import Live, Registered, register
from tests.api.test_usage import _token_for

PERSON = "11010519491231002X"
OTHER = "110101199001011237"


def _load(live: Live, *, marriage: bool = True) -> dict[str, str]:
    subject = parse_identifier(PERSON)
    items = [
        MaterialInput("police.id_card", subject, "SFZ1", dt.date(2020, 1, 1), dt.date(2040, 1, 1),
                      {"name": "张三丰"}, "police", subject_name="张三丰"),
        MaterialInput("police.hukou", subject, "HJ1", dt.date(2020, 1, 1), None, {"name": "张三丰"}, "police"),
        MaterialInput("health.birth_certificate", subject, "CS1", dt.date(2026, 10, 3), None,
                      {"child_name": "张小丰"}, "health"),
    ]  # fmt: skip
    if marriage:
        items.append(MaterialInput("civil.marriage", subject, "HY1", dt.date(2019, 5, 20), None, {}, "civil"))
    with live.handle.sessions() as session:
        ids = upsert_materials(session, keyring=live.handle.keyring, items=items, source="test").ids
        session.commit()
    return {item.type_code: material_id for item, material_id in zip(items, ids, strict=True)}


def _auth(live: Live, client: Registered) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token_for(live, client)}"}


def _lookup(http: httpx.Client, headers: dict[str, str], case_ref: str, **extra: Any) -> httpx.Response:
    body = {"id": PERSON, "case_ref": case_ref, "purpose": "办理", **extra}
    return http.post("/v1/lookups", json=body, headers=headers)


def _push(live: Live, department: Registered, **payload: Any) -> httpx.Response:
    body = {"subject_id": PERSON, "issued_at": "2026-11-01", "data": {}, **payload}
    compact = jws.serialize_compact({"alg": department.algorithm}, json.dumps(body, ensure_ascii=False),
                                    department.jwk(), algorithms=[department.algorithm])  # fmt: skip
    headers = {
        **_auth(live, department),
        "Content-Type": "application/jose",
        "Idempotency-Key": uuid.uuid4().hex,
    }
    with live.client() as http:
        return http.post("/v1/materials", content=compact, headers=headers)


def test_the_catalogue_routes_list_items_bundles_and_types(live: Live) -> None:
    headers = _auth(live, register(live, "window"))
    with live.client() as http:
        assert http.get("/v1/catalog/items").status_code == 401
        items = http.get("/v1/catalog/items", headers=headers).json()
        assert len(items) >= 12 and "police.newborn_registration" in {i["code"] for i in items}
        item = http.get("/v1/catalog/items/police.newborn_registration", headers=headers).json()
        marriage = next(r for r in item["requirements"] if r["types"] == ["civil.marriage"])
        assert (marriage["waivable"], marriage["due_days"], marriage["names_zh"]) == (True, 30, ["结婚证"])
        bundle = http.get("/v1/catalog/bundles/life.newborn", headers=headers).json()
        assert bundle["name_zh"] == "新生儿出生一件事" and len(bundle["items"]) == 3
        assert {b["code"] for b in http.get("/v1/catalog/bundles", headers=headers).json()} >= {
            "life.newborn"
        }
        types = {t["code"]: t["arrives_by"] for t in http.get("/v1/catalog/types", headers=headers).json()}
        assert (types["police.hukou"], types["utility.water_account"]) == ("sync", "push")
        missing = http.get("/v1/catalog/items/police.nothing", headers=headers)
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


def test_a_readiness_lookup_is_signed_lists_only_what_the_item_needs_and_is_recorded(live_any: Live) -> None:
    live = live_any
    ids = _load(live)
    headers = _auth(live, register(live, "window", org="hz-xihu"))
    with live.client() as http:
        response = _lookup(http, headers, "HZ-1", service_item="medins.resident_enrolment")
        keys = KeySet.import_key_set(http.get("/.well-known/jwks.json").json())
    assert response.status_code == 200, response.text
    jws.deserialize_compact(
        response.headers["X-Signature"], keys, algorithms=["EdDSA"], payload=response.content
    )
    body = response.json()
    assert sorted(m["type"] for m in body["materials"]) == ["police.hukou", "police.id_card"]
    readiness = body["readiness"]
    assert (readiness["kind"], readiness["code"], readiness["summary"]["decision"]) == (
        "service_item", "medins.resident_enrolment", "accept_now",
    )  # fmt: skip
    assert {r["material_id"] for r in readiness["requirements"]} == {
        ids["police.hukou"],
        ids["police.id_card"],
    }
    assert PERSON not in response.text
    with live.handle.sessions() as session:
        record = session.scalars(select(UsageRecord).where(UsageRecord.action == "lookup")).one()
        assert record.outcome == "accept_now" and record.case_ref == "HZ-1"
        assert record.detail is not None and record.detail["service_item"] == "medins.resident_enrolment"
        assert record.detail["types"] == ["police.hukou", "police.id_card"]


def test_unknown_or_doubly_named_items_are_refused_and_nothing_on_file_still_answers(live: Live) -> None:
    headers = _auth(live, register(live, "window"))
    with live.client() as http:
        unknown = _lookup(http, headers, "C", service_item="police.nothing")
        assert unknown.status_code == 422 and unknown.json()["detail"] == "unknown service item"
        both = _lookup(http, headers, "C", service_item="medins.resident_enrolment", bundle="life.newborn")
        assert both.status_code == 422
        # Nothing on file (and no such subject): the same readiness answer as for anyone with nothing.
        empty = http.post("/v1/lookups", headers=headers,
                          json={"id": OTHER, "case_ref": "C", "purpose": "p", "bundle": "life.newborn"})  # fmt: skip
    assert empty.status_code == 200
    assert empty.json()["readiness"]["summary"]["decision"] == "cannot_accept"
    assert empty.json()["subject"]["name_masked"] is None


def test_a_window_handling_one_item_cannot_read_a_type_the_item_does_not_need(live: Live) -> None:
    ids = _load(live)
    window = register(live, "window")
    headers = _auth(live, window)
    with live.client() as http:
        assert _lookup(http, headers, "C-1", service_item="medins.resident_enrolment").status_code == 200
        # A plain lookup for the same case lists everything, but the case is bound to its item.
        assert _lookup(http, headers, "C-1").status_code == 200
        allowed = http.get(f"/v1/materials/{ids['police.hukou']}", headers={**headers, "X-Case-Ref": "C-1"})
        assert allowed.status_code == 200, allowed.text
        refused = http.get(f"/v1/materials/{ids['civil.marriage']}", headers={**headers, "X-Case-Ref": "C-1"})
        assert refused.status_code == 403
        assert refused.json()["detail"] == "the case's service item does not need that material type"
        # Another case of the same window, for an item that needs marriage, may read it.
        assert _lookup(http, headers, "C-2", service_item="police.newborn_registration").status_code == 200
        other = http.get(f"/v1/materials/{ids['civil.marriage']}", headers={**headers, "X-Case-Ref": "C-2"})
        assert other.status_code == 200
    with live.handle.sessions() as session:
        outcomes = session.scalars(select(UsageRecord.outcome).where(UsageRecord.action == "read")).all()
        assert sorted(outcomes) == ["ok", "ok", "refused"]


def test_a_promise_is_recorded_for_a_waivable_material_and_closes_when_the_department_pushes_it(
    live_any: Live,
) -> None:
    live = live_any
    _load(live, marriage=False)
    headers = _auth(live, register(live, "window"))
    civil = register(live, "department", types=["civil.marriage"])
    request = {
        "id": PERSON,
        "case_ref": "NB-1",
        "type": "civil.marriage",
        "service_item": "police.newborn_registration",
    }
    with live.client() as http:
        before = _lookup(http, headers, "NB-1", service_item="police.newborn_registration").json()[
            "readiness"
        ]
        assert before["summary"]["decision"] == "accept_on_promise"
        created = http.post("/v1/promises", json=request, headers=headers)
        assert created.status_code == 201, created.text
        promise = created.json()
        assert promise["due_date"] == (today() + dt.timedelta(days=30)).isoformat()
        assert (promise["state"], promise["subject"]["id_masked"]) == ("open", "110105********002X")
        again = http.post("/v1/promises", json=request, headers=headers)
        assert (again.status_code, again.json()["id"]) == (200, promise["id"])
        longer = http.post("/v1/promises", headers=headers,
                           json={**request, "case_ref": "NB-2", "due_date": "2099-01-01"})  # fmt: skip
        assert longer.status_code == 422
        not_waivable = http.post("/v1/promises", json={**request, "type": "police.hukou"}, headers=headers)
        assert not_waivable.status_code == 422
        during = _lookup(http, headers, "NB-1", service_item="police.newborn_registration").json()[
            "readiness"
        ]
        marriage = next(r for r in during["requirements"] if r["types"] == ["civil.marriage"])
        assert marriage["promise"]["id"] == promise["id"] and during["summary"]["open_promises"] == 1
        assert [p["id"] for p in http.get("/v1/promises?state=open", headers=headers).json()["promises"]] == [
            promise["id"]
        ]

        pushed = _push(live, civil, type="civil.marriage", record_id="HY-NEW-1")
        assert pushed.status_code == 201, pushed.text

        closed = http.get("/v1/promises?state=closed", headers=headers).json()["promises"]
        assert [(p["id"], p["closed_via"], p["closed_by_material"]) for p in closed] == [
            (promise["id"], "push", pushed.json()["id"])
        ]
        assert http.get("/v1/promises?state=open", headers=headers).json()["promises"] == []
        after = _lookup(http, headers, "NB-1", service_item="police.newborn_registration").json()["readiness"]
        assert after["summary"]["decision"] == "accept_now" and after["summary"]["open_promises"] == 0
        # Another window sees none of this window's promises.
        stranger = _auth(live, register(live, "window"))
        assert http.get("/v1/promises?state=closed", headers=stranger).json()["promises"] == []


def test_overdue_promises_are_listed_and_flagged_for_the_expiry_dag(live_any: Live) -> None:
    live = live_any
    with live.handle.sessions() as session:
        subject = ensure_subject(session, keyring=live.handle.keyring, identifier=parse_identifier(PERSON))
        due = today()
        promise, _ = open_promise(session, case_ref="C", client_id="win-x", subject_id=subject.id,
                                  type_code="civil.marriage", due_date=due)  # fmt: skip
        try:
            open_promise(session, case_ref="D", client_id="win-x", subject_id=subject.id,
                         type_code="civil.marriage", due_date=due - dt.timedelta(days=1))  # fmt: skip
        except DataError:
            pass
        else:
            raise AssertionError("a promise due in the past was accepted")
        tomorrow = due + dt.timedelta(days=1)
        assert [p.id for p in list_promises(session, state="open", day=due)] == [promise.id]
        assert [p.id for p in list_promises(session, state="overdue", day=tomorrow)] == [promise.id]
        assert flag_overdue_promises(session, today=due) == 0
        assert flag_overdue_promises(session, today=tomorrow) == 1
        assert flag_overdue_promises(session, today=tomorrow) == 0
        session.commit()
        stored = session.get(Promise, promise.id)
        assert stored is not None and stored.state == "overdue" and stored.flagged_at is not None


def test_a_case_is_alerted_when_a_material_it_reused_is_superseded_or_revoked(live_any: Live) -> None:
    live = live_any
    ids = _load(live)
    window = register(live, "window")
    headers = _auth(live, window)
    police = register(live, "department", types=["police.hukou", "police.id_card"])
    with live.client() as http:
        assert _lookup(http, headers, "AL-1", service_item="medins.resident_enrolment").status_code == 200
        assert http.get("/v1/cases/AL-1/alerts", headers=headers).json() == {"case_ref": "AL-1", "alerts": []}
        # The household registration changes (same record, new content): a new version supersedes it.
        assert (
            _push(live, police, type="police.hukou", record_id="HJ1", data={"address": "新地址"}).status_code
            == 201
        )
        revoked = http.post(f"/v1/materials/{ids['police.id_card']}/revoke", json={"reason": "证件作废"},
                            headers=_auth(live, police))  # fmt: skip
        assert revoked.status_code == 200
        alerts = http.get("/v1/cases/AL-1/alerts", headers=headers).json()["alerts"]
        assert sorted((a["material_id"], a["kind"]) for a in alerts) == sorted(
            [(ids["police.hukou"], "superseded"), (ids["police.id_card"], "revoked")]
        )
        superseded = next(a for a in alerts if a["kind"] == "superseded")
        assert superseded["detail"]["type"] == "police.hukou" and superseded["detail"]["superseded_by"]
        stranger = _auth(live, register(live, "window"))
        assert http.get("/v1/cases/AL-1/alerts", headers=stranger).json()["alerts"] == []
        department = http.get("/v1/cases/AL-1/alerts", headers=_auth(live, police))
        assert department.status_code == 403
