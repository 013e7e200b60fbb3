"""What a data steward sees and does: sources at a glance, the quarantine queue, identity conflicts.

Every act on citizens' rows (reading a quarantined row, resolving or discarding it) is a usage record.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from connectors.pipeline import check_batch, split_checked
from connectors.registry import get_connector, source_names
from contracts import load_contract
from materials_store.crypto import Keyring
from materials_store.errors import ContractViolation, NotFound
from materials_store.models import Client, QuarantineRow, SyncRun
from materials_store.quality import (
    count_conflicts,
    dismiss_conflict,
    list_conflicts,
    source_statuses,
    validation_history,
)
from materials_store.store import (
    close_quarantine_row,
    count_quarantine,
    list_quarantine,
    quarantine_raw,
    recent_runs,
    record_usage,
    sync_material_types,
    upsert_materials,
)

# -- sources -------------------------------------------------------------------------------------


class RunView(BaseModel):
    id: str
    state: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    extracted: int
    loaded: int
    new_versions: int
    unchanged: int
    quarantined: int
    error: str | None

    @classmethod
    def of(cls, run: SyncRun) -> RunView:
        return cls(
            id=run.id, state=run.state, started_at=run.started_at, finished_at=run.finished_at,
            extracted=run.extracted, loaded=run.loaded, new_versions=run.new_versions, unchanged=run.unchanged,
            quarantined=run.quarantined, error=run.error,
        )  # fmt: skip


class Freshness(BaseModel):
    sla_hours: int
    last_success_at: dt.datetime | None
    age_hours: float | None
    fresh: bool = Field(description="The last loading run finished within the contract's freshness SLA")


class SourceView(BaseModel):
    source: str
    department: str
    material_type: str
    last_run: RunView | None
    freshness: Freshness
    pass_rate: float | None = Field(description="Share of the last run's rows that passed the contract")
    quarantine_threshold: float
    open_quarantine: int
    dag_id: str


class SourceList(BaseModel):
    sources: list[SourceView]


def sources_overview(session: Session) -> SourceList:
    """Per source: the last run and its state, rows loaded and quarantined, freshness, pass rate."""
    return SourceList(
        sources=[
            SourceView(
                source=s.source, department=s.department, material_type=s.material_type,
                last_run=RunView.of(s.last_run) if s.last_run else None,
                freshness=Freshness(
                    sla_hours=s.freshness_sla_hours, last_success_at=s.last_success_at,
                    age_hours=round(s.age_hours, 2) if s.age_hours is not None else None, fresh=s.fresh,
                ),
                pass_rate=round(s.pass_rate, 4) if s.pass_rate is not None else None,
                quarantine_threshold=s.quarantine_threshold, open_quarantine=s.open_quarantine,
                dag_id=f"sync_{s.source}",
            )  # fmt: skip
            for s in source_statuses(session)
        ]
    )


class RulePointView(BaseModel):
    run_id: str
    at: dt.datetime
    rule: str
    column: str | None
    pass_rate: float
    unexpected: int


class SourceHistory(BaseModel):
    source: str
    runs: list[RunView]
    expectations: list[RulePointView]


def _known_source(source: str) -> None:
    if source not in source_names():
        raise NotFound("no such source", source=source)


def source_history(session: Session, *, source: str, runs: int = 30) -> SourceHistory:
    """The source's recent runs and each expectation's pass rate per run, for trend charts."""
    _known_source(source)
    return SourceHistory(
        source=source,
        runs=[RunView.of(run) for run in reversed(recent_runs(session, source=source, limit=runs))],
        expectations=[
            RulePointView(
                run_id=p.run_id, at=p.at, rule=p.rule, column=p.column, pass_rate=round(p.pass_rate, 4),
                unexpected=p.unexpected,
            )  # fmt: skip
            for p in validation_history(session, source=source, runs=runs)
        ],
    )


# -- quarantine ----------------------------------------------------------------------------------


class BrokenRule(BaseModel):
    rule: str
    column: str | None = None
    message: str | None = None


class QuarantineItem(BaseModel):
    id: int
    source: str
    run_id: str
    source_record_id: str | None
    rules: list[BrokenRule]
    status: str
    created_at: dt.datetime
    resolved_at: dt.datetime | None
    resolution: dict[str, Any] | None


class QuarantinePage(BaseModel):
    total: int
    items: list[QuarantineItem]


class QuarantineDetail(QuarantineItem):
    row: dict[str, Any] = Field(description="The row as the source sent it (reading it is recorded)")
    fields: list[str] = Field(description="The contract's fields, in order")


def _item(row: QuarantineRow) -> QuarantineItem:
    return QuarantineItem(
        id=row.id, source=row.source, run_id=row.run_id, source_record_id=row.source_record_id,
        rules=[BrokenRule(**{k: v for k, v in r.items() if k in ("rule", "column", "message")}) for r in row.rules],
        status=row.status, created_at=row.created_at, resolved_at=row.resolved_at, resolution=row.resolution,
    )  # fmt: skip


def quarantine_page(
    session: Session,
    *,
    source: str | None,
    status: str | None,
    run_id: str | None,
    rule: str | None,
    limit: int,
    offset: int,
) -> QuarantinePage:
    """Quarantined rows with the rules they broke, filtered; never their contents."""
    if source is not None:
        _known_source(source)
    if rule is None:
        rows = list_quarantine(session, source=source, status=status, run_id=run_id, limit=limit, offset=offset)
        total = count_quarantine(session, source=source, status=status) if run_id is None else len(rows)
    else:  # the rule filter looks inside each row's list of broken rules
        matching = [
            row
            for row in list_quarantine(session, source=source, status=status, run_id=run_id, limit=1_000_000)
            if any(r.get("rule") == rule for r in row.rules)
        ]
        total, rows = len(matching), matching[offset : offset + limit]
    return QuarantinePage(total=total, items=[_item(row) for row in rows])


def _open_row(session: Session, row_id: int) -> QuarantineRow:
    row = session.get(QuarantineRow, row_id)
    if row is None:
        raise NotFound("no such quarantine row", row_id=row_id)
    return row


def quarantine_detail(session: Session, *, keyring: Keyring, steward: Client, row_id: int) -> QuarantineDetail:
    """One quarantined row with its contents, for a steward to correct; the read is a usage record."""
    row = _open_row(session, row_id)
    record_usage(
        session, client_id=steward.id, client_kind=steward.kind, action="quarantine_read", outcome="ok",
        detail={"quarantine_id": row.id, "source": row.source},
    )  # fmt: skip
    session.commit()
    return QuarantineDetail(
        **_item(row).model_dump(), row=quarantine_raw(keyring, row), fields=list(load_contract(row.source).field_names)
    )


class Resolution(BaseModel):
    action: Literal["revalidate", "discard"]
    row: dict[str, Any] | None = Field(
        default=None, description="revalidate: the corrected row, in the contract's field names"
    )
    reason: str | None = Field(default=None, min_length=1, max_length=500, description="discard: why")


class ResolutionResult(BaseModel):
    id: int
    status: str
    material_id: str | None = None
    open_in_source: int


def resolve_quarantine(
    session: Session, *, keyring: Keyring, steward: Client, row_id: int, resolution: Resolution
) -> ResolutionResult:
    """Re-validate a corrected row against its contract and load it, or discard the row with a reason.

    Raises:
        ContractViolation: the corrected row still breaks the contract (the rules are named, not the values).
        Conflict: the row is already closed.
    """
    row = _open_row(session, row_id)
    material_id: str | None = None
    subject_index: str | None = None
    if resolution.action == "discard":
        if not resolution.reason:
            raise ContractViolation("discarding a quarantined row needs a reason")
        close_quarantine_row(
            session, row_id=row_id, status="discarded", resolution={"by": steward.id, "reason": resolution.reason}
        )
    else:
        if not resolution.row:
            raise ContractViolation("re-validating a quarantined row needs the corrected row")
        contract = load_contract(row.source)
        unknown = sorted(set(resolution.row) - set(contract.field_names))
        if unknown:
            raise ContractViolation("the corrected row has fields its contract does not define", fields=unknown)
        checked = check_batch(contract, [dict(resolution.row)])
        if not checked.valid[0]:
            broken = checked.failures[0]
            raise ContractViolation(
                "the corrected row still breaks its contract: " + ", ".join(sorted({f["rule"] for f in broken})),
                rules=broken,
            )
        materials, _ = split_checked(
            contract, name_field=get_connector(row.source).subject_name_field, checked=checked
        )
        sync_material_types(session, specs=[contract.material_type])
        result = upsert_materials(
            session, keyring=keyring, items=materials, source=row.source, run_id=f"quarantine-{row.id}"
        )
        material_id = result.ids[0] if result.ids else None
        subject_index = keyring.blind_index(materials[0].subject.value)
        close_quarantine_row(
            session, row_id=row_id, status="resolved",
            resolution={"by": steward.id, "action": "revalidated", "material_id": material_id},
        )  # fmt: skip
    record_usage(
        session, client_id=steward.id, client_kind=steward.kind,
        action="quarantine_resolve" if resolution.action == "revalidate" else "quarantine_discard",
        outcome="ok", subject_index=subject_index, material_ids=[material_id] if material_id else [],
        purpose=resolution.reason, detail={"quarantine_id": row.id, "source": row.source},
    )  # fmt: skip
    session.commit()
    return ResolutionResult(
        id=row.id, status=row.status, material_id=material_id,
        open_in_source=count_quarantine(session, source=row.source),
    )  # fmt: skip


# -- identity conflicts --------------------------------------------------------------------------


class ConflictItem(BaseModel):
    id: int
    subject: str = Field(description="Masked ID")
    field: str
    values: dict[str, list[str]] = Field(description="Masked value → the sources that hold it")
    status: str
    first_seen: dt.datetime
    last_seen: dt.datetime


class ConflictPage(BaseModel):
    total: int
    items: list[ConflictItem]


def conflicts_page(
    session: Session, *, keyring: Keyring, status: str | None, limit: int, offset: int
) -> ConflictPage:
    views = list_conflicts(session, keyring=keyring, status=status, limit=limit, offset=offset)
    return ConflictPage(
        total=count_conflicts(session, status=status),
        items=[ConflictItem(**view.__dict__) for view in views],
    )


def dismiss(session: Session, *, steward: Client, conflict_id: int) -> ConflictItem | None:
    dismiss_conflict(session, conflict_id=conflict_id)
    record_usage(
        session, client_id=steward.id, client_kind=steward.kind, action="conflict_dismiss", outcome="ok",
        detail={"conflict_id": conflict_id},
    )  # fmt: skip
    session.commit()
    return None
