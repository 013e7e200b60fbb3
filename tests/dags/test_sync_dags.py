"""The sync DAGs run for real (``dag.test()``) against the sandbox departmental systems."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from connectors import stages
from connectors.registry import get_connector
from connectors.sandbox import control
from connectors.sandbox.generate import QUARANTINED_KINDS, load_manifest
from materials_store.models import Material, QuarantineRow, SyncRun, ValidationResult
from materials_store.runtime import StoreHandle
from materials_store.store import get_cursor

DAGS = Path(__file__).resolve().parents[2] / "dags"


def _dag(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS)).dags[dag_id]


def _expected(home: Path, source: str) -> tuple[set[str], int]:
    info = load_manifest(home)["sources"][source]
    bad = {rid for kind in QUARANTINED_KINDS for rid in info["defects"][kind]}
    return bad, info["records"] - len(bad)


def _store_counts(store: StoreHandle, source: str) -> tuple[int, set[str], int]:
    with store.sessions() as session:
        materials = session.scalar(select(func.count()).select_from(Material).where(Material.source == source))
        quarantined = set(
            session.scalars(select(QuarantineRow.source_record_id).where(QuarantineRow.source == source))
        )
        runs = session.scalar(select(func.count()).select_from(SyncRun).where(SyncRun.source == source))
    return int(materials or 0), quarantined, int(runs or 0)


def test_a_sync_dag_loads_good_rows_and_quarantines_bad_ones(
    airflow_home: Path, sandbox: Path, store: StoreHandle
) -> None:
    run = _dag("sync_police_hukou").test()
    assert run.state == "success"
    bad, good = _expected(sandbox, "police_hukou")
    materials, quarantined, _ = _store_counts(store, "police_hukou")
    assert (materials, quarantined) == (good, bad)
    with store.sessions() as session:
        sync_run = session.scalars(select(SyncRun).where(SyncRun.source == "police_hukou")).one()
        assert (sync_run.state, sync_run.extracted, sync_run.loaded) == ("success", good + len(bad), good)
        assert get_cursor(session, source="police_hukou") == sync_run.cursor is not None
        history = session.scalars(select(ValidationResult).where(ValidationResult.run_id == sync_run.id)).all()
    assert {row.rule for row in history} >= {"valid_subject_id", "record_id_unique", "subject_id_required"}
    assert sum(row.unexpected_count for row in history) >= len(bad)
    assert not (sandbox / "staging" / sync_run.id).exists()  # staged rows are removed once committed


def test_a_source_above_its_quarantine_threshold_ends_red(
    airflow_home: Path, sandbox: Path, store: StoreHandle
) -> None:
    run = _dag("sync_medins_enrolments").test()  # the sandbox seeds 12% defects; the threshold is 5%
    assert run.state == "failed"
    bad, good = _expected(sandbox, "medins_enrolments")
    materials, quarantined, _ = _store_counts(store, "medins_enrolments")
    assert (materials, quarantined) == (good, bad)  # good rows still load; the bad ones wait for a steward
    with store.sessions() as session:
        sync_run = session.scalars(select(SyncRun).where(SyncRun.source == "medins_enrolments")).one()
    assert sync_run.state == "failed" and (sync_run.error or "").startswith("QualityGate")
    assert not list((sandbox / "sandbox" / "drops" / "medins_enrolments" / "inbox").iterdir())  # archived


def _run_all(store: StoreHandle, source: str, run_id: str) -> stages.StageCounts:
    stages.extract(store, source=source, run_id=run_id)
    stages.validate(store, source=source, run_id=run_id)
    stages.load(store, source=source, run_id=run_id)
    stages.quarantine(store, source=source, run_id=run_id)
    return stages.commit(store, source=source, run_id=run_id)


@pytest.mark.parametrize("source", ["police_id_card", "civil_marriages"])
def test_rerunning_the_same_run_changes_nothing(sandbox: Path, store: StoreHandle, source: str) -> None:
    run_id = stages.run_id_for(source, "manual__2026-11-23T00:00:00+00:00")
    first = _run_all(store, source, run_id)
    before = _store_counts(store, source)
    with store.sessions() as session:
        cursor = get_cursor(session, source=source)
    again = _run_all(store, source, run_id)  # a steward clears the run and it runs again
    assert _store_counts(store, source) == before
    assert (again.extracted, again.loaded) == (0, 0) and first.extracted > 0
    with store.sessions() as session:
        assert get_cursor(session, source=source) == cursor
    # The steps after extract replayed on their own (a retried task) change nothing either.
    third = stages.run_id_for(source, "manual__2026-11-23T01:00:00+00:00")
    control.advance(sandbox, updates=2, new=1)
    stages.extract(store, source=source, run_id=third)
    stages.validate(store, source=source, run_id=third)
    for _ in range(2):
        stages.load(store, source=source, run_id=third)
        stages.quarantine(store, source=source, run_id=third)
    done = stages.commit(store, source=source, run_id=third)
    assert (done.extracted, done.loaded, done.new_versions) == (3, 3, 2)
    assert _store_counts(store, source)[0] == before[0] + 3


def test_a_source_failing_mid_run_leaves_store_and_cursor_and_the_retry_completes(
    sandbox: Path, store: StoreHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = "police_id_card"
    connector = get_connector(source)
    real_pages = connector.pages

    def pages_then_outage(self: Any, state: dict[str, str]) -> Any:
        for number, page in enumerate(real_pages(self, state)):
            yield page
            if number == 1:  # the police system goes down after two pages
                control.fault(sandbox, "police", "down")

    monkeypatch.setattr(connector, "pages", pages_then_outage)
    run_id = stages.run_id_for(source, "scheduled__2026-11-23T00:00:00+00:00")
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the transport raises, the run fails
        stages.extract(store, source=source, run_id=run_id, batch_rows=40)
    assert _store_counts(store, source)[:2] == (0, set())
    with store.sessions() as session:
        assert get_cursor(session, source=source) is None
        assert session.get(SyncRun, run_id).state == "failed"  # type: ignore[union-attr]
    assert not (sandbox / "staging" / run_id).exists()

    monkeypatch.setattr(connector, "pages", real_pages)
    control.fault(sandbox, "police", "none")
    done = _run_all(store, source, run_id)  # Airflow's retry of the same run
    bad, good = _expected(sandbox, source)
    assert (done.state, done.loaded) == ("success", good)
    assert _store_counts(store, source)[:2] == (good, bad)
