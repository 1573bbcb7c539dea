"""Work items: the projection of READY user tasks that task queues read."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.cases.models import Case
from app.db import db
from app.people.models import User
from app.timeutil import UTCDateTime, utcnow

ITEM_READY = "ready"
ITEM_CLAIMED = "claimed"
ITEM_COMPLETED = "completed"
ITEM_CANCELLED = "cancelled"
OPEN_STATES = (ITEM_READY, ITEM_CLAIMED)


class WorkItem(db.Model):
    __tablename__ = "work_items"
    __table_args__ = (
        UniqueConstraint("case_id", "task_id"),
        Index("ix_work_items_queue", "state", "role", "grid_path"),
        Index("ix_work_items_assignee", "assignee_id", "state"),
        Index("ix_work_items_due", "state", "due_at"),
        # Queues read open items of a role under a grid path prefix. varchar_pattern_ops lets
        # PostgreSQL use the index for LIKE 'prefix%' whatever the database collation; the
        # partial WHERE keeps it to the ~30% of rows that are open (bench/queues.py).
        Index(
            "ix_work_items_open_scope", "role", "grid_path",
            postgresql_ops={"grid_path": "varchar_pattern_ops"},
            postgresql_include=["due_at", "created_at", "id"],
            postgresql_where=text("state IN ('ready', 'claimed')"),
            sqlite_where=text("state IN ('ready', 'claimed')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    task_id: Mapped[str] = mapped_column(String(36))
    spec_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200))
    process_id: Mapped[str] = mapped_column(String(128))
    lane: Mapped[str | None] = mapped_column(String(128))
    role: Mapped[str | None] = mapped_column(String(64))
    form: Mapped[str | None] = mapped_column(String(300))
    instructions: Mapped[str | None] = mapped_column(Text)
    # Denormalised from the case so that queues are one indexed query.
    grid_node_id: Mapped[int] = mapped_column(ForeignKey("grid_nodes.id"))
    grid_path: Mapped[str] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(16), default=ITEM_READY)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # Work dispatched to one department: only its members see and act on it (None: any).
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    warn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # SLA (issue 5): approved deadline extensions (延期) and when near-due / overdue
    # notifications went out (NULL: not yet; reset when an extension moves the times).
    extension_count: Mapped[int] = mapped_column(default=0, server_default="0")
    warn_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Loaded explicitly where needed (queue listings join them in one query).
    case: Mapped[Case] = relationship(lazy="select")
    assignee: Mapped[User | None] = relationship(foreign_keys=[assignee_id], lazy="select")


EXTENSION_PENDING = "pending"
EXTENSION_APPROVED = "approved"
EXTENSION_REJECTED = "rejected"
EXTENSION_WITHDRAWN = "withdrawn"   # the work item closed before anyone decided


class ExtensionRequest(db.Model):
    """A handler's request to move a work item's deadline (延期申请) and its decision."""

    __tablename__ = "extension_requests"
    __table_args__ = (Index("ix_extension_requests_state_path", "state", "grid_path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    work_item_id: Mapped[int] = mapped_column(ForeignKey("work_items.id"), index=True)
    task_id: Mapped[str] = mapped_column(String(36))
    grid_path: Mapped[str] = mapped_column(String(512))
    state: Mapped[str] = mapped_column(String(16), default=EXTENSION_PENDING)
    reason: Mapped[str] = mapped_column(Text)
    old_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    requested_due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    new_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_reason: Mapped[str | None] = mapped_column(Text)

    case: Mapped[Case] = relationship(lazy="select")
    work_item: Mapped[WorkItem] = relationship(lazy="select")
    requested_by: Mapped[User | None] = relationship(foreign_keys=[requested_by_id], lazy="select")
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id], lazy="select")
