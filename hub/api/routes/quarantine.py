"""``/v1/quarantine`` and ``/v1/identity-conflicts``: what a steward fixes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from hub.api.deps import Caller, KeyringDep, SessionDep, require_scope
from hub.api.services.steward import (
    ConflictPage,
    QuarantineDetail,
    QuarantinePage,
    Resolution,
    ResolutionResult,
    conflicts_page,
    dismiss,
    quarantine_detail,
    quarantine_page,
    resolve_quarantine,
)

router = APIRouter(prefix="/v1", tags=["steward"])
Steward = Annotated[Caller, Depends(require_scope("steward"))]


@router.get("/quarantine")
def list_quarantine(
    session: SessionDep,
    _: Steward,
    source: str | None = None,
    status: str | None = Query("open", description="open, resolved or discarded; empty for all"),
    run_id: str | None = None,
    rule: str | None = None,
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> QuarantinePage:
    """Quarantined rows with the rules they broke (never their contents), newest runs' rows included."""
    return quarantine_page(
        session, source=source, status=status or None, run_id=run_id, rule=rule, limit=limit, offset=offset
    )


@router.get("/quarantine/{row_id}")
def get_quarantined(row_id: int, session: SessionDep, keyring: KeyringDep, caller: Steward) -> QuarantineDetail:
    """One quarantined row with its contents, to correct it. The read is recorded in the usage log."""
    return quarantine_detail(session, keyring=keyring, steward=caller.client, row_id=row_id)


@router.post("/quarantine/{row_id}/resolve")
def resolve(
    row_id: int, resolution: Resolution, session: SessionDep, keyring: KeyringDep, caller: Steward
) -> ResolutionResult:
    """Re-validate a corrected row (it loads when it passes its contract) or discard it with a reason."""
    return resolve_quarantine(session, keyring=keyring, steward=caller.client, row_id=row_id, resolution=resolution)


@router.get("/identity-conflicts")
def list_conflicts(
    session: SessionDep,
    keyring: KeyringDep,
    _: Steward,
    status: str | None = Query("open", description="open, dismissed or resolved; empty for all"),
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> ConflictPage:
    """Subjects whose name or birth date differs between sources (values masked)."""
    return conflicts_page(session, keyring=keyring, status=status or None, limit=limit, offset=offset)


@router.post("/identity-conflicts/{conflict_id}/dismiss", status_code=204)
def dismiss_conflict(conflict_id: int, session: SessionDep, caller: Steward) -> Response:
    """Checked, nothing to fix: the conflict stays dismissed until the values change."""
    dismiss(session, steward=caller.client, conflict_id=conflict_id)
    return Response(status_code=204)
