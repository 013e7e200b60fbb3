"""The usage-record hash chain, quarantine, cursors, runs and clients."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from sqlalchemy import delete, select, update

from materials_store.errors import Conflict, DataError
from materials_store.models import AuditHead, UsageRecord
from materials_store.store import (
    ChainReport,
    QuarantineInput,
    add_client,
    close_quarantine_row,
    count_quarantine,
    disable_client,
    finish_run,
    get_cursor,
    last_runs,
    list_clients,
    list_quarantine,
    quarantine_raw,
    quarantine_rows,
    record_usage,
    save_cursor,
    start_run,
    usage_for_subject,
    verify_usage_chain,
)
from tests.store.conftest import Store


def _chain(store: Store, n: int = 5) -> None:
    with store.session() as session:
        for i in range(n):
            record_usage(
                session,
                client_id="win-1",
                client_kind="window",
                action="lookup",
                outcome="ok",
                case_ref=f"CASE-{i}",
                purpose="新生儿入户",
                subject_index=f"{i:064x}",
                material_ids=[f"m{i}"],
            )
            session.commit()


def test_untouched_chain_verifies(store: Store) -> None:
    _chain(store)
    with store.session() as session:
        report = verify_usage_chain(session)
    assert report.ok and report.checked == 5


def test_edited_record_is_detected(store: Store) -> None:
    _chain(store)
    with store.session() as session:
        session.execute(update(UsageRecord).where(UsageRecord.seq == 3).values(purpose="something else"))
        session.commit()
        report = verify_usage_chain(session)
    assert not report.ok and report.first_bad_seq == 3 and "edited" in (report.reason or "")


def test_deleted_record_is_detected(store: Store) -> None:
    _chain(store)
    with store.session() as session:
        session.execute(delete(UsageRecord).where(UsageRecord.seq == 2))
        session.commit()
        report = verify_usage_chain(session)
    assert not report.ok and report.first_bad_seq == 3


def test_deleted_newest_record_is_detected(store: Store) -> None:
    _chain(store)
    with store.session() as session:
        session.execute(delete(UsageRecord).where(UsageRecord.seq == 5))
        session.commit()
        report = verify_usage_chain(session)
    assert not report.ok and "newest" in (report.reason or "")


def test_reordered_records_are_detected(store: Store) -> None:
    _chain(store)
    with store.session() as session:
        rows = {r.seq: r for r in session.scalars(select(UsageRecord).where(UsageRecord.seq.in_([2, 3])))}
        fields = ("case_ref", "subject_index", "material_ids", "hash", "prev_hash", "at")
        swapped = {seq: {f: getattr(rows[other], f) for f in fields} for seq, other in ((2, 3), (3, 2))}
        # Swap through a temporary value: prev_hash and hash are unique.
        session.execute(update(UsageRecord).where(UsageRecord.seq == 2).values(hash="t1", prev_hash="t2"))
        session.execute(update(UsageRecord).where(UsageRecord.seq == 3).values(swapped[3]))
        session.execute(update(UsageRecord).where(UsageRecord.seq == 2).values(swapped[2]))
        session.commit()
        report = verify_usage_chain(session)
    assert not report.ok and report.first_bad_seq == 2


def test_chain_cannot_fork(store: Store) -> None:
    _chain(store, 2)
    with store.session() as session:
        head = session.get(AuditHead, 1)
        assert head is not None
        head.seq, head.hash = 1, session.scalar(select(UsageRecord.hash).where(UsageRecord.seq == 1)) or ""
        session.commit()
        # A writer that believes record 1 is the newest would claim the same predecessor as record 2.
        with pytest.raises(Conflict):
            record_usage(session, client_id="x", client_kind="window", action="lookup", outcome="ok")


def test_usage_for_subject_newest_first(store: Store) -> None:
    _chain(store, 3)
    with store.session() as session:
        rows = usage_for_subject(session, subject_index=f"{1:064x}")
    assert [r.case_ref for r in rows] == ["CASE-1"]


def test_quarantine_is_encrypted_deduplicated_and_closable(store: Store) -> None:
    raw = {"record_id": "R1", "subject_id": "33010619900101001X", "name": "张三"}
    rules = [{"rule": "valid_subject_id", "column": "subject_id", "message": "wrong check character"}]
    with store.session() as session:
        added = quarantine_rows(
            session,
            keyring=store.keyring,
            source="police_id_card",
            run_id="run-1",
            rows=[QuarantineInput("R1", raw, rules)],
        )
        again = quarantine_rows(
            session,
            keyring=store.keyring,
            source="police_id_card",
            run_id="run-2",
            rows=[QuarantineInput("R1", raw, rules)],
        )
        session.commit()
        assert (added, again) == (1, 0)
        [row] = list_quarantine(session, source="police_id_card")
        assert row.rules == rules and quarantine_raw(store.keyring, row) == raw
        assert b"33010619900101001X" not in row.raw_ciphertext
        close_quarantine_row(session, row_id=row.id, status="discarded", resolution={"reason": "dup"})
        session.commit()
        assert count_quarantine(session, source="police_id_card") == 0
        assert count_quarantine(session, source="police_id_card", status=None) == 1
        with pytest.raises(Conflict):
            close_quarantine_row(session, row_id=row.id, status="resolved", resolution={})


def test_cursor_and_runs(store: Store) -> None:
    with store.session() as session:
        assert get_cursor(session, source="tax_certificates") is None
        run = start_run(session, source="tax_certificates")
        save_cursor(session, source="tax_certificates", cursor="2026-11-01T00:00:00Z|42", run_id=run.id)
        session.rollback()  # not committed: the cursor did not move
        assert get_cursor(session, source="tax_certificates") is None
        save_cursor(session, source="tax_certificates", cursor="2026-11-01T00:00:00Z|42", run_id=run.id)
        session.commit()
        finish_run(session, run_id=run.id, state="success", extracted=10, loaded=8, quarantined=2)
        assert get_cursor(session, source="tax_certificates") == "2026-11-01T00:00:00Z|42"
        runs = last_runs(session)
    assert runs["tax_certificates"].state == "success" and runs["tax_certificates"].loaded == 8


def _pem(key: object) -> str:
    return (
        key.public_key()
        .public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )


def test_clients_accept_ed25519_and_p256_only(store: Store) -> None:
    with store.session() as session:
        window = add_client(
            session,
            kind="window",
            name="西湖区政务服务中心 3 号窗口",
            public_key_pem=_pem(ed25519.Ed25519PrivateKey.generate()),
            org="hz-xihu",
            region="330106",
        )
        dept = add_client(
            session,
            kind="department",
            name="税务局",
            public_key_pem=_pem(ec.generate_private_key(ec.SECP256R1())),
            types=["tax.payment_certificate"],
        )
        with pytest.raises(DataError, match="Ed25519"):
            add_client(
                session, kind="window", name="rsa", public_key_pem=_pem(rsa.generate_private_key(65537, 2048))
            )
        with pytest.raises(DataError, match="material types"):
            add_client(
                session,
                kind="department",
                name="x",
                public_key_pem=_pem(ed25519.Ed25519PrivateKey.generate()),
            )
        with pytest.raises(DataError, match="unknown"):
            add_client(
                session,
                kind="department",
                name="x",
                public_key_pem=_pem(ed25519.Ed25519PrivateKey.generate()),
                types=["no.such_type"],
            )
        session.commit()
        disable_client(session, client_id=window.id)
        session.commit()
        clients = {c.id: c for c in list_clients(session)}
    assert window.id.startswith("win-") and dept.id.startswith("dept-")
    assert clients[window.id].status == "disabled" and clients[dept.id].status == "active"


def test_concurrent_writers_extend_one_chain(store: Store) -> None:
    from materials_store.store import commit_usage

    def append(worker: int) -> None:
        with store.session() as session:
            for i in range(25):
                commit_usage(session, client_id=f"win-{worker}", client_kind="window", action="lookup",
                             outcome="ok", case_ref=f"{worker}-{i}")  # fmt: skip

    report = _run_then_verify(store, [threading.Thread(target=append, args=(worker,)) for worker in range(4)])
    assert report.ok, report
    assert report.checked == 100


def _run_then_verify(store: Store, threads: list[threading.Thread]) -> ChainReport:
    """Start ``threads``, wait for them all, and verify the chain they extended."""
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with store.session() as session:
        return verify_usage_chain(session)


def test_appenders_of_separate_workers_and_the_session_path_extend_one_chain(store: Store) -> None:
    """Each worker process has its own appender; they and a push's record (the Session path) race for the
    head from an empty chain on, and still extend one chain with nothing lost."""
    import threading

    from materials_store.db import engine_for_url
    from materials_store.store import UsageAppender, record_usage

    engines = [engine_for_url(store.engine.url.render_as_string(hide_password=False)) for _ in range(2)]
    appenders = [UsageAppender(engine) for engine in engines]
    start = threading.Barrier(3)

    def worker(appender: UsageAppender, name: str) -> None:
        start.wait(timeout=10)
        pending = [
            appender.submit({"client_id": name, "client_kind": "window", "action": "lookup", "outcome": "ok"})
            for _ in range(60)
        ]
        for item in pending:
            item.wait()
            assert item.error is None

    def pushes() -> None:
        start.wait(timeout=10)
        for _ in range(20):
            with store.session() as session:
                record_usage(session, client_id="dept", client_kind="department", action="push", outcome="ok")
                session.commit()

    threads = [threading.Thread(target=worker, args=(a, f"w{n}")) for n, a in enumerate(appenders)]
    report = _run_then_verify(store, [*threads, threading.Thread(target=pushes)])
    assert report.ok, report
    assert report.checked == 140
    for engine in engines:
        engine.dispose()
    assert all(appender.server is None for appender in appenders)


def test_the_appender_checkpoints_the_wal_itself_outside_its_commits(tmp_path: Path) -> None:
    """The appender's commits never checkpoint (that held the writer lock for tens of milliseconds); its
    own thread does, every so many batches, so the WAL stays short however long the hub runs."""
    import sqlite3
    from contextlib import closing

    from materials_store.db import engine_for_url, upgrade
    from materials_store.store import UsageAppender

    path = tmp_path / "store.db"
    engine = engine_for_url(f"sqlite:///{path}")
    upgrade(engine)
    appender = UsageAppender(engine)
    appender.checkpoint_batches = 10
    for _ in range(300):  # one record a batch: 300 commits, each a few pages of WAL
        item = appender.submit(
            {"client_id": "w", "client_kind": "window", "action": "lookup", "outcome": "ok"}
        )
        item.wait()
    assert appender.checkpoints is not None
    appender.checkpoints.shutdown(wait=True)
    assert appender.connection is not None
    assert appender.connection.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    with closing(sqlite3.connect(path)) as reader:
        _busy, frames, _done = reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert reader.execute("SELECT count(*) FROM usage_records").fetchone() == (300,)
    # Without its checkpoints all 300 commits (900 pages and more) would still be in the WAL.
    assert frames < 200, frames
    engine.dispose()


@pytest.mark.postgres
def test_appends_on_an_event_loop_leave_it_serving_while_the_chain_is_locked(postgres_url: str) -> None:
    """On PostgreSQL, records submitted on an event loop (a hub worker's lookups) are appended by a task on
    that loop: while another transaction holds the chain's head, the loop goes on serving, and once it is
    let go the records join the one chain. (Appending on the loop's thread stalled it for the whole wait.)"""
    import asyncio
    import time

    from sqlalchemy import text

    from materials_store.db import engine_for_url, session_factory, upgrade
    from materials_store.store import UsageAppender
    from tests.store.conftest import _fresh_postgres

    engine = engine_for_url(_fresh_postgres(postgres_url))
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions() as session:  # the chain's first record: from here on there is a head row to lock
        record_usage(session, client_id="dept", client_kind="department", action="push", outcome="ok")
        session.commit()
    locked, release = threading.Event(), threading.Event()

    def other_writer() -> None:
        with sessions() as session:
            session.execute(text("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE"))
            locked.set()
            release.wait(timeout=10)
            session.rollback()

    holder = threading.Thread(target=other_writer)
    holder.start()
    assert locked.wait(timeout=10)
    appender = UsageAppender(engine)

    async def serve() -> tuple[float, list[bool]]:
        loop = asyncio.get_running_loop()
        items = [
            appender.submit_on_loop(
                {
                    "client_id": "w",
                    "client_kind": "window",
                    "action": "lookup",
                    "outcome": "ok",
                    "case_ref": f"C-{n}",
                },
                loop,
            )  # fmt: skip
            for n in range(3)
        ]
        longest, last = 0.0, time.monotonic()
        for _ in range(30):  # the loop serves other work meanwhile: here, 30 ticks of 10 ms
            await asyncio.sleep(0.01)
            now = time.monotonic()
            longest, last = max(longest, now - last), now
        waiting = [not item.done.is_set() for item in items]
        release.set()
        for item in items:
            while not item.done.is_set():
                await asyncio.sleep(0.01)
            assert item.error is None
        await appender.close_on_loop()
        return longest, waiting

    longest, waiting = asyncio.run(serve())
    holder.join()
    assert waiting == [True, True, True]  # the records waited for the chain...
    assert longest < 0.2, longest  # ...and the loop did not (it went on within 10 ms ticks)
    with sessions() as session:
        report = verify_usage_chain(session)
        cases = session.scalars(select(UsageRecord.case_ref).order_by(UsageRecord.seq)).all()
    assert report.ok, report
    assert cases == [None, "C-0", "C-1", "C-2"]
    engine.dispose()
