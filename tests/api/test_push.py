"""Department push and revoke: signed bodies, own types only, idempotency, supersession."""

from __future__ import annotations

import json
import uuid

from joserfc import jws

from tests.api.conftest import Live, Registered, register
from tests.api.test_lookups import PERSON
from tests.api.test_usage import _token_for


def _signed(department: Registered, **payload: object) -> str:
    body = {"type": "tax.payment_certificate", "subject_id": PERSON, "record_id": "WS0001",
            "issued_at": "2026-11-01", "valid_until": "2027-01-30", "data": {"amount": "99.50"}, **payload}  # fmt: skip
    return jws.serialize_compact({"alg": department.algorithm}, json.dumps(body, ensure_ascii=False), department.jwk(),
                                 algorithms=[department.algorithm])  # fmt: skip


def _push(live: Live, token: str, compact: str, key: str | None = None) -> object:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/jose",
               "Idempotency-Key": key or uuid.uuid4().hex}  # fmt: skip
    with live.client() as http:
        return http.post("/v1/materials", content=compact, headers=headers)


def test_push_idempotency_supersession_and_revoke(live_any: Live) -> None:
    live = live_any
    tax = register(live, "department", curve="p256", types=["tax.payment_certificate"])
    token = _token_for(live, tax)
    first = _signed(tax)
    created = _push(live, token, first, key="push-key-0001")
    assert created.status_code == 201, created.text  # type: ignore[attr-defined]
    material_id = created.json()["id"]  # type: ignore[attr-defined]
    again = _push(live, token, first, key="push-key-0001")
    assert (again.status_code, again.json()["id"]) == (200, material_id)  # type: ignore[attr-defined]
    changed = _signed(tax, data={"amount": "120.00"})
    conflict = _push(live, token, changed, key="push-key-0001")
    assert conflict.status_code == 409  # type: ignore[attr-defined]
    newer = _push(live, token, changed)
    assert newer.status_code == 201  # type: ignore[attr-defined]
    newer_id = newer.json()["id"]  # type: ignore[attr-defined]
    window = register(live, "window")
    headers = {"Authorization": f"Bearer {_token_for(live, window)}"}
    with live.client() as http:
        listed = http.post(
            "/v1/lookups", json={"id": PERSON, "case_ref": "C", "purpose": "p"}, headers=headers
        )
        assert [m["id"] for m in listed.json()["materials"]] == [
            newer_id
        ]  # the earlier version is superseded
        revoked = http.post(f"/v1/materials/{newer_id}/revoke", json={"reason": "issued in error"},
                            headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert revoked.json() == {"id": newer_id, "status": "revoked"}
        gone = http.post("/v1/lookups", json={"id": PERSON, "case_ref": "D", "purpose": "p"}, headers=headers)
        assert gone.status_code == 404


def test_pushes_must_be_signed_by_the_department_for_its_own_types(live: Live) -> None:
    tax = register(live, "department", types=["tax.payment_certificate"])
    police = register(live, "department", types=["police.hukou"])
    tax_token, police_token = _token_for(live, tax), _token_for(live, police)
    # Signed by another department's key.
    assert _push(live, tax_token, _signed(police)).status_code == 401  # type: ignore[attr-defined]
    # Its own signature, but a type it does not issue.
    assert _push(live, police_token, _signed(police)).status_code == 403  # type: ignore[attr-defined]
    # Tampered payload.
    protected, payload, signature = _signed(tax).split(".")
    tampered = f"{protected}.{payload[:-4]}AAAA.{signature}"
    assert _push(live, tax_token, tampered).status_code == 401  # type: ignore[attr-defined]
    # Invalid subject ID: 422 with the reason, without the number.
    invalid = _push(live, tax_token, _signed(tax, subject_id="110105194912310021"))
    assert invalid.status_code == 422  # type: ignore[attr-defined]
    assert invalid.json()["reason"] == "wrong_check_character"  # type: ignore[attr-defined]
    assert "110105194912310021" not in invalid.text  # type: ignore[attr-defined]
    # A window may not push; a department may not revoke another's material.
    window_token = _token_for(live, register(live, "window"))
    assert _push(live, window_token, _signed(tax)).status_code == 403  # type: ignore[attr-defined]
    material_id = _push(live, tax_token, _signed(tax)).json()["id"]  # type: ignore[attr-defined]
    with live.client() as http:
        refused = http.post(f"/v1/materials/{material_id}/revoke", json={"reason": "x"},
                            headers={"Authorization": f"Bearer {police_token}"})  # fmt: skip
    assert refused.status_code == 403


def test_bulk_push_reports_each_item(live: Live) -> None:
    tax = register(live, "department", types=["tax.payment_certificate"])
    token = _token_for(live, tax)
    good = [{"type": "tax.payment_certificate", "subject_id": PERSON, "record_id": f"WS{i:06d}",
             "issued_at": "2026-11-01", "data": {"amount": str(i)}} for i in range(197)]  # fmt: skip
    items = [*good, {"type": "police.hukou", "subject_id": PERSON, "record_id": "X", "issued_at": "2026-11-01",
                     "data": {}},
             {**good[0], "record_id": "BAD", "subject_id": "110105194912310021"}, {"nonsense": True}]  # fmt: skip
    compact = jws.serialize_compact(
        {"alg": "EdDSA"}, json.dumps({"items": items}), tax.jwk(), algorithms=["EdDSA"]
    )

    def send(body: str, key: str) -> object:
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/jose",
            "Idempotency-Key": key,
        }
        with live.client() as http:
            return http.post("/v1/materials/bulk", content=body, headers=headers)

    first = send(compact, "bulk-key-0001")
    assert first.status_code == 200, first.text  # type: ignore[attr-defined]
    results = first.json()["results"]  # type: ignore[attr-defined]
    assert [r["status"] for r in results] == [201] * 197 + [403, 422, 422]
    assert "110105194912310021" not in first.text  # type: ignore[attr-defined]
    replay = send(compact, "bulk-key-0001").json()["results"]  # type: ignore[attr-defined]
    assert [r["id"] for r in replay[:197]] == [r["id"] for r in results[:197]]
    assert {r["status"] for r in replay[:197]} == {200}
    other = jws.serialize_compact(
        {"alg": "EdDSA"}, json.dumps({"items": good[:3]}), tax.jwk(), algorithms=["EdDSA"]
    )
    assert send(other, "bulk-key-0001").status_code == 409  # type: ignore[attr-defined]
    too_many = jws.serialize_compact({"alg": "EdDSA"}, json.dumps({"items": [{}] * 1001}), tax.jwk(),
                                     algorithms=["EdDSA"])  # fmt: skip
    assert send(too_many, "bulk-key-0002").status_code == 422  # type: ignore[attr-defined]
