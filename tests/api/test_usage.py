"""Citizens see who used their data; stewards search by subject; tampering is caught by the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import update

from materials_store.models import UsageRecord
from tests.api.conftest import Live, register
from tests.api.test_lookups import PERSON, _load
from tests.api.test_tokens import ASSERTION_TYPE


def _token_for(live: Live, client: object) -> str:
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client.assertion(f"{live.url}/v1/oauth/token")}  # type: ignore[attr-defined]  # fmt: skip
    with live.client() as http:
        return str(http.post("/v1/oauth/token", data=data).json()["access_token"])


def test_citizen_sees_who_used_their_data_and_steward_can_search(live: Live) -> None:
    _load(live)
    window = register(live, "window", org="hz-xihu")
    citizen = register(live, "citizen", subject_index=live.handle.keyring.blind_index(PERSON))
    steward = register(live, "steward")
    with live.client() as http:
        http.post("/v1/lookups", json={"id": PERSON, "case_ref": "HZ-1", "purpose": "新生儿入户"},
                  headers={"Authorization": f"Bearer {_token_for(live, window)}"})  # fmt: skip
        mine = http.get(
            "/v1/subjects/me/usage", headers={"Authorization": f"Bearer {_token_for(live, citizen)}"}
        )
        searched = http.post("/v1/usage/search", json={"id": PERSON, "reason": "citizen complaint 12345"},
                             headers={"Authorization": f"Bearer {_token_for(live, steward)}"})  # fmt: skip
        window_try = http.get(
            "/v1/subjects/me/usage", headers={"Authorization": f"Bearer {_token_for(live, window)}"}
        )
    assert mine.status_code == 200
    [entry] = mine.json()["entries"]
    assert (entry["by"], entry["service_centre"], entry["case_ref"], entry["purpose"]) == (
        "test window",
        "hz-xihu",
        "HZ-1",
        "新生儿入户",
    )
    assert searched.status_code == 200
    assert [e["case_ref"] for e in searched.json()["entries"]] == ["HZ-1"]
    assert window_try.status_code == 403


def test_audit_verify_command_detects_tampering(live: Live) -> None:
    _load(live)
    window = register(live, "window")
    token = _token_for(live, window)
    with live.client() as http:
        for case in ("A", "B", "C"):
            http.post("/v1/lookups", json={"id": PERSON, "case_ref": case, "purpose": "p"},
                      headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    onecert = Path(sys.executable).with_name("onecert")
    intact = subprocess.run(
        [str(onecert), "audit", "verify"], env=dict(os.environ), capture_output=True, text=True
    )
    assert intact.returncode == 0, intact.stderr
    assert "chain intact" in intact.stdout
    with live.handle.sessions() as session:
        session.execute(update(UsageRecord).where(UsageRecord.case_ref == "B").values(purpose="rewritten"))
        session.commit()
    tampered = subprocess.run(
        [str(onecert), "audit", "verify"], env=dict(os.environ), capture_output=True, text=True
    )
    assert tampered.returncode == 1
    assert "TAMPERED at record 3" in tampered.stderr
