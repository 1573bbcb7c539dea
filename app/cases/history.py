"""The append-only, hash-chained event log of a case.

Each event's hash covers its canonical content plus the previous event's hash,
so changing, removing or reordering any stored event breaks the chain from that
point on. Callers hold the case lock, which makes ``seq`` allocation safe; the
unique ``(case_id, seq)`` constraint backs that up.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Mapping

from sqlalchemy import select

from app.cases.models import Case, CaseEvent
from app.db import db
from app.people.models import User
# One definition of what an event's hash covers, shared with offline verification.
from workflows.replay import canonical_content  # noqa: F401  (re-exported)

GENESIS_HASH = "0" * 64
# Called with (case, event) after each append, in the same transaction (e.g. webhook
# deliveries: app.webhooks.service). Registered by features at start-up; keep them cheap.
EVENT_HOOKS: list = []


def append_event(
    case: Case, kind: str, payload: Mapping[str, Any], *, at: datetime, actor: User | None, role: str | None = None,
) -> CaseEvent:
    # The chain head lives on the case row, which the caller holds locked.
    at = at.astimezone(timezone.utc)  # hash the time as the column gives it back (UTC), so verify can recompute it
    seq, prev_hash = (case.last_event_seq or 0) + 1, case.last_event_hash or GENESIS_HASH
    actor_name = actor.username if actor is not None else "system"
    payload = json.loads(json.dumps(payload, ensure_ascii=False))  # exactly what the JSON column will give back
    digest = hashlib.sha256(
        canonical_content(
            reference=case.reference, seq=seq, kind=kind, at=at, actor=actor_name, role=role,
            payload=payload, prev_hash=prev_hash,
        )
    ).hexdigest()
    event = CaseEvent(
        case=case, seq=seq, kind=kind, at=at, actor_id=actor.id if actor else None,
        actor=actor_name, role=role, payload=payload, prev_hash=prev_hash, hash=digest,
    )
    db.session.add(event)
    case.last_event_seq, case.last_event_hash = seq, digest
    for hook in EVENT_HOOKS:
        hook(case, event)
    return event


def events_of(case: Case, *, offset: int = 0, limit: int = 100) -> tuple[list[CaseEvent], int]:
    from sqlalchemy import func

    total = db.session.scalar(select(func.count()).select_from(CaseEvent).where(CaseEvent.case_id == case.id)) or 0
    rows = db.session.scalars(
        select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq).offset(offset).limit(limit)
    )
    return list(rows), total
