"""The plain lookup's reads on the embedded store, at the driver level.

A plain lookup is three indexed reads: the client's status, the subject by blind index, and its valid
materials. Through a Session each read costs a pool checkout, a compiled-statement lookup and result
processing, several times the read itself. Here each thread keeps one SQLite connection of its own (the
engine's, with its pragmas, taken out of the pool for good) and runs fixed SQL on it.

The SQL mirrors :func:`materials_store.store.client_status`, :func:`~materials_store.store.find_subject_row`,
:func:`~materials_store.store.latest_materials` and :func:`~materials_store.store.last_runs`; a test runs
both over the same store and compares the answers.
"""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
import threading
from typing import Any, NamedTuple

from sqlalchemy import Engine

from materials_store.db import own_connection
from materials_store.store import MaterialView

_CLIENT_STATUS = "SELECT status FROM clients WHERE id = ?"
_SUBJECT = (
    "SELECT id, blind_index, key_id, id_ciphertext, name_ciphertext FROM subjects WHERE blind_index = ?"
)
_MATERIALS = (
    f"SELECT {', '.join(MaterialView.__slots__)} FROM materials"  # noqa: S608 - fixed column names
    " WHERE status = 'valid' AND subject_id = ? ORDER BY type_code, issued_at DESC, id"
)
_LAST_RUNS = (
    "SELECT r.source, r.state, r.finished_at FROM sync_runs AS r"
    " JOIN (SELECT source, max(started_at) AS started_at FROM sync_runs GROUP BY source) AS newest"
    " ON r.source = newest.source AND r.started_at = newest.started_at"
)


class SubjectRow(NamedTuple):
    """A subject's identity columns (a :class:`~materials_store.store.SubjectRecord`)."""

    id: int
    blind_index: str
    key_id: str
    id_ciphertext: bytes
    name_ciphertext: bytes | None


def _utc(text: str) -> dt.datetime:
    """A stored UTC time (SQLAlchemy's SQLite format, no zone) as an aware datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _view(row: tuple[Any, ...]) -> MaterialView:
    id_, subject, type_code, issuer, source, record, version, issued, until, status, sha256, created = row
    day = dt.date.fromisoformat
    return MaterialView(
        id_, subject, type_code, issuer, source, record, version, day(issued), until and day(until), status,
        sha256, _utc(created),
    )  # fmt: skip


class EmbeddedReads:
    """Driver-level reads of an embedded (SQLite) store; one read-only connection per thread.

    Each SELECT runs in autocommit mode: it sees the newest committed data and holds no snapshot between
    calls, so a connection kept for the life of the process never pins the WAL.
    """

    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name != "sqlite":
            raise TypeError("driver-level reads are for the embedded SQLite store")
        self.engine = engine
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = own_connection(self.engine)  # this thread's for good
            connection.execute("PRAGMA query_only = 1")
            self._local.connection = connection
        return connection

    def client_status(self, client_id: str) -> str | None:
        row = self._connection().execute(_CLIENT_STATUS, (client_id,)).fetchone()
        return None if row is None else str(row[0])

    def subject(self, blind_index: str) -> SubjectRow | None:
        row = self._connection().execute(_SUBJECT, (blind_index,)).fetchone()
        return None if row is None else SubjectRow(*row)

    def latest_materials(self, subject_id: int) -> list[MaterialView]:
        """The subject's valid materials, as :func:`~materials_store.store.latest_materials` lists them."""
        return [_view(row) for row in self._connection().execute(_MATERIALS, (subject_id,)).fetchall()]

    def last_synced(self) -> dict[str, dt.datetime | None]:
        """When each source whose newest run succeeded finished it."""
        rows = self._connection().execute(_LAST_RUNS).fetchall()
        return {source: finished and _utc(finished) for source, state, finished in rows if state == "success"}


@functools.cache
def embedded_reads(engine: Engine) -> EmbeddedReads:
    """The process's :class:`EmbeddedReads` for ``engine``."""
    return EmbeddedReads(engine)
