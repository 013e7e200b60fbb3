"""validation history, identity conflicts, promises and case alerts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 03:09:05.304936
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('case_alerts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('case_ref', sa.String(length=128), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('material_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_alerts'))
    )
    with op.batch_alter_table('case_alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_alerts_case_ref'), ['case_ref'], unique=False)

    op.create_table('case_materials',
    sa.Column('case_ref', sa.String(length=128), nullable=False),
    sa.Column('material_id', sa.String(length=32), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('case_ref', 'material_id', name=op.f('pk_case_materials'))
    )
    with op.batch_alter_table('case_materials', schema=None) as batch_op:
        batch_op.create_index('ix_case_materials_material', ['material_id'], unique=False)

    op.create_table('validation_results',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expectation', sa.String(length=128), nullable=False),
    sa.Column('column', sa.String(length=128), nullable=True),
    sa.Column('rule', sa.String(length=128), nullable=False),
    sa.Column('success', sa.Boolean(), nullable=False),
    sa.Column('element_count', sa.Integer(), nullable=False),
    sa.Column('unexpected_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_validation_results'))
    )
    with op.batch_alter_table('validation_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_validation_results_run_id'), ['run_id'], unique=False)
        batch_op.create_index('ix_validation_results_source_at', ['source', 'at'], unique=False)

    op.create_table('identity_conflicts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('subject_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('field', sa.String(length=32), nullable=False),
    sa.Column('sources', sa.JSON(), nullable=False),
    sa.Column('detail_ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('detail_sha256', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['subject_id'], ['subjects.id'], name=op.f('fk_identity_conflicts_subject_id_subjects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_identity_conflicts')),
    sa.UniqueConstraint('subject_id', 'field', name=op.f('uq_identity_conflicts_subject_id_field'))
    )
    with op.batch_alter_table('identity_conflicts', schema=None) as batch_op:
        batch_op.create_index('ix_identity_conflicts_status', ['status'], unique=False)

    op.create_table('promises',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('case_ref', sa.String(length=128), nullable=False),
    sa.Column('client_id', sa.String(length=64), nullable=False),
    sa.Column('subject_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('type_code', sa.String(length=64), nullable=False),
    sa.Column('service_item', sa.String(length=64), nullable=True),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('flagged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_by', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['subject_id'], ['subjects.id'], name=op.f('fk_promises_subject_id_subjects')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_promises'))
    )
    with op.batch_alter_table('promises', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_promises_case_ref'), ['case_ref'], unique=False)
        batch_op.create_index('ix_promises_state_due', ['state', 'due_date'], unique=False)
        batch_op.create_index('ix_promises_subject_type_state', ['subject_id', 'type_code', 'state'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('promises', schema=None) as batch_op:
        batch_op.drop_index('ix_promises_subject_type_state')
        batch_op.drop_index('ix_promises_state_due')
        batch_op.drop_index(batch_op.f('ix_promises_case_ref'))

    op.drop_table('promises')
    with op.batch_alter_table('identity_conflicts', schema=None) as batch_op:
        batch_op.drop_index('ix_identity_conflicts_status')

    op.drop_table('identity_conflicts')
    with op.batch_alter_table('validation_results', schema=None) as batch_op:
        batch_op.drop_index('ix_validation_results_source_at')
        batch_op.drop_index(batch_op.f('ix_validation_results_run_id'))

    op.drop_table('validation_results')
    with op.batch_alter_table('case_materials', schema=None) as batch_op:
        batch_op.drop_index('ix_case_materials_material')

    op.drop_table('case_materials')
    with op.batch_alter_table('case_alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_alerts_case_ref'))

    op.drop_table('case_alerts')
