"""Case operations. Every change follows one path:

lock the case row → load the workflow → act through the engine → save state,
project work items and timers, append the event → (the caller commits) →
follow-up jobs run after the commit.

Services flush only; the view or job that called them commits once.
"""
from __future__ import annotations

import logging
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import undefer

from app.cases.history import append_event
from app.cases.models import CASE_ACTIVE, CASE_COMPLETED, Case, ReferenceCounter, Timer
from app import queue
from app.db import after_commit, db
from app.errors import Conflict, NotFound, PermissionDenied
from app.people import service as people
from app.people.models import User
from app.processes import service as processes
from app.runtime import Runtime
from app.timeutil import utcnow
from app.work.models import ITEM_CANCELLED, ITEM_COMPLETED, ITEM_READY, OPEN_STATES, WorkItem
from workflows.engine import CaseRun, Outcome
from workflows.errors import MessageNotAwaited
from workflows.replay import data_changes
from workflows.serialization import SavedState

REFERENCE_TIMEZONE = ZoneInfo("Asia/Shanghai")
log = logging.getLogger(__name__)
# Called with (case, new work items, at) after a step that made work ready has been
# flushed (items have ids), in the same transaction: app.notifications tells the role.
WORK_READY_HOOKS: list = []
RESIDENT_ROLE = "resident"
# Who the history names when a resident without an account acts (append_event reads .id, .username).
_RESIDENT = SimpleNamespace(id=None, username=RESIDENT_ROLE)


# -- reading ------------------------------------------------------------------
def get_case(reference: str) -> Case:
    case = db.session.scalar(select(Case).where(Case.reference == reference))
    if case is None:
        raise NotFound(f"case {reference} does not exist")
    return case


def lock_case(case_id: int | Any) -> Case:
    """Load the case row for writing: one writer per case.

    ``case_id`` may be a scalar subquery (e.g. a work item's case), which saves a
    round trip. PostgreSQL: SELECT … FOR UPDATE makes a concurrent writer wait,
    and ``populate_existing`` makes sure we act on what it committed. SQLite
    takes the database write lock at BEGIN (see app.db). The row version checked
    on UPDATE backs both up.
    """
    case = db.session.scalar(
        select(Case)
        .where(Case.id == case_id)
        .options(undefer(Case.state))
        .with_for_update(of=Case)
        .execution_options(populate_existing=True)
    )
    if case is None:
        raise NotFound("the case does not exist")
    return case


def load_run(case: Case, rt: Runtime) -> CaseRun:
    definition = processes.definition_of(case.process_version, rt)
    return rt.engine.load(definition, SavedState(case.state, case.serializer_version))


# -- starting -----------------------------------------------------------------
def start_case(
    rt: Runtime,
    *,
    process_id: str,
    title: str,
    grid_code: str,
    data: Mapping[str, Any],
    actor: User | None,
    at: datetime | None = None,
) -> Case:
    at = at or utcnow()
    version = processes.get_version(process_id)
    grid = people.grid_by_code(grid_code)
    if actor is not None and not actor.is_admin and not people.covers_grid(actor, grid.path):
        raise PermissionDenied(f"you hold no role covering grid {grid.code}")
    definition = processes.definition_of(version, rt)
    run, outcome = rt.engine.start(definition, data, at=at)

    case = Case(
        reference=_next_reference(process_id, at),
        process_version=version,
        title=title,
        grid_node=grid,
        created_by_id=actor.id if actor else None,
        created_at=at,
    )
    db.session.add(case)
    payload = {
        "process_id": version.process_id,
        "process_version": version.version,
        "content_hash": version.content_hash,
        "title": title,
        "grid": grid.code,
        "data": dict(data),
    }
    _apply(rt, case, run, outcome, "case_started", payload, actor=actor, role=None, at=at, new_case=True)
    return case


# -- acting on a running case -------------------------------------------------
def apply_completion(
    rt: Runtime, case: Case, item: WorkItem, data: Mapping[str, Any], *, actor: User | None, at: datetime
) -> Outcome:
    """Complete the work item's task (the caller has locked the case and checked permission).

    ``actor`` None: a resident without an account (the public tracking page); only a
    ``resident`` task may be completed so, and the event records actor and role "resident"."""
    if actor is None and item.role != RESIDENT_ROLE:
        raise PermissionDenied(f"this task is for role {item.role!r}; only resident tasks may be completed without an account")
    run = load_run(case, rt)
    outcome = run.complete(item.task_id, data, at=at, role=item.role)
    if actor is not None:
        item.completed_by_id = actor.id
        if item.assignee_id is None:
            item.assignee_id = actor.id
    payload = {"work_item": item.id, "task_id": item.task_id, "task": item.spec_id, "name": item.name, "data": dict(data)}
    _apply(rt, case, run, outcome, "task_completed", payload, actor=actor if actor is not None else _RESIDENT,
           role=item.role if actor is not None else RESIDENT_ROLE, at=at)
    return outcome


def deliver_message(
    rt: Runtime,
    reference: str,
    *,
    name: str,
    payload: Mapping[str, Any],
    correlations: Mapping[str, Any],
    actor: User | None,
    at: datetime | None = None,
    role: str | None = None,
) -> Outcome:
    """``role`` names who sent it when that is not a user (e.g. "resident" for an
    objection posted on the public board; ``actor`` is then None)."""
    at = at or utcnow()
    case = lock_case(get_case(reference).id)
    _require_active(case)
    run = load_run(case, rt)
    outcome = run.deliver_message(name, payload, correlations, at=at)
    event = {"name": name, "payload": dict(payload), "correlations": dict(correlations)}
    if actor is None and role == RESIDENT_ROLE:
        actor = _RESIDENT
    _apply(rt, case, run, outcome, "message_received", event, actor=actor, role=role, at=at)
    return outcome


def fire_case_timers(rt: Runtime, case_id: int, *, at: datetime | None = None) -> Outcome | None:
    """Fire the timers of one case that are due at ``at``. Idempotent: when
    nothing is due any more (another worker got there first) nothing changes."""
    at = at or utcnow()
    case = lock_case(case_id)
    due = list(
        db.session.scalars(
            select(Timer).where(Timer.case_id == case.id, Timer.state == "waiting", Timer.due_at < at)
        )
    )
    if not due or case.status != CASE_ACTIVE:
        return None
    run = load_run(case, rt)
    outcome = run.fire_timers(at=at)
    fired = {step.task_id for step in outcome.completed}
    fired_timers = [t for t in due if t.task_id in fired]
    if not fired_timers:
        return None
    payload = {"timers": [{"task_id": t.task_id, "timer": t.spec_id, "due_at": t.due_at.isoformat()} for t in fired_timers],
               "deadline": any(t.interrupting for t in fired_timers)}  # a time limit passed (not only a warning)
    _apply(rt, case, run, outcome, "timer_fired", payload, actor=None, role=None, at=at)
    return outcome


def due_timer_case_ids(at: datetime, limit: int = 500) -> list[int]:
    rows = db.session.execute(
        select(Timer.case_id, Timer.due_at)
        .where(Timer.state == "waiting", Timer.due_at < at)  # the engine fires strictly after due
        .order_by(Timer.due_at)
        .limit(limit)
    )
    seen: dict[int, None] = {}
    for case_id, _ in rows:
        seen.setdefault(case_id, None)
    return list(seen)


def record(case: Case, kind: str, payload: Mapping[str, Any], *, actor: User | None, role: str | None, at: datetime) -> None:
    """Record a command that does not move the workflow (claim, release…).
    Touching the case bumps its row version, so stale writers notice."""
    case.updated_at = at
    append_event(case, kind, payload, at=at, actor=actor, role=role)


def apply_step(
    rt: Runtime, case: Case, run: CaseRun, outcome: Outcome, kind: str, payload: dict[str, Any], *,
    actor: User | None, role: str | None, at: datetime,
) -> None:
    """Write a step the caller made on ``run`` outside complete/fire/deliver (e.g. a deadline
    extension moving timers: app.work.extensions): state, event, work items, timers, nudges.
    The caller holds the case lock."""
    _require_active(case)
    _apply(rt, case, run, outcome, kind, payload, actor=actor, role=role, at=at)


# -- internals ----------------------------------------------------------------
# Features that keep a projection of case steps register a function here (e.g. the public
# disclosure board, app.disclosure). Each is called in the step's transaction, after its
# flush, as listener(case, outcome, kind, payload, at); it only adds or updates its own rows.
STEP_LISTENERS: list = []


def add_step_listener(listener) -> None:
    if listener not in STEP_LISTENERS:
        STEP_LISTENERS.append(listener)


def _require_active(case: Case) -> None:
    if case.status != CASE_ACTIVE:
        raise Conflict(f"case {case.reference} is {case.status}", code="case_closed")


def _apply(
    rt: Runtime, case: Case, run: CaseRun, outcome: Outcome, kind: str, payload: dict[str, Any], *,
    actor: User | None, role: str | None, at: datetime, new_case: bool = False,
) -> None:
    """Write one engine step: state, event, work items, timers. Nothing is flushed
    until the end (autoflush off), so the step costs one flush."""
    with db.session.no_autoflush:
        saved = rt.engine.dump(run)
        case.state = saved.state
        case.serializer_version = saved.serializer_version
        data_before = {} if new_case else case.data
        case.data = rt.engine.plain(dict(outcome.data))
        case.updated_at = at
        if outcome.ended:
            case.status = CASE_COMPLETED
            case.closed_at = at
            case.end_event = outcome.end_events[-1] if outcome.end_events else case.end_event
        effects = _effects(outcome, data_before, case.data)
        append_event(case, kind, {**payload, "effects": effects}, at=at, actor=actor, role=role)
        new_items = _project(case, outcome, at, new_case=new_case)
    db.session.flush()
    if new_items:
        for hook in WORK_READY_HOOKS:
            hook(case, new_items, at)
    for listener in STEP_LISTENERS:
        listener(case, outcome, kind, payload, at)
    _follow_links(rt, case, outcome, at)


def _follow_links(rt: Runtime, case: Case, outcome: Outcome, at: datetime) -> None:
    """Start the cases this step's thrown messages ask for (CASE_LINKS); when a linked
    case ends, answer its parent. Same transaction: a link is never half made."""
    links = current_app.config["CASE_LINKS"]
    for message in outcome.thrown:
        link = links.get(message.name)
        if link is None:
            log.warning("case %s threw message %r that no CASE_LINKS entry handles", case.reference, message.name)
            continue
        payload = message.payload if isinstance(message.payload, Mapping) else {}
        data = dict(link.get("defaults", {}))
        data.update({key: payload[key] for key in link.get("start_data", []) if key in payload})
        data["parent_case"] = case.reference
        child = start_case(
            rt, process_id=link["start_process"], title=str(payload.get("topic") or case.title),
            grid_code=case.grid_node.code, data=data, actor=None, at=at,
        )
        child.parent_id, child.link = case.id, message.name
    if outcome.ended and case.parent_id is not None and case.link in links:
        link = links[case.link]
        reply = {key: outcome.data.get(source) for key, source in link.get("reply_payload", {}).items()}
        parent = db.session.get(Case, case.parent_id)
        try:
            deliver_message(rt, parent.reference, name=link["reply_message"], payload=reply,
                            correlations={}, actor=None, at=at)
        except (MessageNotAwaited, Conflict) as exc:
            # The parent moved on (closed, or no longer waiting): the child's outcome stays in
            # its own history; nothing to answer.
            log.warning("case %s ended but parent %s could not be told: %s", case.reference, parent.reference, exc)


def _effects(outcome: Outcome, data_before: Mapping[str, Any] | None = None,
             data_after: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the step did, stored with the event so history reads without replay
    and replay can compare itself with the record. ``ready_ids``/``timer_ids`` line up
    with ``ready``/``timers`` (element ids sorted, engine order within one element):
    replay maps recorded task ids to its own by them (workflows/replay.py). ``data``
    is what the step set and removed in the case data."""
    ready = sorted(outcome.ready, key=lambda task: task.spec_id)
    timers = sorted(outcome.timers, key=lambda timer: timer.spec_id)
    effects = {
        "completed": [step.spec_id for step in outcome.completed],
        "ready": [task.spec_id for task in ready],
        "ended": outcome.ended,
        "thrown": [message.name for message in outcome.thrown],
        "ready_ids": [task.task_id for task in ready],
        "timers": [timer.spec_id for timer in timers],
        "timer_ids": [timer.task_id for timer in timers],
    }
    if data_after is not None:
        effects["data"] = data_changes(data_before, data_after)
    return effects


def _project(case: Case, outcome: Outcome, at: datetime, *, new_case: bool = False) -> list[WorkItem]:
    """Bring work items and timers in line with the workflow (idempotent).
    A new case has neither yet, so there is nothing to read. Returns the new work items."""
    completed_ids = {step.task_id for step in outcome.completed}
    ready = {task.task_id: task for task in outcome.ready}

    open_items = {} if new_case else {
        item.task_id: item
        for item in db.session.scalars(
            select(WorkItem).where(WorkItem.case_id == case.id, WorkItem.state.in_(OPEN_STATES))
        )
    }
    for task_id, item in open_items.items():
        if task_id not in ready:
            item.state = ITEM_COMPLETED if task_id in completed_ids else ITEM_CANCELLED
            item.closed_at = at
    new_items: list[WorkItem] = []
    for task_id, task in ready.items():
        item = open_items.get(task_id)
        if item is None:
            new_items.append(
                WorkItem(
                    case=case,
                    task_id=task_id,
                    spec_id=task.spec_id,
                    name=task.name,
                    process_id=task.process_id,
                    lane=task.lane,
                    role=task.role,
                    form=task.form,
                    instructions=task.instructions,
                    grid_node_id=case.grid_node.id,
                    department_id=people.department_for_dispatch(task.role, outcome.data),
                    grid_path=case.grid_node.path,
                    state=ITEM_READY,
                    created_at=at,
                    due_at=task.due_at,
                    warn_at=task.warn_at,
                )
            )
            db.session.add(new_items[-1])
        elif not (task.limit_declared and item.extension_count):  # an extended declared limit lives on the item
            if (item.due_at, item.warn_at) != (task.due_at, task.warn_at):
                # An extension moved the timers: near-due/overdue may be told again.
                item.warn_notified_at = item.due_notified_at = None
            item.due_at, item.warn_at = task.due_at, task.warn_at

    waiting = {t.task_id: t for t in outcome.timers}
    existing = {} if new_case else {
        timer.task_id: timer
        for timer in db.session.scalars(select(Timer).where(Timer.case_id == case.id, Timer.state == "waiting"))
    }
    for task_id, timer in existing.items():
        if task_id not in waiting:
            timer.state = "fired" if task_id in completed_ids else "cancelled"
            timer.fired_at = at if timer.state == "fired" else None
    for task_id, timer in waiting.items():
        row = existing.get(task_id)
        if row is None:
            db.session.add(
                Timer(
                    case=case,
                    task_id=task_id,
                    spec_id=timer.spec_id,
                    name=timer.name,
                    due_at=timer.due_at,
                    interrupting=timer.interrupting,
                    attached_to=timer.attached_to,
                    state="waiting",
                )
            )
            _nudge_at(case, task_id, timer.due_at)
        else:
            if row.due_at != timer.due_at:  # moved (deadline extension): nudge at the new time
                _nudge_at(case, task_id, timer.due_at, moved=True)
            row.due_at = timer.due_at
    return new_items


def _nudge_at(case: Case, task_id: str, due_at: datetime, *, moved: bool = False) -> None:
    """After commit, schedule a job at the timer's due time (rq), so it fires on time
    rather than at the next sweep. The timers table stays the truth. A moved timer gets
    a job id of its own (the job at the old time finds nothing due and does nothing)."""
    suffix = f"-{int(due_at.timestamp())}" if moved else ""

    def schedule() -> None:
        # A new case has its id only after the flush, so the id is read after commit.
        job_id = f"timer-{case.id}-{task_id}{suffix}"
        queue.enqueue_at(due_at, "app.jobs.fire_case_timers_job", case.id, job_id=job_id)

    after_commit(schedule)


def _next_reference(process_id: str, at: datetime) -> str:
    config = current_app.config
    prefix = config["CASE_REFERENCE_PREFIXES"].get(process_id, config["CASE_REFERENCE_DEFAULT_PREFIX"])
    year = at.astimezone(REFERENCE_TIMEZONE).year
    key = f"{prefix}-{year}"
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(ReferenceCounter).values(key=key, value=1)
    statement = statement.on_conflict_do_update(
        index_elements=[ReferenceCounter.key], set_={"value": ReferenceCounter.value + 1}
    ).returning(ReferenceCounter.value)
    value = db.session.execute(statement).scalar_one()  # atomic on both databases
    return f"{key}-{value:06d}"
