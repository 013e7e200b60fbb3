"""The plain lookup's reads at the driver level, on SQLite and on PostgreSQL.

A plain lookup reads the client's status, the subject by blind index and its valid materials in one
statement (only an invalid ID reads the status alone). Through a Session each read costs a pool
checkout, a compiled-statement lookup and result processing, several times the read itself; on
PostgreSQL the Session's transaction adds a BEGIN and the pool's reset a ROLLBACK, two more round trips.
Here each read borrows a connection the reads keep for themselves (the engine's, with its settings, taken
out of the pool for good), in autocommit and read-only, and runs fixed SQL on it.

On PostgreSQL a hub worker awaits the same reads on its event loop (:class:`LoopReads`, psycopg's
``AsyncConnection``) instead of sending them to a thread.

The SQL mirrors :func:`materials_store.store.client_status`, :func:`~materials_store.store.find_subject_row`
with :func:`~materials_store.store.latest_materials`, and :func:`~materials_store.store.last_runs`; a test
runs both over the same store, on each backend, and compares the answers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from typing import Any, NamedTuple

from sqlalchemy import Engine, event

from materials_store.db import own_connection, own_server_connection, server_connect_args
from materials_store.store import MaterialView, text_day

_CLIENT_STATUS = "SELECT status FROM clients WHERE id = ?"
_SUBJECT_COLUMNS = "s.id, s.blind_index, s.key_id, s.id_ciphertext, s.name_ciphertext, " + ", ".join(
    f"m.{name}" for name in MaterialView.__slots__
)
_VALID_MATERIALS = "LEFT JOIN materials AS m ON m.subject_id = s.id AND m.status = 'valid'"
_LISTED_ORDER = "ORDER BY m.type_code, m.issued_at DESC, m.id"
#: The client's status, the subject and its valid materials in one statement: a row per material, led by
#: the status; one row with no material columns for a subject with none, and one with no subject columns
#: for an unknown subject; no row for an unknown client.
_CLIENT_SUBJECT_AND_MATERIALS = (
    f"SELECT c.status, {_SUBJECT_COLUMNS} FROM clients AS c"  # noqa: S608 - fixed names
    f" LEFT JOIN subjects AS s ON s.blind_index = ? {_VALID_MATERIALS} WHERE c.id = ? {_LISTED_ORDER}"
)
_LAST_RUNS = (
    "SELECT r.source, r.state, r.finished_at FROM sync_runs AS r"
    " JOIN (SELECT source, max(started_at) AS started_at FROM sync_runs GROUP BY source) AS newest"
    " ON r.source = newest.source AND r.started_at = newest.started_at"
)


#: The page cache of each SQLite read connection, in KiB (SQLite's default size).
READ_CACHE_KIB = 2000


class SubjectRow(NamedTuple):
    """A subject's identity columns (a :class:`~materials_store.store.SubjectRecord`)."""

    id: int
    blind_index: str
    key_id: str
    id_ciphertext: bytes
    name_ciphertext: bytes | None


def _text_utc(text: str) -> dt.datetime:
    """A time stored by SQLAlchemy on SQLite (UTC, as text without a zone) as an aware datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _aware_utc(moment: dt.datetime) -> dt.datetime:
    """A ``timestamptz`` read by psycopg (in the session's zone) in UTC, as the Session functions give it."""
    return moment.astimezone(dt.UTC)


def _same_day(day: dt.date) -> dt.date:
    return day


class DriverReads:
    """Driver-level reads of the store on read-only autocommit connections of its own.

    Each read borrows an idle connection (or opens one) and gives it back, so there are never more than
    the threads reading at once; a connection whose read failed is closed, not given back (a restarted
    PostgreSQL costs one failed read, not a broken connection kept for good). Each SELECT is a
    transaction of its own: it sees the newest committed data and holds no snapshot between calls, so a
    connection kept for the life of the process never pins SQLite's WAL or holds back PostgreSQL's vacuum.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        if not self.sqlite and engine.dialect.driver != "psycopg":
            raise TypeError("driver-level reads need SQLite or PostgreSQL through psycopg")
        mark = "?" if self.sqlite else "%s"
        self.sql = {
            name: sql.replace("?", mark)
            for name, sql in [
                ("client", _CLIENT_STATUS), ("client_subject_and_materials", _CLIENT_SUBJECT_AND_MATERIALS),
                ("runs", _LAST_RUNS),
            ]
        }  # fmt: skip
        self._moment = _text_utc if self.sqlite else _aware_utc
        self._day = text_day if self.sqlite else _same_day
        self._idle: list[Any] = []  # list.append and list.pop are atomic: no lock needed
        event.listen(engine, "engine_disposed", lambda _engine: self.close())

    def _open(self) -> Any:
        if self.sqlite:
            connection = own_connection(self.engine)
            connection.execute("PRAGMA query_only = 1")
            # Each commit by another connection empties a reader's page cache, and emptying it costs more
            # the more pages it has held: these reads keep a small one (a lookup's read after a commit:
            # 39–41 µs with 2 MiB, 50 with 8 MiB, about 125 with the store's 64 MiB).
            connection.execute(f"PRAGMA cache_size=-{READ_CACHE_KIB}")
            return connection
        server = own_server_connection(self.engine)
        server.autocommit = True
        server.execute("SET default_transaction_read_only = on")
        return server

    def close(self) -> None:
        """Close the idle connections (a worker shutting down; with the engine's pool: ``dispose()``)."""
        while self._idle:
            self._idle.pop().close()

    def _rows(self, name: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            connection = self._idle.pop()
        except IndexError:
            connection = self._open()
        try:
            rows: list[tuple[Any, ...]] = connection.execute(self.sql[name], parameters).fetchall()
        except BaseException:
            connection.close()
            raise
        self._idle.append(connection)
        return rows

    def client_status(self, client_id: str) -> str | None:
        return self.status_from(self._rows("client", (client_id,)))

    def client_subject_and_materials(
        self, client_id: str, blind_index: str
    ) -> tuple[str | None, SubjectRow | None, list[MaterialView]]:
        """The client's status (None for an unknown client), the subject with this blind index (or None)
        and its valid materials as :func:`~materials_store.store.latest_materials` lists them, in one
        statement: a lookup's caller check and its read in one round trip."""
        rows = self._rows("client_subject_and_materials", (bytes.fromhex(blind_index), client_id))
        return self.status_subject_from(rows)

    def last_synced(self) -> dict[str, dt.datetime | None]:
        """When each source whose newest run succeeded finished it."""
        return self.synced_from(self._rows("runs"))

    # -- the answers, from the rows of each read (shared with LoopReads) ----------------------

    @staticmethod
    def status_from(rows: list[tuple[Any, ...]]) -> str | None:
        return str(rows[0][0]) if rows else None

    def subject_from(self, rows: list[tuple[Any, ...]]) -> tuple[SubjectRow | None, list[MaterialView]]:
        if not rows:
            return None, []
        subject_id, blind_index, key_id, id_ciphertext, name_ciphertext = rows[0][:5]
        subject = SubjectRow(subject_id, bytes(blind_index).hex(), key_id, id_ciphertext, name_ciphertext)
        return subject, [self._view(row[5:]) for row in rows if row[5] is not None]

    def status_subject_from(
        self, rows: list[tuple[Any, ...]]
    ) -> tuple[str | None, SubjectRow | None, list[MaterialView]]:
        if not rows:
            return None, None, []
        status = str(rows[0][0])
        if rows[0][1] is None:
            return status, None, []
        return (status, *self.subject_from([row[1:] for row in rows]))

    def _view(self, row: tuple[Any, ...]) -> MaterialView:
        id_, subject, type_code, issuer, source, record, version, issued, until, status, sha, created = row
        day = self._day
        return MaterialView(
            id_, subject, type_code, issuer, source, record, version, day(issued), until and day(until), status,
            sha, self._moment(created),
        )  # fmt: skip

    def synced_from(self, rows: list[tuple[Any, ...]]) -> dict[str, dt.datetime | None]:
        moment = self._moment
        return {
            source: finished and moment(finished) for source, state, finished in rows if state == "success"
        }


#: Reads in flight at once (so connections) of a worker's :class:`LoopReads`.
LOOP_READ_CONNECTIONS = 8


class LoopReads:
    """:class:`DriverReads` on PostgreSQL, awaited on the event loop through psycopg's
    ``AsyncConnection``: a lookup's round trips take no thread, so there is no hand-off to one and back
    and no contention with it for the GIL. (In one process, a plain lookup on PostgreSQL cost about
    1.3 ms of CPU through a thread against 0.7 ms without one.)

    Its connections belong to the loop that opened them: a worker makes it for its serving loop, when it
    starts, and closes it when it stops (:func:`hub.api.app.create_app`'s lifespan). Connections are kept
    and borrowed as :class:`DriverReads` keeps them: one per read in flight, read-only, in autocommit; one
    whose read failed (or was cancelled) is closed, not given back. At most ``connections`` reads are in
    flight; the others wait for a connection, so a busy worker never opens more than that (the threads it
    replaced were as many: PostgreSQL refuses connections past ``max_connections``).
    """

    def __init__(self, engine: Engine, *, connections: int = LOOP_READ_CONNECTIONS) -> None:
        self.reads = driver_reads(engine)  # its SQL, and how it turns rows into answers
        if self.reads.sqlite:
            raise TypeError("reads on the event loop are for PostgreSQL; SQLite reads take no round trip")
        self.engine = engine
        self._connect = server_connect_args(engine)
        self._idle: list[Any] = []
        self._in_flight = asyncio.Semaphore(connections)

    async def _open(self) -> Any:
        import psycopg

        connection = await psycopg.AsyncConnection.connect(autocommit=True, **self._connect)
        await connection.execute("SET default_transaction_read_only = on")
        return connection

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().close()

    async def _rows(self, name: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async with self._in_flight:
            try:
                connection = self._idle.pop()
            except IndexError:
                connection = await self._open()
            try:
                cursor = await connection.execute(self.reads.sql[name], parameters)
                rows: list[tuple[Any, ...]] = await cursor.fetchall()
            except BaseException:
                await connection.close()
                raise
            self._idle.append(connection)
            return rows

    async def client_status(self, client_id: str) -> str | None:
        return self.reads.status_from(await self._rows("client", (client_id,)))

    async def client_subject_and_materials(
        self, client_id: str, blind_index: str
    ) -> tuple[str | None, SubjectRow | None, list[MaterialView]]:
        rows = await self._rows("client_subject_and_materials", (bytes.fromhex(blind_index), client_id))
        return self.reads.status_subject_from(rows)

    async def last_synced(self) -> dict[str, dt.datetime | None]:
        return self.reads.synced_from(await self._rows("runs"))


@functools.cache
def driver_reads(engine: Engine) -> DriverReads:
    """The process's :class:`DriverReads` for ``engine``."""
    return DriverReads(engine)
