"""The sync pipeline cut into the steps an Airflow DAG runs as separate tasks.

``extract → validate → load → quarantine → commit → check``. Each step reads what the step before it
staged under ``$ONECERT_HOME/staging/<run_id>/`` and returns counts only (never rows: they stay out of
XCom). Staged rows are citizens' data, so they are encrypted with the store's data key and the staging
folder is removed once the cursor is committed.

Why separate tasks keep the guarantee of :func:`connectors.pipeline.process_batch` (a crash never skips or
doubles a row): the cursor moves only in :func:`commit`, after load and quarantine succeeded; load and
quarantine are idempotent (an unchanged row is a no-op upsert, a quarantined row is deduplicated by its
hash). A retried task or a cleared-and-rerun DAG run replays the same staged batches and changes nothing
more. A failed extract starts over and leaves the store and the cursor as they were.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from sqlalchemy import func, select

from connectors.config import source_config
from connectors.pipeline import (
    BATCH_ROWS,
    CheckedBatch,
    _batches,
    _safe_error,
    check_batch,
    committed_state,
    prefetch,
    split_checked,
)
from connectors.pipeline import (
    _normalise_subjects as normalise_subjects,
)
from connectors.registry import get_connector
from contracts import Contract, load_contract
from contracts.data_docs import save_result
from materials_store.errors import DataError
from materials_store.models import Material, utcnow
from materials_store.quality import record_validation
from materials_store.runtime import StoreHandle
from materials_store.store import (
    finish_run,
    quarantine_rows,
    save_cursor,
    start_run,
    sync_material_types,
    upsert_materials,
)

log = logging.getLogger(__name__)


class QualityGateFailed(DataError):
    """More of a run's rows broke the contract than the contract's quarantine threshold allows."""

    problem_type = "quality-gate-failed"


def run_id_for(source: str, orchestrator_run_id: str) -> str:
    """A stable sync-run id for one orchestrator run, so a rerun of that run is the same sync run."""
    digest = hashlib.sha256(f"{source}\0{orchestrator_run_id}".encode()).hexdigest()[:16]
    return f"{source}-{digest}"


def _aad(run_id: str, name: str) -> bytes:
    return f"staging:{run_id}:{name}".encode()


@dataclass(frozen=True)
class Staging:
    """The staging folder of one sync run."""

    handle: StoreHandle
    run_id: str

    @property
    def root(self) -> Path:
        return self.handle.settings.home / "staging" / self.run_id

    def _write(self, name: str, data: bytes) -> None:
        temporary = self.root / f".{name}.tmp"
        temporary.write_bytes(data)
        os.replace(temporary, self.root / name)

    def put_secret(self, name: str, value: Any) -> None:
        key_id, blob = self.handle.keyring.encrypt(orjson.dumps(value, default=str), aad=_aad(self.run_id, name))
        self._write(name, key_id.encode() + b"\n" + blob)

    def get_secret(self, name: str) -> Any:
        key_id, _, blob = (self.root / name).read_bytes().partition(b"\n")
        return orjson.loads(self.handle.keyring.decrypt(key_id.decode(), blob, aad=_aad(self.run_id, name)))

    def put(self, name: str, value: Any) -> None:
        self._write(name, orjson.dumps(value))

    def get(self, name: str) -> Any:
        path = self.root / name
        if not path.exists():
            raise DataError(f"staging of run {self.run_id} has no {name}: run the earlier steps first")
        return orjson.loads(path.read_bytes())

    def reset(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.root.chmod(0o700)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def batches(self) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        for number in range(int(self.get("extract.json")["batches"])):
            yield number, self.get_secret(f"batch-{number:05d}.rows")


@dataclass
class StageCounts:
    """What one step did; the DAG passes these (small, row-free) between tasks."""

    run_id: str
    source: str
    extracted: int = 0
    valid: int = 0
    invalid: int = 0
    loaded: int = 0
    new_versions: int = 0
    unchanged: int = 0
    quarantined: int = 0
    cursor: str | None = None
    bad_share: float = 0.0
    threshold: float = 0.0
    state: str = "running"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _name_field(source: str) -> str | None:
    return get_connector(source).subject_name_field


def extract(handle: StoreHandle, *, source: str, run_id: str, batch_rows: int = BATCH_ROWS) -> StageCounts:
    """Pull everything past the committed cursor into encrypted staged batches.

    Raises the source's error after recording the run as failed; the store and the cursor are untouched.
    """
    contract = load_contract(source)
    connector_class = get_connector(source)
    with handle.sessions() as session:
        sync_material_types(session, specs=[contract.material_type])
        session.commit()
        start_run(session, source=source, run_id=run_id)
    staging = Staging(handle, run_id)
    staging.reset()
    started = utcnow()
    counts = StageCounts(run_id=run_id, source=source)
    commits: list[tuple[str, str]] = []
    connector = connector_class(source_config(handle.settings, source))
    batches = 0
    try:
        for batch in _batches(prefetch(connector.pages(committed_state(handle, source))), batch_rows):
            staging.put_secret(f"batch-{batches:05d}.rows", batch.rows)
            batches += 1
            counts.extracted += len(batch.rows)
            commits.extend(batch.commits)
    except Exception as error:
        with handle.sessions() as session:
            finish_run(session, run_id=run_id, state="failed", error=_safe_error(error))
        staging.remove()
        raise
    finally:
        close = getattr(connector, "close", None)
        if close:
            close()
    staging.put(
        "extract.json",
        {"batches": batches, "extracted": counts.extracted, "commits": commits, "started_at": started.isoformat()},
    )
    counts.cursor = dict(commits).get("default")
    return counts


def _checked(staging: Staging, contract: Contract, number: int, rows: list[dict[str, Any]]) -> CheckedBatch:
    """A staged batch with the verdicts the validate step stored (only the cheap ID step runs again)."""
    failures = {int(k): v for k, v in staging.get(f"batch-{number:05d}.verdict")["failures"].items()}
    identifiers, _ = normalise_subjects(contract, pd.Series([row.get(contract.subject_field) for row in rows]))
    return CheckedBatch(rows, identifiers, [i not in failures for i in range(len(rows))], failures, [])


def validate(handle: StoreHandle, *, source: str, run_id: str) -> StageCounts:
    """Validate every staged batch with the contract's Great Expectations suite; keep the verdicts."""
    contract = load_contract(source)
    staging = Staging(handle, run_id)
    counts = StageCounts(run_id=run_id, source=source, threshold=contract.quarantine_threshold)
    totals: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    for number, rows in staging.batches():
        checked = check_batch(contract, rows)
        failures = {str(position): rules for position, rules in checked.failures.items()}
        staging.put(f"batch-{number:05d}.verdict", {"failures": failures})
        if checked.raw is not None:
            save_result(handle.settings.home, source=source, run_id=run_id, batch=number, result=checked.raw)
        counts.extracted += len(rows)
        counts.invalid += len(failures)
        for outcome in checked.outcomes:
            key = (outcome.expectation, outcome.rule, outcome.column)
            total = totals.setdefault(
                key,
                {"expectation": outcome.expectation, "rule": outcome.rule, "column": outcome.column,
                 "element_count": 0, "unexpected_count": 0},
            )  # fmt: skip
            total["element_count"] += outcome.element_count
            total["unexpected_count"] += outcome.unexpected_count
    counts.valid = counts.extracted - counts.invalid
    counts.bad_share = counts.invalid / counts.extracted if counts.extracted else 0.0
    staging.put("validate.json", {"counts": counts.as_dict(), "outcomes": list(totals.values())})
    return counts


def load(handle: StoreHandle, *, source: str, run_id: str) -> StageCounts:
    """Upsert the valid rows of every staged batch as materials (idempotent).

    The counts are this extraction's, whichever attempt of the load did the work: the materials written
    under this run id since the extract step started.
    """
    contract = load_contract(source)
    staging = Staging(handle, run_id)
    name_field = _name_field(source)
    counts = StageCounts(run_id=run_id, source=source)
    valid = 0
    for number, rows in staging.batches():
        checked = _checked(staging, contract, number, rows)
        materials, _ = split_checked(contract, name_field=name_field, checked=checked)
        with handle.sessions() as session:
            upsert_materials(session, keyring=handle.keyring, items=materials, source=source, run_id=run_id)
            session.commit()
        valid += len(materials)
    since = dt.datetime.fromisoformat(staging.get("extract.json")["started_at"])
    with handle.sessions() as session:
        written = session.execute(
            select(func.count(), func.count().filter(Material.version > 1)).where(
                Material.source_run_id == run_id, Material.created_at >= since
            )
        ).one()
    counts.loaded, counts.new_versions = int(written[0]), int(written[1])
    counts.unchanged = valid - counts.loaded
    staging.put("load.json", counts.as_dict())
    return counts


def quarantine(handle: StoreHandle, *, source: str, run_id: str) -> StageCounts:
    """Put the invalid rows of every staged batch in quarantine with the rules they broke (idempotent)."""
    contract = load_contract(source)
    staging = Staging(handle, run_id)
    name_field = _name_field(source)
    counts = StageCounts(run_id=run_id, source=source)
    for number, rows in staging.batches():
        _, bad = split_checked(contract, name_field=name_field, checked=_checked(staging, contract, number, rows))
        with handle.sessions() as session:
            quarantine_rows(session, keyring=handle.keyring, source=source, run_id=run_id, rows=bad)
            session.commit()
        counts.quarantined += len(bad)
    staging.put("quarantine.json", counts.as_dict())
    return counts


def commit(handle: StoreHandle, *, source: str, run_id: str) -> StageCounts:
    """Move the cursor past what this run staged, record the run and its validation history.

    Only after load and quarantine both finished; the staged rows are removed afterwards.
    """
    contract = load_contract(source)
    staging = Staging(handle, run_id)
    extracted = staging.get("extract.json")
    validated = staging.get("validate.json")
    loaded = staging.get("load.json")
    quarantined = staging.get("quarantine.json")
    commits: dict[str, str] = {stream: value for stream, value in extracted["commits"]}
    counts = StageCounts(
        run_id=run_id, source=source, extracted=int(extracted["extracted"]),
        valid=int(validated["counts"]["valid"]), invalid=int(validated["counts"]["invalid"]),
        loaded=int(loaded["loaded"]), new_versions=int(loaded["new_versions"]),
        unchanged=int(loaded["unchanged"]), quarantined=int(quarantined["quarantined"]),
        cursor=commits.get("default"), threshold=contract.quarantine_threshold,
    )  # fmt: skip
    counts.bad_share = counts.quarantined / counts.extracted if counts.extracted else 0.0
    over = counts.bad_share > contract.quarantine_threshold
    counts.state = "failed" if over else "success"
    error = (
        f"QualityGate: {counts.bad_share:.1%} of rows broke the contract "
        f"(threshold {contract.quarantine_threshold:.1%})"
        if over
        else None
    )
    with handle.sessions() as session:
        for stream, value in commits.items():
            save_cursor(session, source=source, stream=stream, cursor=value, run_id=run_id)
        record_validation(session, run_id=run_id, source=source, outcomes=validated["outcomes"])
        session.commit()
        if counts.cursor is None:
            previous = committed_state(handle, source).get("default")
            counts.cursor = previous
        finish_run(
            session, run_id=run_id, state=counts.state, extracted=counts.extracted, loaded=counts.loaded,
            new_versions=counts.new_versions, unchanged=counts.unchanged, quarantined=counts.quarantined,
            cursor=counts.cursor, error=error,
        )  # fmt: skip
    get_connector(source)(source_config(handle.settings, source)).finalise(list(commits.items()))
    staging.remove()
    return counts


def check(counts: StageCounts | dict[str, Any]) -> StageCounts:
    """Fail when the run's bad-row share is above the contract's threshold (the run ends red)."""
    result = counts if isinstance(counts, StageCounts) else StageCounts(**counts)
    if result.bad_share > result.threshold:
        raise QualityGateFailed(
            f"{result.source}: {result.bad_share:.1%} of {result.extracted} rows broke the contract, "
            f"above its quarantine threshold of {result.threshold:.1%}; see the quarantine",
            source=result.source,
        )
    return result
