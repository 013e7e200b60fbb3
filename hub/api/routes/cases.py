"""``GET /v1/cases/{case_ref}/alerts``: materials a case reused that were revoked or superseded since."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from hub.api.deps import Caller, SessionDep, require_scope
from hub.api.services.cases import CaseAlerts, alerts_for

router = APIRouter(prefix="/v1/cases", tags=["cases"])


@router.get("/{case_ref}/alerts")
def get_alerts(
    case_ref: Annotated[str, Path(min_length=1, max_length=64)],
    session: SessionDep,
    caller: Annotated[Caller, Depends(require_scope("lookup"))],
) -> CaseAlerts:
    """The alerts of the caller's case: which reused material changed, how, and when."""
    return alerts_for(session, caller=caller.client, case_ref=case_ref)
