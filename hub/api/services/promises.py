"""Promises (容缺承诺): a case accepted without a material, on the applicant's promise to bring it by a date."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from contracts.service_items import load_service_catalogue
from hub.api.services.readiness import plan_for
from materials_store.cases import PromiseState, list_promises, open_promise, promise_state
from materials_store.crypto import Keyring
from materials_store.errors import DataError
from materials_store.identity import mask, parse_identifier
from materials_store.models import Client, Material, MaterialType, Promise, Subject
from materials_store.store import ensure_subject, record_usage, subject_identifier, today


class PromiseRequest(BaseModel):
    """The ID travels in the body, never in a URL. Name the item (or bundle) the case is for, and the
    due date defaults to its due period for that material."""

    id: str = Field(min_length=1, max_length=64, description="ID number or credit code of the applicant")
    case_ref: str = Field(min_length=1, max_length=64)
    type: str = Field(min_length=1, max_length=64, description="the material type promised")
    service_item: str | None = Field(default=None, max_length=64)
    bundle: str | None = Field(default=None, max_length=64)
    due_date: dt.date | None = None


class PromiseOut(BaseModel):
    id: str
    case_ref: str
    type: str
    service_item: str | None
    subject: dict[str, str]
    due_date: dt.date
    state: PromiseState
    created_at: dt.datetime
    closed_at: dt.datetime | None
    #: The material whose arrival closed it, and how it arrived (``sync`` or ``push``).
    closed_by_material: str | None
    closed_via: str | None


class PromiseList(BaseModel):
    promises: list[PromiseOut]


def _out(session: Session, keyring: Keyring, promise: Promise) -> PromiseOut:
    subject = session.get(Subject, promise.subject_id)
    assert subject is not None
    via = None
    if promise.closed_by:
        material = session.get(Material, promise.closed_by)
        via = "push" if material is not None and material.source.startswith("push:") else "sync"
    return PromiseOut(
        id=promise.id, case_ref=promise.case_ref, type=promise.type_code, service_item=promise.service_item,
        subject={"kind": subject.kind, "id_masked": mask(subject_identifier(keyring, subject))},
        due_date=promise.due_date, state=promise_state(promise), created_at=promise.created_at,
        closed_at=promise.closed_at, closed_by_material=promise.closed_by, closed_via=via,
    )  # fmt: skip


def _due_date(request: PromiseRequest) -> tuple[dt.date, str | None]:
    """The due date, checked against the item's (or bundle's) rule for this material.

    Raises:
        DataError: unknown item, a material it does not let wait, a due date past its period, or no due
            date and no item to take one from.
    """
    if not (request.service_item or request.bundle):
        if request.due_date is None:
            raise DataError("give a due date, or the service item or bundle whose due period applies")
        return request.due_date, None
    try:
        plan = plan_for(load_service_catalogue(), service_item=request.service_item, bundle=request.bundle)
    except KeyError:
        raise DataError(f"unknown {'bundle' if request.bundle else 'service item'}") from None
    need = next((n for n in plan.needs if request.type in n.types and n.issued_by is None), None)
    if need is None or not need.waivable or need.due_days is None:
        raise DataError(f"{plan.code} does not accept that material on a promise (容缺)")
    latest = today() + dt.timedelta(days=need.due_days)
    if request.due_date is not None and request.due_date > latest:
        raise DataError(f"{plan.code} allows at most {need.due_days} days for that material")
    return request.due_date or latest, plan.code


def create_promise(
    session: Session, *, keyring: Keyring, caller: Client, request: PromiseRequest
) -> tuple[PromiseOut, bool]:
    """Record a promise for the caller's case (the same request again answers the same promise).

    Returns:
        The promise and whether it was created now (201) or before (200).

    Raises:
        InvalidIdentifier: the ID is invalid. DataError: see :func:`_due_date`, or an unknown type.
        Conflict: an open promise for that material with another due date.
    """
    identifier = parse_identifier(request.id)
    if session.get(MaterialType, request.type) is None:
        raise DataError("unknown material type")
    due_date, item = _due_date(request)
    subject = ensure_subject(session, keyring=keyring, identifier=identifier)
    promise, created = open_promise(
        session, case_ref=request.case_ref, client_id=caller.id, subject_id=subject.id, type_code=request.type,
        due_date=due_date, service_item=item,
    )  # fmt: skip
    record_usage(
        session, client_id=caller.id, client_kind=caller.kind, window=caller.org, action="promise",
        outcome="created" if created else "existing", case_ref=request.case_ref, subject_index=subject.blind_index,
        detail={"type": request.type, "due_date": due_date.isoformat(), "service_item": item},
    )  # fmt: skip
    session.commit()
    return _out(session, keyring, promise), created


def promises_of(
    session: Session, *, keyring: Keyring, caller: Client, everyone: bool, state: PromiseState | None
) -> PromiseList:
    """A window's promises (a steward's: everyone's), oldest due first; the listing is recorded."""
    found = list_promises(session, state=state, client_id=None if everyone else caller.id, limit=500)
    result = PromiseList(promises=[_out(session, keyring, p) for p in found])
    record_usage(
        session, client_id=caller.id, client_kind=caller.kind, window=caller.org, action="promises",
        outcome="listed", detail={"state": state, "count": len(found)},
    )  # fmt: skip
    session.commit()
    return result
