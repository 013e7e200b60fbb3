"""### Expire materials (daily Airflow DAG)

Materials past their validity (`valid_until` before today) become `expired`, so no window is offered
them as on file. Open promises (容缺) past their due date are flagged as overdue.
"""

from __future__ import annotations

import datetime as dt

from dags.factory import build_job_dag

expire_materials = build_job_dag(
    "expire_materials",
    schedule=dt.timedelta(days=1),
    doc_md=__doc__,
    tags=["maintenance", "materials"],
    job="expire_and_flag",
)
