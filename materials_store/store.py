"""Typed store functions. Each takes a Session first; none commits unless its docstring says so.

The hot paths (batch upsert, latest materials of a subject) use Core statements over whole batches: one
query resolves a batch's subjects, one fetches the current versions of its records, and the inserts go
out as ``executemany``. No per-row round trips, no ORM objects on the write path.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import functools
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

import orjson
import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy import Engine, Row, bindparam, event, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts import MaterialTypeSpec
from materials_store.crypto import Keyring
from materials_store.db import own_connection, own_server_connection, server_connect_args
from materials_store.errors import Conflict, DataError, NotFound
from materials_store.identity import CHINA_TZ, Identifier
from materials_store.models import (
    CLIENTS,
    MATERIALS,
    SUBJECTS,
    USAGE_RECORDS,
    AuditHead,
    Client,
    Material,
    MaterialType,
    QuarantineRow,
    Subject,
    SyncRun,
    SyncState,
    UsageRecord,
    utcnow,
)

log = logging.getLogger(__name__)

#: Rows per IN (...) query; well under SQLite's and PostgreSQL's parameter limits.
IN_CHUNK = 2000
GENESIS_HASH = "0" * 64
MAX_SAFE_INTEGER = 2**53 - 1


def _chunks(values: Sequence[Any], size: int = IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SAFE_INTEGER:
        return str(value)  # JSON numbers are IEEE doubles (RFC 8785): larger integers would lose digits
    return value


_FLAT = frozenset({str, bool, type(None)})


def _plain(value: Any) -> bool:
    """True when RFC 8785 and sorted compact ``json.dumps`` agree byte for byte on ``value``: no floats
    (number formatting differs) and only ASCII keys (RFC 8785 sorts keys by UTF-16 code units)."""
    if type(value) is dict:
        flat = True
        for k, v in value.items():  # the common flat record, checked without recursion
            kind = type(v)
            if (
                not (kind in _FLAT or (kind is int and -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER))
                or not k.isascii()
            ):
                flat = False
                break
        if flat:
            return True
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return True
    if isinstance(value, int):
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    if isinstance(value, dict):
        return all(isinstance(k, str) and k.isascii() and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return False


def canonical_json(payload: Any) -> bytes:
    """RFC 8785 (JCS) canonical JSON; dates become ISO strings and decimals strings first.

    Payloads without floats take a fast path through orjson (sorted keys, compact, UTF-8), whose output is
    then identical to RFC 8785 (a property test checks this); anything else goes through ``rfc8785``.
    """
    if not _plain(payload):
        payload = _jsonable(payload)
        if not _plain(payload):
            return rfc8785.dumps(payload)
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)


_FLAT_KINDS = frozenset({str, bool, type(None), int})


def canonical_json_many(payloads: Sequence[dict[str, Any]]) -> list[bytes]:
    """:func:`canonical_json` of each payload. A batch of flat records (strings, booleans, nulls and safe
    integers under ASCII keys, as sources give them) is checked once, value types set-wise, and
    serialised by orjson directly; any other batch takes :func:`canonical_json` payload by payload."""
    kinds: set[type] = set()
    keys: set[str] = set()
    for payload in payloads:
        if type(payload) is not dict:
            kinds.add(type(payload))
            break
        kinds.update(map(type, payload.values()))
        keys.update(payload)
    flat = kinds <= _FLAT_KINDS and "".join(keys).isascii()
    if flat and int in kinds:
        flat = all(
            -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
            for payload in payloads
            for value in payload.values()
            if type(value) is int
        )
    if not flat:
        return [canonical_json(payload) for payload in payloads]
    dumps, option = orjson.dumps, orjson.OPT_SORT_KEYS
    return [dumps(payload, option=option) for payload in payloads]


def today() -> dt.date:
    """Validity is judged by the calendar in China."""
    return dt.datetime.now(CHINA_TZ).date()


# -- subjects ------------------------------------------------------------------------------------


def _subject_aad(blind_index: str) -> bytes:
    return b"subject:" + blind_index.encode("ascii")


MATERIAL_COLUMNS = (
    "id", "type_code", "subject_id", "issuer", "source", "source_run_id", "source_record_id", "version",
    "issued_at", "valid_until", "status", "status_reason", "payload_ciphertext", "key_id", "payload_sha256",
    "issuer_signature", "superseded_by", "created_at", "updated_at",
)  # fmt: skip
SUPERSEDED_BY, STATUS = MATERIAL_COLUMNS.index("superseded_by"), MATERIAL_COLUMNS.index("status")
#: ``session.info`` key: the session's last :func:`write_subjects` found all its subjects new.
_ALL_NEW = "onecert.subjects_all_new"
SUBJECT_COLUMNS = (
    "blind_index",
    "kind",
    "id_ciphertext",
    "name_ciphertext",
    "key_id",
    "created_at",
    "updated_at",
)


def _same(value: Any) -> Any:
    return value


# Days as SQLite stores them (ISO text) and back, remembered: a bulk load formats and compares the same
# few thousand days again and again (formatting each anew cost it 1.2 µs a row).
@functools.lru_cache(maxsize=1 << 16)
def day_text(value: dt.date | None) -> str | None:
    """A date as SQLite stores it (SQLAlchemy's ``Date`` on SQLite: ISO text)."""
    return None if value is None else value.isoformat()


@functools.lru_cache(maxsize=1 << 16)
def text_day(text: str) -> dt.date:
    """A date SQLite stored as ISO text, read back."""
    return dt.date.fromisoformat(text)


class DriverValues:
    """Turns dates and times into what the driver stores, the way SQLAlchemy's types would, so hot-path
    inserts go to the driver's ``executemany`` as plain tuples (no per-row type processing)."""

    def __init__(self, session: Session) -> None:
        dialect = session.get_bind().dialect
        self.sqlite = dialect.name == "sqlite"
        self.marker = "?" if dialect.paramstyle == "qmark" else "%s"

    def days(self) -> Callable[[dt.date | None], Any]:
        """What the driver stores for a date: ISO text on SQLite (:func:`day_text`), the date itself on
        PostgreSQL."""
        return day_text if self.sqlite else _same

    def moment(self, value: dt.datetime) -> Any:
        if self.sqlite:  # SQLAlchemy's SQLite DATETIME storage format, in UTC
            return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return value

    def insert_sql(
        self, table: str, columns: Sequence[str], *, ignore_conflicts_on: str | None = None
    ) -> str:
        placeholders = ", ".join(self.marker for _ in columns)
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})"  # noqa: S608 - fixed names
        if ignore_conflicts_on:
            sql += f" ON CONFLICT ({ignore_conflicts_on}) DO NOTHING"
        return sql


class SealedSubject(NamedTuple):
    """A subject as it is created, worked out before any database work: its blind index, its kind, and
    its identifier (and name) encrypted. Unused when the subject is already on file."""

    blind_index: str
    kind: str
    id_blob: bytes
    name_blob: bytes | None
    key_id: str


def seal_subjects(
    keyring: Keyring, subjects: Iterable[tuple[Identifier, str | None]]
) -> dict[str, SealedSubject]:
    """The CPU work of :func:`resolve_subjects`, no database: each subject sealed, by normalised identifier.

    Args:
        subjects: (identifier, name or None) pairs; duplicates are fine, and a name given for any copy
            is kept.
    """
    wanted: dict[str, tuple[Identifier, str | None]] = {}
    for identifier, name in subjects:
        known = wanted.get(identifier.value)
        if known is None or (known[1] is None and name):
            wanted[identifier.value] = (identifier, name)
    values = list(wanted)
    indexes = [keyring.blind_index(value) for value in values]
    key_id, id_blobs = keyring.encrypt_many(
        [value.encode("utf-8") for value in values], [_subject_aad(index) for index in indexes]
    )
    named = [position for position, value in enumerate(values) if wanted[value][1]]
    _, name_blobs = keyring.encrypt_many(
        [str(wanted[values[position]][1]).encode("utf-8") for position in named],
        [_subject_aad(indexes[position]) + b":name" for position in named],
    )
    names = dict(zip(named, name_blobs, strict=True))
    return {
        value: SealedSubject(index, wanted[value][0].kind.value, id_blob, names.get(position), key_id)
        for position, (value, index, id_blob) in enumerate(zip(values, indexes, id_blobs, strict=True))
    }


def write_subjects(session: Session, subjects: Iterable[SealedSubject]) -> dict[str, int]:
    """Subject ids by blind index, creating the subjects not on file yet (race-safe: a subject another
    writer created meanwhile is found, not doubled)."""
    by_index = {subject.blind_index: subject for subject in subjects}
    if not by_index:
        return {}
    driver = DriverValues(session)
    # A bulk load of new subjects skips the probe: when the session's last write found all its subjects
    # new, this one inserts first (the unique index finds any already on file) and probes only if some
    # were. 2.7 µs a subject of a first sync's load.
    optimistic = driver.sqlite and session.info.get(_ALL_NEW, False)
    found: dict[str, int] = {} if optimistic else _subject_ids(session, list(by_index))
    missing = [subject for index, subject in by_index.items() if index not in found]
    inserted = 0
    if missing:
        now = driver.moment(utcnow())
        rows = [
            (bytes.fromhex(s.blind_index), s.kind, s.id_blob, s.name_blob, s.key_id, now, now)
            for s in missing
        ]
        sql = driver.insert_sql("subjects", SUBJECT_COLUMNS, ignore_conflicts_on="blind_index")
        connection = session.connection()
        inserted = connection.exec_driver_sql(sql, rows).rowcount
        if driver.sqlite and inserted == len(missing):
            # All of them new: SQLite gave them consecutive ids, in order, after the table's largest
            # (one writer at a time, and this transaction is it). Saves reading them back: 2.6 µs a
            # subject, of a bulk sync's load of about 40.
            last = connection.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
            found.update(
                (subject.blind_index, last - len(missing) + 1 + n) for n, subject in enumerate(missing)
            )
        else:  # PostgreSQL; or some were on file (inserted first) or created meanwhile by another writer
            found.update(_subject_ids(session, [subject.blind_index for subject in missing]))
    session.info[_ALL_NEW] = inserted == len(by_index)
    return found


def resolve_subjects(
    session: Session,
    *,
    keyring: Keyring,
    subjects: Iterable[tuple[Identifier, str | None]],
) -> dict[str, int]:
    """Subject ids by normalised identifier, creating the missing subjects (race-safe).

    Args:
        subjects: (identifier, name or None) pairs; duplicates are fine.

    Returns:
        ``{identifier.value: subject id}`` for every identifier given.
    """
    sealed = seal_subjects(keyring, subjects)
    ids = write_subjects(session, sealed.values())
    return {value: ids[subject.blind_index] for value, subject in sealed.items()}


#: Blind indexes a SQLite probe for subjects binds at once. The column holds bytes, which a JSON array
#: cannot carry (and SQLite 3.40 has no ``unhex``): the probe is one fixed statement of this many
#: parameters, prepared once, the last group padded with a repeated index.
SUBJECT_PROBE = 500
_SUBJECT_PROBE_SQL = (
    f"SELECT blind_index, id FROM subjects WHERE blind_index IN ({', '.join('?' * SUBJECT_PROBE)})"  # noqa: S608 - marks only
)


def _subject_ids(session: Session, indexes: Sequence[str]) -> dict[str, int]:
    """Subject ids by blind index (hex): one query per :data:`SUBJECT_PROBE` indexes on SQLite, one in all
    on PostgreSQL (an array parameter); never a statement compiled for each batch."""
    if not indexes:
        return {}
    keys = [bytes.fromhex(index) for index in indexes]
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        sql = "SELECT blind_index, id FROM subjects WHERE blind_index = ANY(%s)"
        return {bytes(key).hex(): subject_id for key, subject_id in connection.exec_driver_sql(sql, (keys,))}
    found: dict[str, int] = {}
    for start in range(0, len(keys), SUBJECT_PROBE):
        group = keys[start : start + SUBJECT_PROBE]
        group += [group[0]] * (SUBJECT_PROBE - len(group))
        found.update(
            (key.hex(), subject_id)
            for key, subject_id in connection.exec_driver_sql(_SUBJECT_PROBE_SQL, tuple(group))
        )
    return found


def ensure_subject(
    session: Session, *, keyring: Keyring, identifier: Identifier, name: str | None = None
) -> Subject:
    """The subject for ``identifier``, created (with its encrypted identifier and name) when new."""
    subject_id = resolve_subjects(session, keyring=keyring, subjects=[(identifier, name)])[identifier.value]
    subject = session.get(Subject, subject_id)
    assert subject is not None
    return subject


def find_subject(session: Session, *, keyring: Keyring, identifier: Identifier) -> Subject | None:
    """The subject for ``identifier``, or None. Looks up by blind index only."""
    index = keyring.blind_index(identifier.value)
    return session.scalars(select(Subject).where(Subject.blind_index == index)).one_or_none()


class SubjectRecord(Protocol):
    """What reading a subject's identity needs: a :class:`Subject` or a row of :func:`find_subject_row`."""

    @property
    def id(self) -> int: ...
    @property
    def blind_index(self) -> str: ...
    @property
    def key_id(self) -> str: ...
    @property
    def id_ciphertext(self) -> bytes: ...
    @property
    def name_ciphertext(self) -> bytes | None: ...


_SUBJECT_BY_INDEX = select(
    SUBJECTS.c.id,
    SUBJECTS.c.blind_index,
    SUBJECTS.c.key_id,
    SUBJECTS.c.id_ciphertext,
    SUBJECTS.c.name_ciphertext,
).where(SUBJECTS.c.blind_index == bindparam("blind_index"))


def find_subject_row(session: Session, *, keyring: Keyring, identifier: Identifier) -> SubjectRecord | None:
    """:func:`find_subject` without an ORM object (the lookup hot path): a row with the same fields."""
    return subject_row(session, blind_index=keyring.blind_index(identifier.value))


def subject_row(session: Session, *, blind_index: str) -> SubjectRecord | None:
    """The subject with this blind index, as a row (no ORM object), or None."""
    parameters = {"blind_index": blind_index}
    row: SubjectRecord | None = session.connection().execute(_SUBJECT_BY_INDEX, parameters).one_or_none()
    return row


def find_subject_id(session: Session, *, keyring: Keyring, identifier: Identifier) -> int | None:
    """The subject's id, or None: the hot-path variant of :func:`find_subject` (no ORM object)."""
    index = keyring.blind_index(identifier.value)
    return session.execute(select(Subject.id).where(Subject.blind_index == index)).scalar_one_or_none()


def subject_identifier(keyring: Keyring, subject: SubjectRecord) -> str:
    """Decrypt the subject's normalised identifier."""
    aad = _subject_aad(subject.blind_index)
    return keyring.decrypt(subject.key_id, subject.id_ciphertext, aad=aad).decode("utf-8")


def subject_name(keyring: Keyring, subject: SubjectRecord) -> str | None:
    """Decrypt the subject's name, when a source has given one."""
    if subject.name_ciphertext is None:
        return None
    aad = _subject_aad(subject.blind_index) + b":name"
    return keyring.decrypt(subject.key_id, subject.name_ciphertext, aad=aad).decode("utf-8")


# -- material types ------------------------------------------------------------------------------


#: The catalogue columns a contract's material-type spec fills (all but the code).
MATERIAL_TYPE_FIELDS = tuple(f.name for f in fields(MaterialTypeSpec) if f.name != "code")


def sync_material_types(session: Session, *, specs: Iterable[MaterialTypeSpec]) -> int:
    """Insert or update catalogue rows from contract specs. Returns how many rows changed."""
    changed = 0
    for spec in specs:
        row = session.get(MaterialType, spec.code)
        values = {name: getattr(spec, name) for name in MATERIAL_TYPE_FIELDS}
        if row is None:
            session.add(MaterialType(code=spec.code, **values))
            changed += 1
        elif any(getattr(row, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(row, name, value)
            changed += 1
    session.flush()
    return changed


def material_types(session: Session) -> list[MaterialType]:
    return list(session.scalars(select(MaterialType).order_by(MaterialType.code)))


# -- materials -----------------------------------------------------------------------------------


class MaterialInput(NamedTuple):
    """One material as a source or a department gives it, before it is stored.

    This and the sealed records below are named tuples, immutable as frozen dataclasses are but made
    about four times faster (0.3-0.45 µs against 1.3 for nine fields): a bulk sync makes millions.
    """

    type_code: str
    subject: Identifier
    source_record_id: str
    issued_at: dt.date
    valid_until: dt.date | None
    payload: dict[str, Any]
    issuer: str
    subject_name: str | None = None
    issuer_signature: str | None = None


@dataclass(slots=True)
class UpsertResult:
    """What a batch upsert did: counts, and the material id each input item now maps to, in order."""

    inserted: int = 0
    new_versions: int = 0
    unchanged: int = 0
    ids: list[str] = field(default_factory=list)
    #: Per item: 'inserted', 'new_version' or 'unchanged'.
    outcomes: list[str] = field(default_factory=list)

    @property
    def loaded(self) -> int:
        return self.inserted + self.new_versions


@dataclass(slots=True)
class _Head:
    id: str
    version: int
    sha: str
    issued_at: dt.date
    valid_until: dt.date | None
    subject_id: int


def _payload_aad(material_id: str) -> bytes:
    return b"material:" + material_id.encode("ascii")


def new_material_id() -> str:
    """32 hex digits: the creation time in milliseconds (12), then 80 random bits (20). Ids made later
    sort later, so the primary-key index of a growing store is appended to, not split at random pages."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def new_material_ids(count: int) -> list[str]:
    """``count`` ids like :func:`new_material_id`'s, ascending, from one draw of random bytes."""
    prefix = f"{time.time_ns() // 1_000_000:012x}"
    blob = secrets.token_bytes(10 * count).hex()
    return sorted(prefix + blob[start : start + 20] for start in range(0, len(blob), 20))


def _heads(session: Session, type_code: str, record_ids: Sequence[str]) -> dict[str, _Head]:
    """The newest version of each record of one type (the one nothing supersedes), in one driver-level
    query per :data:`IN_CHUNK` records: the record ids travel as one JSON array (SQLite) or array
    (PostgreSQL) parameter, as :func:`_subject_ids`'s do, so no statement with thousands of bound
    parameters is compiled for each chunk."""
    heads: dict[str, _Head] = {}
    connection = session.connection()
    columns = "source_record_id, id, version, payload_sha256, issued_at, valid_until, subject_id"
    if connection.dialect.name == "sqlite":
        sql = (
            f"SELECT {columns} FROM materials WHERE type_code = ? AND superseded_by IS NULL"  # noqa: S608
            " AND source_record_id IN (SELECT value FROM json_each(?))"
        )
        for chunk in _chunks(record_ids):
            parameters: tuple[Any, ...] = (type_code, orjson.dumps(list(chunk)).decode())
            for record, material_id, version, sha, issued, until, subject in connection.exec_driver_sql(
                sql, parameters
            ):
                until_day = None if until is None else text_day(until)
                heads[record] = _Head(material_id, version, sha, text_day(issued), until_day, subject)
        return heads
    sql = (
        f"SELECT {columns} FROM materials WHERE type_code = %s AND superseded_by IS NULL"  # noqa: S608
        " AND source_record_id = ANY(%s)"
    )
    for chunk in _chunks(record_ids):
        for row in connection.exec_driver_sql(sql, (type_code, list(chunk))):
            heads[row[0]] = _Head(*row[1:])
    return heads


class SealedMaterial(NamedTuple):
    """A material as it is stored, worked out before any database work (:func:`seal_materials`)."""

    item: MaterialInput
    subject: SealedSubject
    sha: str  # of the payload's canonical JSON
    id: str  # its id, if it turns out to be new or a new version
    ciphertext: bytes  # the payload, encrypted for that id
    key_id: str


def seal_materials(keyring: Keyring, items: Sequence[MaterialInput]) -> list[SealedMaterial]:
    """The CPU work of storing ``items``, no database: blind indexes, canonical JSON and its hash, new
    ids, and the ciphertexts of subjects and payloads. A sync's load does it while windows' usage records
    have the store's writer lock (:func:`connectors.pipeline.load_batch`), so they wait only for its SQL.
    Each item is sealed as if it were new; what an unchanged one was given is dropped."""
    return seal_canonicals(keyring, items, canonical_json_many([item.payload for item in items]))


def seal_canonicals(
    keyring: Keyring, items: Sequence[MaterialInput], canonicals: Sequence[bytes]
) -> list[SealedMaterial]:
    """:func:`seal_materials` of items whose payloads are given as their canonical JSON, in the same
    order (the items' own payloads are not read): a sync's worker hands some batches over so, for the
    sync's process to seal (:mod:`connectors.worker`)."""
    subjects = seal_subjects(keyring, ((item.subject, item.subject_name) for item in items))
    material_ids = new_material_ids(len(items))
    key_id, blobs = keyring.encrypt_many(
        canonicals, [_payload_aad(material_id) for material_id in material_ids]
    )
    sha256 = hashlib.sha256
    return [
        SealedMaterial(
            item, subjects[item.subject.value], sha256(canonical).hexdigest(), material_id, blob, key_id
        )
        for item, canonical, material_id, blob in zip(items, canonicals, material_ids, blobs, strict=True)
    ]


def upsert_materials(
    session: Session,
    *,
    keyring: Keyring,
    items: Sequence[MaterialInput],
    source: str,
    run_id: str | None = None,
) -> UpsertResult:
    """Store a batch of materials idempotently, keyed by (type, source record id).

    Same record with the same content (payload, dates, subject): nothing new. Changed content: a new
    version, and the previous one becomes ``superseded`` pointing at it. Nothing is deleted. Does not
    commit: the caller commits, together with the cursor that covers these rows.
    """
    return write_materials(session, materials=seal_materials(keyring, items), source=source, run_id=run_id)


def write_materials(
    session: Session, *, materials: Sequence[SealedMaterial], source: str, run_id: str | None = None
) -> UpsertResult:
    """:func:`upsert_materials` of materials already sealed: the SQL and the comparisons only."""
    result = UpsertResult()
    if not materials:
        return result
    subject_ids = write_subjects(session, (sealed.subject for sealed in materials))
    by_type: dict[str, list[str]] = {}
    for sealed in materials:
        by_type.setdefault(sealed.item.type_code, []).append(sealed.item.source_record_id)
    heads: dict[tuple[str, str], _Head] = {}
    for type_code, record_ids in by_type.items():
        for record_id, found in _heads(session, type_code, list(dict.fromkeys(record_ids))).items():
            heads[(type_code, record_id)] = found

    now = utcnow()
    current_day = today()
    driver = DriverValues(session)
    stamp = driver.moment(now)
    inserts: list[list[Any]] = []
    pending_by_id: dict[str, list[Any]] = {}
    superseded: list[dict[str, Any]] = []
    day = driver.days()
    for sealed in materials:
        item, sha, material_id = sealed.item, sealed.sha, sealed.id
        subject_id = subject_ids[sealed.subject.blind_index]
        key = (item.type_code, item.source_record_id)
        head = heads.get(key)
        if (
            head is not None
            and head.sha == sha
            and head.issued_at == item.issued_at
            and head.valid_until == item.valid_until
            and head.subject_id == subject_id
        ):
            result.unchanged += 1
            result.ids.append(head.id)
            result.outcomes.append("unchanged")
            continue
        expired = item.valid_until is not None and item.valid_until < current_day
        row = [
            material_id,
            item.type_code,
            subject_id,
            item.issuer,
            source,
            run_id,
            item.source_record_id,
            head.version + 1 if head else 1,
            day(item.issued_at),
            day(item.valid_until),
            "expired" if expired else "valid",
            "past validity when received" if expired else None,
            sealed.ciphertext,
            sealed.key_id,
            sha,
            item.issuer_signature,
            None,
            stamp,
            stamp,
        ]  # fmt: skip -- in MATERIAL_COLUMNS order
        inserts.append(row)
        pending_by_id[material_id] = row
        if head is not None:
            pending = pending_by_id.get(head.id)
            if pending is not None:  # the head was written by this same batch: mark it before insert
                pending[SUPERSEDED_BY] = material_id
                if pending[STATUS] == "valid":
                    pending[STATUS] = "superseded"
            else:
                superseded.append({"old_id": head.id, "new_id": material_id})
            result.new_versions += 1
            result.outcomes.append("new_version")
        else:
            result.inserted += 1
            result.outcomes.append("inserted")
        heads[key] = _Head(
            material_id, head.version + 1 if head else 1, sha, item.issued_at, item.valid_until, subject_id
        )
        result.ids.append(material_id)

    if superseded:
        _mark_superseded(session, superseded, now)
    if inserts:
        sql = driver.insert_sql("materials", MATERIAL_COLUMNS)
        session.connection().exec_driver_sql(sql, [tuple(row) for row in inserts])
    return result


def _mark_superseded(session: Session, pairs: list[dict[str, Any]], now: dt.datetime) -> None:
    statement = (
        update(MATERIALS)
        .where(MATERIALS.c.id == bindparam("old_id"))
        .values(
            superseded_by=bindparam("new_id"),
            # A revoked or expired version keeps its status; only a valid one becomes superseded.
            status=func.coalesce(
                func.nullif(MATERIALS.c.status, "valid"),
                "superseded",
            ),
            updated_at=now,
        )
    )
    session.connection().execute(statement, pairs)


@dataclass(frozen=True, slots=True)
class MaterialView:
    """A material's metadata, without its payload: what a lookup lists. Read the payload by id."""

    id: str
    subject_id: int
    type_code: str
    issuer: str
    source: str
    source_record_id: str
    version: int
    issued_at: dt.date
    valid_until: dt.date | None
    status: str
    payload_sha256: str
    created_at: dt.datetime


_VIEW_COLUMNS = tuple(getattr(MATERIALS.c, name) for name in MaterialView.__slots__)
_LATEST_OF_SUBJECT = (
    select(*_VIEW_COLUMNS)
    .where(MATERIALS.c.status == "valid", MATERIALS.c.subject_id == bindparam("subject_id"))
    .order_by(MATERIALS.c.type_code, MATERIALS.c.issued_at.desc(), MATERIALS.c.id)
)


def latest_materials(
    session: Session,
    *,
    subject_id: int | None = None,
    blind_index: str | None = None,
    types: Collection[str] | None = None,
) -> list[MaterialView]:
    """The subject's valid materials (the newest version of each record), optionally only some types.

    Give the subject's id, or its blind index (one joined query: the lookup hot path).
    """
    if (subject_id is None) == (blind_index is None):
        raise TypeError("give exactly one of subject_id and blind_index")
    if subject_id is not None and types is None:  # the lookup's own query, built once
        rows = session.connection().execute(_LATEST_OF_SUBJECT, {"subject_id": subject_id})
        return [MaterialView(*row) for row in rows]
    table = MATERIALS
    statement = select(*_VIEW_COLUMNS).where(table.c.status == "valid")
    if subject_id is not None:
        statement = statement.where(table.c.subject_id == subject_id)
    else:
        subjects = SUBJECTS
        statement = statement.join(subjects, subjects.c.id == table.c.subject_id).where(
            subjects.c.blind_index == blind_index
        )
    if types is not None:
        if not types:
            return []
        statement = statement.where(table.c.type_code.in_(list(types)))
    statement = statement.order_by(table.c.type_code, table.c.issued_at.desc(), table.c.id)
    return [MaterialView(*row) for row in session.execute(statement)]


def materials_of_subject(session: Session, *, subject_id: int) -> list[Material]:
    """Every version of every material of the subject, any status (for stewards and audits)."""
    statement = (
        select(Material)
        .where(Material.subject_id == subject_id)
        .order_by(Material.type_code, Material.source_record_id, Material.version)
    )
    return list(session.scalars(statement))


def get_material(session: Session, *, material_id: str) -> Material | None:
    return session.get(Material, material_id)


def decrypt_payload(keyring: Keyring, material: Material) -> dict[str, Any]:
    """The material's payload, decrypted and parsed."""
    plain = keyring.decrypt(material.key_id, material.payload_ciphertext, aad=_payload_aad(material.id))
    payload: dict[str, Any] = json.loads(plain)
    return payload


def _require_material(session: Session, material_id: str) -> Material:
    material = session.get(Material, material_id, with_for_update=True)
    if material is None:
        raise NotFound("no such material", material_id=material_id)
    return material


def supersede(session: Session, *, material_id: str, by_material_id: str) -> Material:
    """Mark ``material_id`` superseded by ``by_material_id`` (same type and subject)."""
    old = _require_material(session, material_id)
    new = _require_material(session, by_material_id)
    if old.id == new.id or (old.type_code, old.subject_id) != (new.type_code, new.subject_id):
        raise DataError("a material can only be superseded by another of the same type and subject")
    if old.superseded_by is not None:
        raise Conflict("the material is already superseded", material_id=material_id)
    old.superseded_by = new.id
    if old.status == "valid":
        old.status = "superseded"
    session.flush()
    return old


def revoke(session: Session, *, material_id: str, reason: str, actor: str) -> Material:
    """Revoke a material: it is never returned as on file again. Revoking twice is a no-op."""
    material = _require_material(session, material_id)
    if material.status != "revoked":
        material.status = "revoked"
        material.status_reason = f"{reason} (by {actor})"[:256]
        session.flush()
    return material


def expire_materials(session: Session, *, now: dt.datetime | None = None) -> int:
    """Every valid material past its validity becomes ``expired``. Returns how many changed."""
    day = now.astimezone(CHINA_TZ).date() if now else today()
    statement = (
        update(Material)
        .where(Material.status == "valid", Material.valid_until.is_not(None), Material.valid_until < day)
        .values(status="expired", status_reason="past validity", updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return session.execute(statement).rowcount or 0  # type: ignore[attr-defined]


# -- key rotation --------------------------------------------------------------------------------


def reencrypt(session: Session, *, keyring: Keyring, batch_size: int = 1000) -> int:
    """Move every row encrypted with an older data key to the current key. Commits per batch.

    Returns:
        How many rows (subjects, materials, quarantine rows) were re-encrypted.
    """
    current = keyring.current_data_key_id
    moved = 0
    while True:
        subjects = session.scalars(select(Subject).where(Subject.key_id != current).limit(batch_size)).all()
        for subject in subjects:
            aad = _subject_aad(subject.blind_index)
            clear_id = keyring.decrypt(subject.key_id, subject.id_ciphertext, aad=aad)
            clear_name = (
                keyring.decrypt(subject.key_id, subject.name_ciphertext, aad=aad + b":name")
                if subject.name_ciphertext is not None
                else None
            )
            subject.key_id, subject.id_ciphertext = keyring.encrypt(clear_id, aad=aad)
            if clear_name is not None:
                _, subject.name_ciphertext = keyring.encrypt(clear_name, aad=aad + b":name")
        materials = session.scalars(
            select(Material).where(Material.key_id != current).limit(batch_size)
        ).all()
        for material in materials:
            aad = _payload_aad(material.id)
            clear = keyring.decrypt(material.key_id, material.payload_ciphertext, aad=aad)
            material.key_id, material.payload_ciphertext = keyring.encrypt(clear, aad=aad)
        rows = session.scalars(
            select(QuarantineRow).where(QuarantineRow.key_id != current).limit(batch_size)
        ).all()
        for row in rows:
            aad = _quarantine_aad(row.source, row.raw_sha256)
            clear = keyring.decrypt(row.key_id, row.raw_ciphertext, aad=aad)
            row.key_id, row.raw_ciphertext = keyring.encrypt(clear, aad=aad)
        batch = len(subjects) + len(materials) + len(rows)
        session.commit()
        moved += batch
        if batch == 0:
            return moved


# -- quarantine ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuarantineInput:
    """A row that broke its contract: the raw row as the source gave it, and the rules it broke."""

    source_record_id: str | None
    raw: dict[str, Any]
    rules: list[dict[str, Any]]


def _quarantine_aad(source: str, raw_sha256: str) -> bytes:
    return f"quarantine:{source}:{raw_sha256}".encode("ascii")


@dataclass(frozen=True, slots=True)
class SealedQuarantineRow:
    """A quarantine row worked out before any database work (:func:`seal_quarantine`)."""

    row: QuarantineInput
    raw_sha256: str
    ciphertext: bytes
    key_id: str


def seal_quarantine(
    keyring: Keyring, *, source: str, rows: Sequence[QuarantineInput]
) -> list[SealedQuarantineRow]:
    """The CPU work of :func:`quarantine_rows`, no database: each distinct row hashed and encrypted."""
    prepared: dict[str, tuple[QuarantineInput, bytes]] = {}
    for row in rows:
        canonical = canonical_json(row.raw)
        prepared.setdefault(hashlib.sha256(canonical).hexdigest(), (row, canonical))
    shas = list(prepared)
    key_id, blobs = keyring.encrypt_many(
        [prepared[sha][1] for sha in shas], [_quarantine_aad(source, sha) for sha in shas]
    )
    return [
        SealedQuarantineRow(prepared[sha][0], sha, blob, key_id)
        for sha, blob in zip(shas, blobs, strict=True)
    ]


def quarantine_rows(
    session: Session,
    *,
    keyring: Keyring,
    source: str,
    run_id: str,
    rows: Sequence[QuarantineInput],
) -> int:
    """Put rows in quarantine, encrypted. A row already open in quarantine (same source and content)
    is not added twice, so a rerun doubles nothing. Returns how many rows were added."""
    sealed = seal_quarantine(keyring, source=source, rows=rows)
    return write_quarantine(session, source=source, run_id=run_id, rows=sealed)


def write_quarantine(
    session: Session, *, source: str, run_id: str, rows: Sequence[SealedQuarantineRow]
) -> int:
    """:func:`quarantine_rows` of rows already sealed: the SQL only."""
    if not rows:
        return 0
    existing: set[str] = set()
    for chunk in _chunks([sealed.raw_sha256 for sealed in rows]):
        existing.update(
            session.scalars(
                select(QuarantineRow.raw_sha256).where(
                    QuarantineRow.source == source,
                    QuarantineRow.status == "open",
                    QuarantineRow.raw_sha256.in_(chunk),
                )
            )
        )
    now = utcnow()
    values = [
        {
            "source": source,
            "run_id": run_id,
            "source_record_id": sealed.row.source_record_id,
            "raw_ciphertext": sealed.ciphertext,
            "key_id": sealed.key_id,
            "raw_sha256": sealed.raw_sha256,
            "rules": sealed.row.rules,
            "status": "open",
            "created_at": now,
        }
        for sealed in rows
        if sealed.raw_sha256 not in existing
    ]
    if values:
        session.execute(insert(QuarantineRow), values)
    # Duplicate copies of one row in the same call count once each: they are the same evidence.
    return len(values)


def quarantine_raw(keyring: Keyring, row: QuarantineRow) -> dict[str, Any]:
    """Decrypt a quarantined row for a steward."""
    clear = keyring.decrypt(row.key_id, row.raw_ciphertext, aad=_quarantine_aad(row.source, row.raw_sha256))
    raw: dict[str, Any] = json.loads(clear)
    return raw


def list_quarantine(
    session: Session,
    *,
    source: str | None = None,
    status: str | None = "open",
    run_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[QuarantineRow]:
    statement = select(QuarantineRow)
    if source is not None:
        statement = statement.where(QuarantineRow.source == source)
    if status is not None:
        statement = statement.where(QuarantineRow.status == status)
    if run_id is not None:
        statement = statement.where(QuarantineRow.run_id == run_id)
    statement = statement.order_by(QuarantineRow.id).limit(limit).offset(offset)
    return list(session.scalars(statement))


def count_quarantine(session: Session, *, source: str | None = None, status: str | None = "open") -> int:
    statement = select(func.count()).select_from(QuarantineRow)
    if source is not None:
        statement = statement.where(QuarantineRow.source == source)
    if status is not None:
        statement = statement.where(QuarantineRow.status == status)
    return int(session.scalar(statement) or 0)


def close_quarantine_row(
    session: Session, *, row_id: int, status: str, resolution: dict[str, Any]
) -> QuarantineRow:
    """Mark a quarantined row resolved or discarded, with who did it and why."""
    if status not in ("resolved", "discarded"):
        raise DataError("a quarantine row is closed as resolved or discarded")
    row = session.get(QuarantineRow, row_id, with_for_update=True)
    if row is None:
        raise NotFound("no such quarantine row", row_id=row_id)
    if row.status != "open":
        raise Conflict("the quarantine row is already closed", row_id=row_id)
    row.status = status
    row.resolution = resolution
    row.resolved_at = utcnow()
    session.flush()
    return row


# -- sync bookkeeping ----------------------------------------------------------------------------


def get_cursor(session: Session, *, source: str, stream: str = "default") -> str | None:
    state = session.get(SyncState, (source, stream))
    return state.cursor if state else None


def save_cursor(session: Session, *, source: str, stream: str = "default", cursor: str, run_id: str) -> None:
    """Record the cursor. Does not commit: commit it with the rows it covers."""
    state = session.get(SyncState, (source, stream))
    if state is None:
        session.add(SyncState(source=source, stream=stream, cursor=cursor, run_id=run_id))
    else:
        state.cursor = cursor
        state.run_id = run_id
    session.flush()


def new_run_id(source: str) -> str:
    return f"{source}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def start_run(session: Session, *, source: str, run_id: str | None = None) -> SyncRun:
    """Open a sync run and commit it at once, so a steward sees it running. Reopening an existing run id
    (an orchestrator retrying or rerunning the same run) starts it afresh."""
    run = session.get(SyncRun, run_id) if run_id else None
    if run is None:
        run = SyncRun(id=run_id or new_run_id(source), source=source)
        session.add(run)
    run.state, run.started_at, run.finished_at, run.error = "running", utcnow(), None, None
    session.commit()
    return run


def finish_run(
    session: Session,
    *,
    run_id: str,
    state: str,
    extracted: int = 0,
    loaded: int = 0,
    new_versions: int = 0,
    unchanged: int = 0,
    quarantined: int = 0,
    cursor: str | None = None,
    error: str | None = None,
) -> SyncRun:
    """Close a run with its counts and commit. ``error`` must not contain IDs or payloads."""
    run = session.get(SyncRun, run_id)
    if run is None:
        raise NotFound("no such sync run", run_id=run_id)
    run.state = state
    run.finished_at = utcnow()
    run.extracted, run.loaded, run.new_versions = extracted, loaded, new_versions
    run.unchanged, run.quarantined, run.cursor, run.error = unchanged, quarantined, cursor, error
    session.commit()
    return run


def last_runs(session: Session) -> dict[str, SyncRun]:
    """The newest run of each source."""
    newest = (
        select(SyncRun.source, func.max(SyncRun.started_at).label("started_at"))
        .group_by(SyncRun.source)
        .subquery()
    )
    statement = select(SyncRun).join(
        newest, (SyncRun.source == newest.c.source) & (SyncRun.started_at == newest.c.started_at)
    )
    return {run.source: run for run in session.scalars(statement)}


def recent_runs(session: Session, *, source: str, limit: int = 20) -> list[SyncRun]:
    statement = (
        select(SyncRun).where(SyncRun.source == source).order_by(SyncRun.started_at.desc()).limit(limit)
    )
    return list(session.scalars(statement))


# -- clients -------------------------------------------------------------------------------------

CLIENT_KINDS = ("window", "department", "steward", "citizen")
_CLIENT_PREFIX = {"window": "win", "department": "dept", "steward": "stw", "citizen": "cit"}


def _check_public_key(pem: str) -> None:
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise DataError("the public key is not a PEM-encoded public key") from None
    if isinstance(key, ed25519.Ed25519PublicKey):
        return
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return
    raise DataError("client keys must be Ed25519 (EdDSA) or P-256 (ES256)")


def add_client(
    session: Session,
    *,
    kind: str,
    name: str,
    public_key_pem: str,
    org: str | None = None,
    region: str | None = None,
    types: Sequence[str] = (),
    subject_index: str | None = None,
) -> Client:
    """Register a client with its public key. Departments must name the material types they issue."""
    if kind not in CLIENT_KINDS:
        raise DataError(f"client kind must be one of {', '.join(CLIENT_KINDS)}")
    _check_public_key(public_key_pem)
    if kind == "department" and not types:
        raise DataError("a department client must be bound to the material types it issues")
    if kind == "citizen" and not subject_index:
        raise DataError("a citizen client must be bound to its subject")
    if types:
        known = set(session.scalars(select(MaterialType.code).where(MaterialType.code.in_(list(types)))))
        unknown = sorted(set(types) - known)
        if unknown:
            raise DataError(f"unknown material types: {', '.join(unknown)}")
    client = Client(
        id=f"{_CLIENT_PREFIX[kind]}-{secrets.token_hex(8)}",
        kind=kind,
        name=name,
        public_key_pem=public_key_pem,
        org=org,
        region=region,
        types=list(types),
        subject_index=subject_index,
        status="active",
    )
    session.add(client)
    session.flush()
    return client


def get_client(session: Session, *, client_id: str) -> Client | None:
    return session.get(Client, client_id)


_CLIENT_STATUS = select(CLIENTS.c.status).where(CLIENTS.c.id == bindparam("client_id"))


def client_status(session: Session, *, client_id: str) -> str | None:
    """The client's status (``active``, ``disabled``), or None for an unknown client; no ORM object."""
    statement, parameters = _CLIENT_STATUS, {"client_id": client_id}
    status: str | None = session.connection().execute(statement, parameters).scalar_one_or_none()
    return status


def list_clients(session: Session, *, kind: str | None = None) -> list[Client]:
    statement = select(Client).order_by(Client.created_at, Client.id)
    if kind is not None:
        statement = statement.where(Client.kind == kind)
    return list(session.scalars(statement))


def disable_client(session: Session, *, client_id: str) -> Client:
    client = session.get(Client, client_id)
    if client is None:
        raise NotFound("no such client", client_id=client_id)
    client.status = "disabled"
    session.flush()
    return client


# -- usage records (用证记录), hash-chained ------------------------------------------------------

_HASHED_FIELDS = (
    "seq",
    "at",
    "client_id",
    "client_kind",
    "window",
    "action",
    "case_ref",
    "purpose",
    "subject_index",
    "material_ids",
    "outcome",
    "detail",
    "prev_hash",
)


def _record_hash(values: dict[str, Any]) -> str:
    document = {name: values[name] for name in _HASHED_FIELDS}
    document["at"] = values["at"].astimezone(dt.UTC).isoformat(timespec="microseconds")
    return hashlib.sha256(canonical_json(document)).hexdigest()


def _lock_audit_chain(session: Session) -> None:
    """Serialise appends: PostgreSQL takes a transaction advisory lock; SQLite takes its write lock
    before the head is read (an act whose first statement is its record read the head outside any
    transaction, so a lookup's record committed meanwhile made it fail). The primary key on ``seq``
    refuses a fork whatever happens."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
    else:  # a write that changes nothing: the driver opens the transaction, SQLite takes the lock
        session.execute(text("UPDATE audit_head SET seq = seq WHERE id = 1"))


def record_usage(
    session: Session,
    *,
    client_id: str,
    client_kind: str,
    action: str,
    outcome: str,
    case_ref: str | None = None,
    purpose: str | None = None,
    window: str | None = None,
    subject_index: str | None = None,
    material_ids: Sequence[str] = (),
    detail: dict[str, Any] | None = None,
) -> UsageRecord:
    """Append one usage record to the hash chain. Does not commit; the caller commits with the act."""
    entry = {
        "client_id": client_id, "client_kind": client_kind, "window": window, "action": action,
        "case_ref": case_ref, "purpose": purpose, "subject_index": subject_index,
        "material_ids": list(material_ids), "outcome": outcome, "detail": detail,
    }  # fmt: skip
    return _append_usage(session, [entry])[0]


def _chain_values(session: Session, batch: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """Under the chain lock, the full values of ``batch``'s records chained after the head, and whether
    a head row exists yet."""
    _lock_audit_chain(session)
    statement = select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1).with_for_update()
    head = session.execute(statement).one_or_none()
    prev_seq, prev_hash = (head.seq, head.hash) if head else (0, GENESIS_HASH)
    chained = []
    for entry in batch:
        values = _chained(entry, prev_seq, prev_hash)
        chained.append(values)
        prev_seq, prev_hash = values["seq"], values["hash"]
    return chained, head is not None


def _chained(entry: dict[str, Any], prev_seq: int, prev_hash: str) -> dict[str, Any]:
    """A record's full values, hash included, as the successor of ``(prev_seq, prev_hash)``."""
    values: dict[str, Any] = {
        "seq": prev_seq + 1, "at": utcnow(), "window": None, "case_ref": None, "purpose": None,
        "subject_index": None, "material_ids": [], "detail": None, **entry, "prev_hash": prev_hash,
    }  # fmt: skip
    values["material_ids"] = list(values["material_ids"])
    values["hash"] = _record_hash(values)
    return values


def _append_usage(session: Session, batch: Sequence[dict[str, Any]]) -> list[UsageRecord]:
    """Append records to the chain in order, under the chain lock, with one flush."""
    chained, has_head = _chain_values(session, batch)
    records = [UsageRecord(**values) for values in chained]
    session.add_all(records)
    try:
        session.flush()
        _move_head(session, chained[-1], has_head)
        session.flush()
    except IntegrityError:
        raise Conflict("another writer appended to the audit chain; retry") from None
    return records


def _move_head(session: Session, last: dict[str, Any], has_head: bool) -> None:
    if has_head:
        session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=last["seq"], hash=last["hash"]))
    else:
        session.add(AuditHead(id=1, seq=last["seq"], hash=last["hash"]))


_APPEND_LOCK = threading.Lock()


class WriterLock:
    """A cross-process lock beside a SQLite file (``<db>-append.lock``), taken around write transactions
    (usage-record appends, a sync's loads).

    Hub workers and syncs are separate processes. Left to SQLite, the loser of the write lock polls with
    its busy handler, sleeping up to 100 ms between tries; a ``flock`` waiter is woken the moment the
    holder lets go, so writers follow each other without those sleeps. A no-op for other databases.
    """

    def __init__(self, database: str | None) -> None:
        self.fd: int | None = None
        self.waiting_fd: int | None = None  # shared-locked by whoever waits for the lock
        if database and database != ":memory:" and not database.startswith("file:"):
            self.fd = os.open(f"{database}-append.lock", os.O_RDWR | os.O_CREAT, 0o600)
            self.waiting_fd = os.open(f"{database}-append.wait", os.O_RDWR | os.O_CREAT, 0o600)

    def others_waiting(self) -> bool:
        """True when another process is waiting for the lock (a long writer should let it in)."""
        if self.waiting_fd is None:
            return False
        try:
            fcntl.flock(self.waiting_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self.waiting_fd, fcntl.LOCK_UN)
        return False

    def _acquire(self, wait: bool) -> bool:
        assert self.fd is not None
        assert self.waiting_fd is not None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if not wait:
                return False
        fcntl.flock(self.waiting_fd, fcntl.LOCK_SH)  # seen by others_waiting() while this blocks
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        finally:
            fcntl.flock(self.waiting_fd, fcntl.LOCK_UN)
        return True

    def let_waiters_in(self, pause: float, *, meanwhile: Callable[[], object] | None = None) -> bool:
        """With the lock held and the transaction committed: when another process waits for the lock, let
        go of it for ``pause`` seconds, then take it again. True when it let go. ``meanwhile`` runs while
        the lock is let go (within the pause, or longer if it takes longer)."""
        if self.fd is None or not self.others_waiting():
            return False
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        _APPEND_LOCK.release()
        try:
            let_go = time.monotonic()
            if meanwhile is not None:
                meanwhile()
            time.sleep(max(0.0, pause - (time.monotonic() - let_go)))
        finally:
            _APPEND_LOCK.acquire()
            self._acquire(True)
        return True

    @contextmanager
    def held(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold the lock for the block; with ``wait=False`` the block gets False at once if it is taken."""
        if not _APPEND_LOCK.acquire(blocking=wait):
            yield False
            return
        try:
            if self.fd is None:
                yield True
                return
            if not self._acquire(wait):
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            _APPEND_LOCK.release()


#: SQLite's own automatic checkpoint: once a commit leaves this many pages in the WAL.
AUTOCHECKPOINT_PAGES = 1000


def checkpoint_wal(connection: sqlite3.Connection) -> None:
    """Copy the pages the WAL holds into the database file, as far as open reads allow (PASSIVE: it waits
    for nobody and blocks nobody; it gives up if another checkpoint is running).

    The store's long and frequent writers (a sync's load, the usage appender) turn SQLite's automatic
    checkpoint off and call this once they have let go of the :class:`WriterLock` (or when nobody waits
    for it). Left automatic, the checkpoint ran inside the commit that filled the WAL, with the lock held:
    during ``bench lookup --during-sync`` one load commit in ten took 38 ms instead of 1, and every
    lookup's record waited. Each then calls it once more with the lock held, to copy the few pages others
    wrote meanwhile: the next write can then start the WAL from its beginning again.
    """
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


_WRITER_LOCKS: dict[str | None, WriterLock] = {}
_WRITER_LOCKS_LOCK = threading.Lock()


def writer_lock(engine: Engine) -> WriterLock:
    """The process's :class:`WriterLock` for ``engine``'s database."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    with _WRITER_LOCKS_LOCK:
        lock = _WRITER_LOCKS.get(database)
        if lock is None:
            lock = _WRITER_LOCKS[database] = WriterLock(database)
        return lock


class PendingUsage:
    """A usage record handed to the appender: done once its transaction has committed (or failed)."""

    __slots__ = ("entry", "done", "error", "_callbacks", "_lock")

    def __init__(self, entry: dict[str, Any]) -> None:
        self.entry = entry
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._callbacks: list[Callable[[], object]] = []
        self._lock = threading.Lock()

    def _finish(self, error: BaseException | None) -> None:
        with self._lock:
            self.error = error
            self.done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def on_done(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` (from the appender's thread) once done; at once if already done."""
        with self._lock:
            if not self.done.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def wait(self) -> None:
        """Block until durable. Raises the append's error (Conflict: the chain stayed too busy)."""
        self.done.wait()
        if self.error is not None:
            raise self.error


class UsageAppender:
    """Group commit of usage records for one engine: each caller hands in a record and waits until the
    transaction holding it has committed; one writer thread appends whatever has queued up meanwhile in
    one transaction, in order, so the chain stays one linear chain and a busy hub commits once per batch
    instead of once per request.
    """

    #: Batches between two checkpoints of the WAL (SQLite). A batch writes a few pages: a hundred
    #: batches fill about as much WAL as SQLite's automatic checkpoint lets grow (1,000 pages).
    checkpoint_batches = 100

    def __init__(self, engine: Engine, *, attempts: int = 8) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        mark = "?" if self.sqlite else "%s"
        # Quoted: ``window`` is a reserved word in PostgreSQL.
        columns = ", ".join(f'"{name}"' for name in _USAGE_COLUMNS)
        marks = ", ".join(mark for _ in _USAGE_COLUMNS)
        lock = "" if self.sqlite else " FOR UPDATE"
        self.sql = {  # fixed names and placeholders only
            "head": f"SELECT seq, hash FROM audit_head WHERE id = 1{lock}",  # noqa: S608
            "insert": f"INSERT INTO usage_records ({columns}) VALUES ({marks})",  # noqa: S608
            "start": f"INSERT INTO audit_head (id, seq, hash) VALUES (1, {mark}, {mark})",  # noqa: S608
            "move": f"UPDATE audit_head SET seq = {mark}, hash = {mark} WHERE id = 1",  # noqa: S608
        }
        self.attempts = attempts
        self.writer_lock = writer_lock(engine)
        self.queue: list[PendingUsage] = []
        self.loop_queue: list[PendingUsage] = []
        self.wake = threading.Condition()
        self.thread: threading.Thread | None = None
        self.connection: sqlite3.Connection | None = None  # SQLite: its own, made on first use
        self.since_checkpoint = 0
        self.checkpoints: ThreadPoolExecutor | None = None  # SQLite: one thread, started on first use
        self.checkpointing = False
        self.caught_up = False  # that thread's checkpoint finished; the next batch finishes the job
        self.checkpoint_connection: sqlite3.Connection | None = None  # used by that thread only
        self.server: Any = None  # PostgreSQL: its own psycopg connection, made on first use
        self.server_lock = threading.Lock()
        self.integrity_errors: tuple[type[BaseException], ...] = (IntegrityError, sqlite3.IntegrityError)
        # PostgreSQL: the appends of each event loop that submits records (submit_on_loop).
        self.loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AppendsOnLoop]
        self.loops = weakref.WeakKeyDictionary()
        if not self.sqlite:
            import psycopg

            self.integrity_errors += (psycopg.IntegrityError,)
            event.listen(engine, "engine_disposed", lambda _engine: self.close())

    def close(self) -> None:
        """Close the PostgreSQL connection of its own (with the engine's pool: ``engine.dispose()``)."""
        with self.server_lock:
            if self.server is not None:
                self.server.close()
                self.server = None

    def submit(self, entry: dict[str, Any]) -> PendingUsage:
        """Queue one record (the keyword arguments of :func:`record_usage`); wait on the result."""
        item = PendingUsage(entry)
        self._hand_over([item])
        return item

    def _hand_over(self, items: list[PendingUsage]) -> None:
        """Queue ``items`` for the writer thread."""
        with self.wake:
            self.queue.extend(items)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="onecert-usage", daemon=True)
                self.thread.start()
            self.wake.notify()

    def submit_on_loop(self, entry: dict[str, Any], loop: asyncio.AbstractEventLoop) -> PendingUsage:
        """Queue one record from code running on ``loop``'s thread (no hand-off to the writer thread and
        back, whose contention for the GIL cost more than the append).

        SQLite: the records queued during one turn of the loop are appended together, on the loop's
        thread, once that turn's callbacks have run. When another writer holds the store (a sync's load),
        the batch goes to the writer thread instead: the loop never waits for the lock.

        PostgreSQL: a task on the loop appends them (:class:`_AppendsOnLoop`), so the loop goes on serving
        while an append waits for the chain's lock and its commit; what queues meanwhile is the next batch.
        """
        item = PendingUsage(entry)
        if not self.sqlite:
            on_loop = self.loops.get(loop)
            if on_loop is None:
                on_loop = self.loops[loop] = _AppendsOnLoop(self)
            on_loop.submit(item, loop)
            return item
        if not self.loop_queue:
            loop.call_soon(self._flush_loop)
        self.loop_queue.append(item)
        return item

    async def close_on_loop(self) -> None:
        """Finish the appends queued on the running loop and close its PostgreSQL connection (a worker
        shutting down)."""
        on_loop = self.loops.pop(asyncio.get_running_loop(), None)
        if on_loop is not None:
            await on_loop.close()

    def _flush_loop(self) -> None:
        batch, self.loop_queue = self.loop_queue, []
        self._commit(batch, wait=False)

    def _run(self) -> None:
        while True:
            with self.wake:
                while not self.queue:
                    self.wake.wait()
                batch, self.queue = self.queue, []
            self._commit(batch)

    def _commit(self, batch: list[PendingUsage], *, wait: bool = True) -> None:
        """Append ``batch`` in one transaction and tell each waiter how it went; with ``wait=False`` and
        the store held by another writer, hand the batch to the writer thread instead."""
        error: BaseException | None = None
        try:
            if not self._write([item.entry for item in batch], wait=wait):
                self._hand_over(batch)
                return
        except BaseException as failure:  # noqa: BLE001 - handed to every waiter of the batch
            error = failure
        for item in batch:
            item._finish(error)

    def _write(self, entries: list[dict[str, Any]], *, wait: bool = True) -> bool:
        """Append ``entries`` in one transaction. Returns False, having written nothing, when ``wait`` is
        False and another writer holds the store."""
        for attempt in range(self.attempts):
            try:
                if self.sqlite:
                    with self.writer_lock.held(wait=wait) as held:
                        if not held:
                            return False
                        self._write_sqlite(entries)
                        self._checkpoint_when_due()
                else:
                    self._write_server(entries)
                return True
            except self.integrity_errors:
                time.sleep(0.002 * (attempt + 1))
        raise Conflict("the audit chain is too busy; retry")

    def _write_sqlite(self, entries: list[dict[str, Any]]) -> None:
        """One transaction on the appender's own SQLite connection (the caller holds the writer lock, so
        one thread at a time uses it): the driver directly, no pool checkout per batch."""
        if self.connection is None:
            self.connection = own_connection(self.engine)
            self.connection.execute("PRAGMA wal_autocheckpoint=0")  # see _checkpoint_when_due
        connection = self.connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            self._append(connection.execute, connection.executemany, entries)
            connection.commit()
        except BaseException:
            connection.rollback()
            raise

    def _checkpoint_when_due(self) -> None:
        """Every :attr:`checkpoint_batches` batches, checkpoint the WAL on a thread of its own: off the
        event loop (which appends most batches), and outside the writer lock (see :func:`checkpoint_wal`).
        Called with the lock held, so one thread at a time counts. One checkpoint at a time."""
        self.since_checkpoint += 1
        if self.caught_up:
            # The thread's checkpoint copied the WAL as it stood when it began; this copies the few pages
            # written since, so that the next write starts the WAL from its beginning again. (A WAL is
            # only reused once all of it is in the database file: without this step it would grow for
            # as long as lookups keep coming.)
            self.caught_up = False
            assert self.connection is not None
            checkpoint_wal(self.connection)
        if self.since_checkpoint < self.checkpoint_batches or self.checkpointing:
            return
        self.since_checkpoint = 0
        self.checkpointing = True
        if self.checkpoints is None:
            self.checkpoints = ThreadPoolExecutor(1, thread_name_prefix="onecert-checkpoint")
        self.checkpoints.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            if self.checkpoint_connection is None:
                self.checkpoint_connection = own_connection(self.engine)
            checkpoint_wal(self.checkpoint_connection)
            self.caught_up = True
        except sqlite3.Error as error:  # the next due checkpoint tries again
            log.warning("checkpoint of the store's WAL failed: %s", error)
        finally:
            self.checkpointing = False

    def _write_server(self, entries: list[dict[str, Any]]) -> None:
        """One transaction on the appender's own PostgreSQL connection, pipelined: BEGIN and the head
        row's lock go out in one round trip; the records, the head's move and COMMIT in a second. (Through
        a pooled Session it took seven, all but the first inside the chain's lock, which every worker
        process's appender waits on.) A connection whose write failed is closed, not reused."""
        with self.server_lock:
            connection = self.server = self.server or own_server_connection(self.engine)
            try:
                with connection.pipeline():
                    cursor = connection.cursor()
                    self._append(cursor.execute, cursor.executemany, entries)
                    connection.commit()
            except BaseException:
                self.server = None
                connection.close()
                raise

    def _append(
        self, execute: Callable[..., Any], executemany: Callable[..., Any], entries: list[dict[str, Any]]
    ) -> None:
        """The batch at the driver level (a busy hub appends hundreds of batches a second): the same rows
        :func:`record_usage` writes, JSON columns as SQLAlchemy's JSON type would serialise them.
        ``execute`` and ``executemany`` run driver-level SQL.

        The head row's lock (SQLite: the write lock) serialises appends. Before the chain's first record
        there is no row to lock: PostgreSQL then takes the advisory lock :func:`record_usage` takes, and
        the primary key on ``seq`` refuses a fork whatever happens."""
        head = execute(self.sql["head"]).fetchone()
        if head is None and not self.sqlite:
            execute(_FIRST_APPEND_LOCK)
            head = execute(self.sql["head"]).fetchone()
        rows, last = self._chained_rows(entries, head)
        executemany(self.sql["insert"], rows)
        execute(self.sql["move" if head else "start"], last)

    def _chained_rows(
        self, entries: list[dict[str, Any]], head: Any
    ) -> tuple[list[tuple[Any, ...]], tuple[int, str]]:
        """The driver-level rows of ``entries`` chained after ``head`` (None: the chain's start), and the
        new head's ``(seq, hash)``."""
        prev_seq, prev_hash = (int(head[0]), str(head[1])) if head else (0, GENESIS_HASH)
        json_value = _json_text if self.sqlite else _json_parameter()
        rows = []
        for entry in entries:
            values = _chained(entry, prev_seq, prev_hash)
            values["at"] = self.driver_moment(values["at"])
            rows.append(
                tuple(json_value(values[n]) if n in _USAGE_JSON else values[n] for n in _USAGE_COLUMNS)
            )
            prev_seq, prev_hash = values["seq"], values["hash"]
        return rows, (prev_seq, prev_hash)

    def driver_moment(self, value: dt.datetime) -> Any:
        if self.sqlite:  # SQLAlchemy's SQLite DATETIME storage format, in UTC (as DriverValues.moment)
            return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return value


#: Before the chain's first record there is no head row to lock: the first appenders take this instead.
_FIRST_APPEND_LOCK = "SELECT pg_advisory_xact_lock(4242001)"


class _AppendsOnLoop:
    """A :class:`UsageAppender`'s appends on one event loop, on PostgreSQL: one task at a time appends
    what has queued, batch after batch, over an ``AsyncConnection`` of the loop's own, in the two round
    trips :meth:`UsageAppender._write_server` takes."""

    def __init__(self, appender: UsageAppender) -> None:
        self.appender = appender
        self.queue: list[PendingUsage] = []
        self.task: asyncio.Task[None] | None = None  # (the loop is not kept: it keys the appender's map)
        self.connection: Any = None

    def submit(self, item: PendingUsage, loop: asyncio.AbstractEventLoop) -> None:
        self.queue.append(item)
        if self.task is None:
            self.task = loop.create_task(self._drain())

    async def close(self) -> None:
        if self.task is not None:
            await self.task
        if self.connection is not None:
            await self.connection.close()
            self.connection = None

    async def _drain(self) -> None:
        try:
            while self.queue:
                batch, self.queue = self.queue, []
                error: BaseException | None = None
                try:
                    await self._write([item.entry for item in batch])
                except BaseException as failure:  # noqa: BLE001 - handed to every waiter of the batch
                    error = failure
                for item in batch:
                    item._finish(error)
                if error is not None and not isinstance(error, Exception):
                    raise error  # cancelled: its waiters are told, and the task ends
        finally:
            self.task = None

    async def _write(self, entries: list[dict[str, Any]]) -> None:
        appender = self.appender
        for attempt in range(appender.attempts):
            try:
                await self._write_once(entries)
                return
            except appender.integrity_errors:
                await asyncio.sleep(0.002 * (attempt + 1))
        raise Conflict("the audit chain is too busy; retry")

    async def _write_once(self, entries: list[dict[str, Any]]) -> None:
        """One transaction; a connection whose write failed is closed, not reused."""
        from psycopg import AsyncConnection

        appender = self.appender
        if self.connection is None:
            self.connection = await AsyncConnection.connect(**server_connect_args(appender.engine))
        connection = self.connection
        try:
            async with connection.pipeline():
                cursor = connection.cursor()
                await cursor.execute(appender.sql["head"])
                head = await cursor.fetchone()
                if head is None:
                    await cursor.execute(_FIRST_APPEND_LOCK)
                    await cursor.execute(appender.sql["head"])
                    head = await cursor.fetchone()
                rows, last = appender._chained_rows(entries, head)
                await cursor.executemany(appender.sql["insert"], rows)
                await cursor.execute(appender.sql["move" if head else "start"], last)
                await connection.commit()
        except BaseException:
            self.connection = None
            await connection.close()
            raise


_USAGE_COLUMNS = (
    "seq", "at", "client_id", "client_kind", "window", "action", "case_ref", "purpose", "subject_index",
    "material_ids", "outcome", "detail", "prev_hash", "hash",
)  # fmt: skip
_USAGE_JSON = frozenset({"material_ids", "detail"})


def _json_text(value: Any) -> str:
    return json.dumps(value)  # what SQLAlchemy's JSON type stores (None as JSON null)


def _json_parameter() -> Callable[[Any], Any]:
    from psycopg.types.json import Json

    return Json


_APPENDERS: dict[Engine, UsageAppender] = {}
_APPENDERS_LOCK = threading.Lock()
_DEFERRED: ContextVar[list[PendingUsage] | None] = ContextVar("onecert_deferred_usage", default=None)


def usage_appender(engine: Engine) -> UsageAppender:
    """The process's group-commit appender for ``engine``."""
    with _APPENDERS_LOCK:
        appender = _APPENDERS.get(engine)
        if appender is None:
            appender = _APPENDERS[engine] = UsageAppender(engine)
        return appender


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@contextmanager
def deferred_usage(pending: list[PendingUsage]) -> Iterator[None]:
    """Inside this block :func:`commit_usage` queues its record in ``pending`` and returns at once; the
    caller must wait for every one of them (:meth:`PendingUsage.wait` or ``on_done``) before it answers.
    Lets an async caller wait for the group commit without holding a thread."""
    token = _DEFERRED.set(pending)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def commit_usage(session: Session, **entry: Any) -> None:
    """Append a usage record in a transaction of its own, and return once it has committed (unless
    deferred: :func:`deferred_usage`). For acts whose only write is the record (lookups, reads).

    Appends are group-committed (:class:`UsageAppender`): records queued by concurrent requests share
    one transaction. Under it, on SQLite the transaction starts with ``BEGIN IMMEDIATE`` so the chain
    head is read under the write lock; on PostgreSQL an advisory lock does the same. A writer that still
    loses the race (the chain refuses a fork) retries.

    Raises:
        Conflict: the chain stayed too busy to append to.
    """
    session.commit()  # end any read transaction: the record must not wait for this session's work
    submit_usage(session_engine(session), **entry)


def session_engine(session: Session) -> Engine:
    """The engine behind ``session``."""
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


def submit_usage(engine: Engine, **entry: Any) -> None:
    """:func:`commit_usage` for a caller without a Session (the embedded lookup's driver-level reads)."""
    appender = usage_appender(engine)
    deferred = _DEFERRED.get()
    loop = _running_loop() if deferred is not None else None
    item = appender.submit_on_loop(entry, loop) if loop is not None else appender.submit(entry)
    if deferred is not None:
        deferred.append(item)
    else:
        item.wait()


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None


def _row_values(row: Row[Any]) -> dict[str, Any]:
    return dict(row._mapping)


def verify_usage_chain(session: Session, *, batch_size: int = 5000) -> ChainReport:
    """Recompute the chain: any edited, deleted, inserted or reordered record is found, and the first
    bad one named."""
    table = USAGE_RECORDS
    expected_prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    last_seq = 0
    while True:
        rows = session.execute(
            select(table).where(table.c.seq > last_seq).order_by(table.c.seq).limit(batch_size)
        ).all()
        if not rows:
            break
        for row in rows:
            values = _row_values(row)
            seq = values["seq"]
            if values["prev_hash"] != expected_prev:
                reason = (
                    "a record before it was deleted or reordered"
                    if seq != expected_seq
                    else ("its link to the previous record is broken")
                )
                return ChainReport(False, checked, seq, reason)
            if seq != expected_seq:
                return ChainReport(False, checked, seq, "its sequence number was changed")
            at = values["at"]
            if at.tzinfo is None:
                values["at"] = at.replace(tzinfo=dt.UTC)
            if _record_hash(values) != values["hash"]:
                return ChainReport(False, checked, seq, "its content was edited")
            expected_prev = values["hash"]
            expected_seq = seq + 1
            checked += 1
            last_seq = seq
    head = session.get(AuditHead, 1)
    if head is None:
        if checked:
            return ChainReport(False, checked, None, "the chain head is missing")
        return ChainReport(True, 0)
    if head.seq != checked or head.hash != expected_prev:
        return ChainReport(False, checked, checked + 1, "the newest records were deleted")
    return ChainReport(True, checked)


def usage_for_subject(session: Session, *, subject_index: str, limit: int = 100) -> list[UsageRecord]:
    """Who used this subject's data, newest first."""
    statement = (
        select(UsageRecord)
        .where(UsageRecord.subject_index == subject_index)
        .order_by(UsageRecord.seq.desc())
        .limit(limit)
    )
    return list(session.scalars(statement))
