"""What the public board shows, written when a disclosure step of a case completes, and
the monthly follow-up records supervisors work from.

``ResolutionDisclosure`` is a projection of case steps (see service.on_case_step): it holds
only what was published — the resolution, its tallies, the posting window and the
implementation result — never people's names or phones. The case history stays the record.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.cases.models import Case
from app.db import db
from app.people.models import GridNode, User
from app.timeutil import UTCDateTime, utcnow


class ResolutionDisclosure(db.Model):
    """One 决议公开 of a 四议两公开 case (a case re-deliberated after an upheld objection
    has several; the earlier ones are withdrawn)."""

    __tablename__ = "resolution_disclosures"
    __table_args__ = (
        UniqueConstraint("case_id", "event_seq"),
        Index("ix_resolution_disclosures_community_published", "community_id", "published_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    event_seq: Mapped[int] = mapped_column(Integer)            # the case event that published it
    community_id: Mapped[int] = mapped_column(ForeignKey("grid_nodes.id"))
    topic: Mapped[str] = mapped_column(String(300))
    meeting_type: Mapped[str] = mapped_column(String(32))
    resolution_text: Mapped[str] = mapped_column(Text)
    place: Mapped[str] = mapped_column(String(200), default="")
    votes_due: Mapped[int | None] = mapped_column(Integer)
    votes_present: Mapped[int | None] = mapped_column(Integer)
    votes_for: Mapped[int | None] = mapped_column(Integer)
    votes_against: Mapped[int | None] = mapped_column(Integer)
    votes_abstain: Mapped[int | None] = mapped_column(Integer)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    window_ends_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    objection_count: Mapped[int] = mapped_column(Integer, default=0)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)   # objection upheld
    implemented_on: Mapped[date | None] = mapped_column(Date)
    implementation_recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result_text: Mapped[str | None] = mapped_column(Text)
    result_place: Mapped[str | None] = mapped_column(String(200))
    result_published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    result_overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # 督办 on late result disclosure

    case: Mapped[Case] = relationship(lazy="joined")
    community: Mapped[GridNode] = relationship(lazy="joined")


class FollowUp(db.Model):
    """每月回访: one community's resolutions of one month and their implementation status,
    due for a call back by the 20th of the following month."""

    __tablename__ = "disclosure_followups"
    __table_args__ = (UniqueConstraint("community_id", "month"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("grid_nodes.id"), index=True)
    month: Mapped[str] = mapped_column(String(7), index=True)          # resolutions published in it: "2026-11"
    due_on: Mapped[date] = mapped_column(Date)                         # the 20th of the next month
    items: Mapped[list] = mapped_column(db.JSON, default=list)
    generated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    called_back_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    called_back_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    called_back_on_time: Mapped[bool | None] = mapped_column()
    note: Mapped[str | None] = mapped_column(Text)

    community: Mapped[GridNode] = relationship(lazy="joined")
    called_back_by: Mapped[User | None] = relationship(lazy="joined")
