"""usage records: drop the unique indexes on hash and prev_hash

The primary key on ``seq`` already refuses a fork: every writer numbers its records after the head it
read, so two records claiming the same predecessor claim the same ``seq``. The two unique indexes were
random-key B-trees that every lookup's record wrote into (two of the record's three index inserts);
``onecert audit verify`` recomputes the chain from ``seq`` order and needs neither.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 17:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_usage_records_hash"), type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_usage_records_prev_hash"), type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f("uq_usage_records_prev_hash"), ["prev_hash"])
        batch_op.create_unique_constraint(batch_op.f("uq_usage_records_hash"), ["hash"])
