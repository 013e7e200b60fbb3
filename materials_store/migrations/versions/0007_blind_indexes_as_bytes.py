"""subjects: the blind index as its 32 bytes, not 64 hex digits

Every new subject lands at a random place in the unique index on the blind index; half the key keeps that
index half the size, so a bulk load into a large store touches (and writes back) fewer of its pages. The
values are the same HMACs: nothing is recomputed, and Python keeps their hex form
(``materials_store.models.BlindIndex``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_CHUNK = 10_000


def _convert_sqlite(to_bytes: bool) -> None:
    """Rewrite each value in place (SQLite 3.40 has no unhex()): a column holds BLOBs and text alike."""
    connection = op.get_bind()
    last = 0
    while True:
        rows = connection.exec_driver_sql(
            "SELECT id, blind_index FROM subjects WHERE id > ? ORDER BY id LIMIT ?", (last, _CHUNK)
        ).fetchall()
        if not rows:
            return
        connection.exec_driver_sql(
            "UPDATE subjects SET blind_index = ? WHERE id = ?",
            [(bytes.fromhex(value) if to_bytes else bytes(value).hex(), id_) for id_, value in rows],
        )
        last = rows[-1][0]


def _retype(*, to_bytes: bool) -> None:
    text, raw = sa.String(length=64), sa.LargeBinary(length=32)
    if op.get_bind().dialect.name == "sqlite":
        _convert_sqlite(to_bytes=to_bytes)
        with op.batch_alter_table("subjects", schema=None) as batch_op:
            batch_op.alter_column(
                "blind_index", existing_type=text if to_bytes else raw, type_=raw if to_bytes else text,
                existing_nullable=False,
            )  # fmt: skip
    elif to_bytes:
        op.execute(
            "ALTER TABLE subjects ALTER COLUMN blind_index TYPE bytea USING decode(blind_index, 'hex')"
        )
    else:
        op.execute(
            "ALTER TABLE subjects ALTER COLUMN blind_index TYPE varchar(64) USING encode(blind_index, 'hex')"
        )


def upgrade() -> None:
    _retype(to_bytes=True)


def downgrade() -> None:
    _retype(to_bytes=False)
