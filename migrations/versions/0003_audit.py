"""Auditor search indexes (issue 6)

The auditors' search filters cases by the events in their history: who acted
(``actor``), and whether a task was done more than once or a deadline fired
(``kind``). Both look events up per case, so the indexes lead with the column the
filter names and carry ``case_id``. Plain b-tree indexes: the same on SQLite and
PostgreSQL. (case_events stays append-only: indexes change no rows.)

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_case_events_actor_case", "case_events", ["actor", "case_id"])
    op.create_index("ix_case_events_kind_case", "case_events", ["kind", "case_id"])


def downgrade():
    op.drop_index("ix_case_events_kind_case", table_name="case_events")
    op.drop_index("ix_case_events_actor_case", table_name="case_events")
