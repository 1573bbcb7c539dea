"""Public disclosure board and monthly follow-ups (issue 8)

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'resolution_disclosures',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=False),
        sa.Column('event_seq', sa.Integer(), nullable=False),
        sa.Column('community_id', sa.Integer(), nullable=False),
        sa.Column('topic', sa.String(length=300), nullable=False),
        sa.Column('meeting_type', sa.String(length=32), nullable=False),
        sa.Column('resolution_text', sa.Text(), nullable=False),
        sa.Column('place', sa.String(length=200), nullable=False),
        sa.Column('votes_due', sa.Integer(), nullable=True),
        sa.Column('votes_present', sa.Integer(), nullable=True),
        sa.Column('votes_for', sa.Integer(), nullable=True),
        sa.Column('votes_against', sa.Integer(), nullable=True),
        sa.Column('votes_abstain', sa.Integer(), nullable=True),
        sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('window_ends_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('objection_count', sa.Integer(), nullable=False),
        sa.Column('withdrawn_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('implemented_on', sa.Date(), nullable=True),
        sa.Column('implementation_recorded_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('result_text', sa.Text(), nullable=True),
        sa.Column('result_place', sa.String(length=200), nullable=True),
        sa.Column('result_published_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('result_overdue_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_resolution_disclosures_case_id_cases')),
        sa.ForeignKeyConstraint(['community_id'], ['grid_nodes.id'],
                                name=op.f('fk_resolution_disclosures_community_id_grid_nodes')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_resolution_disclosures')),
        sa.UniqueConstraint('case_id', 'event_seq', name=op.f('uq_resolution_disclosures_case_id_event_seq')),
    )
    with op.batch_alter_table('resolution_disclosures', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_resolution_disclosures_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_resolution_disclosures_published_at'), ['published_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_resolution_disclosures_window_ends_at'), ['window_ends_at'], unique=False)
        batch_op.create_index('ix_resolution_disclosures_community_published', ['community_id', 'published_at'],
                              unique=False)

    op.create_table(
        'disclosure_followups',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('community_id', sa.Integer(), nullable=False),
        sa.Column('month', sa.String(length=7), nullable=False),
        sa.Column('due_on', sa.Date(), nullable=False),
        sa.Column('items', sa.JSON(), nullable=False),
        sa.Column('generated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('called_back_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('called_back_by_id', sa.Integer(), nullable=True),
        sa.Column('called_back_on_time', sa.Boolean(), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['community_id'], ['grid_nodes.id'],
                                name=op.f('fk_disclosure_followups_community_id_grid_nodes')),
        sa.ForeignKeyConstraint(['called_back_by_id'], ['users.id'],
                                name=op.f('fk_disclosure_followups_called_back_by_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_disclosure_followups')),
        sa.UniqueConstraint('community_id', 'month', name=op.f('uq_disclosure_followups_community_id_month')),
    )
    with op.batch_alter_table('disclosure_followups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_disclosure_followups_community_id'), ['community_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_disclosure_followups_month'), ['month'], unique=False)


def downgrade():
    with op.batch_alter_table('disclosure_followups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_disclosure_followups_month'))
        batch_op.drop_index(batch_op.f('ix_disclosure_followups_community_id'))
    op.drop_table('disclosure_followups')
    with op.batch_alter_table('resolution_disclosures', schema=None) as batch_op:
        batch_op.drop_index('ix_resolution_disclosures_community_published')
        batch_op.drop_index(batch_op.f('ix_resolution_disclosures_window_ends_at'))
        batch_op.drop_index(batch_op.f('ix_resolution_disclosures_published_at'))
        batch_op.drop_index(batch_op.f('ix_resolution_disclosures_case_id'))
    op.drop_table('resolution_disclosures')
