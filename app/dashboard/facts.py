"""Folding a case's event log into one row of facts (``dashboard_case_facts``).

What the BPMN elements mean for the metrics is data (:data:`MEANINGS`, one entry per
process id, read off ``bpmn/<process>/``): which user task is the intake decision, which
end events close a case, which timers are the yellow warning or the red deadline, which
script tasks record a rework, an extension, an up/downgrade or a whistle. The fold reads
only what events carry — ``case_started`` data, ``task_completed`` task and form data,
``effects.completed`` (every BPMN element the step ran, script tasks and end events
included), ``effects.ready``, ``timer_fired`` timer ids and ``extension_approved`` — plus
the case header for grid path, process and version.

Rows are caught up lazily: :func:`refresh` folds again every case whose chain head
(``cases.last_event_seq``) moved past the row's ``event_seq``; a periodic job and every
dashboard page call it, and ``gridcase dashboard rebuild`` folds everything from scratch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Mapping

from flask import current_app
from sqlalchemy import delete, func, insert, select, text

from app.cases.models import Case, CaseEvent
from app.dashboard.models import CaseFacts, DashboardState
from app.db import db
from app.people.models import GridNode
from app.processes.models import ProcessVersion

log = logging.getLogger(__name__)

SATISFIED = frozenset({"satisfied", "basically", "basically_satisfied"})
LEVELS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Meaning:
    """What a process's BPMN ids mean for the metrics. Empty sets: not applicable."""

    intake_tasks: frozenset[str] = frozenset()        # completing one = 受理 decision taken
    not_filed_ends: frozenset[str] = frozenset()      # ended at intake: 不予立案 / 合并 / 转办 / 不予受理
    dispatch_ready: frozenset[str] = frozenset()      # 派遣: one of these user tasks became ready…
    dispatch_completed: frozenset[str] = frozenset()  # …or one of these elements ran
    handled_ready: frozenset[str] = frozenset()       # 处置 done: verification became ready…
    handled_completed: frozenset[str] = frozenset()   # …or one of these elements ran
    closed_ends: Mapping[str, str | None] = field(default_factory=dict)  # end event -> class closed at
    hung_ends: frozenset[str] = frozenset()           # 挂账
    yellow_timers: frozenset[str] = frozenset()
    red_timers: frozenset[str] = frozenset()
    stage_level: Mapping[str, str] = field(default_factory=dict)        # user task -> class A/B/C/D
    rework: frozenset[str] = frozenset()
    extension: frozenset[str] = frozenset()
    upgrade: frozenset[str] = frozenset()
    downgrade: frozenset[str] = frozenset()
    whistle: frozenset[str] = frozenset()
    # deliberation: tally task -> (counting script, no-quorum script, rejected script)
    tallies: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)
    resolution_task: str | None = None                # the tally whose pass is the resolution
    disclosure_task: str | None = None                # 实施结果公开
    disclosure_timer: str | None = None               # its overdue timer


_F = frozenset
MEANINGS: dict[str, Meaning] = {
    "incident_abcd": Meaning(
        intake_tasks=_F({"register"}),
        not_filed_ends=_F({"end_invalid", "end_merged", "end_transferred"}),
        dispatch_ready=_F({"grid_handle", "community_accept", "department_take"}),
        dispatch_completed=_F({"start_d_clock"}),
        handled_ready=_F({"reinspect_b", "feedback", "reinspect_d"}),
        handled_completed=_F({"end_closed_a"}),
        closed_ends={"end_closed_a": "A", "end_closed_b": "B", "end_closed_c": "C", "end_closed_d": "D"},
        hung_ends=_F({"end_hung"}),
        yellow_timers=_F({"timer_a_warning", "timer_b_warning", "timer_take_warning", "timer_c_warning"}),
        red_timers=_F({"timer_a_deadline", "timer_b_deadline", "timer_take_deadline", "timer_c_deadline",
                       "timer_district_overdue"}),
        stage_level={
            "grid_handle": "A",
            "community_accept": "B", "community_handle": "B", "reinspect_b": "B",
            "dispatcher_review": "C", "department_take": "C", "area_lead_arbitrate": "C",
            "department_handle": "C", "supervise": "C", "extension_approve": "C", "whistle": "C",
            "joint_consultation": "C", "feedback": "C", "reinspect_c": "C", "chief_close": "C",
            "district_submit": "D", "supervise_d": "D", "reinspect_d": "D",
        },
        rework=_F({"rework_b", "rework_c", "rework_d"}),
        extension=_F({"extend_c_deadline"}),
        upgrade=_F({"escalate_a_timeout", "upgrade_a_to_b", "upgrade_b_to_c", "escalate_b_timeout",
                    "escalate_b_rework", "upgrade_c_to_d"}),
        downgrade=_F({"downgrade_b_to_a", "downgrade_c_to_b"}),
        whistle=_F({"prepare_report"}),
    ),
    "appeal_loop": Meaning(
        intake_tasks=_F({"grid_report"}),
        not_filed_ends=_F({"end_rejected"}),
        dispatch_completed=_F({"community_assign"}),
        handled_ready=_F({"grid_confirm"}),
        closed_ends={"end_closed": None, "end_answered": None, "end_not_passed": None},
        yellow_timers=_F({"timer_assign_warning", "timer_community_warning", "timer_department_warning"}),
        red_timers=_F({"timer_assign_deadline", "timer_community_deadline", "timer_department_deadline"}),
        rework=_F({"count_failed_confirmation", "count_supervisor_return"}),
    ),
    "grid_quick": Meaning(
        intake_tasks=_F({"register"}),
        dispatch_completed=_F({"review"}),
        handled_ready=_F({"reinspect"}),
        closed_ends={"end_closed": None},
        yellow_timers=_F({"timer_warning"}),
        red_timers=_F({"timer_overdue"}),
    ),
    "four_deliberations": Meaning(
        tallies={
            "committees_discussion": ("committee_count", "committee_reschedule", "outcome_proposal_rejected"),
            "party_assembly": ("assembly_count", "assembly_reschedule", "outcome_assembly_rejected"),
            "meeting": ("meeting_count", "meeting_reschedule", "outcome_meeting_rejected"),
        },
        resolution_task="meeting",
        disclosure_task="result_disclosure",
        disclosure_timer="timer_result_overdue",
    ),
}
UNKNOWN = Meaning()


@dataclass(frozen=True)
class Header:
    case_id: int
    reference: str
    process_id: str
    process_version: int
    grid_path: str


def department_fields() -> list[str]:
    return list(current_app.config["DEPARTMENT_FIELDS"]) + ["arbitrated_department"]


def fold(header: Header, events: Iterable[Any], calendar: Any, dept_fields: list[str]) -> dict[str, Any]:
    """The facts of one case from its events (objects with seq, kind, at, payload), in seq order."""
    m = MEANINGS.get(header.process_id, UNKNOWN)
    f: dict[str, Any] = {
        "case_id": header.case_id, "reference": header.reference, "process_id": header.process_id,
        "process_version": header.process_version, "grid_path": header.grid_path,
        "source": None, "department": None, "initial_level": None, "level": None, "closed_level": None,
        "outcome": "open", "end_event": None, "reported_at": None, "intake_at": None, "accepted": None,
        "dispatched_at": None, "handled_at": None, "ended_at": None, "closed_at": None,
        "first_yellow_at": None, "first_red_at": None, "yellow_count": 0, "red_count": 0,
        "handling_hours": None, "rework_count": 0, "extension_count": 0, "upgrade_count": 0,
        "downgrade_count": 0, "whistle_count": 0, "satisfaction": None, "rated_at": None,
        "tally_count": 0, "quorum_met_count": 0, "attendance_due": 0, "attendance_present": 0,
        "last_tally_at": None, "resolution_at": None, "resolution_passed": None, "disclosed_at": None,
        "disclosure_overdue_at": None, "event_seq": 0,
    }
    ready_before: set[str] = set()
    extension_events = 0
    for event in events:
        at, kind, payload = event.at, event.kind, event.payload or {}
        f["event_seq"] = event.seq
        data = payload.get("data") if isinstance(payload.get("data"), Mapping) else {}
        effects = payload.get("effects") if isinstance(payload.get("effects"), Mapping) else None
        completed = set(effects.get("completed") or ()) if effects else set()
        ready = set(effects.get("ready") or ()) if effects else ready_before
        newly = ready - ready_before if effects else set()
        if kind == "case_started":
            f["reported_at"] = at
        if f["reported_at"] is None:
            f["reported_at"] = at
        if data:
            if f["source"] is None and isinstance(data.get("source"), str):
                f["source"] = data["source"]
            for key in dept_fields:
                if isinstance(data.get(key), str) and data[key]:
                    f["department"] = data[key][:64]
                    break
        task = payload.get("task") if kind == "task_completed" else None
        if task in m.intake_tasks and f["intake_at"] is None:
            f["intake_at"] = at
            f["accepted"] = not (completed & m.not_filed_ends)
        if kind == "task_completed" and isinstance(data.get("satisfaction"), str):
            f["satisfaction"], f["rated_at"] = data["satisfaction"], at
        if f["dispatched_at"] is None and (newly & m.dispatch_ready or completed & m.dispatch_completed):
            f["dispatched_at"] = at
        if f["handled_at"] is None and (newly & m.handled_ready or completed & m.handled_completed):
            f["handled_at"] = at
        for spec in sorted(newly):
            level = m.stage_level.get(spec)
            if level:
                f["level"] = level
                f["initial_level"] = f["initial_level"] or level
        f["rework_count"] += len(completed & m.rework)
        f["extension_count"] += len(completed & m.extension)
        f["upgrade_count"] += len(completed & m.upgrade)
        f["downgrade_count"] += len(completed & m.downgrade)
        f["whistle_count"] += len(completed & m.whistle)
        if kind == "extension_approved":
            extension_events += 1
        if kind == "timer_fired":
            for timer in payload.get("timers") or ():
                spec = timer.get("timer") if isinstance(timer, Mapping) else None
                if spec in m.red_timers:
                    f["red_count"] += 1
                    f["first_red_at"] = f["first_red_at"] or at
                elif spec in m.yellow_timers:
                    f["yellow_count"] += 1
                    f["first_yellow_at"] = f["first_yellow_at"] or at
                elif spec is not None and spec == m.disclosure_timer:
                    f["disclosure_overdue_at"] = f["disclosure_overdue_at"] or at
        if task in m.tallies:
            _fold_tally(f, m, task, data, completed, ready, at)
        if task is not None and task == m.disclosure_task and f["disclosed_at"] is None:
            f["disclosed_at"] = at
        if effects and effects.get("ended"):
            _fold_end(f, m, completed, at)
        if effects:
            ready_before = ready
    # Extensions are seen twice when both the script and the extension_approved event exist.
    f["extension_count"] = max(f["extension_count"], extension_events)
    if f["closed_at"] is not None and f["reported_at"] is not None:
        try:
            f["handling_hours"] = calendar.working_hours_between(f["reported_at"], f["closed_at"])
        except ValueError as exc:  # CalendarError: more than the calendar's span apart
            log.warning("case %s: no handling time (%s)", header.reference, exc)
    return f


def _fold_tally(f: dict, m: Meaning, task: str, data: Mapping, completed: set, ready: set, at: datetime) -> None:
    counting, no_quorum_script, rejected_script = m.tallies[task]
    if counting not in completed:
        return
    no_quorum = no_quorum_script in completed
    if task in ready and not no_quorum:  # impossible figures: the same task asks again, nothing decided
        return
    due, present = data.get("due"), data.get("present")
    if not isinstance(due, int) or not isinstance(present, int):
        return
    f["tally_count"] += 1
    f["attendance_due"] += due
    f["attendance_present"] += present
    f["last_tally_at"] = at
    if not no_quorum:
        f["quorum_met_count"] += 1
        if task == m.resolution_task:
            f["resolution_at"], f["resolution_passed"] = at, rejected_script not in completed


def _fold_end(f: dict, m: Meaning, completed: set, at: datetime) -> None:
    f["ended_at"] = at
    ends = sorted(completed & (set(m.closed_ends) | m.hung_ends | m.not_filed_ends))
    end = ends[-1] if ends else None
    f["end_event"] = end
    if end in m.closed_ends:
        f["outcome"], f["closed_at"] = "closed", at
        f["closed_level"] = f["level"] = m.closed_ends[end] or f["level"]
    elif end in m.hung_ends:
        f["outcome"] = "hung"
    elif end in m.not_filed_ends:
        f["outcome"] = "not_filed"
    else:
        f["outcome"] = "ended"


# -- keeping the table in step with the events ----------------------------------------
BATCH = 500
_LOCK_KEY = 0x6772_6964_6461_7368 & 0x7FFF_FFFF_FFFF_FFFF  # "griddash"


def is_stale() -> bool:
    """Cheap check: chain heads only grow, so equal counts and sums mean every row is current."""
    cases = db.session.execute(select(func.count(Case.id), func.coalesce(func.sum(Case.last_event_seq), 0))).one()
    facts = db.session.execute(
        select(func.count(CaseFacts.case_id), func.coalesce(func.sum(CaseFacts.event_seq), 0))
    ).one()
    return tuple(cases) != tuple(facts)


def refresh(calendar: Any, *, exact: bool = False) -> int:
    """Fold again the cases whose events moved on since their facts were written. Flushes only.

    Cheap path (pages): the cases with events above the remembered highest event id. An event
    whose id was allocated before that mark but committed after it (PostgreSQL allocates ids
    before commit) is only seen by the exact path — the periodic job, ``gridcase dashboard
    refresh`` and any time the mark looks wrong — which compares every case's chain head with
    its row. On PostgreSQL one refresher at a time (a transaction-level advisory lock); a
    request finding it taken reads the rows as they are."""
    max_id = db.session.scalar(select(func.max(CaseEvent.id))) or 0
    state = db.session.get(DashboardState, 1)
    seen = state.last_event_id if state is not None else None
    if not exact and seen == max_id:
        return 0
    if exact and not is_stale():
        _remember(state, max_id)
        return 0
    if db.session.get_bind().dialect.name == "postgresql":
        if not db.session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _LOCK_KEY}):
            return 0
    if exact or seen is None or seen > max_id:
        query = select(Case.id).outerjoin(CaseFacts, CaseFacts.case_id == Case.id).where(
            (CaseFacts.case_id.is_(None)) | (CaseFacts.event_seq != Case.last_event_seq)
        ).order_by(Case.id)
    else:
        query = select(CaseEvent.case_id).where(CaseEvent.id > seen, CaseEvent.id <= max_id).distinct()
    ids = sorted(set(db.session.scalars(query)))
    for start in range(0, len(ids), BATCH):
        fold_cases(ids[start:start + BATCH], calendar)
    _remember(state, max_id)
    return len(ids)


def _remember(state: DashboardState | None, max_id: int) -> None:
    if state is None:
        db.session.add(DashboardState(id=1, last_event_id=max_id))
    else:
        state.last_event_id = max_id
    db.session.flush()


def rebuild(calendar: Any) -> int:
    """Delete every row and fold every case again from its events."""
    max_id = db.session.scalar(select(func.max(CaseEvent.id))) or 0
    db.session.execute(delete(CaseFacts))
    ids = list(db.session.scalars(select(Case.id).order_by(Case.id)))
    for start in range(0, len(ids), BATCH):
        fold_cases(ids[start:start + BATCH], calendar)
    _remember(db.session.get(DashboardState, 1), max_id)
    return len(ids)


def fold_cases(case_ids: list[int], calendar: Any) -> None:
    if not case_ids:
        return
    headers = {
        row.id: Header(row.id, row.reference, row.process_id, row.version, row.path)
        for row in db.session.execute(
            select(Case.id, Case.reference, ProcessVersion.process_id, ProcessVersion.version, GridNode.path)
            .join(ProcessVersion, ProcessVersion.id == Case.process_version_id)
            .join(GridNode, GridNode.id == Case.grid_node_id)
            .where(Case.id.in_(case_ids))
        )
    }
    events: dict[int, list[Any]] = {case_id: [] for case_id in case_ids}
    rows = db.session.execute(
        select(CaseEvent.case_id, CaseEvent.seq, CaseEvent.kind, CaseEvent.at, CaseEvent.payload)
        .where(CaseEvent.case_id.in_(case_ids))
        .order_by(CaseEvent.case_id, CaseEvent.seq)
    )
    for row in rows:
        events[row.case_id].append(row)
    dept_fields = department_fields()
    values = [fold(headers[case_id], events[case_id], calendar, dept_fields)
              for case_id in case_ids if case_id in headers and events[case_id]]
    db.session.execute(delete(CaseFacts).where(CaseFacts.case_id.in_(case_ids)))
    if values:  # Core executemany: the driver pipelines the rows (no ORM bookkeeping)
        db.session.connection().execute(CaseFacts.__table__.insert(), values)
