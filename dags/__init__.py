"""Airflow DAG files: wiring only; the logic lives in importable modules."""
