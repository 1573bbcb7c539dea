"""The public disclosure board and the monthly follow-up. Services flush only.

What the board shows is written when a disclosure step of a 四议两公开 case completes
(:func:`on_case_step`, registered as a case step listener): the resolution as it was
published, its meeting tallies and the posting window (决议公开), then the implementation and
the published result (实施结果公开). Only published text is kept, with phone numbers masked;
no names, phones or addresses of people. Closed residents' demands are read from the cases
(category, community, dates, outcome, the feedback written for publication).

An objection (异议) posted on the board reaches the case as the BPMN message
``objection_received`` with payload ``{"objector", "content"}`` — what the process reads, and
nothing more — while the case waits in ``receive_objection`` within its posting window.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import func, or_, select

from app.cases import service as cases
from app.cases.models import Case, Timer
from app.db import db
from app.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from app.disclosure.models import FollowUp, ResolutionDisclosure
from app.people.models import GridNode, User
from app.processes.models import ProcessVersion
from app.public.service import public_mask
from app.runtime import Runtime
from app.timeutil import utcnow
from workflows.errors import MessageNotAwaited

LOCAL = ZoneInfo("Asia/Shanghai")

# The 四议两公开 process and the BPMN elements the board follows (bpmn/four_deliberations).
DELIBERATION_PROCESS = "four_deliberations"
RESOLUTION_TASK = "resolution_disclosure"
POSTING_TIMER = "timer_posting"
OBJECTION_RECORDED = "record_objection"
OBJECTION_REVIEW = "objection_review"
IMPLEMENTATION_TASK = "implementation"
RESULT_TASK = "result_disclosure"
RESULT_OVERDUE_TIMER = "timer_result_overdue"
OBJECTION_MESSAGE = "objection_received"
DEMAND_PROCESS = "appeal_loop"

OBJECTOR_MAX, CONTENT_MIN, CONTENT_MAX = 40, 10, 1000
FOLLOWUP_STATUSES = ("implemented", "in_progress", "overdue", "withdrawn")

_clock = utcnow  # tests replace it with a fake clock


def now() -> datetime:
    return _clock()


def settings() -> dict[str, Any]:
    config = current_app.config
    return {
        "followup_day": int(config.get("DISCLOSURE_FOLLOWUP_DAY", 20)),
        "implementation_days": int(config.get("DISCLOSURE_IMPLEMENTATION_DAYS", 60)),
        "followup_roles": tuple(config.get("DISCLOSURE_FOLLOWUP_ROLES", ("supervisor", "duty_chief"))),
        "page_size": int(config.get("DISCLOSURE_PAGE_SIZE", 20)),
    }


# -- personal data ------------------------------------------------------------------------
_PHONE_LIKE = re.compile(r"(?<!\d)(?:\+?86[\s-]?)?(?:1[3-9]\d(?:[\s-]?\d){8}|0\d{2,3}[\s-]?\d{7,8})(?!\d)")


def public_text(text: Any, limit: int | None = None) -> str:
    """Text for the board: phone numbers masked down to their first three digits (138********;
    the last four digits are what residents confirm their demands with), trimmed."""
    value = _PHONE_LIKE.sub(lambda m: public_mask(m.group(0)), str(text or "").strip())
    return value[:limit] if limit else value


# -- grids --------------------------------------------------------------------------------
def communities() -> list[GridNode]:
    return list(db.session.scalars(select(GridNode).where(GridNode.level == "community").order_by(GridNode.code)))


def community_by_code(code: str | None) -> GridNode | None:
    if not code:
        return None
    node = db.session.scalar(select(GridNode).where(GridNode.code == code, GridNode.level == "community"))
    if node is None:
        raise InvalidInput("no such community", code="unknown_community", fields={"community": ["no such community"]})
    return node


def community_of(node: GridNode) -> GridNode:
    """The community a grid node lies in (itself when it is one; else its nearest ancestor)."""
    if node.level == "community":
        return node
    ids = [int(part) for part in node.path.strip("/").split("/") if part.isdigit()]
    ancestors = {n.id: n for n in db.session.scalars(select(GridNode).where(GridNode.id.in_(ids)))} if ids else {}
    chain = [ancestors[i] for i in ids if i in ancestors]
    found = next((n for n in reversed(chain) if n.level == "community"), None)
    if found is not None:
        return found
    parents = [n for n in chain if n.id != node.id]
    return parents[-1] if parents else node


# -- keeping the board in step with the cases --------------------------------------------
def on_case_step(case: Case, outcome, kind: str, payload: Mapping[str, Any], at: datetime) -> None:
    """Case step listener (app.cases.service.STEP_LISTENERS): same transaction as the step."""
    if case.process_version.process_id != DELIBERATION_PROCESS:
        return
    done = {step.spec_id for step in outcome.completed}
    if not done & {RESOLUTION_TASK, OBJECTION_RECORDED, OBJECTION_REVIEW, IMPLEMENTATION_TASK, RESULT_TASK,
                   RESULT_OVERDUE_TIMER}:
        return
    data = outcome.data
    if RESOLUTION_TASK in done:
        _publish_resolution(case, outcome, data, at)
    row = latest_of_case(case.id)
    if row is None:
        return
    if OBJECTION_RECORDED in done:
        row.objection_count = int(data.get("objection_count") or row.objection_count + 1)
    if OBJECTION_REVIEW in done and data.get("review_decision") == "uphold" and row.withdrawn_at is None:
        row.withdrawn_at = at
    if IMPLEMENTATION_TASK in done:
        row.implemented_on = _date(data.get("completed_on")) or at.astimezone(LOCAL).date()
        row.implementation_recorded_at = at
    if RESULT_OVERDUE_TIMER in done and row.result_overdue_at is None:
        row.result_overdue_at = at
    if RESULT_TASK in done:
        row.result_text = public_text(data.get("result_text"))
        row.result_place = public_text(data.get("result_place"), 200)
        row.result_published_at = at
    db.session.flush()


def _publish_resolution(case: Case, outcome, data: Mapping[str, Any], at: datetime) -> None:
    if db.session.scalar(select(ResolutionDisclosure.id).where(
            ResolutionDisclosure.case_id == case.id, ResolutionDisclosure.event_seq == case.last_event_seq)):
        return
    tally = data.get("meeting_tally") if isinstance(data.get("meeting_tally"), Mapping) else {}
    window = next((t.due_at for t in outcome.timers if t.spec_id == POSTING_TIMER), None)
    if window is None:
        window = at + timedelta(days=float(data.get("posting_days") or 5))
    db.session.add(ResolutionDisclosure(
        case_id=case.id,
        event_seq=case.last_event_seq,
        community_id=community_of(case.grid_node).id,
        topic=public_text(data.get("topic") or case.title, 300),
        meeting_type=str(data.get("meeting_type") or "")[:32],
        resolution_text=public_text(data.get("disclosure_text") or data.get("resolution_text")),
        place=public_text(data.get("disclosure_place"), 200),
        votes_due=_int(tally.get("due")),
        votes_present=_int(tally.get("present")),
        votes_for=_int(tally.get("votes_for")),
        votes_against=_int(tally.get("votes_against")),
        votes_abstain=_int(tally.get("abstain")),
        published_at=at,
        window_ends_at=window,
        objection_count=0,
    ))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _date(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def latest_of_case(case_id: int) -> ResolutionDisclosure | None:
    return db.session.scalar(
        select(ResolutionDisclosure).where(ResolutionDisclosure.case_id == case_id)
        .order_by(ResolutionDisclosure.event_seq.desc()).limit(1)
    )


# -- reading the board ---------------------------------------------------------------------
@dataclass
class Page:
    items: list
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max((self.total + self.page_size - 1) // self.page_size, 1)


def get_resolution(disclosure_id: int) -> ResolutionDisclosure:
    row = db.session.get(ResolutionDisclosure, disclosure_id)
    if row is None:
        raise NotFound("no such resolution", code="unknown_resolution")
    return row


def window_open(row: ResolutionDisclosure, at: datetime) -> bool:
    return row.withdrawn_at is None and at < row.window_ends_at


def open_resolutions(at: datetime, community: GridNode | None = None) -> list[ResolutionDisclosure]:
    query = select(ResolutionDisclosure).where(
        ResolutionDisclosure.withdrawn_at.is_(None), ResolutionDisclosure.window_ends_at > at)
    if community is not None:
        query = query.where(ResolutionDisclosure.community_id == community.id)
    return list(db.session.scalars(query.order_by(ResolutionDisclosure.window_ends_at).limit(100)))


def recent_results(community: GridNode | None = None, limit: int = 10) -> list[ResolutionDisclosure]:
    query = select(ResolutionDisclosure).where(ResolutionDisclosure.result_published_at.is_not(None))
    if community is not None:
        query = query.where(ResolutionDisclosure.community_id == community.id)
    return list(db.session.scalars(query.order_by(ResolutionDisclosure.result_published_at.desc()).limit(limit)))


def parse_month(text: str | None) -> str | None:
    """'2026-11' → '2026-11'; empty → None; anything else → InvalidInput."""
    if not text:
        return None
    match = re.fullmatch(r"(\d{4})-(\d{1,2})", text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12 or not 2000 <= int(match.group(1)) <= 2100:
        raise InvalidInput("month must look like 2026-11", code="bad_month", fields={"month": ["use YYYY-MM"]})
    return f"{int(match.group(1)):04d}-{int(match.group(2)):02d}"


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """The month in local (Asia/Shanghai) time, as an aware UTC [start, end)."""
    year, number = (int(part) for part in month.split("-"))
    start = datetime(year, number, 1, tzinfo=LOCAL)
    end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=LOCAL)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def previous_month(at: datetime) -> str:
    local = at.astimezone(LOCAL).date().replace(day=1) - timedelta(days=1)
    return f"{local.year:04d}-{local.month:02d}"


def archive(at: datetime, *, community: GridNode | None, month: str | None, page: int, page_size: int,
            state: str = "archived") -> Page:
    """Resolutions whose posting window has closed (or that were withdrawn), newest first;
    ``state`` "open": those in their window; "all": both."""
    query = select(ResolutionDisclosure)
    if state == "archived":
        query = query.where(or_(ResolutionDisclosure.window_ends_at <= at, ResolutionDisclosure.withdrawn_at.is_not(None)))
    elif state == "open":
        query = query.where(ResolutionDisclosure.window_ends_at > at, ResolutionDisclosure.withdrawn_at.is_(None))
    if community is not None:
        query = query.where(ResolutionDisclosure.community_id == community.id)
    if month is not None:
        start, end = month_bounds(month)
        query = query.where(ResolutionDisclosure.published_at >= start, ResolutionDisclosure.published_at < end)
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = list(db.session.scalars(
        query.order_by(ResolutionDisclosure.published_at.desc(), ResolutionDisclosure.id.desc())
        .offset((page - 1) * page_size).limit(page_size)))
    return Page(items=items, total=total, page=page, page_size=page_size)


@dataclass(frozen=True)
class ClosedDemand:
    reference: str
    category: str
    community: str
    submitted_at: datetime
    closed_at: datetime | None
    end_event: str
    satisfaction: str | None
    feedback: str


def closed_demands(*, community: GridNode | None, page: int, page_size: int) -> Page:
    """Residents' demands (appeal_loop) that have ended, newest first — what they were about
    (category), where (community), when, and how they ended. Never who or the exact place."""
    query = (
        select(Case)
        .join(ProcessVersion, ProcessVersion.id == Case.process_version_id)
        .where(ProcessVersion.process_id == DEMAND_PROCESS, Case.status == cases.CASE_COMPLETED)
    )
    if community is not None:
        query = query.join(GridNode, GridNode.id == Case.grid_node_id).where(GridNode.path.startswith(community.path))
    total = db.session.scalar(select(func.count()).select_from(query.with_only_columns(Case.id).subquery())) or 0
    rows = list(db.session.scalars(
        query.order_by(Case.closed_at.desc(), Case.id.desc()).offset((page - 1) * page_size).limit(page_size)))
    names = {node.id: node.name for node in communities()}
    items = []
    for case in rows:
        ids = [int(part) for part in case.grid_node.path.strip("/").split("/") if part.isdigit()]
        data = case.data or {}
        items.append(ClosedDemand(
            reference=case.reference,
            category=public_text(data.get("category"), 60),
            community=next((names[i] for i in reversed(ids) if i in names), ""),
            submitted_at=case.created_at,
            closed_at=case.closed_at,
            end_event=case.end_event or "",
            satisfaction=data.get("satisfaction") if isinstance(data.get("satisfaction"), str) else None,
            feedback=public_text(data.get("feedback_text")) if isinstance(data.get("feedback_text"), str) else "",
        ))
    return Page(items=items, total=total, page=page, page_size=page_size)


# -- objections ------------------------------------------------------------------------
class ObjectionRefused(Conflict):
    """code: window_closed / withdrawn / under_review / case_closed."""


def objection_state(row: ResolutionDisclosure, at: datetime) -> str:
    """open / under_review (another objection is being reviewed) / withdrawn / closed."""
    if row.withdrawn_at is not None:
        return "withdrawn"
    if at >= row.window_ends_at:
        return "closed"
    waiting = db.session.scalar(select(Timer.id).where(
        Timer.case_id == row.case_id, Timer.spec_id == POSTING_TIMER, Timer.state == "waiting", Timer.due_at > at))
    return "open" if waiting is not None else "under_review"


def submit_objection(rt: Runtime, disclosure_id: int, *, objector: str, content: str, at: datetime):
    """Deliver a resident's objection to the case as ``objection_received``. Refused (and
    nothing written) outside the posting window, after the resolution was withdrawn, or
    while an earlier objection is under review. The caller commits."""
    row = get_resolution(disclosure_id)
    objector, content = objector.strip(), content.strip()
    if len(objector) > OBJECTOR_MAX or not CONTENT_MIN <= len(content) <= CONTENT_MAX:
        raise InvalidInput("objection text out of bounds", fields={"content": ["length"]})
    case = cases.lock_case(row.case_id)
    db.session.refresh(row)
    state = objection_state(row, at)
    if state != "open" or case.status != cases.CASE_ACTIVE:
        raise ObjectionRefused(f"objections to this resolution are not accepted now ({state})",
                               code=state if state != "open" else "window_closed")
    payload = {"objector": objector, "content": content}
    try:
        return cases.deliver_message(rt, case.reference, name=OBJECTION_MESSAGE, payload=payload, correlations={},
                                     actor=None, role=cases.RESIDENT_ROLE, at=at)
    except MessageNotAwaited:
        raise ObjectionRefused("an objection to this resolution is under review", code="under_review") from None


# -- the monthly follow-up ------------------------------------------------------------------
def status_of(row: ResolutionDisclosure, at: datetime, implementation_days: int) -> str:
    if row.withdrawn_at is not None:
        return "withdrawn"
    if row.implemented_on is not None or row.result_published_at is not None:
        return "implemented"
    if row.result_overdue_at is not None or at > row.window_ends_at + timedelta(days=implementation_days):
        return "overdue"
    return "in_progress"


def due_date(month: str, day: int) -> date:
    year, number = (int(part) for part in month.split("-"))
    return date(year + (number == 12), number % 12 + 1, day)


def generate_followups(month: str, *, at: datetime) -> int:
    """Write (or refresh) the follow-up record of every community that published resolutions
    in ``month``. Idempotent: one record per community-month; a record already called back
    is left as it was. Returns how many records were created or refreshed."""
    conf = settings()
    start, end = month_bounds(month)
    rows = list(db.session.scalars(
        select(ResolutionDisclosure)
        .where(ResolutionDisclosure.published_at >= start, ResolutionDisclosure.published_at < end)
        .order_by(ResolutionDisclosure.community_id, ResolutionDisclosure.published_at, ResolutionDisclosure.id)
    ))
    by_community: dict[int, list[ResolutionDisclosure]] = {}
    for row in rows:
        by_community.setdefault(row.community_id, []).append(row)
    changed = 0
    for community_id, group in by_community.items():
        record = db.session.scalar(
            select(FollowUp).where(FollowUp.community_id == community_id, FollowUp.month == month).with_for_update(of=FollowUp))
        if record is not None and record.called_back_at is not None:
            continue
        items = [_followup_item(row, at, conf["implementation_days"]) for row in group]
        if record is None:
            record = FollowUp(community_id=community_id, month=month, due_on=due_date(month, conf["followup_day"]))
            db.session.add(record)
        record.items = items
        record.generated_at = at
        changed += 1
    db.session.flush()
    return changed


def _followup_item(row: ResolutionDisclosure, at: datetime, implementation_days: int) -> dict[str, Any]:
    return {
        "disclosure": row.id,
        "case": row.case.reference,
        "topic": row.topic,
        "published_on": row.published_at.astimezone(LOCAL).date().isoformat(),
        "window_ends_on": row.window_ends_at.astimezone(LOCAL).date().isoformat(),
        "status": status_of(row, at, implementation_days),
        "implemented_on": row.implemented_on.isoformat() if row.implemented_on else None,
        "result_published_on": row.result_published_at.astimezone(LOCAL).date().isoformat()
        if row.result_published_at else None,
    }


def _supervised_paths(user: User) -> tuple[str, ...] | None:
    """Grid paths the user supervises; None = everything (administrators)."""
    if user.is_admin:
        return None
    roles = set(settings()["followup_roles"])
    return tuple(a.grid_node.path for a in user.roles if a.role in roles)


def may_follow_up(user: User) -> bool:
    paths = _supervised_paths(user)
    return paths is None or bool(paths)


def followups_for(user: User, *, month: str | None) -> list[FollowUp]:
    paths = _supervised_paths(user)
    if paths is not None and not paths:
        raise PermissionDenied("only supervisors see the monthly follow-up", code="not_supervisor")
    query = select(FollowUp).join(GridNode, GridNode.id == FollowUp.community_id)
    if paths is not None:
        query = query.where(or_(*(GridNode.path.startswith(path) for path in paths)))
    if month is not None:
        query = query.where(FollowUp.month == month)
    return list(db.session.scalars(query.order_by(FollowUp.month.desc(), GridNode.code).limit(500)))


def pending_followups(user: User) -> int:
    """Follow-ups in the user's scope not yet called back (the navigation badge)."""
    paths = _supervised_paths(user)
    if paths is not None and not paths:
        return 0
    query = (select(func.count()).select_from(FollowUp).join(GridNode, GridNode.id == FollowUp.community_id)
             .where(FollowUp.called_back_at.is_(None)))
    if paths is not None:
        query = query.where(or_(*(GridNode.path.startswith(path) for path in paths)))
    return db.session.scalar(query) or 0


def record_callback(user: User, followup_id: int, *, note: str, at: datetime) -> FollowUp:
    """The supervisor called the community back: who and when; on time when by the due day."""
    record = db.session.scalar(select(FollowUp).where(FollowUp.id == followup_id).with_for_update(of=FollowUp))
    if record is None:
        raise NotFound("no such follow-up", code="unknown_followup")
    paths = _supervised_paths(user)
    if paths is not None and not any(record.community.path.startswith(path) for path in paths):
        raise PermissionDenied("this community is not in your scope", code="not_supervisor")
    if record.called_back_at is not None:
        raise Conflict("this follow-up was already called back", code="already_called_back")
    note = note.strip()
    if len(note) > 1000:
        raise InvalidInput("note too long", code="note_too_long", fields={"note": ["at most 1000 characters"]})
    record.called_back_at = at
    record.called_back_by = user
    record.called_back_on_time = at.astimezone(LOCAL).date() <= record.due_on
    record.note = note or None
    db.session.flush()
    return record


def months_with_followups(user: User) -> list[str]:
    paths = _supervised_paths(user)
    query = select(FollowUp.month).join(GridNode, GridNode.id == FollowUp.community_id).distinct()
    if paths is not None:
        if not paths:
            return []
        query = query.where(or_(*(GridNode.path.startswith(path) for path in paths)))
    return sorted(db.session.scalars(query), reverse=True)

