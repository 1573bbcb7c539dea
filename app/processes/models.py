"""Immutable process versions and their files, stored by content hash."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import db
from app.timeutil import UTCDateTime, utcnow


class StoredFile(db.Model):
    """File content addressed by its SHA-256; shared by every version that uses it."""

    __tablename__ = "stored_files"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int]


class ProcessVersion(db.Model):
    """One deployed version of a process. Never updated once written."""

    __tablename__ = "process_versions"
    __table_args__ = (
        UniqueConstraint("process_id", "content_hash"),
        UniqueConstraint("process_id", "version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    process_id: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int]
    name: Mapped[str] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64))
    roles: Mapped[list] = mapped_column(db.JSON, default=list)
    deployed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deployed_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)

    files: Mapped[list["ProcessVersionFile"]] = relationship(
        cascade="all, delete-orphan", lazy="select", order_by="ProcessVersionFile.filename"
    )


class ProcessVersionFile(db.Model):
    __tablename__ = "process_version_files"

    version_id: Mapped[int] = mapped_column(ForeignKey("process_versions.id"), primary_key=True)
    filename: Mapped[str] = mapped_column(String(300), primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("stored_files.sha256"))
