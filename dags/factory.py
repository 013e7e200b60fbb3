"""Builds the DAGs from the data contracts and the connector registry: a new contract plus a connector is a
new ``sync_<source>`` DAG, with no DAG code. Wiring only: every task calls one function of
:mod:`connectors.stages` (or of the store) and passes counts, never rows, through XCom.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import DAG, Asset, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from contracts import Contract, load_contract

#: Every DAG's first possible run; catchup is off, so this only anchors the schedule.
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

#: Retries with exponential backoff: a departmental system that is briefly down is retried, not reported.
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-steward",
    "retries": 2,
    "retry_delay": dt.timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": dt.timedelta(minutes=10),
}


def material_asset(type_code: str) -> Asset:
    """The Asset a sync's load task updates: one per material type."""
    return Asset(name=f"materials.{type_code}", uri=f"onecert://materials/{type_code}", group="materials")


def _store() -> Any:
    from materials_store.runtime import open_store
    from materials_store.settings import get_settings

    return open_store(get_settings())


def _run_id(source: str) -> str:
    from connectors.stages import run_id_for

    return run_id_for(source, str(get_current_context()["run_id"]))


def _doc(contract: Contract, connector_doc: str | None) -> str:
    spec = contract.material_type
    return f"""\
### Sync {contract.source}: {spec.name_zh} · {spec.name_en}

Pulls `{contract.source}` from the {contract.department} department's system ({contract.transport}) into
the materials store as `{spec.code}`, validated against the data contract
`contracts/{contract.path.name}` (ODCS `{contract.id}` v{contract.version}).

| step | what it does |
|---|---|
| extract | reads everything past the committed cursor into encrypted staged batches |
| validate | runs the Great Expectations suite built from the contract on each batch |
| load | upserts the valid rows as materials (updates the `{spec.code}` Asset) |
| quarantine | puts each invalid row in the quarantine with the rules it broke |
| commit | moves the cursor, records the run and each expectation's result |
| check | fails the run (red) when more than {contract.quarantine_threshold:.0%} of the rows broke the contract |

Freshness SLA: {contract.freshness_sla_hours} h; synced every {contract.sync_every_hours} h.
The quarantine is at `GET /v1/quarantine?source={contract.source}` and on the steward dashboard.
{connector_doc or ""}
"""


def build_sync_dag(source: str) -> DAG:
    """The ``sync_<source>`` DAG of one contracted source."""
    from connectors.registry import get_connector

    contract = load_contract(source)
    connector = get_connector(source)

    @dag(
        dag_id=f"sync_{source}",
        schedule=contract.schedule,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        doc_md=_doc(contract, connector.__doc__),
        tags=["sync", f"dept:{contract.department}", f"transport:{contract.transport}"],
    )
    def sync() -> None:
        @task
        def extract() -> dict[str, Any]:
            from connectors import stages

            return stages.extract(_store(), source=source, run_id=_run_id(source)).as_dict()

        @task
        def validate(extracted: dict[str, Any]) -> dict[str, Any]:
            from connectors import stages

            return stages.validate(_store(), source=source, run_id=extracted["run_id"]).as_dict()

        @task(outlets=[material_asset(contract.material_type.code)])
        def load(validated: dict[str, Any]) -> dict[str, Any]:
            from connectors import stages

            return stages.load(_store(), source=source, run_id=validated["run_id"]).as_dict()

        @task
        def quarantine(validated: dict[str, Any]) -> dict[str, Any]:
            from connectors import stages

            return stages.quarantine(_store(), source=source, run_id=validated["run_id"]).as_dict()

        @task
        def commit(loaded: dict[str, Any], quarantined: dict[str, Any]) -> dict[str, Any]:
            from connectors import stages

            return stages.commit(_store(), source=source, run_id=loaded["run_id"]).as_dict()

        @task
        def check(committed: dict[str, Any]) -> dict[str, Any]:
            from connectors import stages

            try:
                return stages.check(committed).as_dict()
            except stages.QualityGateFailed as error:
                raise AirflowFailException(str(error)) from None  # data, not the system: fails without retries

        # TaskFlow passes XComArgs where the functions declare their runtime values.
        extracted: Any = extract()
        validated: Any = validate(extracted)
        loaded: Any = load(validated)
        quarantined: Any = quarantine(validated)
        committed: Any = commit(loaded, quarantined)
        check(committed)

    return sync()



def build_job_dag(dag_id: str, *, schedule: Any, doc_md: str | None, tags: list[str], job: str) -> DAG:
    """A maintenance DAG of one task that runs ``dags.jobs.<job>`` and returns its counts."""

    @dag(
        dag_id=dag_id,
        schedule=schedule,
        start_date=START,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        doc_md=doc_md,
        tags=tags,
    )
    def maintenance() -> None:
        @task(task_id=job)
        def run() -> dict[str, Any]:
            from dags import jobs

            result: dict[str, Any] = getattr(jobs, job)()
            return result

        run()

    return maintenance()
