"""The DAG folder as Airflow's own loader sees it."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.registry import source_names
from contracts import load_contract

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_every_dag_imports_without_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    expected = {f"sync_{source}" for source in source_names()} | {"expire_materials", "reconcile_identity", "data_docs"}
    assert set(dagbag.dags) == expected


def test_every_dag_has_tags_docs_and_retries(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        assert dag.doc_md, dag_id
        assert dag.catchup is False, dag_id
        for task in dag.tasks:
            assert task.retries >= 2, f"{dag_id}.{task.task_id}"


@pytest.mark.parametrize("source", source_names())
def test_sync_dags_follow_their_contract(dagbag, source: str) -> None:  # type: ignore[no-untyped-def]
    contract = load_contract(source)
    dag = dagbag.dags[f"sync_{source}"]
    assert [t.task_id for t in dag.topological_sort()][:2] == ["extract", "validate"]
    assert {t.task_id for t in dag.tasks} == {"extract", "validate", "load", "quarantine", "commit", "check"}
    assert dag.timetable.delta == contract.schedule  # from the contract's SLA properties
    assert f"dept:{contract.department}" in dag.tags
    outlets = dag.get_task("load").outlets
    assert [asset.uri for asset in outlets] == [f"onecert://materials/{contract.material_type.code}"]
    commit = dag.get_task("commit")
    assert commit.upstream_task_ids == {"load", "quarantine"}


def test_reconcile_identity_runs_when_police_data_changes(dagbag) -> None:  # type: ignore[no-untyped-def]
    condition = dagbag.dags["reconcile_identity"].timetable.asset_condition
    assert {asset.uri for asset in condition.objects} == {
        "onecert://materials/police.id_card",
        "onecert://materials/police.hukou",
    }
