"""Great Expectations Data Docs from the syncs' recent validation results.

The validate step saves each batch's GX result *redacted*: only counts and percentages stay, never the
unexpected values themselves (they are citizens' data). The ``data_docs`` DAG builds a GX Data Docs site
from the most recent saved results; the hub serves it at ``/data-docs/``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

#: Result fields that are counts or shares; everything else in a result (value lists) is dropped.
_KEPT = frozenset(
    {
        "element_count",
        "unexpected_count",
        "unexpected_percent",
        "unexpected_percent_total",
        "unexpected_percent_nonmissing",
        "missing_count",
        "missing_percent",
    }
)


def results_dir(home: Path) -> Path:
    return home / "gx" / "results"


def site_dir(home: Path) -> Path:
    """Where the built Data Docs site lives (its ``index.html``)."""
    return home / "gx" / "site"


def redact(result: dict[str, Any]) -> dict[str, Any]:
    """A GX suite result with every per-row value removed: counts, rules and outcomes only."""
    clean = dict(result)
    clean["results"] = []
    for item in result.get("results", []):
        entry = dict(item)
        detail = entry.get("result") or {}
        kept = {key: value for key, value in detail.items() if key in _KEPT}
        observed = detail.get("observed_value")
        if isinstance(observed, int | float) and not isinstance(observed, bool):
            kept["observed_value"] = observed  # aggregates such as a row count
        entry["result"] = kept
        clean["results"].append(entry)
    meta = dict(clean.get("meta") or {})
    meta.pop("batch_markers", None)  # a fingerprint of the data itself
    clean["meta"] = meta
    return clean


def save_result(home: Path, *, source: str, run_id: str, batch: int, result: Any) -> Path:
    """Save one batch's GX result, redacted, for the next Data Docs build."""
    folder = results_dir(home) / source / run_id
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "source": source,
        "run_id": run_id,
        "batch": batch,
        "at": dt.datetime.now(dt.UTC).isoformat(),
        "result": redact(result.to_json_dict()),
    }
    path = folder / f"batch-{batch:05d}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(temporary, path)
    return path


def _recent(home: Path, runs_per_source: int) -> list[dict[str, Any]]:
    documents = []
    root = results_dir(home)
    if not root.is_dir():
        return []
    for source_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        runs = sorted((p for p in source_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for run_dir in runs[-runs_per_source:]:
            for path in sorted(run_dir.glob("batch-*.json")):
                documents.append(json.loads(path.read_text(encoding="utf-8")))
    return documents


def build_data_docs(home: Path, *, runs_per_source: int = 10) -> dict[str, Any]:
    """Build the Data Docs site from the last ``runs_per_source`` runs of every source.

    Returns the site's index path and how many results it shows.
    """
    from contracts import load_contracts
    from contracts.gx import (
        ExpectationSuiteIdentifier,
        ExpectationSuiteValidationResult,
        RunIdentifier,
        ValidationResultIdentifier,
        gx,
    )
    from contracts.suites import build_suite

    project = home / "gx" / "project"
    shutil.rmtree(project, ignore_errors=True)  # rebuilt from the saved results each time
    project.mkdir(parents=True)
    context = gx.get_context(mode="file", project_root_dir=str(project))
    for contract in load_contracts():
        context.suites.add(build_suite(contract))
    documents = _recent(home, runs_per_source)
    for document in documents:
        result = ExpectationSuiteValidationResult(**document["result"])
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
            run_id=RunIdentifier(run_name=document["run_id"], run_time=dt.datetime.fromisoformat(document["at"])),
            batch_identifier=f"batch-{int(document['batch']):05d}",
        )
        context.validation_results_store.set(key, result)
    context.build_data_docs()
    built = project / "gx" / "uncommitted" / "data_docs" / "local_site"
    site = site_dir(home)
    staging = site.with_name("site.new")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(built, staging)
    shutil.rmtree(site, ignore_errors=True)
    staging.rename(site)
    return {"index": str(site / "index.html"), "results": len(documents)}
