"""The dashboard's read table: one row of facts per case, folded from its events.

Nothing here is a source of truth: ``gridcase dashboard rebuild`` deletes every row and
folds them again from ``case_events`` (plus the case header for grid, process and version).
``event_seq`` is the last event folded, so a row is stale when the case's chain head moved on.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import db
from app.timeutil import UTCDateTime


class CaseFacts(db.Model):
    __tablename__ = "dashboard_case_facts"
    __table_args__ = (
        Index("ix_dashboard_case_facts_grid_path", "grid_path",
              postgresql_ops={"grid_path": "varchar_pattern_ops"}),
        # a period's scan reads only the cases with a milestone in it (metrics.window)
        *[Index(f"ix_dashboard_case_facts_{name}", name) for name in (
            "reported_at", "intake_at", "handled_at", "closed_at", "ended_at", "first_red_at", "first_yellow_at",
            "rated_at", "last_tally_at", "resolution_at", "disclosed_at", "disclosure_overdue_at")],
    )

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True)
    reference: Mapped[str] = mapped_column(String(32))
    process_id: Mapped[str] = mapped_column(String(128))
    process_version: Mapped[int] = mapped_column(Integer)
    grid_path: Mapped[str] = mapped_column(String(512))
    source: Mapped[str | None] = mapped_column(String(64))
    department: Mapped[str | None] = mapped_column(String(64))
    initial_level: Mapped[str | None] = mapped_column(String(1))
    level: Mapped[str | None] = mapped_column(String(1))
    closed_level: Mapped[str | None] = mapped_column(String(1))
    outcome: Mapped[str] = mapped_column(String(16))          # open / closed / hung / not_filed / ended
    end_event: Mapped[str | None] = mapped_column(String(128))
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    intake_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    accepted: Mapped[bool | None] = mapped_column(Boolean)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_yellow_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_red_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    yellow_count: Mapped[int] = mapped_column(Integer, default=0)
    red_count: Mapped[int] = mapped_column(Integer, default=0)
    handling_hours: Mapped[float | None] = mapped_column(Float)   # working hours, reported -> closed
    rework_count: Mapped[int] = mapped_column(Integer, default=0)
    extension_count: Mapped[int] = mapped_column(Integer, default=0)
    upgrade_count: Mapped[int] = mapped_column(Integer, default=0)
    downgrade_count: Mapped[int] = mapped_column(Integer, default=0)
    whistle_count: Mapped[int] = mapped_column(Integer, default=0)
    satisfaction: Mapped[str | None] = mapped_column(String(32))
    rated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # deliberations (四议两公开)
    tally_count: Mapped[int] = mapped_column(Integer, default=0)
    quorum_met_count: Mapped[int] = mapped_column(Integer, default=0)
    attendance_due: Mapped[int] = mapped_column(Integer, default=0)
    attendance_present: Mapped[int] = mapped_column(Integer, default=0)
    last_tally_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_passed: Mapped[bool | None] = mapped_column(Boolean)
    disclosed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disclosure_overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    event_seq: Mapped[int] = mapped_column(Integer)


class DashboardState(db.Model):
    """One row: the highest case_events.id the facts have been caught up to (a hint for the
    cheap check pages make; the periodic job's exact check does not trust it)."""

    __tablename__ = "dashboard_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_event_id: Mapped[int] = mapped_column(Integer, default=0)
