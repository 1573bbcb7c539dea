"""Process drafts and migrations (issue 7)

One working draft per process for the process library pages: its files are
stored by content hash in stored_files (like deployed versions), listed in a JSON
map file name -> sha256; who created and last saved it, and when. Scenario files
written in the browser are kept per process (process_scenario_sets) when a draft is
deployed, so the next draft starts with them.

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'process_drafts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('process_id', sa.String(length=128), nullable=False),
        sa.Column('base_version_id', sa.Integer(), nullable=True),
        sa.Column('files', sa.JSON(), nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_by', sa.String(length=64), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['base_version_id'], ['process_versions.id'],
                                name=op.f('fk_process_drafts_base_version_id_process_versions')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_process_drafts')),
        sa.UniqueConstraint('process_id', name=op.f('uq_process_drafts_process_id')),
    )
    op.create_table(
        'process_scenario_sets',
        sa.Column('process_id', sa.String(length=128), nullable=False),
        sa.Column('files', sa.JSON(), nullable=False),
        sa.Column('updated_by', sa.String(length=64), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('process_id', name=op.f('pk_process_scenario_sets')),
    )


def downgrade():
    op.drop_table('process_scenario_sets')
    op.drop_table('process_drafts')
