"""In-app notifications (the inbox): one row per person and thing to tell them."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.cases.models import Case
from app.db import db
from app.timeutil import UTCDateTime, utcnow

KIND_NEW_WORK = "new_work"              # a work item of my role became ready in my scope
KIND_NEAR_DUE = "near_due"              # my claimed work passed its warning time
KIND_OVERDUE = "overdue"                # work passed its deadline (assignee, supervisors)
KIND_RETURNED = "returned"              # my claimed work was returned to the queue or reassigned
KIND_ASSIGNED = "assigned"              # a supervisor gave me a work item
KIND_EXTENSION_REQUESTED = "extension_requested"  # for approvers
KIND_EXTENSION_DECIDED = "extension_decided"      # for the requester
KINDS = (KIND_NEW_WORK, KIND_NEAR_DUE, KIND_OVERDUE, KIND_RETURNED, KIND_ASSIGNED,
         KIND_EXTENSION_REQUESTED, KIND_EXTENSION_DECIDED)


class Notification(db.Model):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_read", "user_id", "read_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    case_reference: Mapped[str | None] = mapped_column(String(32))
    work_item_id: Mapped[int | None] = mapped_column(ForeignKey("work_items.id"))
    # What the kind is about, in the case's own words (task name · case title, a reason…);
    # the kind's sentence is translated when the inbox is shown.
    text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    case: Mapped[Case | None] = relationship(lazy="select")
