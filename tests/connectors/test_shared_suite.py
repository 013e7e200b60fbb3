"""The shared connector suite: every connector in the registry passes it against its sandbox system."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

import connectors.pipeline as pipeline
from connectors.pipeline import run_sync
from connectors.registry import source_names
from connectors.sandbox import control
from connectors.sandbox.generate import QUARANTINED_KINDS, SOURCES, drop_inbox, load_manifest, sandbox_dir
from contracts import load_contract
from materials_store.crypto import Keyring
from materials_store.models import Material, QuarantineRow, SyncRun
from materials_store.runtime import StoreHandle
from materials_store.store import MaterialInput, WriterLock, get_cursor, sync_material_types
from tests.store.conftest import person

SOURCES_UNDER_TEST = source_names()
REST_SOURCES = [s for s in SOURCES_UNDER_TEST if SOURCES[s][1] == "rest"]


@pytest.fixture(params=[False, True], ids=["in-process", "worker"])
def parallel(request: pytest.FixtureRequest) -> bool:
    """Each run in-process, and with a worker process reading, validating and sealing
    (:mod:`connectors.worker`, which a bulk sync uses): both must keep the suite's promises."""
    return bool(request.param)


def _counts(store: StoreHandle, source: str) -> tuple[set[str], set[str], int]:
    with store.sessions() as session:
        loaded = set(session.scalars(select(Material.source_record_id).where(Material.source == source)))
        quarantined = set(
            session.scalars(select(QuarantineRow.source_record_id).where(QuarantineRow.source == source))
        )
        versions = int(
            session.scalar(select(func.count()).select_from(Material).where(Material.source == source)) or 0
        )
    return loaded, quarantined, versions


def _expected(home: Path, source: str) -> tuple[set[str], int]:
    info = load_manifest(home)["sources"][source]
    bad = {rid for kind in QUARANTINED_KINDS for rid in info["defects"][kind]}
    return bad, info["records"] - len(bad)


def _save_cursor_failing_at(call: int, why: str) -> Callable[..., None]:
    """``save_cursor`` that raises on its ``call``-th call (a crash before the batch's cursor is saved)."""
    calls = {"n": 0}
    real = pipeline.save_cursor

    def save_cursor(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == call:
            raise RuntimeError(why)
        real(*args, **kwargs)  # type: ignore[arg-type]

    return save_cursor


@pytest.mark.parametrize("source", SOURCES_UNDER_TEST)
def test_full_sync_then_incremental_resume(
    source: str, parallel: bool, sandbox: Path, store: StoreHandle
) -> None:
    first = run_sync(source, handle=store, batch_rows=50, parallel=parallel)
    assert first.state == "success", first.error
    bad, good = _expected(sandbox, source)
    loaded, quarantined, _ = _counts(store, source)
    assert quarantined == bad  # every defective row is in quarantine, nothing else is
    assert len(loaded) == good and not (loaded & bad)  # every good row is in the store
    assert first.extracted == first.loaded + first.unchanged + first.quarantined
    with store.sessions() as session:  # the run reports the cursor it saved (a batch spans several pages)
        assert first.cursor == get_cursor(session, source=source)

    again = run_sync(source, handle=store, batch_rows=50, parallel=parallel)
    assert (again.state, again.extracted, again.loaded) == ("success", 0, 0)

    control.advance(sandbox, updates=4, new=3)
    resumed = run_sync(source, handle=store, batch_rows=50, parallel=parallel)
    assert resumed.state == "success", resumed.error
    assert (resumed.extracted, resumed.loaded, resumed.new_versions) == (7, 7, 4)
    loaded_after, _, versions = _counts(store, source)
    assert len(loaded_after) == good + 3
    assert versions == good + 3 + 4


@pytest.mark.parametrize("source", SOURCES_UNDER_TEST)
def test_crash_mid_batch_loses_and_doubles_nothing(
    source: str, parallel: bool, sandbox: Path, store: StoreHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = pipeline.save_cursor
    # Small pages, so even the smallest source has a second batch to crash in, each batch committed.
    monkeypatch.setenv(f"ONECERT_SOURCE_{source.upper()}_PAGE_SIZE", "5")
    monkeypatch.setattr(pipeline, "LOAD_COMMIT_ROWS", 1)
    monkeypatch.setattr(pipeline, "save_cursor", _save_cursor_failing_at(2, "power cut before the cursor"))
    crashed = run_sync(source, handle=store, batch_rows=5, parallel=parallel)
    assert crashed.state == "failed"
    with store.sessions() as session:
        cursor_after_crash = get_cursor(session, source=source)
    monkeypatch.setattr(pipeline, "save_cursor", real)
    finished = run_sync(source, handle=store, batch_rows=5, parallel=parallel)
    assert finished.state == "success", finished.error
    bad, good = _expected(sandbox, source)
    loaded, quarantined, versions = _counts(store, source)
    assert (len(loaded), versions, quarantined) == (good, good, bad)
    if SOURCES[source][1] != "file":
        assert cursor_after_crash is not None  # the first batch had committed its cursor


def test_batches_written_in_one_transaction_roll_back_together_with_their_cursors(
    parallel: bool, sandbox: Path, store: StoreHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a sync's transaction runs on over its batches, each with its cursor, while nobody waits
    for the store: a crash in the third rolls the first two back too, and the rerun loses nothing."""
    source = "police_id_card"
    real = pipeline.save_cursor
    commits = {"n": 0}
    event.listen(store.engine, "commit", lambda _connection: commits.__setitem__("n", commits["n"] + 1))
    monkeypatch.setenv("ONECERT_SOURCE_POLICE_ID_CARD_PAGE_SIZE", "10")
    monkeypatch.setattr(pipeline, "save_cursor", _save_cursor_failing_at(3, "power cut in the third batch"))
    before = commits["n"]
    crashed = run_sync(source, handle=store, batch_rows=10, parallel=parallel)
    assert crashed.state == "failed"
    assert (crashed.batches, crashed.loaded, crashed.cursor) == (0, 0, None)  # nothing was committed
    with store.sessions() as session:
        assert get_cursor(session, source=source) is None
    assert _counts(store, source) == (set(), set(), 0)
    assert commits["n"] - before == 3  # the run's material type, its start and its end: no batch

    monkeypatch.setattr(pipeline, "save_cursor", real)
    before = commits["n"]
    finished = run_sync(source, handle=store, batch_rows=10, parallel=parallel)
    assert finished.state == "success", finished.error
    assert finished.batches > 3
    bad, good = _expected(sandbox, source)
    loaded, quarantined, versions = _counts(store, source)
    assert (len(loaded), versions, quarantined) == (good, good, bad)
    assert finished.loaded == good
    assert commits["n"] - before == 4  # the same, and one for all of its batches


def test_a_window_that_waits_between_two_batches_gets_the_store_at_once(
    sandbox: Path, store: StoreHandle
) -> None:
    """A sync's transaction left open after a batch commits and lets go of the store as soon as a hub
    worker waits for it, without waiting for the next batch."""
    contract = load_contract("police_id_card")
    with store.sessions() as session:
        sync_material_types(session, specs=[contract.material_type])
        session.commit()
    items = [
        MaterialInput(
            contract.material_type.code, person(serial), f"R{serial}", dt.date(2020, 1, serial + 1), None,
            {"serial": serial}, "police", f"姓名{serial}", None,
        )
        for serial in range(20)
    ]  # fmt: skip
    prepared = pipeline.PreparedBatch(len(items), items, [], [])
    transaction = pipeline.LoadTransaction(store, group=True)
    arrived = threading.Event()
    watching = threading.Thread(target=transaction.watch, args=(arrived,))
    pipeline.load_batch(
        store, contract=contract, batch=prepared, run_id="r1", commits=[], transaction=transaction
    )
    assert transaction.is_open and transaction.committed == 0  # nobody waited: still open
    watching.start()
    time.sleep(0.05)
    assert transaction.is_open  # nobody waits yet
    with _a_window_waiting(store):
        started = time.monotonic()
        with WriterLock(store.engine.url.database).held():  # what the window's worker does
            waited = time.monotonic() - started
            assert not transaction.is_open and transaction.committed == 1
            assert _counts(store, "police_id_card")[2] == len(items)
    assert waited < 1
    arrived.set()
    watching.join(5)
    assert not watching.is_alive()


def test_a_window_that_waits_while_a_sync_validates_its_next_batch_gets_the_store(
    sandbox: Path, store: StoreHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process, the next batch is validated while the loader's thread has written the last one and
    keeps the transaction open: a window that waits then gets the store without waiting for that."""
    written = [threading.Event() for _ in range(3)]
    real_load, real_prepare = pipeline.load_batch, pipeline.prepare_batch
    loads = {"n": 0}

    def load(*args: Any, **kwargs: Any) -> Any:
        done = written[min(loads["n"], 2)]
        loads["n"] += 1
        try:
            return real_load(*args, **kwargs)
        finally:
            done.set()

    waited: list[float] = []

    def prepare(*args: Any, **kwargs: Any) -> Any:
        if loads["n"] == 2 and not waited:  # the third batch, while the second is written or being written
            assert written[1].wait(10)
            lock = WriterLock(store.engine.url.database)
            with _a_window_waiting(store):
                started = time.monotonic()
                while time.monotonic() - started < 5:
                    with lock.held(wait=False) as got:
                        if got:
                            break
                    time.sleep(0.002)
                waited.append(time.monotonic() - started)
        return real_prepare(*args, **kwargs)

    monkeypatch.setattr(pipeline, "load_batch", load)
    monkeypatch.setattr(pipeline, "prepare_batch", prepare)
    monkeypatch.setenv("ONECERT_SOURCE_POLICE_ID_CARD_PAGE_SIZE", "10")
    report = run_sync("police_id_card", handle=store, batch_rows=10, parallel=False)
    assert report.state == "success", report.error
    assert waited and waited[0] < 1


@pytest.mark.parametrize("source", ["police_id_card", "market_licences"])
def test_a_crash_between_the_write_chunks_of_a_batch_loses_and_doubles_nothing(
    source: str, sandbox: Path, store: StoreHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a batch is written in chunks (short write locks); a crash after some chunks committed
    but before the cursor did leaves rows that the rerun finds unchanged: no row lost, no version added."""
    real = pipeline.save_cursor
    monkeypatch.setattr(pipeline, "LOAD_CHUNK_ROWS", 3)
    monkeypatch.setattr(pipeline, "LOAD_COMMIT_ROWS", 3)  # a commit after every chunk
    monkeypatch.setenv(f"ONECERT_SOURCE_{source.upper()}_PAGE_SIZE", "10")
    monkeypatch.setattr(
        pipeline, "save_cursor", _save_cursor_failing_at(2, "power cut after the first chunks")
    )
    crashed = run_sync(source, handle=store, batch_rows=10)
    assert crashed.state == "failed"
    loaded_at_crash, _, _ = _counts(store, source)
    assert len(loaded_at_crash) > crashed.loaded  # the crashed batch's first chunks had committed
    monkeypatch.setattr(pipeline, "save_cursor", real)
    finished = run_sync(source, handle=store, batch_rows=10)
    assert finished.state == "success", finished.error
    assert finished.unchanged > 0  # those rows came again and were found unchanged
    bad, good = _expected(sandbox, source)
    loaded, quarantined, versions = _counts(store, source)
    assert (len(loaded), versions, quarantined) == (good, good, bad)


@contextmanager
def _a_window_waiting(store: StoreHandle) -> Iterator[None]:
    """For the block, what a hub worker waiting for the store holds: a shared flock on the store's
    ``-append.wait`` file, from an open file of its own."""
    waiter = os.open(f"{store.engine.url.database}-append.wait", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(waiter, fcntl.LOCK_SH)
        yield
    finally:
        os.close(waiter)


def test_once_a_window_has_waited_a_sync_writes_in_small_chunks(
    sandbox: Path, store: StoreHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub worker waiting for the store (its flock on the ``-append.wait`` file, held here from another
    open file) makes the load commit, let it in, and go on in short write transactions."""
    batches: list[list[int]] = []  # the chunk sizes of each batch's load
    real_write, real_load = pipeline.write_materials, pipeline.load_batch

    def write(session: object, **kwargs: Any) -> Any:
        batches[-1].append(len(kwargs["materials"]))
        return real_write(session, **kwargs)  # type: ignore[arg-type]

    def load(*args: Any, **kwargs: Any) -> Any:
        batches.append([])
        return real_load(*args, **kwargs)

    monkeypatch.setattr(pipeline, "write_materials", write)
    monkeypatch.setattr(pipeline, "load_batch", load)
    monkeypatch.setattr(pipeline, "LOAD_CHUNK_ROWS", 20)
    monkeypatch.setattr(pipeline, "LOAD_SHARED_CHUNK_ROWS", 5)
    monkeypatch.setattr(pipeline, "LOAD_CHUNK_PAUSE", 0)
    commits = {"n": 0}
    event.listen(store.engine, "commit", lambda _connection: commits.__setitem__("n", commits["n"] + 1))
    unhurried = run_sync("police_id_card", handle=store, batch_rows=40)
    assert all(set(sizes[:-1]) <= {20} for sizes in batches)  # nobody waiting: full chunks
    unhurried_commits, batches[:] = commits["n"], []

    with _a_window_waiting(store):
        control.advance(sandbox, updates=60, new=0)
        hurried = run_sync("police_id_card", handle=store, batch_rows=40)
    assert hurried.state == unhurried.state == "success"
    long_batches = [sizes for sizes in batches if sum(sizes) > 25]
    assert long_batches
    for sizes in long_batches:  # one full chunk, then short ones, each committed
        assert sizes[0] == 20 and set(sizes[1:-1]) == {5} and sizes[-1] <= 5
    assert commits["n"] - unhurried_commits > sum(len(sizes) for sizes in batches)
    assert hurried.new_versions > 0
    assert hurried.loaded + hurried.unchanged + hurried.quarantined == hurried.extracted


def test_a_window_waiting_for_the_store_waits_for_no_encryption(
    sandbox: Path, store: StoreHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a hub worker waits for the store, the load seals its next rows (subjects, payloads and
    quarantined rows encrypted) only while it has let go of the writer lock: the window waits for the
    load's SQL, not its CPU work."""
    holding = threading.local()  # whether this thread holds the writer lock
    real_held, real_encrypt_many, real_encrypt = WriterLock.held, Keyring.encrypt_many, Keyring.encrypt
    real_let_go = WriterLock.let_waiters_in

    @contextmanager
    def held(self: WriterLock, **kwargs: Any) -> Iterator[bool]:
        with real_held(self, **kwargs) as got:
            holding.on = got
            try:
                yield got
            finally:
                holding.on = False

    def let_waiters_in(self: WriterLock, pause: float, **kwargs: Any) -> bool:
        holding.on = False
        try:
            return real_let_go(self, pause, **kwargs)
        finally:
            holding.on = True

    under_lock: list[bool] = []  # one entry per value encrypted

    def encrypt_many(self: Keyring, plaintexts: Sequence[bytes], aads: Sequence[bytes]) -> Any:
        under_lock.extend(getattr(holding, "on", False) for _ in plaintexts)
        return real_encrypt_many(self, plaintexts, aads)

    def encrypt(self: Keyring, plaintext: bytes, **kwargs: Any) -> Any:
        under_lock.append(getattr(holding, "on", False))
        return real_encrypt(self, plaintext, **kwargs)

    monkeypatch.setattr(WriterLock, "held", held)
    monkeypatch.setattr(WriterLock, "let_waiters_in", let_waiters_in)
    monkeypatch.setattr(Keyring, "encrypt_many", encrypt_many)
    monkeypatch.setattr(Keyring, "encrypt", encrypt)
    monkeypatch.setattr(pipeline, "LOAD_CHUNK_ROWS", 20)
    monkeypatch.setattr(pipeline, "LOAD_SHARED_CHUNK_ROWS", 5)
    monkeypatch.setattr(pipeline, "LOAD_CHUNK_PAUSE", 0)
    with _a_window_waiting(store):
        report = run_sync("police_id_card", handle=store, batch_rows=80)
    assert report.state == "success", report.error
    assert report.loaded and report.quarantined
    assert len(under_lock) >= report.loaded + report.quarantined  # the payloads at least
    assert not any(under_lock)


def test_a_load_writes_through_a_page_cache_of_its_own_size(
    sandbox: Path, store: StoreHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load's transactions run with :data:`LOAD_CACHE_MIB` of page cache, so a transaction keeps the
    random-key index pages it writes in memory until it commits, as far as they fit."""
    seen: list[int] = []
    real_write = pipeline.write_materials

    def write(session: Any, **kwargs: Any) -> Any:
        seen.append(session.connection().exec_driver_sql("PRAGMA cache_size").scalar())
        return real_write(session, **kwargs)

    monkeypatch.setattr(pipeline, "write_materials", write)
    assert run_sync("police_id_card", handle=store).state == "success"
    assert seen and set(seen) == {-pipeline.LOAD_CACHE_MIB * 1024}
    assert pipeline.LOAD_CACHE_MIB * 1024 > 65536  # more than the store's other connections keep


def _take_down(home: Path, source: str) -> None:
    system = SOURCES[source][0]
    control.fault(home, source if SOURCES[source][1] == "file" else system, "down")


def _bring_up(home: Path, source: str) -> None:
    system = SOURCES[source][0]
    control.fault(home, source if SOURCES[source][1] == "file" else system, "none")


@pytest.mark.parametrize("source", SOURCES_UNDER_TEST)
def test_a_source_that_is_down_fails_the_run_and_moves_no_cursor(
    source: str, parallel: bool, sandbox: Path, store: StoreHandle
) -> None:
    _take_down(sandbox, source)
    report = run_sync(source, handle=store, parallel=parallel)
    assert report.state == "failed"
    assert report.error
    with store.sessions() as session:
        assert get_cursor(session, source=source) is None
        run = session.get(SyncRun, report.run_id)
        assert run is not None and run.state == "failed"
    assert _counts(store, source)[2] == 0
    _bring_up(sandbox, source)
    assert run_sync(source, handle=store, parallel=parallel).state == "success"


@pytest.mark.parametrize("source", SOURCES_UNDER_TEST)
def test_an_empty_source(source: str, parallel: bool, sandbox: Path, store: StoreHandle) -> None:
    system, transport, table, _f, _n = SOURCES[source]
    if transport == "file":
        for path in drop_inbox(sandbox, source).iterdir():
            path.unlink()
    else:
        db = sqlite3.connect(sandbox_dir(sandbox) / f"{system}.db")
        if transport == "rest":
            db.execute("DELETE FROM records WHERE dataset = ?", (table,))
        else:
            db.execute(f"DELETE FROM {table}")  # noqa: S608
        db.commit()
        db.close()
    report = run_sync(source, handle=store, parallel=parallel)
    assert (report.state, report.extracted, report.loaded) == ("success", 0, 0)


@pytest.mark.parametrize("mode", ["error500", "timeout", "drop", "rate_limit"])
@pytest.mark.parametrize("source", REST_SOURCES)
def test_rest_faults_are_retried(source: str, mode: str, sandbox: Path, store: StoreHandle) -> None:
    control.fault(sandbox, SOURCES[source][0], mode, times=2, delay=3)
    report = run_sync(source, handle=store, batch_rows=50)
    assert report.state == "success", report.error
    _bad, good = _expected(sandbox, source)
    assert len(_counts(store, source)[0]) == good


def test_retries_give_up_and_fail_the_run(parallel: bool, sandbox: Path, store: StoreHandle) -> None:
    control.fault(sandbox, "police", "error500")  # every request, for good
    report = run_sync("police_id_card", handle=store, parallel=parallel)
    assert report.state == "failed"
    assert "server error 500" in (report.error or "")


@pytest.mark.parametrize("mode", ["error500", "drop"])
def test_rest_faults_are_retried_in_a_worker(mode: str, sandbox: Path, store: StoreHandle) -> None:
    control.fault(sandbox, "police", mode, times=2)
    report = run_sync("police_id_card", handle=store, batch_rows=50, parallel=True)
    assert report.state == "success", report.error
    assert len(_counts(store, "police_id_card")[0]) == _expected(sandbox, "police_id_card")[1]
