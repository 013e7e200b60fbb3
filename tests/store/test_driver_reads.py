"""The plain lookup's driver-level reads give the same answers as the Session functions they mirror, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from materials_store.crypto import Keyring
from materials_store.driver_reads import DriverReads, driver_reads
from materials_store.store import (
    MaterialInput,
    add_client,
    client_status,
    disable_client,
    find_subject_row,
    finish_run,
    last_runs,
    latest_materials,
    revoke,
    start_run,
    subject_name,
    upsert_materials,
)
from tests.store.conftest import Store, person


def _material(serial: int, type_code: str, record: str, issued: dt.date, **payload: str) -> MaterialInput:
    return MaterialInput(
        type_code=type_code, subject=person(serial), source_record_id=record, issued_at=issued,
        valid_until=dt.date(2099, 1, 1) if type_code.startswith("tax") else None,
        payload=payload or {"name": f"测试{serial}"}, issuer=type_code.split(".")[0], subject_name=f"测试{serial}",
    )  # fmt: skip


def _window(store: Store) -> str:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with store.session() as session:
        client = add_client(session, kind="window", name="窗口", public_key_pem=pem.decode())
        session.commit()
        return client.id


@pytest.fixture
def reads(store: Store) -> Iterator[DriverReads]:
    reads = DriverReads(store.engine)
    yield reads
    reads.close()


def test_subject_and_materials_match_the_session_reads(store: Store, reads: DriverReads) -> None:
    items = [
        _material(1, "police.hukou", "HK1", dt.date(2026, 1, 5)),
        _material(1, "tax.payment_certificate", "WS2", dt.date(2026, 3, 1)),
        _material(1, "tax.payment_certificate", "WS1", dt.date(2026, 2, 1)),
        _material(1, "tax.payment_certificate", "WS3", dt.date(2026, 4, 1)),
        _material(2, "police.hukou", "HK2", dt.date(2026, 1, 5)),
    ]
    with store.session() as session:
        ids = upsert_materials(session, keyring=store.keyring, items=items, source="mixed").ids
        session.commit()
        revoke(session, material_id=ids[3], reason="issued in error", actor="tax")
        session.commit()
        upsert_materials(  # a new version supersedes HK1
            session, keyring=store.keyring, source="mixed",
            items=[_material(1, "police.hukou", "HK1", dt.date(2026, 1, 5), name="测试1", address="新地址")],
        )  # fmt: skip
        session.commit()
        expected_subject = find_subject_row(session, keyring=store.keyring, identifier=person(1))
        assert expected_subject is not None
        expected = latest_materials(session, subject_id=expected_subject.id)

    window = _window(store)
    status, subject, listed = reads.client_subject_and_materials(
        window, store.keyring.blind_index(person(1).value)
    )
    assert status == "active"
    assert subject is not None
    assert tuple(subject) == tuple(expected_subject)
    assert subject_name(store.keyring, subject) == "测试1"
    assert listed == expected
    assert [(m.type_code, m.source_record_id, m.version) for m in listed] == [
        ("police.hukou", "HK1", 2),
        ("tax.payment_certificate", "WS2", 1),
        ("tax.payment_certificate", "WS1", 1),
    ]
    assert listed[0].created_at.tzinfo is not None

    # A subject with no valid material left (its only one revoked), and an unknown one.
    with store.session() as session:
        revoke(session, material_id=ids[4], reason="issued in error", actor="police")
        session.commit()
    _, second, none_listed = reads.client_subject_and_materials(
        window, store.keyring.blind_index(person(2).value)
    )
    assert second is not None and second.blind_index == store.keyring.blind_index(person(2).value)
    assert none_listed == []
    assert reads.client_subject_and_materials(window, store.keyring.blind_index(person(3).value)) == (
        "active", None, [],
    )  # fmt: skip


def test_the_client_status_read_with_the_subject_answers_for_each_client(
    store: Store, reads: DriverReads
) -> None:
    with store.session() as session:
        upsert_materials(
            session, keyring=store.keyring, source="mixed",
            items=[_material(1, "police.hukou", "HK1", dt.date(2026, 1, 5)),
                   _material(1, "tax.payment_certificate", "WS1", dt.date(2026, 2, 1))],
        )  # fmt: skip
        session.commit()
    window = _window(store)
    known, unknown = (store.keyring.blind_index(person(n).value) for n in (1, 2))
    status, subject, listed = reads.client_subject_and_materials(window, known)
    assert status == "active" and subject is not None and len(listed) == 2
    assert reads.client_subject_and_materials(window, unknown) == ("active", None, [])
    # An unknown client: nothing at all, whoever the subject.
    assert reads.client_subject_and_materials("nobody", known) == (None, None, [])
    with store.session() as session:
        disable_client(session, client_id=window)
        session.commit()
        assert client_status(session, client_id=window) == "disabled"
    assert reads.client_subject_and_materials(window, known) == ("disabled", subject, listed)


def test_client_status_and_last_syncs_match_the_session_reads(store: Store, reads: DriverReads) -> None:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with store.session() as session:
        client = add_client(session, kind="window", name="窗口", public_key_pem=pem.decode())
        session.commit()
        assert reads.client_status(client.id) == "active"
        disable_client(session, client_id=client.id)
        session.commit()
        assert reads.client_status(client.id) == client_status(session, client_id=client.id) == "disabled"
        assert reads.client_status("nobody") is None

        assert reads.last_synced() == {}
        for source, state in [
            ("police", "success"),
            ("tax", "success"),
            ("tax", "failed"),
            ("hrss", "failed"),
        ]:
            run = start_run(session, source=source)
            finish_run(session, run_id=run.id, state=state)
        expected = {s: r.finished_at for s, r in last_runs(session).items() if r.state == "success"}
    assert expected.keys() == {"police"}  # tax's newest run failed; hrss never succeeded
    assert reads.last_synced() == expected


def test_a_kept_connection_sees_each_new_commit_and_never_writes(store: Store, reads: DriverReads) -> None:
    index = store.keyring.blind_index(person(5).value)
    window = _window(store)
    # The connection is open, and kept, from here on.
    assert reads.client_subject_and_materials(window, index) == ("active", None, [])
    (kept,) = reads._idle
    with store.session() as session:
        upsert_materials(
            session, keyring=store.keyring, items=[_material(5, "police.hukou", "HK5", dt.date(2026, 1, 5))],
            source="police",
        )  # fmt: skip
        session.commit()
    _, subject, listed = reads.client_subject_and_materials(window, index)
    assert subject is not None
    assert len(listed) == 1
    assert reads._idle == [kept]
    with pytest.raises(Exception, match="(?i)read.?only"):
        kept.execute("DELETE FROM materials")


def test_a_connection_whose_read_failed_is_closed_not_kept(store: Store) -> None:
    reads = driver_reads(store.engine)
    assert driver_reads(store.engine) is reads
    assert reads.client_status("nobody") is None
    (kept,) = reads._idle
    reads.sql["client"] = reads.sql["client"].replace("clients", "no_such_table")
    with pytest.raises(Exception, match="no_such_table"):
        reads.client_status("nobody")
    assert reads._idle == []
    reads.sql["client"] = reads.sql["client"].replace("no_such_table", "clients")
    assert reads.client_status("nobody") is None  # a new connection
    assert reads._idle != [kept]
    reads.close()
    assert kept.closed if hasattr(kept, "closed") else _closed_sqlite(kept)


def _closed_sqlite(connection: sqlite3.Connection) -> bool:
    try:
        connection.execute("SELECT 1")
    except sqlite3.ProgrammingError:
        return True
    return False


def test_threads_reading_at_once_each_borrow_a_connection(store: Store, reads: DriverReads) -> None:
    start = threading.Barrier(3)
    original = reads._open

    def slow_open() -> object:
        start.wait(timeout=10)  # all three are opening at once: none could borrow another's
        return original()

    reads._open = slow_open  # type: ignore[method-assign]
    threads = [threading.Thread(target=reads.client_status, args=("nobody",)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(connection) for connection in reads._idle}) == 3


@pytest.mark.postgres
def test_reads_awaited_on_the_loop_answer_as_the_driver_reads(postgres_url: str) -> None:
    """PostgreSQL's plain lookups await their reads on the event loop (:class:`LoopReads`): the same
    answers as :class:`DriverReads`, on connections kept between reads, and a connection whose read failed
    is closed, not kept."""
    import asyncio

    from materials_store.db import engine_for_url, session_factory, upgrade
    from materials_store.driver_reads import LoopReads
    from materials_store.store import sync_material_types
    from tests.store.conftest import TypeSpec, _fresh_postgres

    engine = engine_for_url(_fresh_postgres(postgres_url))
    upgrade(engine)
    keyring = Keyring.generate()
    sessions = session_factory(engine)
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with sessions() as session:
        sync_material_types(session, specs=[TypeSpec("police.hukou"), TypeSpec("tax.payment_certificate")])
        upsert_materials(
            session, keyring=keyring, source="mixed",
            items=[_material(1, "police.hukou", "HK1", dt.date(2026, 1, 5)),
                   _material(1, "tax.payment_certificate", "WS1", dt.date(2026, 2, 1))],
        )  # fmt: skip
        client = add_client(session, kind="window", name="窗口", public_key_pem=pem.decode())
        run = start_run(session, source="police")
        finish_run(session, run_id=run.id, state="success")
        session.commit()
    known, unknown = keyring.blind_index(person(1).value), keyring.blind_index(person(2).value)
    reads = DriverReads(engine)

    async def on_loop() -> None:
        loop_reads = LoopReads(engine, connections=3)
        try:
            assert len((await loop_reads.client_subject_and_materials(client.id, known))[2]) == 2
            assert await loop_reads.client_status(client.id) == "active"
            assert await loop_reads.client_status("nobody") is None
            for client_id, index in [(client.id, known), (client.id, unknown), ("nobody", known)]:
                expected = reads.client_subject_and_materials(client_id, index)
                assert await loop_reads.client_subject_and_materials(client_id, index) == expected
            assert await loop_reads.last_synced() == reads.last_synced() != {}
            # Reads one after another share one connection; reads at once each borrow their own.
            (kept,) = loop_reads._idle
            await asyncio.gather(*(loop_reads.client_status(client.id) for _ in range(3)))
            assert kept in loop_reads._idle and len(loop_reads._idle) == 3
            # More at once than it may have connections: the rest wait for one, none is opened past three.
            statuses = await asyncio.gather(*(loop_reads.client_status(client.id) for _ in range(12)))
            assert statuses == ["active"] * 12 and len(loop_reads._idle) == 3
            for extra in [connection for connection in loop_reads._idle if connection is not kept]:
                await extra.close()
            loop_reads._idle[:] = [kept]
            sql = loop_reads.reads.sql
            loop_reads.reads.sql = {**sql, "client": sql["client"].replace("clients", "no_table")}
            with pytest.raises(Exception, match="no_table"):
                await loop_reads.client_status(client.id)
            assert loop_reads._idle == [] and kept.closed
            loop_reads.reads.sql = sql
            assert await loop_reads.client_status(client.id) == "active"  # on a new connection
        finally:
            await loop_reads.close()

    asyncio.run(on_loop())
    reads.close()
    engine.dispose()
