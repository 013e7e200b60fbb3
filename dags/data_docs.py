"""### Data Docs

Builds the Great Expectations Data Docs site from the sync runs' recent validation results (every
expectation of every contract, with its unexpected counts; never the unexpected values themselves).
The hub serves the site at `/data-docs/`, linked from the steward dashboard. Runs after every
sync that loaded something.
"""

from __future__ import annotations

from airflow.sdk import AssetAny

from connectors.registry import source_names
from contracts import load_contract
from dags.factory import build_job_dag, material_asset

data_docs = build_job_dag(
    "data_docs",
    schedule=AssetAny(*(material_asset(load_contract(s).material_type.code) for s in source_names())),
    doc_md=__doc__,
    tags=["quality", "docs"],
    job="data_docs",
)
