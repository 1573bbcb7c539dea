"""Auditing cases: who may, verification and replay, search, history, bundles.

Everything here only reads: verification loads the events, the stored state and the
process versions and replays them in memory (workflows/replay.py); nothing is
written, so a verification never needs a transaction of its own.

Auditors (role ``auditor``) see every case under the grid nodes where they hold the
role; administrators see every case. Nobody else uses these pages.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from flask import current_app
from sqlalchemy import and_, exists, false, func, or_, select
from sqlalchemy.orm import aliased

from app.audit.bundle import FORMAT, FORMAT_VERSION, encode_file
from app.cases.models import CASE_ACTIVE, CASE_COMPLETED, Case, CaseEvent, Timer
from app.db import db
from app.errors import InvalidInput, NotFound, PermissionDenied
from app.people import service as people
from app.people.models import GridNode, User
from app.processes import service as processes
from app.processes.models import ProcessVersion
from app.runtime import Runtime
from app.timeutil import utcnow
from app.work.models import OPEN_STATES, WorkItem
from workflows.replay import (
    WORKFLOW_KINDS, CaseRecord, RecordedEvent, Replayer, Snapshot, Verdict, data_changes,
)
from workflows.serialization import SERIALIZER_VERSION

AUDITOR_ROLE = "auditor"
STATUSES = (CASE_ACTIVE, CASE_COMPLETED)
# Events that count as rework / escalation in search (shown on the search page too).
REWORK_KINDS = ("task_completed",)
ESCALATION_KINDS = ("timer_fired",)


# -- who may ----------------------------------------------------------------------
def auditor_paths(user: User) -> tuple[str, ...] | None:
    """Grid paths the user audits; None = everything (administrators)."""
    if user.is_admin:
        return None
    return tuple(a.grid_node.path for a in user.roles if a.role == AUDITOR_ROLE)


def is_auditor(user: User) -> bool:
    return bool(getattr(user, "is_authenticated", False)) and (user.is_admin or bool(auditor_paths(user)))


def require_auditor(user: User) -> tuple[str, ...] | None:
    paths = auditor_paths(user)
    if paths is not None and not paths:
        raise PermissionDenied("only auditors may read case histories here", code="not_auditor")
    return paths


def case_for_audit(user: User, reference: str) -> Case:
    """The case, if the user audits its grid: not an auditor → 403, out of scope → 404."""
    paths = require_auditor(user)
    case = db.session.scalar(select(Case).where(Case.reference == reference))
    if case is None or (paths is not None and not any(case.grid_node.path.startswith(p) for p in paths)):
        raise NotFound(f"case {reference} does not exist")
    return case


# -- reading a case's record -------------------------------------------------------
def events_of(case: Case) -> list[CaseEvent]:
    return list(db.session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq, CaseEvent.id)))


def recorded(event: CaseEvent) -> RecordedEvent:
    return RecordedEvent(event.seq, event.kind, event.at, event.actor, event.role, event.payload or {},
                         event.prev_hash, event.hash)


def record_of(case: Case, events: Sequence[CaseEvent] | None = None) -> CaseRecord:
    """The case's stored record. The chain head, state, data and status come from one read
    of the case row; a writer that commits between that read and the events' (a step adds
    its event and moves the head in one transaction) shows as events past the head, so
    both are read once more before that counts as a problem."""
    for attempt in (1, 2):
        row = db.session.execute(
            select(Case.last_event_seq, Case.last_event_hash, Case.state, Case.serializer_version, Case.data,
                   Case.status).where(Case.id == case.id)
        ).one()
        rows = list(events) if events is not None and attempt == 1 else events_of(case)
        if not rows or rows[-1].seq <= (row.last_event_seq or 0) or attempt == 2:
            break
    return CaseRecord(
        reference=case.reference,
        events=tuple(recorded(e) for e in rows),
        head_seq=row.last_event_seq,
        head_hash=row.last_event_hash,
        state=row.state,
        serializer_version=row.serializer_version,
        data=row.data,
        ended=row.status == CASE_COMPLETED,
    )


def definition_source(rt: Runtime):
    found: dict[tuple[str, str], Any] = {}

    def source(process_id: str, content_hash: str):
        key = (process_id, content_hash)
        if key not in found:
            found[key] = _definition(rt, process_id, content_hash)
        return found[key]

    return source


def _definition(rt: Runtime, process_id: str, content_hash: str):
    version = db.session.scalar(select(ProcessVersion).where(
        ProcessVersion.process_id == process_id, ProcessVersion.content_hash == content_hash))
    if version is None:
        return None
    try:
        return processes.definition_of(version, rt)
    except Exception:  # noqa: BLE001 - stored files that no longer load: the replay reports the version
        return None


def verify_case(case: Case, rt: Runtime, *, events: Sequence[CaseEvent] | None = None,
                snapshots: bool = False) -> Verdict:
    record = record_of(case, events)
    return Replayer(rt.engine, definition_source(rt), keep_snapshots=snapshots).verify(record)


def verify_all(rt: Runtime, *, batch: int = 200, after_id: int = 0, limit: int | None = None) -> Iterator[Verdict]:
    """Every case in id order (optionally ``limit`` cases after id ``after_id``), in batches:
    one read of the batch's case rows and one of their events (a case whose events run past
    its head is read again on its own)."""
    last_id, left = after_id, limit
    replayer = Replayer(rt.engine, definition_source(rt))
    while left is None or left > 0:
        size = batch if left is None else min(batch, left)
        rows = db.session.execute(
            select(Case.id, Case.reference, Case.last_event_seq, Case.last_event_hash, Case.state,
                   Case.serializer_version, Case.data, Case.status)
            .where(Case.id > last_id).order_by(Case.id).limit(size)
        ).all()
        if left is not None:
            left -= len(rows)
        if not rows:
            return
        events: dict[int, list[RecordedEvent]] = {row.id: [] for row in rows}
        for event in db.session.scalars(select(CaseEvent).where(CaseEvent.case_id.in_(list(events)))
                                        .order_by(CaseEvent.case_id, CaseEvent.seq, CaseEvent.id)):
            events[event.case_id].append(recorded(event))
        for row in rows:
            mine = events[row.id]
            if mine and mine[-1].seq > (row.last_event_seq or 0):  # a step committed meanwhile: read it again
                record = record_of(db.session.get(Case, row.id))
            else:
                record = CaseRecord(row.reference, tuple(mine), row.last_event_seq, row.last_event_hash, row.state,
                                    row.serializer_version, row.data, row.status == CASE_COMPLETED)
            yield replayer.verify(record)
            last_id = row.id
        db.session.expunge_all()


# -- bundles ----------------------------------------------------------------------------
def export_bundle(case: Case, rt: Runtime, *, exported_by: str | None = None) -> dict[str, Any]:
    """Everything needed to verify the case offline (see app/audit/bundle.py)."""
    events = events_of(case)
    record = record_of(case, events)
    versions = [case.process_version]
    for event in events:
        if event.kind == "case_migrated":
            target = db.session.scalar(select(ProcessVersion).where(
                ProcessVersion.process_id == (event.payload.get("process_id") or case.process_version.process_id),
                ProcessVersion.content_hash == event.payload.get("content_hash")))
            if target is not None and target not in versions:
                versions.append(target)
    start = next((e for e in events if e.kind == "case_started"), None)
    if start is not None:  # the version the case started on (a migrated case's row names the newest)
        first = db.session.scalar(select(ProcessVersion).where(
            ProcessVersion.process_id == start.payload.get("process_id"),
            ProcessVersion.content_hash == start.payload.get("content_hash")))
        if first is not None and first not in versions:
            versions.insert(0, first)
    config = current_app.config
    calendar_file = config.get("CALENDAR_FILE")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": utcnow().isoformat(),
        "exported_by": exported_by,
        "engine": {"serializer_version": SERIALIZER_VERSION},
        "case": {
            "reference": case.reference,
            "title": case.title,
            "process_id": case.process_version.process_id,
            "process_version": case.process_version.version,
            "content_hash": case.process_version.content_hash,
            "grid": case.grid_node.code,
            "status": case.status,
            "end_event": case.end_event,
            "created_at": case.created_at.isoformat() if case.created_at else None,
            "closed_at": case.closed_at.isoformat() if case.closed_at else None,
            "head_seq": record.head_seq,
            "head_hash": record.head_hash,
            "data": case.data,
            "state": record.state,
            "serializer_version": record.serializer_version,
        },
        "events": [e.to_dict() for e in record.events],
        "versions": [
            {"process_id": v.process_id, "version": v.version, "name": v.name, "content_hash": v.content_hash,
             "files": [encode_file(name, content) for name, content in sorted(processes.version_files(v).items())]}
            for v in versions
        ],
        "roles": {key: dict(role.labels) for key, role in rt.roles.roles.items()},
        "calendar": json.loads(Path(calendar_file).read_text(encoding="utf-8")) if calendar_file else None,
    }


# -- search -----------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditFilter:
    reference: str | None = None
    process_id: str | None = None
    grid: str | None = None            # grid code: cases at this node and below
    date_from: date | None = None      # created on or after (local date)
    date_to: date | None = None        # created on or before (local date)
    actor: str | None = None           # username that appears on any event
    status: str | None = None          # active / completed
    overdue: bool = False
    reworked: bool = False
    escalated: bool = False


@dataclass(frozen=True)
class SearchPage:
    cases: list[Case]
    total: int
    page: int
    page_size: int
    flags: dict[int, dict[str, bool]] = field(default_factory=dict)   # case id -> reworked/escalated/overdue


def parse_filter(args: Mapping[str, str]) -> AuditFilter:
    """Query arguments → filter; bad values raise InvalidInput naming the field."""
    errors: dict[str, list[str]] = {}

    def text(name: str, limit: int = 128) -> str | None:
        value = (args.get(name) or "").strip()
        if len(value) > limit:
            errors[name] = [f"at most {limit} characters"]
        return value or None

    def day(name: str) -> date | None:
        value = (args.get(name) or "").strip()
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            errors[name] = ["a date such as 2026-03-02"]
            return None

    status = text("status", 16)
    if status and status not in STATUSES:
        errors["status"] = [f"one of {', '.join(STATUSES)}"]
    result = AuditFilter(
        reference=(text("reference", 32) or "").upper() or None, process_id=text("process"), grid=text("grid", 64),
        date_from=day("from"), date_to=day("to"), actor=text("actor", 64), status=status,
        overdue=args.get("overdue") in ("1", "on", "true"), reworked=args.get("reworked") in ("1", "on", "true"),
        escalated=args.get("escalated") in ("1", "on", "true"),
    )
    if result.date_from and result.date_to and result.date_from > result.date_to:
        errors["to"] = ["the end date is before the start date"]
    if errors:
        raise InvalidInput("please check the search fields", code="invalid_search", fields=errors)
    return result


def _reworked_condition():
    """A user task was completed more than once in the case (sent back and done again)."""
    e1, e2 = aliased(CaseEvent), aliased(CaseEvent)
    return exists(select(e1.id).join(e2, and_(e2.case_id == e1.case_id, e2.seq > e1.seq, e2.kind == "task_completed",
                                                e2.payload["task"].as_string() == e1.payload["task"].as_string()))
                  .where(e1.case_id == Case.id, e1.kind == "task_completed"))


def _escalated_condition():
    """A time limit (an interrupting deadline timer, not only a warning) passed."""
    by_event = exists(select(CaseEvent.id).where(CaseEvent.case_id == Case.id, CaseEvent.kind == "timer_fired",
                                                 CaseEvent.payload["deadline"].as_boolean().is_(True)))
    by_timer = exists(select(Timer.id).where(Timer.case_id == Case.id, Timer.state == "fired",
                                             Timer.interrupting.is_(True)))
    return or_(by_event, by_timer)


def _overdue_condition(now: datetime):
    return exists(select(WorkItem.id).where(WorkItem.case_id == Case.id, WorkItem.state.in_(OPEN_STATES),
                                            WorkItem.due_at.is_not(None), WorkItem.due_at < now))


def search(user: User, filters: AuditFilter, *, page: int = 1, page_size: int = 50,
           now: datetime | None = None, tz=None) -> SearchPage:
    paths = require_auditor(user)
    now = now or utcnow()
    query = select(Case).join(GridNode, GridNode.id == Case.grid_node_id).join(
        ProcessVersion, ProcessVersion.id == Case.process_version_id)
    if paths is not None:
        query = query.where(or_(*[GridNode.path.startswith(p) for p in paths]) if paths else false())
    if filters.reference:
        query = query.where(Case.reference.startswith(filters.reference))
    if filters.process_id:
        query = query.where(ProcessVersion.process_id == filters.process_id)
    if filters.grid:
        node = db.session.scalar(select(GridNode).where(GridNode.code == filters.grid))
        if node is None:
            raise InvalidInput(f"there is no grid {filters.grid}", code="unknown_grid", fields={"grid": ["unknown grid"]})
        query = query.where(GridNode.path.startswith(node.path))
    tz = tz or timezone(timedelta(hours=8))
    if filters.date_from:
        query = query.where(Case.created_at >= datetime.combine(filters.date_from, time.min, tz).astimezone(timezone.utc))
    if filters.date_to:
        end = datetime.combine(filters.date_to + timedelta(days=1), time.min, tz).astimezone(timezone.utc)
        query = query.where(Case.created_at < end)
    if filters.actor:
        query = query.where(exists(select(CaseEvent.id).where(CaseEvent.case_id == Case.id,
                                                              CaseEvent.actor == filters.actor)))
    if filters.status:
        query = query.where(Case.status == filters.status)
    if filters.overdue:
        query = query.where(_overdue_condition(now))
    if filters.reworked:
        query = query.where(_reworked_condition())
    if filters.escalated:
        query = query.where(_escalated_condition())
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    cases = list(db.session.scalars(query.order_by(Case.created_at.desc(), Case.id.desc())
                                    .offset((page - 1) * page_size).limit(page_size)))
    flags: dict[int, dict[str, bool]] = {c.id: {"reworked": False, "escalated": False, "overdue": False} for c in cases}
    if cases:
        ids = [c.id for c in cases]
        for name, condition in (("reworked", _reworked_condition()), ("escalated", _escalated_condition()),
                                ("overdue", _overdue_condition(now))):
            for case_id in db.session.scalars(select(Case.id).where(Case.id.in_(ids), condition)):
                flags[case_id][name] = True
    return SearchPage(cases, total, page, page_size, flags)


def process_options() -> list[tuple[str, str]]:
    """(process id, name of its newest version) for every deployed process."""
    return [(v.process_id, v.name) for v in processes.latest_versions()]


# -- history ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimelineEntry:
    event: CaseEvent
    changed: dict[str, Any]            # case data keys the step set (new value)
    previous: dict[str, Any]           # their value before (absent keys missing)
    removed: list[str]
    markers: dict[str, Any]            # diagram markers after this event


@dataclass(frozen=True)
class History:
    case: Case
    verdict: Verdict | None
    entries: list[TimelineEntry]


def history(case: Case, rt: Runtime, *, verify: bool = True) -> History:
    """The timeline and the diagram markers after every event. ``verify``: also replay
    the case (the verdict; and the data diffs and waiting timers of events recorded
    before events carried them). Without it, only what the events recorded is used."""
    events = events_of(case)
    verdict = verify_case(case, rt, events=events, snapshots=True) if verify else None
    snapshots = {s.seq: s for s in verdict.snapshots} if verdict is not None else {}
    entries: list[TimelineEntry] = []
    data: dict[str, Any] = {}
    completed: dict[str, int] = {}
    current: list[str] = []
    waiting: list[str] = []
    for event in events:
        payload = event.payload or {}
        effects = payload.get("effects") if isinstance(payload.get("effects"), Mapping) else None
        snapshot: Snapshot | None = snapshots.get(event.seq)
        changed: dict[str, Any] = {}
        removed: list[str] = []
        if effects is not None:
            recorded_changes = effects.get("data")
            if isinstance(recorded_changes, Mapping):
                changed, removed = dict(recorded_changes.get("set") or {}), list(recorded_changes.get("removed") or [])
            elif snapshot is not None:
                diff = data_changes(data, snapshot.data)
                changed, removed = diff["set"], diff["removed"]
            for spec_id in effects.get("completed") or ():
                completed[spec_id] = completed.get(spec_id, 0) + 1
            current = list(effects.get("ready") or [])
            if "timers" in effects:
                waiting = list(effects.get("timers") or [])
            elif snapshot is not None:
                waiting = list(snapshot.waiting)
            if effects.get("ended"):
                current, waiting = [], []
        elif snapshot is not None and event.kind in WORKFLOW_KINDS:
            diff = data_changes(data, snapshot.data)
            changed, removed = diff["set"], diff["removed"]
        previous = {key: data[key] for key in changed if key in data}
        for key in removed:
            data.pop(key, None)
        data.update(changed)
        entries.append(TimelineEntry(event, changed, previous, removed,
                                     {"completed": dict(completed), "current": sorted(set(current)),
                                      "waiting": sorted(set(waiting))}))
    return History(case, verdict, entries)
