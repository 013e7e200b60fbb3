"""Engines, sessions and migrations.

SQLite (the embedded default) runs in WAL mode with ``synchronous=NORMAL``: readers never block the writer
and a commit costs no fsync of the main file. PostgreSQL is used through ``ONECERT_DATABASE_URL``
(``postgresql+psycopg://...``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from materials_store.settings import Settings

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


#: The page size of a new embedded store, in bytes (SQLite's default is 4,096). A store's page size is set
#: when it is created, before its first table; a store that exists keeps its own. A sync's load writes
#: into indexes keyed at random (subjects by blind index, materials by record and validity), and with
#: larger pages each holds more keys, so fewer pages are split and written. ``bench ingest`` of a million
#: rows, three interleaved runs each: 33,127-33,623 records/s with 8 KiB, 33,445-35,067 with 16 KiB,
#: 31,629-34,536 with 4 KiB. ``bench lookup``: 5,481-5,537 lookups/s with 8 KiB, 5,071-5,301 with 16 KiB,
#: 5,427-5,514 with 4 KiB (a lookup after a usage record's commit reads its pages again, 16 KiB each).
STORE_PAGE_SIZE = 8192


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA page_size={STORE_PAGE_SIZE}")  # before WAL: a new store only, see above
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.execute("PRAGMA temp_store=MEMORY")
    # No memory map (SQLite's default). When another connection commits, a mapped reader unmaps the
    # store and faults its pages in again: a lookup's read after a commit cost 84–87 µs mapped against
    # 39–41 µs through the page cache (both with a 2 MiB cache), and under load nearly every read follows
    # a usage record's commit.
    cursor.close()


def engine_for_url(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the store's connection settings applied."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, **kwargs)


def own_connection(engine: Engine) -> sqlite3.Connection:
    """A SQLite connection opened by ``engine`` (its pragmas applied) and taken out of its pool for good:
    for a hot path that keeps one connection per thread and runs fixed SQL on the driver directly.
    Closed when the process ends."""
    pooled = engine.raw_connection()
    connection = pooled.driver_connection
    if not isinstance(connection, sqlite3.Connection):
        raise TypeError("a driver connection of its own is for the embedded SQLite store")
    pooled.detach()
    return connection


def own_server_connection(engine: Engine) -> Any:
    """A PostgreSQL (psycopg) connection opened by ``engine`` and taken out of its pool for good, with no
    transaction open: for a hot path that runs fixed SQL on the driver directly. Its owner closes it."""
    pooled = engine.raw_connection()
    connection: Any = pooled.driver_connection
    if engine.dialect.driver != "psycopg":
        pooled.close()
        raise TypeError("a server connection of its own is for PostgreSQL through psycopg")
    pooled.detach()
    connection.rollback()  # whatever the dialect's first-connect checks left open
    return connection


def server_connect_args(engine: Engine) -> dict[str, Any]:
    """How ``engine`` connects to PostgreSQL, as keyword arguments of psycopg's ``connect`` (sync or
    async), without SQLAlchemy's adapters: for fixed SQL on connections of one's own."""
    _args, kwargs = engine.dialect.create_connect_args(engine.url)
    return {name: value for name, value in kwargs.items() if name != "context"}


def make_engine(settings: Settings, **kwargs: Any) -> Engine:
    """The store's engine for these settings (SQLite under ``settings.home`` unless a URL is set)."""
    return engine_for_url(settings.resolved_database_url, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config  # Alembic only where migrations run: its import takes 0.1 s

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision`` (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)
