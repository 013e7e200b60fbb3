"""A migrated store on SQLite and on PostgreSQL; each test gets a fresh database."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from materials_store.crypto import Keyring
from materials_store.db import engine_for_url, session_factory, upgrade
from materials_store.identity import Identifier, IdentifierKind, check_character
from materials_store.store import sync_material_types


@dataclass(frozen=True)
class TypeSpec:
    code: str
    name_zh: str = "测试材料"
    name_en: str = "Test material"
    department: str = "police"
    subject_kind: str = "person"
    source: str = "test_source"
    contract_id: str = "urn:test"
    contract_version: str = "1.0.0"
    validity_days: int | None = None
    freshness_sla_hours: int | None = 24
    sensitivity: str = "L3"


@dataclass
class Store:
    engine: Engine
    sessions: sessionmaker[Session]
    keyring: Keyring
    backend: str
    path: Path | None

    def session(self) -> Session:
        return self.sessions()


def person(serial: int) -> Identifier:
    """A valid synthetic ID number (Hangzhou Xihu district, born 1990-01-01)."""
    first17 = f"33010619900101{serial % 1000:03d}"
    return Identifier(IdentifierKind.PERSON, first17 + check_character(first17))


def _fresh_postgres(url: str) -> str:
    name = f"t_{secrets.token_hex(6)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        engine = engine_for_url(f"sqlite:///{path}")
    else:
        path = None
        engine = engine_for_url(_fresh_postgres(request.getfixturevalue("postgres_url")))
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions() as session:
        sync_material_types(
            session,
            specs=[
                TypeSpec("police.hukou"),
                TypeSpec("tax.payment_certificate", department="tax", validity_days=90),
            ],
        )
        session.commit()
    yield Store(engine, sessions, Keyring.generate(), request.param, path)
    engine.dispose()
