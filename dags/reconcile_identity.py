"""### Reconcile identity (Airflow DAG)

Runs whenever police data changes (the `police.id_card` or `police.hukou` Asset). Cross-checks the name
and birth date of every subject across every source (and the birth date in the ID number itself), and
records each disagreement as an identity conflict for stewards (`GET /v1/identity-conflicts`, the
steward dashboard). Conflicts that no longer hold are closed.
"""

from __future__ import annotations

from dags.factory import build_job_dag, material_asset

reconcile_identity = build_job_dag(
    "reconcile_identity",
    schedule=material_asset("police.id_card") | material_asset("police.hukou"),
    doc_md=__doc__,
    tags=["quality", "dept:police"],
    job="reconcile",
)
