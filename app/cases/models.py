"""Cases, their append-only event log, their timers and reference counters."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, deferred, mapped_column, relationship

from app.db import db
from app.people.models import GridNode
from app.processes.models import ProcessVersion
from app.timeutil import UTCDateTime, utcnow

CASE_ACTIVE = "active"
CASE_COMPLETED = "completed"


class Case(db.Model):
    """One case = one workflow instance. ``state`` is the serialized workflow
    (without its spec); ``row_version`` guards against lost updates."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    process_version_id: Mapped[int] = mapped_column(ForeignKey("process_versions.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    grid_node_id: Mapped[int] = mapped_column(ForeignKey("grid_nodes.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=CASE_ACTIVE, index=True)
    end_event: Mapped[str | None] = mapped_column(String(128))
    data: Mapped[dict] = mapped_column(db.JSON, default=dict)
    # The serialized workflow is only needed when the case is acted on (lock_case undefers it).
    state: Mapped[str] = deferred(mapped_column(Text))
    serializer_version: Mapped[str] = mapped_column(String(16))
    row_version: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Head of the event chain, kept on the locked row so appending needs no lookup.
    last_event_seq: Mapped[int] = mapped_column(Integer, default=0)
    last_event_hash: Mapped[str] = mapped_column(String(64), default="0" * 64)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # A case started by another case's message (see CASE_LINKS): whom to answer, and why.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    link: Mapped[str | None] = mapped_column(String(128))
    # Residents follow their demand on the public pages with this code (no login).
    tracking_code: Mapped[str | None] = mapped_column(String(32), unique=True)

    process_version: Mapped[ProcessVersion] = relationship(lazy="joined")
    grid_node: Mapped[GridNode] = relationship(lazy="joined")

    __mapper_args__ = {"version_id_col": row_version}


class CaseEvent(db.Model):
    """Append-only, hash-chained history of every command applied to a case.

    ``(case_id, seq)`` is unique, so two writers that raced past every other
    check still cannot both append the same step.
    """

    __tablename__ = "case_events"
    __table_args__ = (UniqueConstraint("case_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    seq: Mapped[int]
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str | None] = mapped_column(String(64))   # username at the time (or "system")
    role: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(db.JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    case: Mapped[Case] = relationship()


class Timer(db.Model):
    """A WAITING timer of a case: the truth the scheduler works from."""

    __tablename__ = "timers"
    __table_args__ = (
        UniqueConstraint("case_id", "task_id"),
        Index("ix_timers_state_due", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    task_id: Mapped[str] = mapped_column(String(36))
    spec_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    interrupting: Mapped[bool]
    attached_to: Mapped[str | None] = mapped_column(String(36))
    state: Mapped[str] = mapped_column(String(16), default="waiting")  # waiting / fired / cancelled
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    case: Mapped[Case] = relationship()


class ReferenceCounter(db.Model):
    """Next number for case references per prefix and year (SJ-2026-000123)."""

    __tablename__ = "reference_counters"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class AttachmentBlob(db.Model):
    """Uploaded file content, addressed by SHA-256 (the hash is recorded in the case history)."""

    __tablename__ = "attachment_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content: Mapped[bytes] = deferred(mapped_column(LargeBinary))
    thumbnail: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))
    size: Mapped[int]


class Attachment(db.Model):
    """A file attached to a case (a photo of the site, a signed form…)."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("attachment_blobs.sha256"))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int]
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    task_id: Mapped[str | None] = mapped_column(String(36))   # the task it was uploaded for
    public: Mapped[bool] = mapped_column(default=False)       # visible on the tracking page

    case: Mapped[Case] = relationship()
    blob: Mapped[AttachmentBlob] = relationship(lazy="select")


class CaseNote(db.Model):
    """An internal note by a handler; never shown on public pages."""

    __tablename__ = "case_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
