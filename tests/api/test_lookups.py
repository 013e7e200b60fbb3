"""The one-certificate lookup: signed answers, masked subjects, usage recorded, no ID leaks."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy import select

from materials_store.identity import parse_identifier
from materials_store.models import UsageRecord
from materials_store.store import MaterialInput, disable_client, revoke, upsert_materials, verify_usage_chain
from tests.api.conftest import Live, Registered, register
from tests.api.test_tokens import ASSERTION_TYPE

PERSON = "11010519491231002X"


def _token(live: Live, kind: str = "window", **fields: object) -> str:
    return _token_of(live, register(live, kind, **fields))


def _token_of(live: Live, client: Registered) -> str:
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client.assertion(f"{live.url}/v1/oauth/token")}  # fmt: skip
    with live.client() as http:
        return str(http.post("/v1/oauth/token", data=data).json()["access_token"])


def _load(live: Live) -> list[str]:
    subject = parse_identifier(PERSON)
    items = [
        MaterialInput("police.id_card", subject, "SFZ1", dt.date(2020, 1, 1), dt.date(2040, 1, 1),
                      {"name": "张三丰", "address": "北京市朝阳区"}, "police", subject_name="张三丰"),
        MaterialInput("police.hukou", subject, "HJ1", dt.date(2020, 1, 1), None, {"name": "张三丰"}, "police"),
        MaterialInput("tax.payment_certificate", subject, "T1", dt.date(2026, 10, 1), dt.date(2099, 1, 1),
                      {"amount": "10.00"}, "tax"),
    ]  # fmt: skip
    with live.handle.sessions() as session:
        ids = upsert_materials(session, keyring=live.handle.keyring, items=items, source="test").ids
        revoke(session, material_id=ids[2], reason="issued in error", actor="tax")
        session.commit()
    return ids


def test_lookup_lists_valid_materials_and_is_signed(live_any: Live) -> None:
    live = live_any
    ids = _load(live)
    token = _token(live, org="hz-xihu", region="330106")
    request = {"id": " 11010519491231002x ", "case_ref": "HZ-2026-0001", "purpose": "新生儿入户"}
    with live.client() as http:
        response = http.post("/v1/lookups", json=request, headers={"Authorization": f"Bearer {token}"})
        keys = KeySet.import_key_set(http.get("/.well-known/jwks.json").json())
    assert response.status_code == 200, response.text
    signature = response.headers["X-Signature"]
    protected, empty, _sig = signature.split(".")
    assert empty == ""
    verified = jws.deserialize_compact(signature, keys, algorithms=["EdDSA"], payload=response.content)
    assert verified.protected["alg"] == "EdDSA"
    body = response.json()
    assert body["subject"] == {"kind": "person", "id_masked": "110105********002X", "name_masked": "张**"}
    assert sorted(m["type"] for m in body["materials"]) == ["police.hukou", "police.id_card"]
    assert ids[2] not in {m["id"] for m in body["materials"]}  # revoked: never on file
    assert PERSON not in response.text
    assert "payload" not in response.text
    with live.handle.sessions() as session:
        record = session.scalars(select(UsageRecord).where(UsageRecord.action == "lookup")).one()
        assert (record.case_ref, record.purpose, record.window) == ("HZ-2026-0001", "新生儿入户", "hz-xihu")
        assert record.subject_index == live.handle.keyring.blind_index(PERSON)
        assert sorted(record.material_ids) == sorted(ids[:2])


def test_a_tampered_body_fails_verification(live: Live) -> None:
    _load(live)
    token = _token(live)
    with live.client() as http:
        response = http.post("/v1/lookups", json={"id": PERSON, "case_ref": "C1", "purpose": "p"},
                             headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        keys = KeySet.import_key_set(http.get("/.well-known/jwks.json").json())
    tampered = json.dumps({**response.json(), "case_ref": "C2"}).encode()
    try:
        jws.deserialize_compact(response.headers["X-Signature"], keys, algorithms=["EdDSA"], payload=tampered)
    except jws.BadSignatureError:
        return
    raise AssertionError("a tampered body verified")


def test_invalid_ids_unknown_subjects_and_wrong_scopes(live: Live) -> None:
    _load(live)
    window = _token(live)
    department = _token(live, "department", types=["tax.payment_certificate"])
    headers = {"Authorization": f"Bearer {window}"}
    with live.client() as http:
        invalid = http.post("/v1/lookups", json={"id": "110105194912310021", "case_ref": "C", "purpose": "p"},
                            headers=headers)  # fmt: skip
        assert invalid.status_code == 422
        assert invalid.json()["reason"] == "wrong_check_character"
        assert "110105194912310021" not in invalid.text
        unknown = http.post("/v1/lookups", json={"id": "110101199001011237", "case_ref": "C", "purpose": "p"},
                            headers=headers)  # fmt: skip
        assert unknown.status_code == 404
        assert unknown.json()["type"] == "urn:onecert:problem:not-found"
        assert "110101199001011237" not in unknown.text
        forbidden = http.post("/v1/lookups", json={"id": PERSON, "case_ref": "C", "purpose": "p"},
                              headers={"Authorization": f"Bearer {department}"})  # fmt: skip
        assert forbidden.status_code == 403
        anonymous = http.post("/v1/lookups", json={"id": PERSON, "case_ref": "C", "purpose": "p"})
        assert anonymous.status_code == 401
        no_case = http.post("/v1/lookups", json={"id": PERSON, "purpose": "p"}, headers=headers)
        assert no_case.status_code == 422


def test_concurrent_lookups_each_leave_one_record_on_one_chain(live: Live) -> None:
    """Plain lookups append their records on the server's event loop, readiness lookups from its threads;
    under concurrency every answered lookup has exactly one record, and the chain stays one chain."""
    _load(live)
    token = _token(live, org="hz-xihu", region="330106")
    headers = {"Authorization": f"Bearer {token}"}

    def ask(n: int) -> int:
        body = {"id": PERSON, "case_ref": f"C-{n}", "purpose": "并发"}
        if n % 4 == 0:
            body["service_item"] = "medins.resident_enrolment"
        with live.client() as http:
            return http.post("/v1/lookups", json=body, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(ask, range(64)))
    assert statuses == [200] * 64
    with live.handle.sessions() as session:
        cases = [
            r.case_ref for r in session.scalars(select(UsageRecord).where(UsageRecord.action == "lookup"))
        ]
        assert sorted(cases) == sorted(f"C-{n}" for n in range(64))
        assert verify_usage_chain(session).ok


def test_a_disabled_client_or_a_missing_scope_is_refused_before_the_id_is_judged(live_any: Live) -> None:
    live = live_any
    _load(live)
    window = register(live, "window")
    token = _token_of(live, window)
    department = _token(live, "department", types=["tax.payment_certificate"])
    valid = {"id": PERSON, "case_ref": "C", "purpose": "p"}
    invalid = {**valid, "id": "110105194912310021"}
    with live.client() as http:

        def post(body: dict[str, str], bearer: str) -> httpx.Response:
            return http.post("/v1/lookups", json=body, headers={"Authorization": f"Bearer {bearer}"})

        assert post(valid, token).status_code == 200  # the window's registration is now kept by the server
        assert post(invalid, token).status_code == 422
        assert post(valid, department).status_code == 403
        assert post(invalid, department).status_code == 403
        with live.handle.sessions() as session:
            disable_client(session, client_id=window.client_id)
            session.commit()
        for body in (valid, invalid):
            refused = post(body, token)
            assert refused.status_code == 401, refused.text
            assert refused.json()["type"] == "urn:onecert:problem:unauthorized"
            assert PERSON not in refused.text
    with live.handle.sessions() as session:
        lookups = session.scalars(select(UsageRecord).where(UsageRecord.action == "lookup")).all()
    assert [(record.client_id, record.outcome) for record in lookups] == [(window.client_id, "found")]
