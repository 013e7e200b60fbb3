"""A case's alerts: materials it reused that were revoked or superseded afterwards."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from materials_store.cases import case_alerts
from materials_store.models import Client
from materials_store.store import commit_usage


class AlertOut(BaseModel):
    id: int
    material_id: str
    #: ``revoked`` or ``superseded``.
    kind: str
    detail: dict[str, Any] | None
    created_at: dt.datetime


class CaseAlerts(BaseModel):
    case_ref: str
    alerts: list[AlertOut]


def alerts_for(session: Session, *, caller: Client, case_ref: str) -> CaseAlerts:
    """The alerts of the caller's own case (another window's case of the same reference shows nothing)."""
    found = case_alerts(session, case_ref=case_ref, client_id=caller.id)
    result = CaseAlerts(
        case_ref=case_ref,
        alerts=[
            AlertOut(
                id=a.id, material_id=a.material_id, kind=a.kind, detail=a.detail, created_at=a.created_at
            )
            for a in found
        ],
    )
    commit_usage(
        session, client_id=caller.id, client_kind=caller.kind, window=caller.org, action="alerts",
        outcome="listed", case_ref=case_ref, material_ids=[a.material_id for a in found],
    )  # fmt: skip
    return result
