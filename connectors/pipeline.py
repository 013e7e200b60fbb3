"""Extract → map → normalise IDs → validate → load valid rows / quarantine invalid ones → commit the cursor.

A batch's materials, its quarantine rows and the cursor that covers them commit in one transaction (on
SQLite a bulk sync's transaction may hold several whole batches): a crash rolls all three back together,
so a rerun neither skips nor doubles a row. A failing source fails the run and leaves the cursor at the
last committed batch. The Airflow DAGs call the same
functions (:func:`process_batch` is the validate-and-load step). A bulk :func:`run_sync` reads, validates
and seals in a worker process (:mod:`connectors.worker`) and loads here, in the same order.
"""

from __future__ import annotations

import datetime as dt
import gc
import itertools
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from connectors.base import DEFAULT_STREAM, Page
from connectors.config import source_config
from connectors.registry import get_connector
from connectors.worker import WORKER_BATCH_ROWS, SealedBatch, SyncWorker, SyncWorkerError
from contracts import Contract, load_contract
from materials_store.cases import settle_arrivals
from materials_store.errors import OneCertError
from materials_store.identity import (
    Identifier,
    IdentifierKind,
    InvalidIdentifier,
    canonical_person_ids,
    parse_identifier,
)
from materials_store.models import SyncState
from materials_store.runtime import StoreHandle
from materials_store.store import (
    AUTOCHECKPOINT_PAGES,
    MaterialInput,
    QuarantineInput,
    SealedMaterial,
    UpsertResult,
    checkpoint_wal,
    finish_run,
    save_cursor,
    seal_materials,
    seal_quarantine,
    start_run,
    sync_material_types,
    write_materials,
    write_quarantine,
    writer_lock,
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
    #: The peak resident memory of the run's worker process (:mod:`connectors.worker`), if it had one.
    worker_peak_rss_mib: float | None = None

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


def _date(value: Any) -> dt.date | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return dt.date.fromisoformat(str(value)[:10])


def _normalise_subjects(
    contract: Contract, values: list[Any] | pd.Series
) -> tuple[list[Identifier | None], list[str | None]]:
    """Parsed identifiers (or None) and reasons. Canonical, valid ID numbers are recognised for the
    whole batch at once (:func:`canonical_person_ids`); the rest (to normalise, credit codes, invalid
    values, which need their reason) are parsed one by one, once per distinct value."""
    expected = {"person": {IdentifierKind.PERSON}, "organisation": {IdentifierKind.ORGANISATION}}.get(
        contract.subject_kind, {IdentifierKind.PERSON, IdentifierKind.ORGANISATION}
    )
    if isinstance(values, pd.Series):
        values = values.tolist()
    count = len(values)
    normalised: list[Identifier | None] = [None] * count
    reasons: list[str | None] = [None] * count
    fast = canonical_person_ids(values) if IdentifierKind.PERSON in expected else np.zeros(count, dtype=bool)
    person = IdentifierKind.PERSON
    for position in np.flatnonzero(fast).tolist():
        normalised[position] = Identifier(person, values[position])
    cache: dict[Any, tuple[Identifier | None, str | None]] = {}
    for position in np.flatnonzero(~fast).tolist():
        value = values[position]
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
        normalised[position], reasons[position] = result
    return normalised, reasons


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
    #: The rows column-wise, subject IDs normalised (None: built again from ``rows`` when needed).
    columns: dict[str, list[Any]] | None = None


def _columns(contract: Contract, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """One list per contract field (missing fields are null), the subject field included."""
    names = dict.fromkeys([*contract.field_names, contract.subject_field])
    return {name: [row.get(name) for row in rows] for name in names}


def check_batch(contract: Contract, rows: list[dict[str, Any]]) -> CheckedBatch:
    """Normalise the subject IDs of one batch and validate it with the contract's suite."""
    from contracts.validation import SUBJECT_REASON, SUBJECT_VALID, ExpectationOutcome, validate_batch

    subject_field = contract.subject_field
    # Column-wise: the frame, and later the payloads, are built from the same lists.
    columns = _columns(contract, rows)
    identifiers, reasons = _normalise_subjects(contract, columns[subject_field])
    columns[subject_field] = [
        i.value if i is not None else raw for i, raw in zip(identifiers, columns[subject_field], strict=True)
    ]
    if not rows:
        return CheckedBatch(rows, identifiers, [], {}, [], None, columns)
    frame = pd.DataFrame(columns, copy=False)
    frame[SUBJECT_VALID] = [value is not None for value in identifiers]
    frame[SUBJECT_REASON] = reasons
    validation = validate_batch(contract, frame)
    bad_ids = sum(1 for value in identifiers if value is None)
    identity = ExpectationOutcome(
        expectation="identity", rule="valid_subject_id", column=subject_field, success=bad_ids == 0,
        element_count=len(rows), unexpected_count=bad_ids,
    )  # fmt: skip
    return CheckedBatch(
        rows, identifiers, validation.valid_mask.tolist(), validation.failures, [identity, *validation.results],
        validation.raw, columns,
    )  # fmt: skip


def split_checked(
    contract: Contract, *, name_field: str | None, checked: CheckedBatch
) -> tuple[list[MaterialInput], list[QuarantineInput]]:
    """The materials to load from a checked batch's good rows, and the quarantine entries of its bad ones."""
    rows, identifiers = checked.rows, checked.identifiers
    bad: list[QuarantineInput] = []
    for position in sorted(checked.failures):
        record_id = rows[position].get(contract.primary_key)
        bad.append(
            QuarantineInput(str(record_id) if record_id else None, rows[position], checked.failures[position])
        )
    columns = checked.columns
    if columns is None:
        columns = _columns(contract, rows)
        columns[contract.subject_field] = [
            i.value if i is not None else raw
            for i, raw in zip(identifiers, columns[contract.subject_field], strict=True)
        ]
    field_names = list(columns)
    spec = contract.material_type
    type_code, issuer, validity = spec.code, contract.department, contract.validity_days
    names = columns.get(name_field) if name_field else None
    issued_column, until_column = columns["issued_at"], columns.get("valid_until")
    record_column = columns[contract.primary_key]
    # The payloads, row-wise again: the columns transposed in one go (rows come from JSON/CSV/SQL: no NaN).
    values = list(zip(*columns.values(), strict=True))
    days: dict[Any, dt.date | None] = {None: None}
    materials: list[MaterialInput] = []
    append = materials.append
    for position, valid in enumerate(checked.valid):
        if not valid:
            continue
        identifier = identifiers[position]
        assert identifier is not None  # rows with invalid IDs are quarantined above
        raw = issued_column[position]
        issued = days[raw] if raw in days else days.setdefault(raw, _date(raw))
        assert issued is not None  # required by every contract, so validated
        raw = until_column[position] if until_column is not None else None
        until = days[raw] if raw in days else days.setdefault(raw, _date(raw))
        if until is None and validity:
            until = issued + dt.timedelta(days=validity)
        append(
            MaterialInput(
                type_code,
                identifier,
                str(record_column[position]),
                issued,
                until,
                dict(zip(field_names, values[position], strict=True)),
                issuer,
                _clean(names[position]) if names is not None else None,
            )
        )
    return materials, bad


@dataclass
class PreparedBatch:
    """A validated batch, ready to load: the materials of its valid rows and its quarantine rows."""

    extracted: int
    materials: list[MaterialInput]
    bad: list[QuarantineInput]
    quarantined_ids: list[str]


def prepare_batch(contract: Contract, *, name_field: str | None, rows: list[dict[str, Any]]) -> PreparedBatch:
    """Normalise subject IDs, validate with the contract's GX suite, and build the materials of the
    valid rows and the quarantine entries of the others (with the rules they broke). No database work.
    """
    materials, bad = split_checked(contract, name_field=name_field, checked=check_batch(contract, rows))
    return PreparedBatch(len(rows), materials, bad, [str(item.source_record_id) for item in bad])


#: Materials per upsert call of a sync's load on the embedded store: between two calls the load can
#: commit and let other writers in. SQLite has one writer at a time, and every lookup writes its usage
#: record: a whole batch in one transaction would hold the write lock for seconds and stall the windows.
LOAD_CHUNK_ROWS = 500
#: Materials per upsert call once another process has waited for the store during this batch: the
#: windows' usage records wait at most one such chunk (a few milliseconds) for the lock. Measured with
#: ``bench lookup --during-sync``: 500-row chunks held lookups to about 300/s with p99 near 600 ms;
#: 50-row chunks to about 800/s with p99 near 150 ms.
LOAD_SHARED_CHUNK_ROWS = 50
#: Materials per write transaction of a load on the embedded store while no other process waits for it.
#: A sync's transaction runs on from one batch to the next (:class:`LoadTransaction`) until it holds this
#: many. A commit writes every page it changed to the WAL, and the checkpoint writes it again; a batch
#: lands at random in two indexes (subjects by blind index, materials by validity) and changes most of
#: their pages, so a commit per 25,000-row batch rewrote them whole each time. Replaying a million rows'
#: worker batches into a new store: 35.5-36.8 µs a row (wall) committing each batch, 31.8-32.8 with
#: 100,000-row transactions, 33.9 with 50,000, 32.1 with 200,000; the same peak memory (the page cache
#: spills what it cannot hold).
LOAD_COMMIT_ROWS = 100_000
#: Seconds between looks for another process waiting for the store while a sync's transaction stays open
#: between two batches (:meth:`LoadTransaction.watch`).
LOAD_WATCH_SECONDS = 0.002
#: The page cache of a load's connection, in MiB (the store's connections keep 64). A load writes into
#: random-key indexes (subjects by blind index, materials by record id): a cache that holds their hot
#: pages across a whole transaction writes each touched page once per commit. ``bench ingest`` of a
#: million rows, in process, in an earlier session: 7,632-8,248 records/s (peak 675-679 MiB) with
#: 10,000-row commits and the 64 MiB cache; 8,533/s (743 MiB) with 50,000 and 128 MiB; 8,733/s
#: (892 MiB) with 256 MiB, too close to the 1 GiB the sync may use. Larger commits alone, or the cache
#: alone, gained nothing then; now the random-key index pages are most of what a commit writes.
LOAD_CACHE_MIB = 128
#: The same when a worker process prepares the batches (:mod:`connectors.worker`): the load is then not
#: the slower half, and the sync's two processes share the 1 GiB. ``bench ingest``: 16,723 records/s
#: with 64 MiB (peaks 362 + 542 MiB), 16,514/s with 128 (430 + 542 MiB).
WORKER_LOAD_CACHE_MIB = 64
#: Seconds a sync's load lets go of the store when another process (a hub worker appending lookups'
#: records) is waiting for it.
LOAD_CHUNK_PAUSE = 0.01


class LoadTransaction:
    """A load's write transaction on the store: its session, inside the store's :class:`WriterLock`.

    :func:`load_batch` alone commits at the end of its batch. A sync passes one of these from batch to
    batch (all calls from its loader thread): on the embedded store, while no other process waits for
    the store, the transaction then runs on over several batches, each with its cursor, until it holds
    :data:`LOAD_COMMIT_ROWS` materials. A crash rolls those batches back together with their cursors.
    ``committed`` counts the batches a commit covers, for the sync's bookkeeping.
    """

    def __init__(self, handle: StoreHandle, *, group: bool = False) -> None:
        self.handle = handle
        self.group = group and handle.embedded
        self.lock = writer_lock(handle.engine)
        self.uncommitted = 0  # materials written since the last commit
        self.written = 0  # batches written whole, cursors included
        self.committed = 0  # of those, the batches a commit covers
        self._open: ExitStack | None = None
        self._session: Session | None = None

    @property
    def is_open(self) -> bool:
        return self._open is not None

    def session(self) -> Session:
        """The open transaction's session; the lock is taken and the session made on first use, on a
        connection of its own (so the checkpoint after the lock is let go runs on the same one)."""
        if self._session is None:
            with ExitStack() as stack:
                connection = stack.enter_context(self.handle.engine.connect())
                stack.callback(self._after, connection)  # after the lock is let go
                stack.enter_context(self.lock.held())
                self._session = stack.enter_context(self.handle.sessions(bind=connection))
                self._open = stack.pop_all()
        return self._session

    def commit(self) -> None:
        """Commit, with the lock still held: the batches written so far are covered."""
        self.session().commit()
        self.uncommitted = 0
        self.committed = self.written

    def close(self, *, commit: bool = True) -> None:
        """Commit (or roll back) and let go of the lock; then checkpoint the WAL the commit filled."""
        if self._open is None:
            return
        try:
            if commit:
                self.commit()
        finally:
            self.uncommitted = 0
            self._session = None
            opened, self._open = self._open, None
            opened.close()

    def _after(self, connection: Connection) -> None:
        if self.handle.embedded:  # the connection goes back to the pool with SQLite's default
            connection.exec_driver_sql(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
            _checkpoint(connection)

    def watch(self, arrived: threading.Event) -> None:
        """Between two batches, with the transaction open: until the next batch has ``arrived``, commit
        and let go the moment another process waits for the store (a window's usage record)."""
        while self.is_open and not arrived.wait(LOAD_WATCH_SECONDS):
            if self.lock.others_waiting():
                self.close()


def load_batch(
    handle: StoreHandle,
    *,
    contract: Contract,
    batch: PreparedBatch | SealedBatch,
    run_id: str,
    commits: list[tuple[str, str]],
    cache_mib: int = LOAD_CACHE_MIB,
    transaction: LoadTransaction | None = None,
) -> BatchOutcome:
    """Upsert the batch's materials, quarantine its bad rows and save the cursor. A batch a sync's worker
    process sealed (:class:`~connectors.worker.SealedBatch`) is written as it is.

    On PostgreSQL all of it is one transaction. On SQLite the load holds the store's :class:`WriterLock`
    and upserts :data:`LOAD_CHUNK_ROWS` materials at a time; after a chunk it commits and lets go for a
    moment when another process waits for the store (or every :data:`LOAD_COMMIT_ROWS`), and once it
    has let another in, goes on in chunks of :data:`LOAD_SHARED_CHUNK_ROWS`. While it has let go it
    checkpoints the WAL (:func:`~materials_store.store.checkpoint_wal`) and seals the next rows (hashes,
    ids, encryption: :func:`~materials_store.store.seal_materials`), so a window waiting for the lock
    waits for SQL only. The last transaction holds the quarantine and the cursor. A crash in between
    leaves some materials loaded and the cursor where it was: the rerun pulls those rows again and finds
    them unchanged, so nothing is lost or doubled.

    A sync's ``transaction`` may stay open after the batch (see :class:`LoadTransaction`): when nobody
    waited for the store during it and it holds fewer than :data:`LOAD_COMMIT_ROWS` materials.
    Without one, the batch commits at its end.
    """
    embedded = handle.embedded
    materials: list[MaterialInput] = []  # to seal here
    sealed: list[SealedMaterial] = []  # sealed ahead, not written yet
    next_to_seal = 0

    def seal_ahead(rows: int) -> None:
        nonlocal next_to_seal
        upto = min(len(materials), next_to_seal + rows)
        if upto <= next_to_seal:
            return
        sealed.extend(seal_materials(handle.keyring, materials[next_to_seal:upto]))
        next_to_seal = upto

    if isinstance(batch, SealedBatch):
        sealed, bad = list(batch.materials), batch.bad
    else:  # before the lock: the first chunk's CPU work and the quarantine's (a few rows)
        materials = batch.materials
        seal_ahead(LOAD_CHUNK_ROWS if embedded else len(materials))
        bad = seal_quarantine(handle.keyring, source=contract.source, rows=batch.bad)
    total = UpsertResult()
    transaction = transaction or LoadTransaction(handle)
    lock = transaction.lock
    shared = False
    try:
        session = transaction.session()
        wal = partial(_checkpoint, session.connection())  # the transaction's own connection

        def meanwhile() -> None:  # with the lock let go: the WAL, and the next rows' CPU work
            wal()
            seal_ahead(LOAD_CHUNK_ROWS - len(sealed))  # what the last chunk used

        while True:
            if embedded and transaction.uncommitted == 0:
                session.connection().exec_driver_sql(f"PRAGMA cache_size=-{cache_mib * 1024}")
                # Its commits do not checkpoint the WAL: it does, after each, with waiters let in first.
                session.connection().exec_driver_sql("PRAGMA wal_autocheckpoint=0")
            size = (
                (LOAD_SHARED_CHUNK_ROWS if shared else LOAD_CHUNK_ROWS) if embedded else len(batch.materials)
            )
            if len(sealed) < size:  # under the lock, so only when nobody has waited since the last seal
                seal_ahead(LOAD_CHUNK_ROWS - len(sealed))
            chunk = sealed[:size]
            del sealed[:size]
            result = write_materials(session, materials=chunk, source=contract.source, run_id=run_id)
            settle_arrivals(session, result=result, type_codes=[contract.material_type.code])  # promises
            total.inserted += result.inserted
            total.new_versions += result.new_versions
            total.unchanged += result.unchanged
            transaction.uncommitted += len(chunk)
            if not sealed and next_to_seal >= len(materials):
                break
            if transaction.uncommitted >= LOAD_COMMIT_ROWS or lock.others_waiting():
                transaction.commit()
                # Lookups' usage records go in first; from then on the chunks are small.
                if lock.let_waiters_in(LOAD_CHUNK_PAUSE, meanwhile=meanwhile):
                    shared = True
                if embedded:  # (again, if it let go) the pages the waiters wrote meanwhile: a few, quickly
                    wal()
        write_quarantine(session, source=contract.source, run_id=run_id, rows=bad)
        for stream, value in dict(commits).items():  # the last value of each stream covers the batch
            save_cursor(session, source=contract.source, stream=stream, cursor=value, run_id=run_id)
        transaction.written += 1
        if not transaction.group or shared or transaction.uncommitted >= LOAD_COMMIT_ROWS:
            transaction.close()
    except BaseException:
        transaction.close(commit=False)
        raise
    return BatchOutcome(
        batch.extracted, total.loaded, total.new_versions, total.unchanged, len(batch.quarantined_ids),
        batch.quarantined_ids,
    )  # fmt: skip


def _checkpoint(connection: Connection) -> None:
    driver = connection.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    checkpoint_wal(driver)


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
    prepared = prepare_batch(contract, name_field=name_field, rows=rows)
    return load_batch(handle, contract=contract, batch=prepared, run_id=run_id, commits=commits)


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


def prefetch(pages: Iterator[Page], depth: int = 2) -> Generator[Page]:
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


def _import_validation() -> None:
    import contracts.validation  # noqa: F401


def _safe_error(error: BaseException) -> str:
    """An error text fit for the run log: our errors never carry IDs; others are named by type only."""
    if isinstance(error, SyncWorkerError):  # the worker's own error, already in these words
        return error.detail
    if isinstance(error, OneCertError):
        return f"{type(error).__name__}: {error.detail}"
    return type(error).__name__


#: Rows a sync reads before it decides where to validate: a source with more goes on in a worker process
#: (:mod:`connectors.worker`), so a bulk sync uses a second core; a smaller one is done here, without
#: paying for a second interpreter. ``bench ingest`` of a million rows: see the README.
PARALLEL_AFTER_ROWS = 10_000


def _read_ahead(pages: Iterator[Page], rows: int) -> tuple[list[Page], bool]:
    """The pages holding the first ``rows`` rows (or all of them), and whether that was all."""
    read: list[Page] = []
    count = 0
    for page in pages:
        read.append(page)
        count += len(page.rows)
        if count > rows:
            return read, False
    return read, True


def _drain(pages: list[Page]) -> Iterator[Page]:
    """The pages, each let go of as it is taken."""
    pages.reverse()
    while pages:
        yield pages.pop()


#: Batches between two collections of a bulk sync's process (:func:`bulk_gc`).
SYNC_COLLECT_EVERY = 8


@contextmanager
def bulk_gc(collect_every: int = SYNC_COLLECT_EVERY) -> Iterator[Callable[[], None]]:
    """The garbage collector off while a bulk sync runs; the caller calls what this gives after each
    batch, and every ``collect_every`` batches that collects. Everything alive before (modules, the
    store's engine) is moved out of the collector's sight first, as the API does for its workers; a
    caller that froze its own heap keeps it as it is.

    A sync allocates and frees hundreds of thousands of objects a batch, nearly all freed by their
    reference counts. The automatic collector still walked them: at its thresholds it ran whenever
    20,000 new objects were alive, and here the batch arriving from the worker (about 100,000) always
    is. In ``bench ingest`` of a million rows the sync's process spent 2.2 s of CPU collecting, the
    worker 2.5 s (:func:`connectors.worker._work` does the same for itself). A batch here leaves about
    ten objects in reference cycles: collected every eight batches, 0.3 s. (Earlier: unfrozen, 5.6 s
    of 46; frozen, 2.7 s.)"""
    freezing = gc.get_freeze_count() == 0
    enabled = gc.isenabled()
    if freezing:
        gc.collect()
        gc.freeze()
    gc.disable()
    batches = 0

    def between_batches() -> None:
        nonlocal batches
        batches += 1
        if batches % collect_every == 0:
            gc.collect()

    try:
        yield between_batches
    finally:
        if enabled:
            gc.enable()
        if freezing:
            gc.unfreeze()


def run_sync(
    source: str,
    *,
    handle: StoreHandle,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[SyncReport], None] | None = None,
    after_batch: Callable[[SyncReport], None] | None = None,
    parallel: bool | None = None,
) -> SyncReport:
    """Sync one source. Never raises for a source failure: the report says ``failed``.

    Args:
        after_batch: called after each committed batch (tests use it to crash a run mid-way).
        parallel: read, validate and seal in a worker process (:mod:`connectors.worker`) and load here.
            ``None``: when the source has more than :data:`PARALLEL_AFTER_ROWS` rows to read and the
            machine more than one core. The worker's batches are at most
            :data:`~connectors.worker.WORKER_BATCH_ROWS` rows.
    """
    contract = load_contract(source)
    connector_class = get_connector(source)
    with handle.sessions() as session:
        sync_material_types(session, specs=[contract.material_type])  # the type must exist to load into it
        session.commit()
        run = start_run(session, source=source)
    report = SyncReport(source=source, run_id=run.id)
    connector = None
    # Batch N is loaded (mostly SQLite work, which releases the GIL) in a thread while batch N + 1 is
    # validated here; batch N + 1 is handed to the loader only after batch N is written, so batches are
    # written one by one, in order. Their bookkeeping (after_commit, after_batch) waits for the commit
    # that covers them: on the embedded store one transaction may hold several (:class:`LoadTransaction`).
    loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onecert-load")
    transaction = LoadTransaction(handle, group=True)
    pending: tuple[Future[BatchOutcome], list[tuple[str, str]], list[Callable[[], None]]] | None = None
    # Batches written, in order, whose commit has not come yet.
    awaiting_commit: list[tuple[BatchOutcome, list[tuple[str, str]], list[Callable[[], None]]]] = []
    watching: tuple[threading.Event, Future[None]] | None = None

    def settle() -> None:
        nonlocal pending
        if pending is not None:
            future, commits, after_commit = pending
            pending = None
            awaiting_commit.append((future.result(), commits, after_commit))
        account()

    def stop_watching() -> None:
        nonlocal watching
        if watching is not None:
            arrived, watch = watching
            watching = None
            arrived.set()
            watch.result()  # a commit that failed there fails the run

    def account() -> None:  # the batches a commit covers
        while awaiting_commit and report.batches < transaction.committed:
            outcome, commits, after_commit = awaiting_commit.pop(0)
            for action in after_commit:
                action()
            report.batches += 1
            report.extracted += outcome.extracted
            report.loaded += outcome.loaded
            report.new_versions += outcome.new_versions
            report.unchanged += outcome.unchanged
            report.quarantined += outcome.quarantined
            report.quarantined_ids.extend(outcome.quarantined_ids)
            report.cursor = dict(commits).get(DEFAULT_STREAM, report.cursor)  # its last value covers it
            if progress:
                progress(report)
            if after_batch:
                after_batch(report)

    def load(
        batch: PreparedBatch | SealedBatch, commits: list[tuple[str, str]], after: list[Callable[[], None]]
    ) -> None:
        nonlocal pending, watching
        settle()  # the batch before is written
        stop_watching()
        cache_mib = WORKER_LOAD_CACHE_MIB if isinstance(batch, SealedBatch) else LOAD_CACHE_MIB
        future = loader.submit(
            load_batch,
            handle,
            contract=contract,
            batch=batch,
            run_id=run.id,
            commits=commits,
            cache_mib=cache_mib,
            transaction=transaction,
        )
        # From the moment it is written until the next batch comes (read, validated): a window that
        # waits for the store meanwhile gets it.
        arrived = threading.Event()
        watching = (arrived, loader.submit(transaction.watch, arrived))
        pending = (future, commits, after)

    def finish(*, commit: bool) -> None:  # in the loader's thread, like every use of the transaction
        stop_watching()
        loader.submit(transaction.close, commit=commit).result()
        account()

    try:
        config = source_config(handle.settings, source)
        connector = connector_class(config)
        state = committed_state(handle, source)
        pages = prefetch(connector.pages(state))
        read: list[Page] = []
        if parallel is None:
            read, ended = _read_ahead(pages, PARALLEL_AFTER_ROWS)
            parallel = not ended and (os.cpu_count() or 1) > 1
        if parallel:
            pages.close()  # the worker reads again, from the same committed state
            read.clear()
            worker_rows = min(batch_rows, WORKER_BATCH_ROWS)
            with (
                bulk_gc() as between_batches,
                SyncWorker(
                    source, config=config, keyring=handle.keyring, state=state, batch_rows=worker_rows
                ) as worker,
            ):
                for sealed in worker.batches():
                    # The worker read the pages; what its pages would do after the commit, finalise does.
                    load(sealed, sealed.commits, [partial(connector.finalise, sealed.commits)])
                    # Written before the next is taken: the worker prepares the next ones meanwhile, and
                    # this process holds one batch, and at most one more as it came over the pipe.
                    settle()
                    del sealed
                    between_batches()
                finish(commit=True)
            report.worker_peak_rss_mib = worker.peak_rss_mib
        else:
            # Great Expectations takes seconds to import: import it while the first batch is being read.
            threading.Thread(target=_import_validation, name="onecert-import-gx", daemon=True).start()
            for batch in _batches(itertools.chain(_drain(read), pages), batch_rows):
                prepared = prepare_batch(
                    contract, name_field=connector_class.subject_name_field, rows=batch.rows
                )
                commits, after_commit = batch.commits, batch.after_commit
                del batch  # the raw rows are not needed any more: free them while the next batch is read
                load(prepared, commits, after_commit)
            settle()
            finish(commit=True)
        report.state = "success"
    except Exception as error:  # noqa: BLE001 - any failure fails the run; the store stays consistent
        try:
            settle()  # a batch still loading when a later one failed: count it if it committed
        except Exception:  # noqa: BLE001, S110 - the first error is the one reported
            pass
        report.state = "failed"
        report.error = _safe_error(error)
        log.warning("sync of %s failed: %s", source, report.error)
    finally:
        try:  # what a failed run wrote since its last commit is rolled back, cursors with it
            finish(commit=False)
        except Exception:  # noqa: BLE001, S110 - the first error is the one reported
            pass
        finally:
            loader.shutdown(wait=True)
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
