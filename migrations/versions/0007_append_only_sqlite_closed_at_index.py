"""The event log is append-only on SQLite too (0001 did it for PostgreSQL only);
an index on cases.closed_at for the public board's closed-demands list

Revision ID: 0007
Revises: 0006
"""
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_cases_closed_at", "cases", ["closed_at"])
    if op.get_bind().dialect.name != "sqlite":
        return
    for operation in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER case_events_no_{operation.lower()} BEFORE {operation} ON case_events "
            f"BEGIN SELECT RAISE(ABORT, 'case_events is append-only: {operation} refused'); END"
        )


def downgrade():
    op.drop_index("ix_cases_closed_at", table_name="cases")
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER IF EXISTS case_events_no_update")
    op.execute("DROP TRIGGER IF EXISTS case_events_no_delete")
