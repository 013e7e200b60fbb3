"""Migrations of a store that already holds data: what was on file is found, and decrypts, afterwards."""

from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, text

from materials_store.crypto import Keyring
from materials_store.db import STORE_PAGE_SIZE, alembic_config, engine_for_url, session_factory, upgrade
from materials_store.store import (
    ensure_subject,
    find_subject,
    latest_materials,
    seal_subjects,
    subject_identifier,
    sync_material_types,
)
from tests.store.conftest import TypeSpec, _fresh_postgres, person

NAME = "欧阳娜娜"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "sqlite":
        return engine_for_url(f"sqlite:///{tmp_path / 'store.db'}")
    return engine_for_url(_fresh_postgres(request.getfixturevalue("postgres_url")))


def test_a_new_store_gets_the_larger_pages_and_a_store_that_exists_keeps_its_own(tmp_path: Path) -> None:
    new = engine_for_url(f"sqlite:///{tmp_path / 'new.db'}")
    upgrade(new)
    with new.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA page_size").scalar() == STORE_PAGE_SIZE
    new.dispose()

    # A store made with SQLite's default pages (as every store was before): opened and upgraded as it is.
    with sqlite3.connect(tmp_path / "old.db") as made:
        made.execute("PRAGMA journal_mode=WAL")
        made.execute("CREATE TABLE kept (value TEXT)")
        made.execute("INSERT INTO kept VALUES ('still here')")
    old = engine_for_url(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(old)
    with old.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA page_size").scalar() == 4096
        assert connection.exec_driver_sql("SELECT value FROM kept").scalar() == "still here"
        assert connection.exec_driver_sql("SELECT count(*) FROM subjects").scalar() == 0
    old.dispose()


def _fill_at_0006(engine: Engine, keyring: Keyring, count: int) -> list[tuple[int, str]]:
    """Subjects as revision 0006 stored them (blind indexes as hex text), each with a material."""
    upgrade(engine, "0006")
    with session_factory(engine)() as session:
        sync_material_types(session, specs=[TypeSpec("police.hukou")])
        session.commit()
    sealed = seal_subjects(keyring, [(person(serial), NAME) for serial in range(count)])
    now = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)
    stored: list[tuple[int, str]] = []
    with engine.begin() as connection:
        for value, subject in sealed.items():
            subject_id = connection.execute(
                text(
                    "INSERT INTO subjects (blind_index, kind, id_ciphertext, name_ciphertext, key_id, created_at,"
                    " updated_at) VALUES (:index, 'person', :id_blob, :name_blob, :key_id, :now, :now) RETURNING id"
                ),
                {"index": subject.blind_index, "id_blob": subject.id_blob, "name_blob": subject.name_blob,
                 "key_id": subject.key_id, "now": now},
            ).scalar_one()  # fmt: skip
            connection.execute(
                text(
                    "INSERT INTO materials (id, type_code, subject_id, issuer, source, source_record_id, version,"
                    " issued_at, status, payload_ciphertext, key_id, payload_sha256, created_at, updated_at)"
                    " VALUES (:id, 'police.hukou', :subject_id, 'police', 'test_source', :record, 1,"
                    " :issued, 'valid', :blob, 'k', :sha, :now, :now)"
                ),
                {"id": secrets.token_hex(16), "subject_id": subject_id, "record": f"R{subject_id}",
                 "issued": dt.date(2026, 1, 2), "blob": b"\x00", "sha": "0" * 64, "now": now},
            )  # fmt: skip
            stored.append((subject_id, value))
    return stored


def test_subjects_stored_before_their_blind_indexes_were_bytes_are_found_after_the_upgrade(
    engine: Engine,
) -> None:
    keyring = Keyring.generate()
    stored = _fill_at_0006(engine, keyring, count=3)
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions() as session:
        for subject_id, value in stored:
            identifier = next(person(n) for n in range(3) if person(n).value == value)
            subject = find_subject(session, keyring=keyring, identifier=identifier)
            assert subject is not None and subject.id == subject_id
            assert subject_identifier(keyring, subject) == value  # the AAD (the hex index) is unchanged
            [material] = latest_materials(session, blind_index=keyring.blind_index(value))
            assert material.subject_id == subject_id
            # Found, not doubled: the unique index holds the converted values.
            assert ensure_subject(session, keyring=keyring, identifier=identifier).id == subject_id
        session.commit()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM subjects")).scalar_one() == 3
        stored_bytes = connection.execute(text("SELECT blind_index FROM subjects")).scalars().all()
        assert {bytes(key) for key in stored_bytes} == {
            bytes.fromhex(keyring.blind_index(v)) for _, v in stored
        }
        if engine.dialect.name == "sqlite":
            assert connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1

    command.downgrade(alembic_config(engine), "0006")
    with engine.connect() as connection:
        hex_again = connection.execute(text("SELECT blind_index FROM subjects ORDER BY id")).scalars().all()
    assert hex_again == [keyring.blind_index(value) for _, value in stored]
    engine.dispose()
