"""Residents' public pages: submitting a demand, following it by tracking code, and
confirming the result — without an account.

Services flush only; the views commit once. What a resident may see of a case is
decided here (:func:`progress_of`): the stage in plain words, a timeline that names
roles and never people, public photos, the published feedback and their own phone
number masked.

Acting on the resident's confirmation task needs the tracking code and, when a callback
phone was given at submission, the last four digits of that phone. Without a phone the
tracking code alone suffices (it is the only secret the resident was given).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from flask import current_app
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import lazy_pgettext
from redis.exceptions import RedisError
from sqlalchemy import select

from app import queue
from app.cases import attachments
from app.cases import service as cases
from app.cases.history import events_of
from app.cases.models import Attachment, Case, CaseEvent
from app.db import db
from app.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from app.people import service as people
from app.people.models import GridNode
from app.processes.models import ProcessVersion
from app.runtime import Runtime
from app.timeutil import utcnow
from app.work.models import OPEN_STATES, WorkItem
from workflows.engine import Outcome

log = logging.getLogger(__name__)

PROCESS_ID = "appeal_loop"
SOURCE = "resident"
RESIDENT_ROLE = "resident"
CONFIRM_TASK = "resident_confirm"
REPEAT_WINDOW = timedelta(days=30)
MAX_PHOTOS = 3
DESCRIPTION_MIN, DESCRIPTION_MAX = 5, 2000
LOCATION_MAX = 200
URGENCIES = ("normal", "urgent")

# -- tracking codes -------------------------------------------------------------
# 31 symbols: digits and capitals without 0/O, 1/I/L, which people confuse when they
# read a code aloud or copy it from paper. 10 symbols ≈ 49.5 bits, drawn by `secrets`.
TRACKING_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
TRACKING_LENGTH = 10
_CODE_PATTERN = re.compile(f"^[{TRACKING_ALPHABET}]{{{TRACKING_LENGTH}}}$")
_CODE_SEPARATORS = re.compile(r"[\s\-_]+")


def new_tracking_code() -> str:
    return "".join(secrets.choice(TRACKING_ALPHABET) for _ in range(TRACKING_LENGTH))


def normalise_code(text: str | None) -> str | None:
    """The canonical code for what a person typed (any case, spaces or dashes allowed),
    or None when it cannot be a tracking code."""
    if not text or len(text) > 40:
        return None
    code = _CODE_SEPARATORS.sub("", text).upper()
    return code if _CODE_PATTERN.match(code) else None


def _unique_tracking_code() -> str:
    for _attempt in range(8):
        code = new_tracking_code()
        if db.session.scalar(select(Case.id).where(Case.tracking_code == code)) is None:
            return code
    # 31**10 codes: reaching this means the generator is broken, not bad luck.
    raise RuntimeError("could not draw an unused tracking code")


# -- phone numbers --------------------------------------------------------------
_MOBILE = re.compile(r"^(?:\+?86)?(1[3-9]\d{9})$")
_LANDLINE = re.compile(r"^(0\d{2,3})-?(\d{7,8})$")


def normalise_phone(text: str | None) -> str | None:
    """A Chinese mobile (13812345678, +86 allowed) or landline (010-12345678) number in a
    canonical form, "" for no number, None when it is not a phone number."""
    raw = re.sub(r"[\s()（）]", "", text or "")
    if raw == "":
        return ""
    mobile = _MOBILE.match(raw.replace("-", ""))
    if mobile:
        return mobile.group(1)
    landline = _LANDLINE.match(raw)
    if landline:
        return f"{landline.group(1)}-{landline.group(2)}"
    return None


def last_four(phone: str | None) -> str:
    return re.sub(r"\D", "", phone or "")[-4:]


def public_mask(phone: str | None) -> str:
    """The resident's own number on the tracking page: only its first three digits.

    Stricter than people.masking.mask_phone (138****5678): the last four digits are what
    the resident types to confirm the result, so the page must not show them."""
    digits = re.sub(r"\D", "", phone or "")
    if not digits:
        return ""
    return digits[:3] + "*" * max(len(digits) - 3, 4)


# -- form data ------------------------------------------------------------------
@lru_cache(maxsize=1)
def _categories_file() -> tuple[tuple[str, str], ...]:
    # The file ships with the code and never changes while the process runs.
    document = json.loads((Path(__file__).parent / "categories.json").read_text(encoding="utf-8"))
    return tuple((entry["zh"], entry.get("en") or entry["zh"]) for entry in document["categories"])


def categories(language: str = "zh") -> list[tuple[str, str]]:
    """(value stored in the case, label) for the category select."""
    english = language.startswith("en")
    return [(zh, en if english else zh) for zh, en in _categories_file()]


@dataclass
class GridGroup:
    label: str
    grids: list[tuple[str, str]] = field(default_factory=list)  # (code, name)


def grid_groups() -> list[GridGroup]:
    """Grid-level nodes grouped by their community (or the nearest named ancestor)."""
    nodes = list(db.session.scalars(
        select(GridNode).where(GridNode.level != "building").order_by(GridNode.code)  # buildings: many, not needed
    ))
    by_id = {node.id: node for node in nodes}
    groups: dict[int | None, GridGroup] = {}
    order: list[int | None] = []
    for node in nodes:
        if node.level != "grid":
            continue
        ancestors = [by_id[int(part)] for part in node.path.strip("/").split("/")[:-1] if part.isdigit() and int(part) in by_id]
        community = next((a for a in reversed(ancestors) if a.level == "community"), None)
        owner = community or (ancestors[-1] if ancestors else None)
        key = owner.id if owner else None
        if key not in groups:
            groups[key] = GridGroup(label=owner.name if owner else "")
            order.append(key)
        groups[key].grids.append((node.code, node.name))
    ordered = sorted(order, key=lambda k: by_id[k].code if k in by_id else "")
    return [groups[key] for key in ordered]


def grid_label(node: GridNode) -> str:
    """The grid with its community (e.g. "C1社区 C1一网格"), as residents know them."""
    ids = [int(part) for part in node.path.strip("/").split("/")[:-1] if part.isdigit()]
    ancestors = {a.id: a for a in db.session.scalars(select(GridNode).where(GridNode.id.in_(ids)))} if ids else {}
    community = next((ancestors[i] for i in reversed(ids) if i in ancestors and ancestors[i].level == "community"), None)
    return f"{community.name} {node.name}" if community is not None else node.name


@dataclass
class Photo:
    content: bytes
    filename: str


# -- submitting -----------------------------------------------------------------
def submit_demand(
    rt: Runtime, *, category: str, description: str, location: str, grid_code: str, urgency: str,
    contact_phone: str, photos: list[Photo], at: datetime | None = None,
) -> Case:
    """Start an appeal_loop case for a resident (no account), give it a tracking code and
    attach the photos as public. The caller has checked the form; the caller commits."""
    at = at or utcnow()
    grid = people.grid_by_code(grid_code)
    if grid.level != "grid":
        raise InvalidInput("choose a grid", code="unknown_grid", fields={"grid": ["choose a grid"]})
    location = location.strip() or grid_label(grid)
    data = {
        "source": SOURCE,
        "category": category,
        "description": description,
        "location": location,
        "contact_phone": contact_phone,
        "urgency": urgency,
        "is_repeat": is_repeat(grid, category, location, at),
    }
    case = cases.start_case(
        rt, process_id=PROCESS_ID, title=_title(category, description), grid_code=grid.code, data=data,
        actor=None, at=at,
    )
    case.tracking_code = _unique_tracking_code()
    for photo in photos:
        attachments.add(case, photo.content, photo.filename, uploaded_by=None, public=True, at=at, field="photos")
    return case


def is_repeat(grid: GridNode, category: str, location: str, at: datetime) -> bool:
    """Repeat demand [domain §4]: an appeal of the same category at the same place (same
    grid and the same location text) within the last 30 days."""
    place = _plain(location)
    if not place:
        return False
    rows = db.session.scalars(
        select(Case.data)
        .join(ProcessVersion, ProcessVersion.id == Case.process_version_id)
        .where(ProcessVersion.process_id == PROCESS_ID, Case.grid_node_id == grid.id, Case.created_at >= at - REPEAT_WINDOW)
        .limit(500)
    )
    return any(
        isinstance(data, Mapping) and data.get("category") == category and _plain(str(data.get("location") or "")) == place
        for data in rows
    )


def _plain(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def _title(category: str, description: str) -> str:
    text = " ".join(description.split())
    short = text if len(text) <= 40 else text[:40] + "…"
    return f"{category}：{short}"[:300]


# -- reading by tracking code ---------------------------------------------------
def case_by_code(code: str | None) -> Case:
    """The case of a tracking code. Malformed and unknown codes raise the same NotFound."""
    canonical = normalise_code(code)
    case = None
    if canonical is not None:
        case = db.session.scalar(select(Case).where(Case.tracking_code == canonical))
    if case is None:
        raise NotFound("no demand with this tracking code", code="unknown_tracking_code")
    return case


def open_items(case: Case) -> list[WorkItem]:
    return list(
        db.session.scalars(
            select(WorkItem).where(WorkItem.case_id == case.id, WorkItem.state.in_(OPEN_STATES)).order_by(WorkItem.id)
        )
    )


def resident_item(items: list[WorkItem]) -> WorkItem | None:
    return next((item for item in items if item.role == RESIDENT_ROLE), None)


def public_attachment(case: Case, attachment_id: int) -> Attachment:
    """A public attachment of this case; anything else is the same NotFound."""
    attachment = db.session.get(Attachment, attachment_id)
    if attachment is None or attachment.case_id != case.id or not attachment.public:
        raise NotFound("no such photo", code="unknown_tracking_code")
    return attachment


# -- what a resident sees -------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    key: str      # submitted / accepted / in_progress / awaiting_you / finishing / closed / answered / rejected
    label: str
    detail: str
    step: int     # index into STEPS of the step under way (len(STEPS) when all are done)


STEPS = (
    lazy_pgettext("public", "Submitted"), lazy_pgettext("public", "Accepted"), lazy_pgettext("public", "Being handled"),
    lazy_pgettext("public", "Your confirmation"), lazy_pgettext("public", "Concluded"),
)

# Open work item (task spec id) → resident-facing stage. Tasks not listed read "being handled".
_OPEN_STAGES: dict[str, tuple[str, Any, Any, int]] = {
    "grid_report": ("submitted", lazy_pgettext("public", "Submitted, waiting to be accepted"),
                    _l("A grid member will check and register your demand."), 1),
    "community_assign": ("accepted", lazy_pgettext("public", "Accepted"), _l("The community is deciding who will handle it."), 2),
    "department_take": ("in_progress", lazy_pgettext("public", "Being handled"), _l("It has been sent to a street department."), 2),
    "community_resolve": ("in_progress", lazy_pgettext("public", "Being handled"), _l("The community is handling it."), 2),
    "department_resolve": ("in_progress", lazy_pgettext("public", "Being handled"), _l("A street department is handling it."), 2),
    "secretary_takes": ("in_progress", lazy_pgettext("public", "Being handled"), _l("The Party secretary has taken up your demand personally."), 2),
    "grid_confirm": ("in_progress", lazy_pgettext("public", "Being handled"), _l("A grid member is checking the result on site."), 2),
    "resident_confirm": ("awaiting_you", lazy_pgettext("public", "Awaiting your confirmation"),
                         _l("Please tell us whether the problem is solved and how satisfied you are."), 3),
    "publish_feedback": ("finishing", lazy_pgettext("public", "Result being published"), _l("The result is being written up for publication."), 4),
    "supervisor_close": ("finishing", lazy_pgettext("public", "Result being published"), _l("The supervisor is reviewing the case before closing it."), 4),
}
_END_STAGES: dict[str, tuple[str, Any, Any]] = {
    "end_closed": ("closed", lazy_pgettext("public", "Concluded"), _l("Your demand has been dealt with and the case is closed.")),
    "end_answered": ("answered", lazy_pgettext("public", "Answered"), _l("Your demand was answered directly and the case is closed.")),
    "end_not_passed": ("answered", lazy_pgettext("public", "Answered"),
                       _l("The residents' deliberation did not adopt the proposal; the reasons were explained and the case is closed.")),
    "end_rejected": ("rejected", lazy_pgettext("public", "Not accepted"), _l("After checking, your demand was not accepted.")),
}
_PRIORITY = {"awaiting_you": 0, "finishing": 1, "in_progress": 2, "accepted": 3, "submitted": 4}


def stage_of(case: Case, items: list[WorkItem]) -> Stage:
    if case.status != "active":
        key, label, detail = _END_STAGES.get(
            case.end_event or "", ("closed", lazy_pgettext("public", "Concluded"), _l("Your demand has been dealt with and the case is closed.")))
        return Stage(key, str(label), str(detail), len(STEPS))
    stages = []
    for item in items:
        key, label, detail, step = _OPEN_STAGES.get(
            item.spec_id, ("in_progress", lazy_pgettext("public", "Being handled"), _l("Your demand is being handled."), 2))
        stages.append(Stage(key, str(label), str(detail), step))
    if not stages:  # e.g. waiting for the residents' deliberation (a linked case)
        data = case.data or {}
        detail = (_l("The residents' deliberation on it is under way.") if data.get("list_deliberate")
                  else _l("Your demand is being handled."))
        return Stage("in_progress", str(lazy_pgettext("public", "Being handled")), str(detail), 2)
    return min(stages, key=lambda s: _PRIORITY.get(s.key, 9))


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    text: str


_SATISFACTION = {
    "satisfied": lazy_pgettext("public", "satisfied"),
    "basically_satisfied": lazy_pgettext("public", "basically satisfied"),
    "unsatisfied": lazy_pgettext("public", "not satisfied"),
}


def _completion_text(task: str, data: Mapping[str, Any]) -> Any:
    """What a completed task means to the resident, naming roles only — never people,
    and never handlers' free text (it may hold personal data)."""
    if task == "grid_report":
        return {
            "accept": _l("The grid member checked and accepted your demand"),
            "reject": _l("The grid member checked your demand and did not accept it"),
            "direct_answer": _l("The grid member answered your demand directly"),
        }.get(data.get("intake"), _l("The grid member registered your demand"))
    if task == "community_assign":
        return {
            "self": _l("The community will resolve it itself"),
            "dispatch": _l("The community sent it to a street department"),
            "deliberate": _l("The community put it to a residents' deliberation"),
        }.get(data.get("assign_decision"), _l("The community decided how to handle it"))
    if task == "department_take":
        if data.get("take_decision") == "return":
            return _l("The street department returned it to the community for reassignment")
        return _l("The street department took it on")
    if task == "community_resolve":
        return _l("The community finished handling it")
    if task == "department_resolve":
        return _l("The street department finished handling it")
    if task == "secretary_takes":
        return _l("The Party secretary took it up personally")
    if task == "grid_confirm":
        if data.get("resolved_on_site") is True:
            return _l("The grid member confirmed on site that it is solved")
        return _l("The grid member found on site that it is not solved yet; it goes back for handling")
    if task == "resident_confirm":
        rating = _SATISFACTION.get(data.get("satisfaction"))
        return _("You confirmed the result: %(rating)s", rating=rating) if rating else _l("You confirmed the result")
    if task == "publish_feedback":
        return _l("The result was published")
    if task == "supervisor_close":
        if data.get("close_decision") == "send_back":
            return _l("The supervisor sent it back to be handled again")
        return _l("The supervisor reviewed and closed the case")
    return None


def _event_text(event: CaseEvent) -> Any:
    payload = event.payload or {}
    if event.kind == "case_started":
        return _l("Your demand was submitted")
    if event.kind == "task_completed":
        data = payload.get("data") if isinstance(payload.get("data"), Mapping) else {}
        return _completion_text(str(payload.get("task") or ""), data)
    if event.kind == "message_received" and payload.get("name") == "deliberation_concluded":
        return _l("The residents' deliberation reached its conclusion")
    return None  # claims, timers, attachments, internal steps: not shown


def timeline(case: Case) -> list[TimelineEntry]:
    events, _total = events_of(case, limit=1000)
    entries = []
    for event in events:
        text = _event_text(event)
        if text is not None:
            entries.append(TimelineEntry(at=event.at, text=str(text)))
    return entries


@dataclass
class Progress:
    case: Case
    stage: Stage
    timeline: list[TimelineEntry]
    photos: list[Attachment]
    feedback_text: str | None
    masked_phone: str
    confirm_item: WorkItem | None
    needs_phone_digits: bool

    @property
    def data(self) -> Mapping[str, Any]:
        return self.case.data or {}


def progress_of(case: Case) -> Progress:
    items = open_items(case)
    data = case.data or {}
    feedback = data.get("feedback_text")
    return Progress(
        case=case,
        stage=stage_of(case, items),
        timeline=timeline(case),
        photos=attachments.of_case(case, public_only=True),
        feedback_text=str(feedback) if isinstance(feedback, str) and feedback.strip() else None,
        masked_phone=public_mask(data.get("contact_phone")),
        confirm_item=resident_item(items) if case.status == "active" else None,
        needs_phone_digits=bool(last_four(data.get("contact_phone"))),
    )


# -- the resident's confirmation -------------------------------------------------
class WrongPhoneDigits(PermissionDenied):
    code = "wrong_phone_digits"


def confirm(
    rt: Runtime, code: str, data: Mapping[str, Any], *, phone_digits: str, at: datetime | None = None,
) -> tuple[Case, Outcome]:
    """Complete the case's open resident task with the resident's form data.

    Locks the case; 409 (Conflict) when no resident task is open any more (already
    confirmed, or the case moved on); 403 when the callback phone's last four digits do
    not match; 422 (the engine's FormInvalid) when the data does not fit the form. Nothing
    is written unless everything holds. The event records actor "resident"."""
    at = at or utcnow()
    case = cases.lock_case(case_by_code(code).id)
    item = db.session.scalar(
        select(WorkItem)
        .where(WorkItem.case_id == case.id, WorkItem.state.in_(OPEN_STATES), WorkItem.role == RESIDENT_ROLE)
        .order_by(WorkItem.id)
        .execution_options(populate_existing=True)
    )
    if case.status != "active" or item is None:
        raise Conflict("there is nothing to confirm on this demand any more", code="nothing_to_confirm")
    expected = last_four((case.data or {}).get("contact_phone"))
    given = re.sub(r"\D", "", phone_digits or "")
    if expected and not hmac.compare_digest(expected.encode(), given.encode()):
        raise WrongPhoneDigits("the last four digits of the callback phone do not match")
    outcome = cases.apply_completion(rt, case, item, data, actor=None, at=at)
    return case, outcome


def confirmation_schema(rt: Runtime, case: Case, item: WorkItem) -> Mapping[str, Any] | None:
    from app.processes.service import definition_of

    if not item.form:
        return None
    return definition_of(case.process_version, rt).forms.get(item.form)


# -- light rate limits (shared by every web process through Redis) ----------------
_clock = time.time  # tests pin it so that a window never rolls over mid-test


def _limit_key(bucket: str, who: str, window: int) -> str:
    digest = hashlib.sha256(f"{bucket}:{who}".encode()).hexdigest()[:24]  # no codes or addresses in Redis
    return f"gridcase:public-limit:{bucket}:{digest}:{int(_clock() // window)}"


def limit_count(bucket: str, who: str, *, window: int) -> int:
    """How many hits ``who`` has in the current window (0 without Redis)."""
    connection = queue.redis_connection()
    if connection is None:
        return 0
    try:
        return int(connection.get(_limit_key(bucket, who, window)) or 0)
    except RedisError as exc:
        log.warning("rate limit %s not checked: Redis failed (%s)", bucket, exc)
        return 0


def limit_hit(bucket: str, who: str, *, limit: int, window: int) -> bool:
    """Count one hit; True while ``who`` stays within ``limit`` hits per ``window`` seconds.

    Fixed windows in Redis (INCR + EXPIRE), so every web process shares the counts.
    Without REDIS_URL (the embedded single-process mode) there is no limit; a Redis
    failure lets the request through (logged) rather than locking residents out."""
    connection = queue.redis_connection()
    if connection is None:
        return True
    key = _limit_key(bucket, who, window)
    try:
        pipe = connection.pipeline()
        pipe.incr(key)
        pipe.expire(key, window + 5)
        count, _ = pipe.execute()
    except RedisError as exc:
        log.warning("rate limit %s not applied: Redis failed (%s)", bucket, exc)
        return True
    return int(count) <= limit


def limits() -> dict[str, tuple[int, int]]:
    """(hits, window seconds) per bucket; instance/config.py may override PUBLIC_RATE_LIMITS."""
    defaults = {
        "lookup": (60, 600),          # tracking page views and code lookups per IP
        "submit": (20, 3600),         # demand submissions per IP
        "confirm_failed": (5, 3600),  # wrong phone digits per tracking code
    }
    configured = current_app.config.get("PUBLIC_RATE_LIMITS") or {}
    return {name: tuple(configured.get(name, value)) for name, value in defaults.items()}
