"""Material reuse: a case opens what its lookup listed, sealed so it verifies offline (and with joserfc)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import rfc8785
from joserfc import jws
from joserfc.jwk import KeySet

from materials_store.store import revoke
from tests.api.conftest import Live, register
from tests.api.test_lookups import PERSON, _load
from tests.api.test_usage import _token_for

ONECERT = Path(sys.executable).with_name("onecert")


def test_a_window_reuses_what_its_case_listed_and_the_seal_verifies(live: Live, tmp_path: Path) -> None:
    ids = _load(live)
    window = register(live, "window", org="hz-xihu")
    other_window = register(live, "window", org="hz-shangcheng")
    headers = {"Authorization": f"Bearer {_token_for(live, window)}"}
    with live.client() as http:
        listed = http.post("/v1/lookups", json={"id": PERSON, "case_ref": "HZ-7", "purpose": "新生儿入户"},
                           headers=headers).json()  # fmt: skip
        hukou = next(m["id"] for m in listed["materials"] if m["type"] == "police.hukou")
        response = http.get(f"/v1/materials/{hukou}", headers={**headers, "X-Case-Ref": "HZ-7"})
        wrong_case = http.get(f"/v1/materials/{hukou}", headers={**headers, "X-Case-Ref": "HZ-8"})
        no_case = http.get(f"/v1/materials/{hukou}", headers=headers)
        other = http.get(f"/v1/materials/{hukou}", headers={
            "Authorization": f"Bearer {_token_for(live, other_window)}", "X-Case-Ref": "HZ-7"})  # fmt: skip
        revoked = http.get(f"/v1/materials/{ids[2]}", headers={**headers, "X-Case-Ref": "HZ-7"})
        jwks = http.get("/.well-known/jwks.json").json()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["material"]["data"] == {"name": "张三丰"}
    assert body["material"]["subject"]["id_masked"] == "110105********002X"
    # The seal verifies with an independent JOSE library, and its payload is the RFC 8785 form.
    sealed = jws.deserialize_compact(body["seal"], KeySet.import_key_set(jwks), algorithms=["EdDSA"])
    assert sealed.payload == rfc8785.dumps(body["material"])
    assert (wrong_case.status_code, no_case.status_code, other.status_code) == (403, 422, 403)
    assert revoked.status_code == 403  # revoked, and never listed

    saved = tmp_path / "hukou.json"
    saved.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    env = dict(os.environ)
    ok = subprocess.run([str(ONECERT), "verify", str(saved), "--jwks", str(tmp_path / "jwks.json")],
                        env=env, capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "valid seal" in ok.stdout
    forged = {**body, "material": {**body["material"], "data": {"name": "李四"}}}
    saved.write_text(json.dumps(forged, ensure_ascii=False), encoding="utf-8")
    bad = subprocess.run([str(ONECERT), "verify", str(saved)], env=env, capture_output=True, text=True)
    assert bad.returncode == 1
    assert "differs" in bad.stderr


def test_a_material_revoked_after_the_lookup_cannot_be_reused(live: Live) -> None:
    _load(live)
    window = register(live, "window")
    headers = {"Authorization": f"Bearer {_token_for(live, window)}"}
    with live.client() as http:
        listed = http.post(
            "/v1/lookups", json={"id": PERSON, "case_ref": "C", "purpose": "p"}, headers=headers
        ).json()
        card = next(m["id"] for m in listed["materials"] if m["type"] == "police.id_card")
        with live.handle.sessions() as session:
            revoke(session, material_id=card, reason="lost", actor="police")
            session.commit()
        response = http.get(f"/v1/materials/{card}", headers={**headers, "X-Case-Ref": "C"})
    assert response.status_code == 403
    assert "revoked" in response.json()["detail"]
