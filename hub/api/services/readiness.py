"""Readiness (受理条件): can a window accept this application now, and with what?

For a service item or a bundle, each need (a bundle's needs merged: asked once, listing the items each
serves) is in one of these states:

- ``on_file_fresh``: a valid material is on file and was confirmed with its source recently enough;
- ``on_file_stale``: on file, but older than the need's freshness limit (after an on-demand pull failed,
  or when its source cannot be asked for one subject): the stored material is used, with a warning;
- ``missing_waivable``: not on file, but may wait on a written promise (容缺), with its due date;
- ``missing_blocking``: not on file and required;
- ``issued_in_bundle``: produced by an earlier item of the same bundle (the newborn's household
  registration), so not asked for;
- ``missing_optional``: not on file and not required.

The summary's decision is ``cannot_accept`` when anything blocks, ``accept_on_promise`` when something
must be promised, ``accept_now`` otherwise. :func:`assess` is pure (no store, no HTTP);
:func:`assess_case` gathers what is on file, pulls stale subjects from their sources within the time
limit, and assesses again.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel
from sqlalchemy.orm import Session

from connectors.refresh import can_pull, pull_subject
from contracts import load_catalogue
from contracts.service_items import Need, ServiceCatalogue
from materials_store.cases import count_unclosed_promises, last_successful_syncs, promised_types
from materials_store.identity import Identifier
from materials_store.models import Promise, utcnow
from materials_store.runtime import StoreHandle
from materials_store.store import MaterialView, latest_materials, today

State = Literal[
    "on_file_fresh", "on_file_stale", "missing_waivable", "missing_blocking", "issued_in_bundle", "missing_optional"
]  # fmt: skip
Decision = Literal["accept_now", "accept_on_promise", "cannot_accept"]


class ItemRef(BaseModel):
    code: str
    name_zh: str
    name_en: str
    department: str


class PromiseView(BaseModel):
    id: str
    due_date: dt.date
    state: str


class NeedStatus(BaseModel):
    """One (merged) requirement and where it stands."""

    types: list[str]
    names_zh: list[str]
    state: State
    required: bool
    waivable: bool
    #: 免提交: verified online from the hub, no paper copy.
    online: bool
    max_age_days: int | None
    #: The items of the bundle this material serves (asked for once).
    serves: list[str]
    #: The earlier item of the bundle that issues it (state ``issued_in_bundle``).
    issued_by: str | None = None
    material_id: str | None = None
    material_type: str | None = None
    #: When the hub last confirmed the material with its source (sync, push, or on-demand pull).
    confirmed_at: dt.datetime | None = None
    #: For a waivable material that is missing: the due date a promise made today would get.
    promise_due_date: dt.date | None = None
    #: The case's unclosed promise for this material, if it has one.
    promise: PromiseView | None = None
    warning: str | None = None


class ReadinessSummary(BaseModel):
    decision: Decision
    counts: dict[str, int]
    #: The needs that block (their material types) and those that would be accepted on promise.
    blocking: list[list[str]]
    to_promise: list[list[str]]
    #: The applicant's unclosed promises across every case.
    open_promises: int
    overdue_promises: int
    warnings: list[str]


class Readiness(BaseModel):
    kind: Literal["service_item", "bundle"]
    code: str
    name_zh: str
    name_en: str
    #: The items, in processing order (an item after those whose results it needs).
    items: list[ItemRef]
    requirements: list[NeedStatus]
    summary: ReadinessSummary


@dataclass(frozen=True, slots=True)
class Plan:
    """What an item or bundle needs, resolved from the service catalogue."""

    kind: Literal["service_item", "bundle"]
    code: str
    name_zh: str
    name_en: str
    items: tuple[str, ...]
    needs: tuple[Need, ...]

    @property
    def types(self) -> frozenset[str]:
        """The material types this case may read (its purpose binding)."""
        return frozenset(t for need in self.needs for t in need.types)


def plan_for(catalogue: ServiceCatalogue, *, service_item: str | None, bundle: str | None) -> Plan:
    """The plan of one item or one bundle. Raises KeyError for an unknown code."""
    if bundle is not None:
        found = catalogue.bundle(bundle)
        needs = catalogue.bundle_needs(bundle)
        return Plan("bundle", found.code, found.name_zh, found.name_en, catalogue.orders[bundle], needs)
    assert service_item is not None
    item = catalogue.item(service_item)
    return Plan(
        "service_item", item.code, item.name_zh, item.name_en, (item.code,), catalogue.item_needs(item.code)
    )


@dataclass(frozen=True, slots=True)
class Evidence:
    """What is on file for the subject, and when each material was last confirmed with its source."""

    materials: Sequence[MaterialView]
    confirmed_at: Mapping[str, dt.datetime]
    #: Per source, why a stale material from it could not be refreshed.
    warnings: Mapping[str, str]


def _usable(view: MaterialView, day: dt.date) -> bool:
    return view.status == "valid" and (view.valid_until is None or view.valid_until >= day)


def _best(need: Need, evidence: Evidence, day: dt.date) -> MaterialView | None:
    """The newest usable material of any of the need's types (the most recently confirmed on a tie)."""
    candidates = [v for v in evidence.materials if v.type_code in need.types and _usable(v, day)]
    if not candidates:
        return None
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    return max(candidates, key=lambda v: (v.issued_at, evidence.confirmed_at.get(v.id, epoch), v.id))


def _is_stale(need: Need, confirmed: dt.datetime | None, now: dt.datetime) -> bool:
    if need.max_age_days is None:
        return False
    return confirmed is None or now - confirmed > dt.timedelta(days=need.max_age_days)


def assess(
    plan: Plan,
    catalogue: ServiceCatalogue,
    evidence: Evidence,
    *,
    now: dt.datetime,
    day: dt.date,
    promises: Mapping[str, Promise] | None = None,
    promise_counts: Mapping[str, int] | None = None,
) -> Readiness:
    """Where each need of the plan stands, and the decision. Pure: everything comes in as arguments.

    Args:
        evidence: the subject's materials of the plan's types, with their confirmation times.
        promises: the case's unclosed promises by material type.
        promise_counts: the applicant's ``open`` and ``overdue`` promises across every case.
    """
    names = {spec.code: spec.name_zh for spec in load_catalogue()}
    promises = promises or {}
    statuses: list[NeedStatus] = []
    warnings: list[str] = []
    for need in plan.needs:
        status = NeedStatus(
            types=list(need.types), names_zh=[names.get(t, t) for t in need.types], state="missing_blocking",
            required=need.required, waivable=need.waivable, online=need.online, max_age_days=need.max_age_days,
            serves=list(need.serves), issued_by=need.issued_by,
        )  # fmt: skip
        if need.issued_by is not None:
            status.state = "issued_in_bundle"
            statuses.append(status)
            continue
        found = _best(need, evidence, day)
        if found is not None:
            confirmed = evidence.confirmed_at.get(found.id)
            status.material_id, status.material_type, status.confirmed_at = (
                found.id,
                found.type_code,
                confirmed,
            )
            if _is_stale(need, confirmed, now):
                status.state = "on_file_stale"
                why = evidence.warnings.get(found.source, "it could not be refreshed from its source")
                status.warning = (
                    f"{names.get(found.type_code, found.type_code)}: the hub's copy is older than "
                    f"{need.max_age_days} days and {why}; the stored material is used"
                )
                warnings.append(status.warning)
            else:
                status.state = "on_file_fresh"
        elif need.waivable:
            status.state = "missing_waivable"
            promised = next((promises[t] for t in need.types if t in promises), None)
            if promised is not None:
                status.promise = PromiseView(id=promised.id, due_date=promised.due_date, state=promised.state)
            elif need.due_days:
                status.promise_due_date = day + dt.timedelta(days=need.due_days)
        elif not need.required:
            status.state = "missing_optional"
        statuses.append(status)
    counts = promise_counts or {}
    if counts.get("overdue"):
        warnings.append(f"the applicant has {counts['overdue']} overdue promise(s) (容缺承诺逾期)")
    blocking = [s.types for s in statuses if s.state == "missing_blocking"]
    to_promise = [s.types for s in statuses if s.state == "missing_waivable"]
    decision: Decision = "cannot_accept" if blocking else "accept_on_promise" if to_promise else "accept_now"
    items = [catalogue.item(code) for code in plan.items]
    return Readiness(
        kind=plan.kind, code=plan.code, name_zh=plan.name_zh, name_en=plan.name_en,
        items=[ItemRef(code=i.code, name_zh=i.name_zh, name_en=i.name_en, department=i.department) for i in items],
        requirements=statuses,
        summary=ReadinessSummary(
            decision=decision, counts=dict(Counter(s.state for s in statuses)), blocking=blocking,
            to_promise=to_promise, open_promises=counts.get("open", 0), overdue_promises=counts.get("overdue", 0),
            warnings=warnings,
        ),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class CaseReadiness:
    readiness: Readiness
    #: Every material of the plan's types on file (what the lookup lists), after any pull.
    materials: list[MaterialView]
    #: The materials the readiness relied on (remembered for the case, so changes alert it).
    used: list[str]
    pulls: list[str]


def _gather(
    session: Session, *, subject_id: int | None, types: frozenset[str], refreshed: Mapping[str, dt.datetime]
) -> tuple[list[MaterialView], dict[str, dt.datetime]]:
    """The subject's materials of these types, and when each was last confirmed with its source: the
    later of when it was stored, the source's last successful sync, and a pull made now."""
    views = latest_materials(session, subject_id=subject_id, types=types) if subject_id is not None else []
    synced = last_successful_syncs(session)
    confirmed: dict[str, dt.datetime] = {}
    for view in views:
        times = [view.created_at, synced.get(view.source), refreshed.get(view.source)]
        confirmed[view.id] = max(t for t in times if t is not None)
    return views, confirmed


def assess_case(
    handle: StoreHandle,
    session: Session,
    *,
    plan: Plan,
    catalogue: ServiceCatalogue,
    identifier: Identifier,
    subject_id: int | None,
    case_ref: str,
    client_id: str,
) -> CaseReadiness:
    """Assess the plan for a subject; a stale material triggers a pull of the subject from its source
    (when its connector can), all pulls together within ``freshness_pull_seconds``."""
    now, day = utcnow(), today()
    promises = (
        promised_types(session, case_ref=case_ref, client_id=client_id, subject_id=subject_id)
        if subject_id
        else {}
    )
    counts = count_unclosed_promises(session, subject_id=subject_id) if subject_id else {}
    refreshed: dict[str, dt.datetime] = {}
    views, confirmed = _gather(session, subject_id=subject_id, types=plan.types, refreshed=refreshed)
    result = assess(
        plan,
        catalogue,
        Evidence(views, confirmed, {}),
        now=now,
        day=day,
        promises=promises,
        promise_counts=counts,
    )
    by_id = {view.id: view for view in views}
    stale = sorted(
        {
            by_id[s.material_id].source
            for s in result.requirements
            if s.state == "on_file_stale" and s.material_id
        }
    )
    warnings: dict[str, str] = {}
    pulls: list[str] = []
    if stale:
        deadline = time.monotonic() + handle.settings.freshness_pull_seconds
        for source in stale:
            remaining = deadline - time.monotonic()
            if not can_pull(source):
                warnings[source] = "its source cannot be asked for one subject"
                continue
            if remaining <= 0.05:
                warnings[source] = "there was no time left to refresh it"
                continue
            pulled = pull_subject(handle, source=source, subject=identifier, time_limit=remaining)
            pulls.append(source)
            if pulled.ok:
                refreshed[source] = utcnow()
            else:
                warnings[source] = f"refreshing it failed: {pulled.problem}"
        session.commit()  # end the read transaction: see what the pulls loaded
        views, confirmed = _gather(session, subject_id=subject_id, types=plan.types, refreshed=refreshed)
        result = assess(
            plan, catalogue, Evidence(views, confirmed, warnings), now=utcnow(), day=day, promises=promises,
            promise_counts=counts,
        )  # fmt: skip
    used = [s.material_id for s in result.requirements if s.material_id is not None]
    return CaseReadiness(result, views, used, pulls)
