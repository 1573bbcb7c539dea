"""Internal notes on a case: written by handlers, never shown on public pages.

Adding a note is a change to the case like any other: the case row is locked, the
note stored and a ``note_added`` event (with the text and its SHA-256) appended to the
hash-chained history. Services flush only; the caller commits.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app.cases import service as cases
from app.cases.models import Case, CaseNote
from app.db import db
from app.errors import InvalidInput, PermissionDenied
from app.people import service as people
from app.people.models import User
from app.timeutil import utcnow

NOTE_MAX = 2000


@dataclass(frozen=True)
class NoteView:
    id: int
    text: str
    created_at: datetime
    author: str          # display name (or "system")
    author_username: str | None


READ_ONLY_ROLES = ("auditor",)  # auditors read every case in their scope and change none


def may_write(user: User, case: Case) -> bool:
    """Anyone whose roles (other than read-only ones) cover the case's grid."""
    if user.is_admin:
        return True
    roles = [a.role for a in user.roles if a.role not in READ_ONLY_ROLES]
    return bool(roles) and people.covers_grid(user, case.grid_node.path, roles=roles)


def add_note(case: Case, user: User, text: str, *, at: datetime | None = None) -> CaseNote:
    at = at or utcnow()
    text = (text or "").replace("\r\n", "\n").strip()
    if not may_write(user, case):
        raise PermissionDenied("you hold no role covering this case's grid")
    if not text:
        raise InvalidInput("the note is empty", code="note_empty", fields={"text": ["the note is empty"]})
    if len(text) > NOTE_MAX:
        message = f"a note may be at most {NOTE_MAX} characters long"
        raise InvalidInput(message, code="note_too_long", fields={"text": [message]})
    case = cases.lock_case(case.id)  # notes may be added to closed cases too
    note = CaseNote(case_id=case.id, author_id=user.id, text=text, created_at=at)
    db.session.add(note)
    db.session.flush()
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    cases.record(case, "note_added", {"note": note.id, "text": text, "sha256": digest}, actor=user, role=None, at=at)
    return note


def notes_of(case: Case) -> list[NoteView]:
    rows = db.session.execute(
        select(CaseNote, User.display_name, User.username)
        .outerjoin(User, User.id == CaseNote.author_id)
        .where(CaseNote.case_id == case.id)
        .order_by(CaseNote.created_at, CaseNote.id)
    )
    return [
        NoteView(id=note.id, text=note.text, created_at=note.created_at, author=name or "system", author_username=username)
        for note, name, username in rows
    ]
