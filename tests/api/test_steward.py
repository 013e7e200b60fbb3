"""A data steward watches the sources and works the quarantine queue through the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from connectors import stages
from connectors.pipeline import run_sync
from connectors.sandbox.generate import QUARANTINED_KINDS, load_manifest
from materials_store.models import Material, UsageRecord
from materials_store.store import verify_usage_chain
from tests.api.conftest import Live, register
from tests.api.test_usage import _token_for
from tests.connectors.conftest import sandbox

__all__ = ["sandbox"]


def _red_run(live: Live, source: str) -> None:
    run_id = stages.run_id_for(source, "scheduled__test")
    for step in (stages.extract, stages.validate, stages.load, stages.quarantine, stages.commit):
        step(live.handle, source=source, run_id=run_id)


def _bad(home: Path, source: str) -> set[str]:
    info = load_manifest(home)["sources"][source]
    return {rid for kind in QUARANTINED_KINDS for rid in info["defects"][kind]}


def test_a_steward_sees_every_source_and_fixes_a_quarantined_row(sandbox: Path, live: Live) -> None:
    assert run_sync("police_hukou", handle=live.handle).state == "success"
    _red_run(live, "medins_enrolments")  # 12% broken rows: above its 5% threshold
    steward = {"Authorization": f"Bearer {_token_for(live, register(live, 'steward'))}"}
    window = {"Authorization": f"Bearer {_token_for(live, register(live, 'window', org='hz-xihu'))}"}
    with live.client() as http:
        assert http.get("/v1/sources", headers=window).status_code == 403
        sources = {s["source"]: s for s in http.get("/v1/sources", headers=steward).json()["sources"]}
        assert len(sources) == 9
        hukou, medins = sources["police_hukou"], sources["medins_enrolments"]
        assert hukou["last_run"]["state"] == "success" and hukou["freshness"]["fresh"] is True
        assert sources["tax_certificates"]["last_run"] is None and sources["tax_certificates"]["freshness"]["fresh"] is False
        assert medins["last_run"]["state"] == "failed" and medins["last_run"]["error"].startswith("QualityGate")
        bad = _bad(sandbox, "medins_enrolments")
        assert medins["last_run"]["quarantined"] >= medins["open_quarantine"] >= len(bad)  # duplicates: 2 rows
        assert medins["pass_rate"] < 1 - medins["quarantine_threshold"]

        page = http.get("/v1/quarantine", params={"source": "medins_enrolments", "limit": 1000}, headers=steward).json()
        assert page["total"] == medins["open_quarantine"] and {i["source_record_id"] for i in page["items"]} == bad
        assert all("row" not in item for item in page["items"])  # the list never carries contents
        by_rule = http.get("/v1/quarantine", params={"rule": "issued_at_real_date", "source": "medins_enrolments"},
                           headers=steward).json()
        assert by_rule["total"] >= 1
        assert all(any(r["rule"] == "issued_at_real_date" for r in i["rules"]) for i in by_rule["items"])

        target = by_rule["items"][0]
        detail = http.get(f"/v1/quarantine/{target['id']}", headers=steward).json()
        row: dict[str, Any] = detail["row"]
        assert row["issued_at"] == "2023-02-30"

        still_bad = http.post(f"/v1/quarantine/{target['id']}/resolve", headers=steward,
                              json={"action": "revalidate", "row": row})  # fmt: skip
        assert still_bad.status_code == 422
        problem = still_bad.json()
        assert "issued_at_real_date" in problem["detail"] and row["subject_id"] not in still_bad.text

        fixed = http.post(f"/v1/quarantine/{target['id']}/resolve", headers=steward,
                          json={"action": "revalidate", "row": {**row, "issued_at": "2026-02-28"}})  # fmt: skip
        assert fixed.status_code == 200, fixed.text
        result = fixed.json()
        assert result["status"] == "resolved" and result["open_in_source"] == page["total"] - 1
        again = http.post(f"/v1/quarantine/{target['id']}/resolve", headers=steward,
                          json={"action": "discard", "reason": "twice"})  # fmt: skip
        assert again.status_code == 409

        other = next(i for i in page["items"] if i["id"] != target["id"])
        no_reason = http.post(f"/v1/quarantine/{other['id']}/resolve", headers=steward, json={"action": "discard"})
        assert no_reason.status_code == 422
        discarded = http.post(f"/v1/quarantine/{other['id']}/resolve", headers=steward,
                              json={"action": "discard", "reason": "withdrawn by the source"})  # fmt: skip
        assert discarded.json()["open_in_source"] == page["total"] - 2

        history = http.get("/v1/sources/medins_enrolments/history", headers=steward).json()
        assert [r["state"] for r in history["runs"]] == ["failed"]
        assert any(p["rule"] == "scheme_in_code_list" for p in history["expectations"])
        assert http.get("/v1/sources/nope/history", headers=steward).status_code == 404
        assert http.get("/data-docs/").status_code == 200

    with live.handle.sessions() as session:
        material = session.get(Material, result["material_id"])
        assert material is not None and material.status == "valid" and material.source == "medins_enrolments"
        actions = [r.action for r in session.scalars(select(UsageRecord).order_by(UsageRecord.seq))]
        assert [a for a in actions if a.startswith("quarantine")] == [
            "quarantine_read", "quarantine_resolve", "quarantine_discard"
        ]  # every act on a citizen's row is in the usage log
        assert verify_usage_chain(session).ok
