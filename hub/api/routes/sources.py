"""``/v1/sources``: the steward's view of every source's syncs."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from hub.api.deps import SessionDep, require_scope
from hub.api.services.steward import SourceHistory, SourceList, source_history, sources_overview

router = APIRouter(prefix="/v1/sources", tags=["steward"], dependencies=[Depends(require_scope("steward"))])


@router.get("")
def list_sources(session: SessionDep) -> SourceList:
    """Per source: the last run and its state, rows loaded and quarantined, freshness against the SLA,
    and the share of rows that passed the contract."""
    return sources_overview(session)


@router.get("/{source}/history")
def get_history(session: SessionDep, source: str, runs: int = Query(30, ge=1, le=500)) -> SourceHistory:
    """The source's recent runs and each expectation's pass rate per run."""
    return source_history(session, source=source, runs=runs)
