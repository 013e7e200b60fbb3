"""The one-certificate lookup (一证通办): what is on file for an ID, for a window handling a case."""

from __future__ import annotations

import datetime as dt
import time

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from materials_store.crypto import Keyring
from materials_store.errors import DataError, NotFound
from materials_store.identity import mask, parse_identifier
from materials_store.models import Client
from materials_store.store import commit_usage, find_subject_row, last_runs, latest_materials, subject_name


class LookupRequest(BaseModel):
    """The ID travels in the body, never in a URL."""

    id: str = Field(min_length=1, max_length=64, description="ID number or credit code, as typed")
    case_ref: str = Field(min_length=1, max_length=64, description="办件号: the case this lookup serves")
    purpose: str = Field(min_length=1, max_length=200, description="Why the data is used")
    service_item: str | None = Field(default=None, max_length=64)
    bundle: str | None = Field(default=None, max_length=64)


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


#: How long a worker reuses the sources' last sync times (a lookup says when each source last synced;
#: syncs run hourly, and reading the runs table on every lookup cost a fifth of the lookup).
SYNC_TIMES_MAX_AGE = 2.0
_sync_times: dict[int, tuple[float, dict[str, dt.datetime | None]]] = {}


def _last_synced(session: Session) -> dict[str, dt.datetime | None]:
    """When each source last synced successfully, as of at most ``SYNC_TIMES_MAX_AGE`` seconds ago."""
    key = id(session.get_bind())
    cached = _sync_times.get(key)
    now = time.monotonic()
    if cached is None or now - cached[0] > SYNC_TIMES_MAX_AGE:
        runs = last_runs(session)
        cached = _sync_times[key] = (
            now,
            {source: run.finished_at for source, run in runs.items() if run.state == "success"},
        )
    return cached[1]


def mask_name(name: str | None) -> str | None:
    """张三 → 张*, 欧阳娜娜 → 欧***."""
    if not name:
        return None
    return name[0] + "*" * (len(name) - 1)


def lookup(session: Session, *, keyring: Keyring, caller: Client, request: LookupRequest) -> LookupResponse:
    """Every valid material's metadata on file for the subject (no payloads), recorded in the usage log.

    Raises:
        InvalidIdentifier: the ID is invalid (422, with the reason).
        DataError: a service item or bundle was named; they are not in the catalogue yet.
        NotFound: nothing on file that the caller may see (the same answer whether or not the subject exists).
    """
    identifier = parse_identifier(request.id)
    if request.service_item or request.bundle:
        raise DataError("unknown service item or bundle: the catalogue of service items is not loaded yet")
    subject = find_subject_row(session, keyring=keyring, identifier=identifier)
    views = latest_materials(session, subject_id=subject.id) if subject else []
    index = keyring.blind_index(identifier.value)
    outcome = "found" if views else "nothing_on_file"
    commit_usage(
        session, client_id=caller.id, client_kind=caller.kind, window=caller.org, action="lookup",
        outcome=outcome, case_ref=request.case_ref, purpose=request.purpose, subject_index=index,
        material_ids=[view.id for view in views],
    )  # fmt: skip
    if not views or subject is None:
        raise NotFound("nothing is on file for this identifier")
    synced = _last_synced(session)
    return LookupResponse(
        subject=SubjectView(
            kind=identifier.kind.value,
            id_masked=mask(identifier.value),
            name_masked=mask_name(subject_name(keyring, subject)),
        ),  # fmt: skip
        case_ref=request.case_ref,
        materials=[
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
        ],
    )
