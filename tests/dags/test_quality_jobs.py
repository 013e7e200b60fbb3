"""The maintenance DAGs' jobs: identity reconciliation, expiry and Data Docs."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from sqlalchemy import select

from connectors import stages
from connectors.pipeline import run_sync
from connectors.sandbox.generate import load_manifest
from dags import jobs
from materials_store.cases import open_promise
from materials_store.models import IdentityConflict, Material, Promise
from materials_store.quality import dismiss_conflict, list_conflicts, reconcile_identity
from materials_store.runtime import StoreHandle
from materials_store.store import today


def test_reconcile_identity_records_each_name_that_disagrees_with_police(sandbox: Path, store: StoreHandle) -> None:
    for source in ("police_id_card", "civil_marriages"):
        assert run_sync(source, handle=store).state == "success"
    mismatched = set(load_manifest(sandbox)["sources"]["civil_marriages"]["defects"]["name_mismatch"])
    assert mismatched, "the sandbox seeds name mismatches"
    with store.sessions() as session:
        report = reconcile_identity(session, keyring=store.keyring)
        subjects = {
            m.subject_id
            for m in session.scalars(select(Material).where(Material.source_record_id.in_(mismatched)))
        }
        conflicts = session.scalars(select(IdentityConflict).where(IdentityConflict.field == "name")).all()
        assert {c.subject_id for c in conflicts} == subjects
        assert all(c.sources == ["civil_marriages", "police_id_card"] for c in conflicts)
        assert report.new == len(subjects) and report.conflicts_open == len(subjects)
        views = list_conflicts(session, keyring=store.keyring)
        assert len(views) == len(subjects)
        for view in views:
            assert re.fullmatch(r"\w{6}\*{8}\w{4}", view.subject)  # masked ID
            assert all(set(value[1:]) == {"*"} for value in view.values)  # masked names
        again = reconcile_identity(session, keyring=store.keyring)  # nothing changed: nothing new
        assert (again.new, again.updated, again.closed, again.conflicts_open) == (0, 0, 0, len(subjects))
        dismiss_conflict(session, conflict_id=conflicts[0].id)
        session.commit()
        third = reconcile_identity(session, keyring=store.keyring)
        assert third.conflicts_open == len(subjects) - 1  # a dismissed conflict stays dismissed


def test_expire_job_expires_materials_past_their_validity(sandbox: Path, store: StoreHandle) -> None:
    assert run_sync("tax_certificates", handle=store).state == "success"  # valid 90 days
    with store.sessions() as session:
        material = session.scalars(select(Material).where(Material.status == "valid")).first()
        assert material is not None
        material.valid_until = dt.date(2020, 1, 1)
        promise, _ = open_promise(session, case_ref="C-1", client_id="win-1", subject_id=material.subject_id,
                                  type_code="civil.marriage", due_date=today())  # fmt: skip
        promise.due_date = dt.date(2020, 1, 1)  # a promise the applicant did not keep
        session.commit()
        material_id, promise_id = material.id, promise.id
    result = jobs.expire_and_flag()
    assert result["expired"] >= 1 and result["promises_overdue"] == 1
    with store.sessions() as session:
        assert session.get(Material, material_id).status == "expired"  # type: ignore[union-attr]
        assert session.get(Promise, promise_id).state == "overdue"  # type: ignore[union-attr]


def test_data_docs_show_the_runs_without_any_citizen_data(sandbox: Path, store: StoreHandle) -> None:
    run_id = stages.run_id_for("police_id_card", "manual__docs")
    for step in (stages.extract, stages.validate, stages.load, stages.quarantine, stages.commit):
        step(store, source="police_id_card", run_id=run_id)
    built = jobs.data_docs()
    index = Path(built["index"])
    assert index.is_file() and built["results"] == 1
    pages = list(index.parent.rglob("*.html"))
    assert any(run_id in str(page) for page in pages)
    text = "\n".join(page.read_text(encoding="utf-8") for page in pages)
    assert "police_id_card" in text
    with store.sessions() as session:
        from materials_store.store import decrypt_payload

        payloads = [decrypt_payload(store.keyring, m) for m in session.scalars(select(Material)).all()[:50]]
    for payload in payloads:  # no ID number, name or address reaches the docs
        for value in (payload["subject_id"], payload["name"], payload["address"]):
            assert str(value) not in text
