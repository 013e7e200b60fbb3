"""A sandbox family at a window: the newborn bundle (signed, verified), a freshness-triggered pull from the
police system (and the same with the system down), and a promise closed by a sync."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy import select, update

from connectors.pipeline import run_sync
from connectors.sandbox import control
from connectors.sandbox.generate import load_manifest
from materials_store.identity import mask, parse_identifier
from materials_store.models import Material, SyncRun, UsageRecord
from materials_store.store import find_subject, latest_materials
from tests.api.conftest import Live, register
from tests.api.test_usage import _token_for

SOURCES = ("POLICE_ID_CARD", "POLICE_HUKOU", "HEALTH_BIRTHS", "CIVIL_MARRIAGES")


@pytest.fixture
def sandbox(_isolated_environment: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = _isolated_environment
    control.up(home, size=300, seed=7)
    for source in SOURCES:
        monkeypatch.setenv(f"ONECERT_SOURCE_{source}_BACKOFF", "0.01")
    yield home
    control.down(home)


def _sync(live: Live, *sources: str) -> None:
    for source in sources:
        assert run_sync(source, handle=live.handle).state == "success", source


def _defective(home: Path) -> set[str]:
    manifest = load_manifest(home)
    return {
        rid for source in manifest["sources"].values() for ids in source["defects"].values() for rid in ids
    }


def _mothers(home: Path) -> list[dict[str, Any]]:
    """The sandbox's birth records without seeded defects (the mother is the subject)."""
    bad = _defective(home)
    with sqlite3.connect(home / "sandbox" / "health.db") as db:
        rows = db.execute(
            "SELECT record_id, body FROM records WHERE dataset = 'births' ORDER BY row_seq"
        ).fetchall()
    return [json.loads(body) for record_id, body in rows if record_id not in bad]


def _with_types(
    live: Live, candidates: list[str], types: set[str], *, without: set[str] = frozenset()
) -> str:
    """The first candidate ID with a valid material of every type in ``types`` and none in ``without``."""
    with live.handle.sessions() as session:
        for value in candidates:
            subject = find_subject(session, keyring=live.handle.keyring, identifier=parse_identifier(value))
            held = (
                {v.type_code for v in latest_materials(session, subject_id=subject.id)} if subject else set()
            )
            if types <= held and not held & without:
                return value
    raise AssertionError("no sandbox resident fits")


def _lookup(live: Live, headers: dict[str, str], person: str, case_ref: str, **extra: str) -> httpx.Response:
    with live.client() as http:
        return http.post("/v1/lookups", headers=headers,
                         json={"id": person, "case_ref": case_ref, "purpose": "新生儿出生一件事", **extra})  # fmt: skip


def _need(readiness: dict[str, Any], types: list[str], chained: bool = False) -> dict[str, Any]:
    return next(
        r for r in readiness["requirements"] if r["types"] == types and bool(r["issued_by"]) == chained
    )


def test_the_newborn_bundle_for_a_sandbox_family_is_correct_and_signed(sandbox: Path, live: Live) -> None:
    _sync(live, "police_id_card", "police_hukou", "health_births", "civil_marriages")
    births = _mothers(sandbox)
    mother = _with_types(live, [b["subject_id"] for b in births],
                         {"police.id_card", "police.hukou", "civil.marriage", "health.birth_certificate"})  # fmt: skip
    birth = next(b for b in births if b["subject_id"] == mother)
    headers = {"Authorization": f"Bearer {_token_for(live, register(live, 'window', org='hz-xihu'))}"}
    response = _lookup(live, headers, mother, "NB-2026-0001", bundle="life.newborn")
    assert response.status_code == 200, response.text
    with live.client() as http:
        keys = KeySet.import_key_set(http.get("/.well-known/jwks.json").json())
    jws.deserialize_compact(
        response.headers["X-Signature"], keys, algorithms=["EdDSA"], payload=response.content
    )
    assert mother not in response.text
    body = response.json()
    assert body["subject"]["id_masked"] == mask(mother)
    readiness = body["readiness"]
    assert [item["name_zh"] for item in readiness["items"]] == [
        "出生医学证明签发",
        "新生儿入户",
        "城乡居民医保参保",
    ]
    id_card = _need(readiness, ["police.id_card"])
    assert (id_card["state"], len(id_card["serves"])) == ("on_file_fresh", 3)  # asked once for three items
    assert _need(readiness, ["civil.marriage"])["state"] == "on_file_fresh"
    assert _need(readiness, ["police.hukou"])["state"] == "on_file_fresh"  # the parents' household
    assert _need(readiness, ["police.hukou"], chained=True)["issued_by"] == "police.newborn_registration"
    assert _need(readiness, ["health.birth_certificate"], chained=True)["state"] == "issued_in_bundle"
    assert readiness["summary"]["decision"] == "accept_now"
    assert readiness["summary"]["counts"] == {"on_file_fresh": 3, "issued_in_bundle": 2}
    # The birth certificate is among the materials the bundle may use: the window opens it, sealed.
    certificate = next(m for m in body["materials"] if m["type"] == "health.birth_certificate")
    with live.client() as http:
        opened = http.get(
            f"/v1/materials/{certificate['id']}", headers={**headers, "X-Case-Ref": "NB-2026-0001"}
        )
    assert opened.status_code == 200, opened.text
    assert opened.json()["material"]["data"]["certificate_no"] == birth["certificate_no"]


def _backdate(live: Live, days: int) -> None:
    """Make every stored material and sync look ``days`` old."""
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    with live.handle.sessions() as session:
        session.execute(update(Material).values(created_at=past))
        session.execute(update(SyncRun).values(started_at=past, finished_at=past))
        session.commit()


def test_a_stale_household_record_is_pulled_from_police_and_used_with_a_warning_when_police_is_down(
    sandbox: Path, live: Live
) -> None:
    _sync(live, "police_id_card", "police_hukou")
    bad = _defective(sandbox)
    with sqlite3.connect(sandbox / "sandbox" / "police.db") as db:
        households = db.execute("SELECT record_id, body FROM records WHERE dataset = 'households'").fetchall()
    people = [json.loads(body)["subject_id"] for record_id, body in households if record_id not in bad]
    person = _with_types(live, people, {"police.id_card", "police.hukou"})
    headers = {"Authorization": f"Bearer {_token_for(live, register(live, 'window'))}"}
    # The police system changed the address since the (backdated) last sync.
    with sqlite3.connect(sandbox / "sandbox" / "police.db") as db:
        record_id, body = next((r, b) for r, b in households if json.loads(b)["subject_id"] == person)
        changed = {**json.loads(body), "address": "沙箱路 1 号"}
        db.execute("UPDATE records SET body = ? WHERE dataset = 'households' AND record_id = ?",
                   (json.dumps(changed, ensure_ascii=False), record_id))  # fmt: skip
    _backdate(live, 40)

    fresh = _lookup(live, headers, person, "MI-1", service_item="medins.resident_enrolment")
    assert fresh.status_code == 200, fresh.text
    hukou = _need(fresh.json()["readiness"], ["police.hukou"])
    assert hukou["state"] == "on_file_fresh" and hukou["warning"] is None
    with live.handle.sessions() as session:
        pulled = session.get(Material, hukou["material_id"])
        assert pulled is not None and pulled.version == 2 and pulled.source == "police_hukou"
        record = session.scalars(select(UsageRecord).where(UsageRecord.case_ref == "MI-1")).one()
        assert record.detail is not None and record.detail["pulls"] == ["police_hukou"]
        assert session.scalar(select(SyncRun.cursor).where(SyncRun.source == "police_hukou")) is not None
    with live.client() as http:
        opened = http.get(f"/v1/materials/{hukou['material_id']}", headers={**headers, "X-Case-Ref": "MI-1"})
    assert opened.json()["material"]["data"]["address"] == "沙箱路 1 号"

    _backdate(live, 40)
    control.fault(sandbox, "police", "down")
    started = time.monotonic()
    stale = _lookup(live, headers, person, "MI-2", service_item="medins.resident_enrolment")
    elapsed = time.monotonic() - started
    assert stale.status_code == 200, stale.text
    readiness = stale.json()["readiness"]
    hukou = _need(readiness, ["police.hukou"])
    assert hukou["state"] == "on_file_stale" and hukou["material_id"] == pulled.id
    assert "did not answer" in hukou["warning"] and "stored material is used" in hukou["warning"]
    assert readiness["summary"]["decision"] == "accept_now" and readiness["summary"]["warnings"] == [
        hukou["warning"]
    ]
    assert elapsed < live.handle.settings.freshness_pull_seconds + 2


def test_a_promise_closes_when_the_material_arrives_by_sync(sandbox: Path, live: Live) -> None:
    _sync(live, "police_id_card", "police_hukou", "health_births")
    mothers = [b["subject_id"] for b in _mothers(sandbox)]
    bad = _defective(sandbox)
    with sqlite3.connect(sandbox / "sandbox" / "civil.db") as db:
        rows = db.execute("SELECT subject_id, record_id FROM marriage_registration").fetchall()
    married = {subject for subject, record_id in rows if record_id not in bad}  # rows that will load
    person = _with_types(live, [m for m in mothers if m in married],
                         {"police.id_card", "police.hukou", "health.birth_certificate"})  # fmt: skip
    headers = {"Authorization": f"Bearer {_token_for(live, register(live, 'window'))}"}
    before = _lookup(live, headers, person, "NB-9", service_item="police.newborn_registration").json()[
        "readiness"
    ]
    assert _need(before, ["civil.marriage"])["state"] == "missing_waivable"
    assert before["summary"]["decision"] == "accept_on_promise"
    with live.client() as http:
        created = http.post("/v1/promises", headers=headers, json={
            "id": person, "case_ref": "NB-9", "type": "civil.marriage", "service_item": "police.newborn_registration"})  # fmt: skip
        assert created.status_code == 201, created.text
        _sync(live, "civil_marriages")
        closed = http.get("/v1/promises?state=closed", headers=headers).json()["promises"]
    assert [(p["id"], p["closed_via"]) for p in closed] == [(created.json()["id"], "sync")]
