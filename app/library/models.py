"""A process owner's working draft of one process (files stored by content hash)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import db
from app.processes.models import ProcessVersion
from app.timeutil import UTCDateTime, utcnow


class ProcessDraft(db.Model):
    """One draft per process. ``files`` maps file name -> sha256 of a StoredFile;
    scenario files live under ``scenarios/``. Deploying or discarding removes it."""

    __tablename__ = "process_drafts"

    id: Mapped[int] = mapped_column(primary_key=True)
    process_id: Mapped[str] = mapped_column(String(128), unique=True)
    base_version_id: Mapped[int | None] = mapped_column(ForeignKey("process_versions.id"))
    files: Mapped[dict] = mapped_column(db.JSON, default=dict)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revision: Mapped[int] = mapped_column(Integer, default=1)

    base_version: Mapped[ProcessVersion | None] = relationship(lazy="joined")


class ProcessScenarioSet(db.Model):
    """The scenario files (name -> sha256 of a StoredFile) of the last draft deployed from the
    browser. A new draft starts from the library folder's scenarios/ with these laid over them."""

    __tablename__ = "process_scenario_sets"

    process_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    files: Mapped[dict] = mapped_column(db.JSON, default=dict)
    updated_by: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
