"""The one-certificate lookup (一证通办): what is on file for an ID, for a window handling a case."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from pydantic import BaseModel, Field
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from contracts.service_items import load_service_catalogue
from hub.api.services.readiness import Readiness, assess_case, plan_for
from materials_store.cases import remember_case_materials
from materials_store.crypto import Keyring
from materials_store.driver_reads import DriverReads, LoopReads
from materials_store.errors import DataError, NotFound
from materials_store.identity import Identifier, InvalidIdentifier, mask, parse_identifier
from materials_store.models import Client
from materials_store.runtime import StoreHandle
from materials_store.store import (
    MaterialView,
    SubjectRecord,
    commit_usage,
    find_subject_row,
    last_runs,
    latest_materials,
    session_engine,
    subject_name,
    subject_row,
)


class LookupRequest(BaseModel):
    """The ID travels in the body, never in a URL."""

    id: str = Field(min_length=1, max_length=64, description="ID number or credit code, as typed")
    case_ref: str = Field(min_length=1, max_length=64, description="办件号: the case this lookup serves")
    purpose: str = Field(min_length=1, max_length=200, description="Why the data is used")
    service_item: str | None = Field(
        default=None, max_length=64, description="事项 code: answer its readiness (see /v1/catalog/items)"
    )
    bundle: str | None = Field(
        default=None, max_length=64, description="一件事 code: answer its readiness (see /v1/catalog/bundles)"
    )


class SubjectView(BaseModel):
    kind: str
    id_masked: str
    name_masked: str | None


class MaterialOnFile(BaseModel):
    id: str
    type: str
    issuer: str
    issued_at: dt.date
    valid_until: dt.date | None
    source: str
    source_synced_at: dt.datetime | None
    status: str


class LookupResponse(BaseModel):
    subject: SubjectView
    case_ref: str
    materials: list[MaterialOnFile]
    #: With ``service_item`` or ``bundle``: whether the application can be accepted, need by need.
    readiness: Readiness | None = None


class SyncTimeReads(Protocol):
    """Where a lookup reads the sources' last sync times: through a Session (:class:`SessionReads`), or
    at the driver level (:class:`materials_store.driver_reads.DriverReads`)."""

    engine: Engine

    def last_synced(self) -> dict[str, dt.datetime | None]: ...


class SessionReads:
    """The reads of a plain lookup through a Session (any backend)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.engine = session_engine(session)

    def subject_and_materials(self, blind_index: str) -> tuple[SubjectRecord | None, list[MaterialView]]:
        subject = subject_row(self.session, blind_index=blind_index)
        return subject, latest_materials(self.session, subject_id=subject.id) if subject else []

    def last_synced(self) -> dict[str, dt.datetime | None]:
        runs = last_runs(self.session)
        return {source: run.finished_at for source, run in runs.items() if run.state == "success"}


#: How long a worker reuses the sources' last sync times (a lookup says when each source last synced;
#: syncs run hourly, and reading the runs table on every lookup cost a fifth of the lookup).
SYNC_TIMES_MAX_AGE = 2.0
_sync_times: dict[int, tuple[float, dict[str, dt.datetime | None]]] = {}


def _recent_sync_times(engine: Engine) -> dict[str, dt.datetime | None] | None:
    """The sources' last sync times read at most ``SYNC_TIMES_MAX_AGE`` seconds ago, if there are any."""
    cached = _sync_times.get(id(engine))
    if cached is None or time.monotonic() - cached[0] > SYNC_TIMES_MAX_AGE:
        return None
    return cached[1]


def _keep_sync_times(engine: Engine, synced: dict[str, dt.datetime | None]) -> dict[str, dt.datetime | None]:
    _sync_times[id(engine)] = (time.monotonic(), synced)
    return synced


def _last_synced(reads: SyncTimeReads) -> dict[str, dt.datetime | None]:
    """When each source last synced successfully, as of at most ``SYNC_TIMES_MAX_AGE`` seconds ago."""
    synced = _recent_sync_times(reads.engine)
    return synced if synced is not None else _keep_sync_times(reads.engine, reads.last_synced())


def mask_name(name: str | None) -> str | None:
    """张三 → 张*, 欧阳娜娜 → 欧***."""
    if not name:
        return None
    return name[0] + "*" * (len(name) - 1)


def _listed(synced: dict[str, dt.datetime | None], views: list[MaterialView]) -> list[MaterialOnFile]:
    return [
        MaterialOnFile(
            id=view.id,
            type=view.type_code,
            issuer=view.issuer,
            issued_at=view.issued_at,
            valid_until=view.valid_until,
            source=view.source,
            source_synced_at=synced.get(view.source),
            status=view.status,
        )  # fmt: skip
        for view in views
    ]


def _subject_view(keyring: Keyring, identifier: Identifier, subject: SubjectRecord | None) -> SubjectView:
    return SubjectView(
        kind=identifier.kind.value,
        id_masked=mask(identifier.value),
        name_masked=mask_name(subject_name(keyring, subject)) if subject else None,
    )


def lookup(
    session: Session,
    *,
    keyring: Keyring,
    caller: Client,
    request: LookupRequest,
    handle: StoreHandle | None = None,
) -> LookupResponse:
    """Every valid material's metadata on file for the subject (no payloads), recorded in the usage log.
    With a service item or a bundle, only the materials it needs, and its readiness
    (:func:`readiness_lookup`, which needs ``handle`` for freshness pulls).

    Raises:
        InvalidIdentifier: the ID is invalid (422, with the reason).
        DataError: an unknown service item or bundle, or both named.
        NotFound: nothing on file that the caller may see (the same answer whether or not the subject exists).
    """
    if request.service_item or request.bundle:
        if handle is None:
            raise TypeError("a readiness lookup needs the store handle (for freshness pulls)")
        identifier = parse_identifier(request.id)
        return readiness_lookup(session, handle=handle, caller=caller, request=request, identifier=identifier)
    return plain_lookup(
        SessionReads(session), keyring=keyring, caller=caller, request=request,
        record=partial(commit_usage, session),
    )  # fmt: skip


def plain_lookup(
    reads: SessionReads,
    *,
    keyring: Keyring,
    caller: Client,
    request: LookupRequest,
    record: Callable[..., None],
) -> LookupResponse:
    """The lookup without a service item or bundle: every valid material's metadata, no payloads. Its
    usage record goes to ``record`` (:func:`~materials_store.store.commit_usage` or
    :func:`~materials_store.store.submit_usage`) before the answer is built.

    Raises:
        InvalidIdentifier: the ID is invalid (422, with the reason).
        NotFound: nothing on file (the same answer whether or not the subject exists).
    """
    identifier = parse_identifier(request.id)
    index = keyring.blind_index(identifier.value)
    subject, views = reads.subject_and_materials(index)
    _record_plain(caller, request, index, views, record)
    return _plain_answer(keyring, request, identifier, subject, views, partial(_last_synced, reads))


#: Turns the client's status, as the store has just given it, into the admitted caller (401, 429, 403).
Admit = Callable[[str | None], Client]


@dataclass(frozen=True, slots=True)
class AdmittedPlainLookup:
    """:func:`plain_lookup` for a caller not admitted yet: the client's status is read in the subject's
    statement (one read instead of two), and ``admit`` turns it into the caller before anything is
    recorded or answered. An invalid ID reads the status alone and is refused (422) only once the caller
    is admitted: a disabled client or a missing scope is refused first, as on every other route."""

    keyring: Keyring
    client_id: str
    admit: Admit
    request: LookupRequest
    record: Callable[..., None]

    def at_driver(self, reads: DriverReads) -> LookupResponse:
        try:
            identifier = parse_identifier(self.request.id)
        except InvalidIdentifier:
            self.admit(reads.client_status(self.client_id))
            raise
        index = self.keyring.blind_index(identifier.value)
        status, subject, views = reads.client_subject_and_materials(self.client_id, index)
        _record_plain(self.admit(status), self.request, index, views, self.record)
        return _plain_answer(
            self.keyring, self.request, identifier, subject, views, partial(_last_synced, reads)
        )

    async def on_loop(self, reads: LoopReads) -> LookupResponse:
        """The same, its reads awaited on the event loop (PostgreSQL)."""
        try:
            identifier = parse_identifier(self.request.id)
        except InvalidIdentifier:
            self.admit(await reads.client_status(self.client_id))
            raise
        index = self.keyring.blind_index(identifier.value)
        status, subject, views = await reads.client_subject_and_materials(self.client_id, index)
        _record_plain(self.admit(status), self.request, index, views, self.record)
        synced = _recent_sync_times(reads.engine)
        if synced is None and views:
            synced = _keep_sync_times(reads.engine, await reads.last_synced())
        return _plain_answer(self.keyring, self.request, identifier, subject, views, lambda: synced or {})


def _record_plain(
    caller: Client, request: LookupRequest, index: str, views: list[MaterialView], record: Callable[..., None]
) -> None:
    record(
        client_id=caller.id, client_kind=caller.kind, window=caller.org, action="lookup",
        outcome="found" if views else "nothing_on_file", case_ref=request.case_ref, purpose=request.purpose,
        subject_index=index, material_ids=[view.id for view in views],
    )  # fmt: skip


def _plain_answer(
    keyring: Keyring,
    request: LookupRequest,
    identifier: Identifier,
    subject: SubjectRecord | None,
    views: list[MaterialView],
    synced: Callable[[], dict[str, dt.datetime | None]],
) -> LookupResponse:
    """The answer to a recorded plain lookup, with ``synced()``, the sources' last sync times.

    Raises:
        NotFound: nothing on file (the same answer whether or not the subject exists).
    """
    if not views or subject is None:
        raise NotFound("nothing is on file for this identifier")
    return LookupResponse(
        subject=_subject_view(keyring, identifier, subject), case_ref=request.case_ref,
        materials=_listed(synced(), views),
    )  # fmt: skip


def readiness_lookup(
    session: Session, *, handle: StoreHandle, caller: Client, request: LookupRequest, identifier: Identifier
) -> LookupResponse:
    """The lookup for a service item or a bundle: the materials it needs that are on file, and whether the
    application can be accepted now, on promise, or not at all. Stale materials are pulled from their
    sources first (within the time limit). The case becomes bound to the item's material types: its
    window can open no other type for it. Answers even when nothing is on file (the same answer whether
    or not the subject exists).

    Raises:
        DataError: an unknown service item or bundle, or both named.
    """
    if request.service_item and request.bundle:
        raise DataError("name a service item or a bundle, not both")
    catalogue = load_service_catalogue()
    try:
        plan = plan_for(catalogue, service_item=request.service_item, bundle=request.bundle)
    except KeyError:
        raise DataError(f"unknown {'bundle' if request.bundle else 'service item'}") from None
    keyring = handle.keyring
    subject = find_subject_row(session, keyring=keyring, identifier=identifier)
    case = assess_case(
        handle, session, plan=plan, catalogue=catalogue, identifier=identifier,
        subject_id=subject.id if subject else None, case_ref=request.case_ref, client_id=caller.id,
    )  # fmt: skip
    if case.used:
        remember_case_materials(
            session, case_ref=request.case_ref, client_id=caller.id, material_ids=case.used
        )
        session.commit()
    commit_usage(
        session, client_id=caller.id, client_kind=caller.kind, window=caller.org, action="lookup",
        outcome=case.readiness.summary.decision, case_ref=request.case_ref, purpose=request.purpose,
        subject_index=keyring.blind_index(identifier.value), material_ids=[view.id for view in case.materials],
        detail={plan.kind: plan.code, "types": sorted(plan.types), "pulls": case.pulls},
    )  # fmt: skip
    return LookupResponse(
        subject=_subject_view(keyring, identifier, subject),
        case_ref=request.case_ref,
        materials=_listed(_last_synced(SessionReads(session)), case.materials),
        readiness=case.readiness,
    )
