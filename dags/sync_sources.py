"""Airflow: one ``sync_<source>`` DAG per contracted source, generated from the contracts and the connector
registry (a new contract plus a connector is a new DAG)."""

from __future__ import annotations

from connectors.registry import source_names
from dags.factory import build_sync_dag

for _source in source_names():
    globals()[f"sync_{_source}"] = build_sync_dag(_source)
