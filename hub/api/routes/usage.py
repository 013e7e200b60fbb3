"""用证记录: who used a subject's data, when, for which case and purpose."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from hub.api.deps import Caller, KeyringDep, SessionDep, require_scope
from hub.api.problems import Forbidden
from materials_store.identity import parse_identifier
from materials_store.models import Client
from materials_store.store import record_usage, usage_for_subject

router = APIRouter(prefix="/v1", tags=["usage"])


class UsageEntry(BaseModel):
    at: dt.datetime
    by: str = Field(description="The window or department, by name")
    by_kind: str
    service_centre: str | None
    action: str
    case_ref: str | None
    purpose: str | None
    outcome: str


class UsageList(BaseModel):
    entries: list[UsageEntry]


class UsageSearch(BaseModel):
    id: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=200)


def _entries(session: SessionDep, subject_index: str) -> UsageList:
    records = usage_for_subject(session, subject_index=subject_index, limit=200)
    names = {
        c.id: c.name for c in session.query(Client).filter(Client.id.in_({r.client_id for r in records}))
    }
    return UsageList(
        entries=[
            UsageEntry(
                at=r.at,
                by=names.get(r.client_id, r.client_id),
                by_kind=r.client_kind,
                service_centre=r.window,
                action=r.action,
                case_ref=r.case_ref,
                purpose=r.purpose,
                outcome=r.outcome,
            )  # fmt: skip
            for r in records
        ]
    )


@router.get("/subjects/me/usage")
def my_usage(
    session: SessionDep, caller: Annotated[Caller, Depends(require_scope("usage:self"))]
) -> UsageList:
    """For a citizen: who used my data."""
    if not caller.client.subject_index:
        raise Forbidden("this client is not bound to a subject")
    return _entries(session, caller.client.subject_index)


@router.post("/usage/search")
def search_usage(
    search: UsageSearch,
    session: SessionDep,
    keyring: KeyringDep,
    caller: Annotated[Caller, Depends(require_scope("usage"))],
) -> UsageList:
    """For a steward: the same list for any subject (the ID in the body); the search itself is recorded."""
    index = keyring.blind_index(parse_identifier(search.id).value)
    result = _entries(session, index)
    record_usage(
        session, client_id=caller.id, client_kind=caller.kind, action="usage_search", outcome="ok",
        purpose=search.reason, subject_index=index,
    )  # fmt: skip
    session.commit()
    return result
