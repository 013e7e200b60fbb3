"""SQLAlchemy 2 models of the materials store. The Alembic migrations are the schema's source of truth;
a test checks that these models and the migrations agree.

Nothing here is ever deleted: materials change status (superseded, revoked, expired), quarantine rows are
resolved or discarded, usage records only grow.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware datetime")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class BlindIndex(TypeDecorator[str]):
    """A blind index: 64 hex digits in Python (usage records and AADs keep that form), its 32 bytes in the
    subjects table. Half the key keeps the table's unique index, which every new subject lands in at
    random, half the size: ``bench ingest``'s load slowed less as a million subjects went in (a raw-SQL
    harness of subjects with their materials: 19.7 µs of CPU a row against 23.6, the last quarter 22.2 µs
    against 30.3 of wall time). Statements that bypass SQLAlchemy convert with ``bytes.fromhex`` and
    ``bytes.hex``."""

    impl = LargeBinary(32)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> bytes | None:
        return None if value is None else bytes.fromhex(value)

    def process_result_value(self, value: bytes | None, dialect: Any) -> str | None:
        return None if value is None else bytes(value).hex()


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Subject(Base):
    """A person or organisation, found by the blind index of its identifier; the clear value is encrypted."""

    __tablename__ = "subjects"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    blind_index: Mapped[str] = mapped_column(BlindIndex, unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    id_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    name_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class MaterialType(Base):
    """A kind of certificate or material (证照/材料类型), loaded from its data contract."""

    __tablename__ = "material_types"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name_zh: Mapped[str] = mapped_column(String(128))
    name_en: Mapped[str] = mapped_column(String(128))
    department: Mapped[str] = mapped_column(String(32))
    subject_kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(64))
    contract_id: Mapped[str] = mapped_column(String(128))
    contract_version: Mapped[str] = mapped_column(String(32))
    validity_days: Mapped[int | None] = mapped_column(Integer)
    freshness_sla_hours: Mapped[int | None] = mapped_column(Integer)
    sensitivity: Mapped[str] = mapped_column(String(32))


class Material(Base):
    """One issued instance of a material type for a subject, one version of one source record."""

    __tablename__ = "materials"
    __table_args__ = (
        UniqueConstraint("type_code", "source_record_id", "version"),
        Index("ix_materials_lookup", "subject_id", "status", "type_code"),
        Index("ix_materials_validity", "status", "valid_until"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    type_code: Mapped[str] = mapped_column(ForeignKey("material_types.code"))
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"))
    issuer: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(128))
    source_run_id: Mapped[str | None] = mapped_column(String(64))
    source_record_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    issued_at: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(String(256))
    payload_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(64))
    payload_sha256: Mapped[str] = mapped_column(String(64))
    issuer_signature: Mapped[str | None] = mapped_column(Text)
    superseded_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class UsageRecord(Base):
    """用证记录: who used which subject's data, when, for what. Hash-chained so edits are detectable."""

    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_records_subject", "subject_index", "seq"),)

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    client_id: Mapped[str] = mapped_column(String(64))
    client_kind: Mapped[str] = mapped_column(String(16))
    window: Mapped[str | None] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    case_ref: Mapped[str | None] = mapped_column(String(128))
    purpose: Mapped[str | None] = mapped_column(String(256))
    subject_index: Mapped[str | None] = mapped_column(String(64))
    material_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # No index of their own: the primary key refuses a fork (records after the same head claim the same
    # seq), and the chain is verified in seq order.
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The newest usage record's seq and hash, so deleting the newest records is detectable too."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigId)
    hash: Mapped[str] = mapped_column(String(64))


class QuarantineRow(Base):
    """A source row that broke its contract; the raw row is kept encrypted until it is resolved."""

    __tablename__ = "quarantine"
    __table_args__ = (Index("ix_quarantine_source_status", "source", "status"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(64))
    source_record_id: Mapped[str | None] = mapped_column(String(128))
    raw_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(64))
    raw_sha256: Mapped[str] = mapped_column(String(64))
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SyncState(Base):
    """The cursor of one source stream, written in the same transaction as the rows it covers."""

    __tablename__ = "sync_state"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    cursor: Mapped[str] = mapped_column(Text)
    run_id: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SyncRun(Base):
    """One sync run of one source, with its counts."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_source_started", "source", "started_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16), default="running")
    extracted: Mapped[int] = mapped_column(Integer, default=0)
    loaded: Mapped[int] = mapped_column(Integer, default=0)
    new_versions: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    quarantined: Mapped[int] = mapped_column(Integer, default=0)
    cursor: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class Client(Base):
    """A registered window, department, steward or citizen, with its public key (no shared secrets)."""

    __tablename__ = "clients"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(256))
    public_key_pem: Mapped[str] = mapped_column(Text)
    org: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(16))
    types: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject_index: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsedAssertion(Base):
    """A client assertion's ``jti``, kept until the assertion expires, so it cannot be replayed."""

    __tablename__ = "used_assertions"

    jti: Mapped[str] = mapped_column(String(128), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class IdempotencyKey(Base):
    """A department push's Idempotency-Key: the same key and body answer the same material again."""

    __tablename__ = "idempotency_keys"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_sha256: Mapped[str] = mapped_column(String(64))
    material_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ValidationResult(Base):
    """One expectation's outcome in one sync run: the history behind the stewards' pass-rate trends."""

    __tablename__ = "validation_results"
    __table_args__ = (Index("ix_validation_results_source_at", "source", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expectation: Mapped[str] = mapped_column(String(128))
    column: Mapped[str | None] = mapped_column(String(128))
    rule: Mapped[str] = mapped_column(String(128))
    success: Mapped[bool] = mapped_column(Boolean)
    element_count: Mapped[int] = mapped_column(Integer, default=0)
    unexpected_count: Mapped[int] = mapped_column(Integer, default=0)


class IdentityConflict(Base):
    """Sources that disagree about one subject's name or birth date; the values are kept encrypted."""

    __tablename__ = "identity_conflicts"
    __table_args__ = (
        UniqueConstraint("subject_id", "field"),
        Index("ix_identity_conflicts_status", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"))
    field: Mapped[str] = mapped_column(String(32))
    sources: Mapped[list[str]] = mapped_column(JSON, default=list)
    detail_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(64))
    detail_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="open")
    first_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Promise(Base):
    """容缺承诺: a case accepted without one material, on the applicant's promise to bring it by a date."""

    __tablename__ = "promises"
    __table_args__ = (
        Index("ix_promises_subject_type_state", "subject_id", "type_code", "state"),
        Index("ix_promises_state_due", "state", "due_date"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    case_ref: Mapped[str] = mapped_column(String(128), index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id"))
    type_code: Mapped[str] = mapped_column(String(64))
    service_item: Mapped[str | None] = mapped_column(String(64))
    due_date: Mapped[dt.date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    flagged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(32))


class CaseMaterial(Base):
    """A material a case reused, so a later revocation or supersession can alert that case's window."""

    __tablename__ = "case_materials"
    __table_args__ = (Index("ix_case_materials_material", "material_id"),)

    case_ref: Mapped[str] = mapped_column(String(128), primary_key=True)
    material_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CaseAlert(Base):
    """A change to a material a case reused: revoked or superseded after the case read it."""

    __tablename__ = "case_alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    case_ref: Mapped[str] = mapped_column(String(128), index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    material_id: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebSession(Base):
    """A browser sign-in for a registered client: a one-time link, then a session. Only hashes are kept;
    the browser holds the session id in an HttpOnly cookie and never a token of the API."""

    __tablename__ = "web_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id"))
    person: Mapped[str] = mapped_column(String(128))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


#: The tables as Core ``Table`` objects, for the Core statements on the hot paths.
MATERIALS = cast(Table, Material.__table__)
SUBJECTS = cast(Table, Subject.__table__)
USAGE_RECORDS = cast(Table, UsageRecord.__table__)
CLIENTS = cast(Table, Client.__table__)
