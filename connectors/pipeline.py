"""Extract → map → normalise IDs → validate → load valid rows / quarantine invalid ones → commit the cursor.

One transaction per batch holds the batch's materials, its quarantine rows and the cursor that covers
them: a crash rolls all three back together, so a rerun neither skips nor doubles a row. A failing
source fails the run and leaves the cursor at the last committed batch. The Airflow DAGs call the same
functions (:func:`process_batch` is the validate-and-load step).
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
from sqlalchemy import select

from connectors.base import Page
from connectors.config import source_config
from connectors.registry import get_connector
from contracts import Contract, load_contract
from materials_store.cases import settle_arrivals
from materials_store.errors import OneCertError
from materials_store.identity import Identifier, IdentifierKind, InvalidIdentifier, parse_identifier
from materials_store.models import SyncState
from materials_store.runtime import StoreHandle
from materials_store.store import (
    MaterialInput,
    QuarantineInput,
    finish_run,
    quarantine_rows,
    save_cursor,
    start_run,
    sync_material_types,
    upsert_materials,
)

if TYPE_CHECKING:
    from contracts.validation import ExpectationOutcome

log = logging.getLogger(__name__)
#: Rows per validate-and-load batch: GX has a fixed cost per batch of about a quarter second.
BATCH_ROWS = 50_000


@dataclass
class SyncReport:
    source: str
    run_id: str
    state: str = "running"
    extracted: int = 0
    loaded: int = 0
    new_versions: int = 0
    unchanged: int = 0
    quarantined: int = 0
    batches: int = 0
    cursor: str | None = None
    error: str | None = None
    quarantined_ids: list[str] = field(default_factory=list)

    @property
    def bad_share(self) -> float:
        return self.quarantined / self.extracted if self.extracted else 0.0


@dataclass
class BatchOutcome:
    extracted: int
    loaded: int
    new_versions: int
    unchanged: int
    quarantined: int
    quarantined_ids: list[str]


def committed_state(handle: StoreHandle, source: str) -> dict[str, str]:
    """Every committed stream of a source: its cursor and the files already processed."""
    with handle.sessions() as session:
        rows = session.execute(select(SyncState.stream, SyncState.cursor).where(SyncState.source == source))
        return {stream: cursor for stream, cursor in rows}


def _normalise_subjects(
    contract: Contract, values: pd.Series
) -> tuple[list[Identifier | None], list[str | None]]:
    """Parsed identifiers (or None) and reasons, computed once per distinct value."""
    cache: dict[Any, tuple[Identifier | None, str | None]] = {}
    expected = {"person": {IdentifierKind.PERSON}, "organisation": {IdentifierKind.ORGANISATION}}.get(
        contract.subject_kind, {IdentifierKind.PERSON, IdentifierKind.ORGANISATION}
    )
    normalised: list[Identifier | None] = []
    reasons: list[str | None] = []
    for value in values.tolist():
        result = cache.get(value)
        if result is None:
            if value is None or (isinstance(value, float) and pd.isna(value)):
                result = (None, "empty")
            else:
                try:
                    identifier = parse_identifier(str(value))
                    result = (identifier, None) if identifier.kind in expected else (None, "wrong_kind")
                except InvalidIdentifier as error:
                    result = (None, error.reason.value)
            cache[value] = result
        normalised.append(result[0])
        reasons.append(result[1])
    return normalised, reasons


def _date(value: Any) -> dt.date | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return dt.date.fromisoformat(str(value)[:10])


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return value


@dataclass
class CheckedBatch:
    """One batch after ID normalisation and validation: which rows are good, and why the others are not."""

    rows: list[dict[str, Any]]
    identifiers: list[Identifier | None]
    valid: list[bool]
    failures: dict[int, list[dict[str, Any]]]
    outcomes: list[ExpectationOutcome]
    #: The Great Expectations validation result (None for an empty batch).
    raw: Any = None


def check_batch(contract: Contract, rows: list[dict[str, Any]]) -> CheckedBatch:
    """Normalise the subject IDs of one batch and validate it with the contract's suite."""
    from contracts.validation import SUBJECT_REASON, SUBJECT_VALID, ExpectationOutcome, validate_batch

    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(contract.field_names))
    subject_field = contract.subject_field
    if subject_field not in frame:
        frame[subject_field] = None
    identifiers, reasons = _normalise_subjects(contract, frame[subject_field])
    frame[SUBJECT_VALID] = [value is not None for value in identifiers]
    frame[SUBJECT_REASON] = reasons
    frame[subject_field] = [
        i.value if i is not None else raw for i, raw in zip(identifiers, frame[subject_field], strict=True)
    ]
    if not len(frame):
        return CheckedBatch(rows, identifiers, [], {}, [])
    validation = validate_batch(contract, frame)
    bad_ids = sum(1 for value in identifiers if value is None)
    identity = ExpectationOutcome(
        expectation="identity", rule="valid_subject_id", column=subject_field, success=bad_ids == 0,
        element_count=len(rows), unexpected_count=bad_ids,
    )  # fmt: skip
    return CheckedBatch(
        rows, identifiers, validation.valid_mask.tolist(), validation.failures, [identity, *validation.results],
        validation.raw,
    )


def split_checked(
    contract: Contract, *, name_field: str | None, checked: CheckedBatch
) -> tuple[list[MaterialInput], list[QuarantineInput]]:
    """The materials to load from a checked batch's good rows, and the quarantine entries of its bad ones."""
    materials: list[MaterialInput] = []
    bad: list[QuarantineInput] = []
    spec = contract.material_type
    field_names = contract.field_names
    subject_field = contract.subject_field
    for position, row in enumerate(checked.rows):
        if not checked.valid[position]:
            record_id = row.get(contract.primary_key)
            bad.append(QuarantineInput(str(record_id) if record_id else None, row, checked.failures[position]))
            continue
        payload = {name: row.get(name) for name in field_names}  # rows come from JSON/CSV/SQL: no NaN
        identifier = checked.identifiers[position]
        assert identifier is not None  # rows with invalid IDs are quarantined above
        payload[subject_field] = identifier.value
        issued = _date(payload["issued_at"])
        assert issued is not None  # required by every contract, so validated
        until = _date(payload.get("valid_until"))
        if until is None and contract.validity_days:
            until = issued + dt.timedelta(days=contract.validity_days)
        materials.append(
            MaterialInput(
                type_code=spec.code,
                subject=identifier,
                source_record_id=str(payload[contract.primary_key]),
                issued_at=issued,
                valid_until=until,
                payload=payload,
                issuer=contract.department,
                subject_name=_clean(row.get(name_field)) if name_field else None,
            )
        )
    return materials, bad


def process_batch(
    handle: StoreHandle,
    *,
    contract: Contract,
    name_field: str | None,
    rows: list[dict[str, Any]],
    run_id: str,
    commits: list[tuple[str, str]],
) -> BatchOutcome:
    """Validate one batch and, in one transaction, load it, quarantine its bad rows and save the cursor."""
    checked = check_batch(contract, rows)
    materials, bad = split_checked(contract, name_field=name_field, checked=checked)
    with handle.sessions() as session:
        result = upsert_materials(
            session, keyring=handle.keyring, items=materials, source=contract.source, run_id=run_id
        )
        settle_arrivals(session, result=result, type_codes=[contract.material_type.code])  # promises, alerts
        quarantine_rows(session, keyring=handle.keyring, source=contract.source, run_id=run_id, rows=bad)
        for stream, value in dict(commits).items():  # the last value of each stream covers the batch
            save_cursor(session, source=contract.source, stream=stream, cursor=value, run_id=run_id)
        session.commit()
    quarantined_ids = [str(item.source_record_id) for item in bad]
    return BatchOutcome(
        len(rows), result.loaded, result.new_versions, result.unchanged, len(bad), quarantined_ids
    )


def _batches(pages: Iterator[Page], batch_rows: int) -> Iterator[Page]:
    """Join pages into batches of about ``batch_rows`` rows; a batch always ends on a page boundary."""
    pending: Page | None = None
    for page in pages:
        if pending is None:
            pending = Page(
                rows=list(page.rows), commits=list(page.commits), after_commit=list(page.after_commit)
            )
        else:
            pending.rows.extend(page.rows)
            pending.commits.extend(page.commits)
            pending.after_commit.extend(page.after_commit)
        if len(pending.rows) >= batch_rows:
            yield pending
            pending = None
    if pending is not None and (pending.rows or pending.commits):
        yield pending


_DONE = object()


def prefetch(pages: Iterator[Page], depth: int = 2) -> Iterator[Page]:
    """Read the next pages in a background thread while the current batch is validated and loaded.
    An error in the reader is raised here, in the consumer, in order."""
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def reader() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        slots.put(page, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_DONE)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which re-raises it
            slots.put(error)

    thread = threading.Thread(target=reader, name="onecert-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _safe_error(error: BaseException) -> str:
    """An error text fit for the run log: our errors never carry IDs; others are named by type only."""
    if isinstance(error, OneCertError):
        return f"{type(error).__name__}: {error.detail}"
    return type(error).__name__


def run_sync(
    source: str,
    *,
    handle: StoreHandle,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[SyncReport], None] | None = None,
    after_batch: Callable[[SyncReport], None] | None = None,
) -> SyncReport:
    """Sync one source in-process. Never raises for a source failure: the report says ``failed``.

    Args:
        after_batch: called after each committed batch (tests use it to crash a run mid-way).
    """
    contract = load_contract(source)
    connector_class = get_connector(source)
    with handle.sessions() as session:
        sync_material_types(session, specs=[contract.material_type])  # the type must exist to load into it
        session.commit()
        run = start_run(session, source=source)
    report = SyncReport(source=source, run_id=run.id)
    connector = None
    try:
        connector = connector_class(source_config(handle.settings, source))
        state = committed_state(handle, source)
        for batch in _batches(prefetch(connector.pages(state)), batch_rows):
            outcome = process_batch(
                handle,
                contract=contract,
                name_field=connector_class.subject_name_field,
                rows=batch.rows,
                run_id=run.id,
                commits=batch.commits,
            )
            for action in batch.after_commit:
                action()
            report.batches += 1
            report.extracted += outcome.extracted
            report.loaded += outcome.loaded
            report.new_versions += outcome.new_versions
            report.unchanged += outcome.unchanged
            report.quarantined += outcome.quarantined
            report.quarantined_ids.extend(outcome.quarantined_ids)
            report.cursor = next(
                (value for stream, value in batch.commits if stream == "default"), report.cursor
            )
            if progress:
                progress(report)
            if after_batch:
                after_batch(report)
        report.state = "success"
    except Exception as error:  # noqa: BLE001 - any failure fails the run; the store stays consistent
        report.state = "failed"
        report.error = _safe_error(error)
        log.warning("sync of %s failed: %s", source, report.error)
    finally:
        close = getattr(connector, "close", None)
        if close:
            close()
    with handle.sessions() as session:
        finish_run(
            session, run_id=run.id, state=report.state, extracted=report.extracted, loaded=report.loaded,
            new_versions=report.new_versions, unchanged=report.unchanged, quarantined=report.quarantined,
            cursor=report.cursor, error=report.error,
        )  # fmt: skip
    return report
