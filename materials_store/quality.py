"""Data quality for stewards: validation history per run, identity conflicts across sources, and the
per-source status (freshness against the SLA, last runs, pass rate).

Conflicting values are citizens' data, so they are stored encrypted and shown masked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from contracts import Contract, load_contracts
from materials_store.crypto import Keyring
from materials_store.errors import NotFound
from materials_store.identity import mask
from materials_store.models import (
    IdentityConflict,
    Material,
    QuarantineRow,
    Subject,
    SyncRun,
    ValidationResult,
    utcnow,
)
from materials_store.store import decrypt_payload, subject_identifier

# -- validation history --------------------------------------------------------------------------


def record_validation(session: Session, *, run_id: str, source: str, outcomes: Iterable[dict[str, Any]]) -> int:
    """Store each expectation's result for one run, replacing what an earlier attempt of it stored."""
    session.execute(delete(ValidationResult).where(ValidationResult.run_id == run_id))
    now = utcnow()
    rows = [
        ValidationResult(
            run_id=run_id, source=source, at=now, expectation=str(o["expectation"]), column=o.get("column"),
            rule=str(o["rule"]), success=int(o["unexpected_count"]) == 0,
            element_count=int(o["element_count"]), unexpected_count=int(o["unexpected_count"]),
        )  # fmt: skip
        for o in outcomes
    ]
    session.add_all(rows)
    return len(rows)


@dataclass(frozen=True)
class RulePoint:
    """One expectation's pass rate in one run."""

    run_id: str
    at: dt.datetime
    rule: str
    column: str | None
    pass_rate: float
    unexpected: int


def validation_history(session: Session, *, source: str, runs: int = 30) -> list[RulePoint]:
    """Per expectation, its pass rate in each of the source's last ``runs`` validated runs, oldest first."""
    recent = (
        select(ValidationResult.run_id, func.max(ValidationResult.at).label("at"))
        .where(ValidationResult.source == source)
        .group_by(ValidationResult.run_id)
        .order_by(func.max(ValidationResult.at).desc())
        .limit(runs)
        .subquery()
    )
    rows = session.execute(
        select(ValidationResult)
        .join(recent, recent.c.run_id == ValidationResult.run_id)
        .order_by(ValidationResult.at, ValidationResult.rule)
    ).scalars()
    return [
        RulePoint(
            row.run_id, row.at, row.rule, row.column,
            1.0 - row.unexpected_count / row.element_count if row.element_count else 1.0, row.unexpected_count,
        )  # fmt: skip
        for row in rows
    ]


# -- per-source status ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceStatus:
    """What a steward needs to know about one source at a glance."""

    source: str
    department: str
    material_type: str
    freshness_sla_hours: int
    quarantine_threshold: float
    last_run: SyncRun | None
    last_success_at: dt.datetime | None
    age_hours: float | None
    fresh: bool
    pass_rate: float | None
    open_quarantine: int


def source_statuses(session: Session, *, now: dt.datetime | None = None) -> list[SourceStatus]:
    """Every contracted source: its last run, freshness against the contract's SLA, and pass rate."""
    now = now or utcnow()
    latest = (
        select(SyncRun.source, func.max(SyncRun.started_at).label("started_at"))
        .group_by(SyncRun.source)
        .subquery()
    )
    last = {
        run.source: run
        for run in session.execute(
            select(SyncRun).join(
                latest, (latest.c.source == SyncRun.source) & (latest.c.started_at == SyncRun.started_at)
            )
        ).scalars()
    }
    succeeded = dict(
        session.execute(
            select(SyncRun.source, func.max(SyncRun.finished_at))
            # a run that loaded: a success, or a red run failed only by its quality gate
            .where(SyncRun.finished_at.is_not(None))
            .where((SyncRun.state == "success") | SyncRun.error.like("QualityGate%"))
            .group_by(SyncRun.source)
        ).all()
    )
    open_rows = dict(
        session.execute(
            select(QuarantineRow.source, func.count())
            .where(QuarantineRow.status == "open")
            .group_by(QuarantineRow.source)
        ).all()
    )
    statuses = []
    pulled = [c for c in load_contracts() if not c.push_only]  # push-only types have no source to watch
    for contract in sorted(pulled, key=lambda c: c.source):
        run = last.get(contract.source)
        finished = succeeded.get(contract.source)
        if finished is not None and finished.tzinfo is None:
            finished = finished.replace(tzinfo=dt.UTC)
        age = (now - finished).total_seconds() / 3600 if finished else None
        pass_rate = None
        if run is not None and run.finished_at is not None and run.extracted:
            pass_rate = 1.0 - run.quarantined / run.extracted
        statuses.append(
            SourceStatus(
                source=contract.source, department=contract.department,
                material_type=contract.material_type.code, freshness_sla_hours=contract.freshness_sla_hours,
                quarantine_threshold=contract.quarantine_threshold, last_run=run, last_success_at=finished,
                age_hours=age, fresh=age is not None and age <= contract.freshness_sla_hours,
                pass_rate=pass_rate, open_quarantine=int(open_rows.get(contract.source, 0)),
            )  # fmt: skip
        )
    return statuses


# -- identity conflicts --------------------------------------------------------------------------


def _normal(value: Any) -> str | None:
    if value is None:
        return None
    text = unicodedata.normalize("NFKC", str(value)).strip().replace(" ", "")
    return text or None


def _birth_from_id(identifier: str) -> str | None:
    if len(identifier) == 18 and identifier[:17].isdigit():
        return f"{identifier[6:10]}-{identifier[10:12]}-{identifier[12:14]}"
    return None


@dataclass
class ReconcileReport:
    """What one reconciliation pass found."""

    subjects: int = 0
    conflicts_open: int = 0
    new: int = 0
    updated: int = 0
    closed: int = 0
    by_field: dict[str, int] = field(default_factory=dict)


def _identity_contracts() -> dict[str, Contract]:
    """Material type → contract, for the contracts that name the subject's own name or birth date."""
    return {
        c.material_type.code: c
        for c in load_contracts()
        if c.subject_name_field or c.subject_birth_date_field
    }


def _subject_values(
    keyring: Keyring, contracts: dict[str, Contract], materials: Sequence[Material]
) -> dict[str, dict[str, set[str]]]:
    """field → value → the sources that say so, for one subject's valid materials."""
    seen: dict[str, dict[str, set[str]]] = {"name": defaultdict(set), "birth_date": defaultdict(set)}
    for material in materials:
        contract = contracts[material.type_code]
        payload = decrypt_payload(keyring, material)
        for field_name, column in (
            ("name", contract.subject_name_field),
            ("birth_date", contract.subject_birth_date_field),
        ):
            value = _normal(payload.get(column)) if column else None
            if value is not None:
                seen[field_name][value if field_name == "name" else value[:10]].add(contract.source)
    return seen


def _by_subject(session: Session, types: Sequence[str], batch: int) -> Iterator[tuple[int, list[Material]]]:
    """Valid materials of ``types``, grouped by subject, streamed in subject order."""
    last = 0
    while True:
        subject_ids = session.execute(
            select(Material.subject_id)
            .where(Material.subject_id > last, Material.status == "valid", Material.type_code.in_(types))
            .group_by(Material.subject_id)
            .order_by(Material.subject_id)
            .limit(batch)
        ).scalars().all()
        if not subject_ids:
            return
        grouped: dict[int, list[Material]] = defaultdict(list)
        for material in session.execute(
            select(Material).where(
                Material.subject_id.in_(subject_ids), Material.status == "valid", Material.type_code.in_(types)
            )
        ).scalars():
            grouped[material.subject_id].append(material)
        for subject_id in subject_ids:
            yield subject_id, grouped[subject_id]
        last = subject_ids[-1]
        session.expunge_all()


def _conflict_aad(subject_id: int, field_name: str) -> bytes:
    return f"conflict:{subject_id}:{field_name}".encode()


def reconcile_identity(session: Session, *, keyring: Keyring, batch: int = 2000) -> ReconcileReport:
    """Cross-check every subject's name and birth date across sources (and the ID's own birth date).

    Records a conflict per subject and field where sources disagree, updates known ones, and closes
    those that no longer disagree. Commits per batch of subjects.
    """
    contracts = _identity_contracts()
    report = ReconcileReport()
    existing = {
        (row.subject_id, row.field): row.id
        for row in session.execute(
            select(IdentityConflict.subject_id, IdentityConflict.field, IdentityConflict.id).where(
                IdentityConflict.status == "open"
            )
        )
    }
    still_open: set[tuple[int, str]] = set()
    now = utcnow()
    for subject_id, materials in _by_subject(session, sorted(contracts), batch):
        report.subjects += 1
        values = _subject_values(keyring, contracts, materials)
        if values["birth_date"]:
            subject = session.get(Subject, subject_id)
            assert subject is not None
            born = _birth_from_id(subject_identifier(keyring, subject))
            if born:
                values["birth_date"][born].add("id_number")
        for field_name, by_value in values.items():
            if len(by_value) < 2:
                continue
            key = (subject_id, field_name)
            still_open.add(key)
            detail = {value: sorted(sources) for value, sources in sorted(by_value.items())}
            plain = json.dumps(detail, ensure_ascii=False, sort_keys=True).encode()
            digest = hashlib.sha256(plain).hexdigest()
            row = session.execute(
                select(IdentityConflict).where(
                    IdentityConflict.subject_id == subject_id, IdentityConflict.field == field_name
                )
            ).scalar_one_or_none()
            sources = sorted({source for names in by_value.values() for source in names})
            if row is not None and row.detail_sha256 == digest and row.status in ("open", "dismissed"):
                row.last_seen = now  # a conflict a steward dismissed stays dismissed until the values change
                continue
            key_id, blob = keyring.encrypt(plain, aad=_conflict_aad(subject_id, field_name))
            if row is None:
                row = IdentityConflict(subject_id=subject_id, field=field_name, first_seen=now)
                session.add(row)
                report.new += 1
            else:
                report.updated += 1
            row.sources, row.detail_ciphertext, row.key_id, row.detail_sha256 = sources, blob, key_id, digest
            row.status, row.last_seen, row.resolved_at = "open", now, None
            report.by_field[field_name] = report.by_field.get(field_name, 0) + 1
        session.commit()
    for key, conflict_id in existing.items():
        if key not in still_open:
            row = session.get(IdentityConflict, conflict_id)
            if row is not None:
                row.status, row.resolved_at = "resolved", now
                report.closed += 1
    session.commit()
    report.conflicts_open = int(
        session.execute(select(func.count()).where(IdentityConflict.status == "open")).scalar_one()
    )
    return report


@dataclass(frozen=True)
class ConflictView:
    """A conflict as a steward sees it: values masked, sources named."""

    id: int
    subject: str
    field: str
    values: dict[str, list[str]]
    status: str
    first_seen: dt.datetime
    last_seen: dt.datetime


def _mask_value(field_name: str, value: str) -> str:
    if field_name == "birth_date":
        return value[:4] + "-**-**"
    return value[:1] + "*" * max(len(value) - 1, 1)


def list_conflicts(
    session: Session, *, keyring: Keyring, status: str | None = "open", limit: int = 100, offset: int = 0
) -> list[ConflictView]:
    """Identity conflicts, newest first, with masked values and subjects."""
    query = select(IdentityConflict, Subject).join(Subject, Subject.id == IdentityConflict.subject_id)
    if status:
        query = query.where(IdentityConflict.status == status)
    rows = session.execute(query.order_by(IdentityConflict.last_seen.desc()).limit(limit).offset(offset))
    views = []
    for conflict, subject in rows:
        plain = keyring.decrypt(
            conflict.key_id, conflict.detail_ciphertext, aad=_conflict_aad(conflict.subject_id, conflict.field)
        )
        detail: dict[str, list[str]] = json.loads(plain)
        views.append(
            ConflictView(
                id=conflict.id, subject=mask(subject_identifier(keyring, subject)), field=conflict.field,
                values={_mask_value(conflict.field, value): sources for value, sources in detail.items()},
                status=conflict.status, first_seen=conflict.first_seen, last_seen=conflict.last_seen,
            )  # fmt: skip
        )
    return views


def count_conflicts(session: Session, *, status: str | None = "open") -> int:
    query = select(func.count()).select_from(IdentityConflict)
    if status:
        query = query.where(IdentityConflict.status == status)
    return int(session.execute(query).scalar_one())


def dismiss_conflict(session: Session, *, conflict_id: int) -> IdentityConflict:
    """A steward's "checked, nothing to fix": the conflict stays dismissed until the values change."""
    row = session.get(IdentityConflict, conflict_id)
    if row is None:
        raise NotFound("no such identity conflict", conflict_id=conflict_id)
    row.status, row.resolved_at = "dismissed", utcnow()
    return row
