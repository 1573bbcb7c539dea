"""Dashboard metrics read model (issue 8): one row of facts per case, folded from case_events.

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa



revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

# a period's scan reads only the cases with a milestone in it (app/dashboard/metrics.py window)
MILESTONES = ("reported_at", "intake_at", "handled_at", "closed_at", "ended_at", "first_red_at", "first_yellow_at",
              "rated_at", "last_tally_at", "resolution_at", "disclosed_at", "disclosure_overdue_at")


def upgrade():
    op.create_table(
        "dashboard_case_facts",
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id", name="fk_dashboard_case_facts_case_id_cases",
                                                         ondelete="CASCADE"), nullable=False),
        sa.Column("reference", sa.String(32), nullable=False),
        sa.Column("process_id", sa.String(128), nullable=False),
        sa.Column("process_version", sa.Integer(), nullable=False),
        sa.Column("grid_path", sa.String(512), nullable=False),
        sa.Column("source", sa.String(64)),
        sa.Column("department", sa.String(64)),
        sa.Column("initial_level", sa.String(1)),
        sa.Column("level", sa.String(1)),
        sa.Column("closed_level", sa.String(1)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("end_event", sa.String(128)),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("intake_at", sa.DateTime(timezone=True)),
        sa.Column("accepted", sa.Boolean()),
        sa.Column("dispatched_at", sa.DateTime(timezone=True)),
        sa.Column("handled_at", sa.DateTime(timezone=True)),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("first_yellow_at", sa.DateTime(timezone=True)),
        sa.Column("first_red_at", sa.DateTime(timezone=True)),
        sa.Column("yellow_count", sa.Integer(), nullable=False),
        sa.Column("red_count", sa.Integer(), nullable=False),
        sa.Column("handling_hours", sa.Float()),
        sa.Column("rework_count", sa.Integer(), nullable=False),
        sa.Column("extension_count", sa.Integer(), nullable=False),
        sa.Column("upgrade_count", sa.Integer(), nullable=False),
        sa.Column("downgrade_count", sa.Integer(), nullable=False),
        sa.Column("whistle_count", sa.Integer(), nullable=False),
        sa.Column("satisfaction", sa.String(32)),
        sa.Column("rated_at", sa.DateTime(timezone=True)),
        sa.Column("tally_count", sa.Integer(), nullable=False),
        sa.Column("quorum_met_count", sa.Integer(), nullable=False),
        sa.Column("attendance_due", sa.Integer(), nullable=False),
        sa.Column("attendance_present", sa.Integer(), nullable=False),
        sa.Column("last_tally_at", sa.DateTime(timezone=True)),
        sa.Column("resolution_at", sa.DateTime(timezone=True)),
        sa.Column("resolution_passed", sa.Boolean()),
        sa.Column("disclosed_at", sa.DateTime(timezone=True)),
        sa.Column("disclosure_overdue_at", sa.DateTime(timezone=True)),
        sa.Column("event_seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("case_id", name="pk_dashboard_case_facts"),
    )
    op.create_index(
        "ix_dashboard_case_facts_grid_path", "dashboard_case_facts", ["grid_path"],
        postgresql_ops={"grid_path": "varchar_pattern_ops"},
    )
    for column in MILESTONES:
        op.create_index(f"ix_dashboard_case_facts_{column}", "dashboard_case_facts", [column])
    op.create_table(
        "dashboard_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("last_event_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dashboard_state"),
    )


def downgrade():
    op.drop_table("dashboard_state")
    for column in MILESTONES:
        op.drop_index(f"ix_dashboard_case_facts_{column}", table_name="dashboard_case_facts")
    op.drop_index("ix_dashboard_case_facts_grid_path", table_name="dashboard_case_facts")
    op.drop_table("dashboard_case_facts")
