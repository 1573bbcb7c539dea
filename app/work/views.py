"""The handlers' workspace: 我的待办 (claimed by me), 待认领 (ready work my roles cover),
超期督办 (overdue work, for supervisors), and the actions on work items — claim, release,
reassign, return. Views stay thin: they read the request, call the services, commit once
and render; refusals are shown in place on the page the action came from."""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping
from urllib.parse import urlencode

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import format_datetime, format_timedelta, gettext as _, lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy.exc import SQLAlchemyError

from app.db import commit, rollback
from app.errors import DomainError, InvalidInput, status_for
from app.processes import service as processes
from app.timeutil import utcnow
from app.web import NavItem, add_nav, select_locale
from app.work import service
from app.work.schemas import light_of
from workflows.errors import EngineError

log = logging.getLogger(__name__)

blp = Blueprint("work", __name__, url_prefix="/work")

QUEUE_ENDPOINTS = {
    service.QUEUE_MINE: "work.inbox",
    service.QUEUE_CLAIMABLE: "work.claimable",
    service.QUEUE_OVERDUE: "work.overdue",
}
ORIGINS = {"inbox": service.QUEUE_MINE, "claimable": service.QUEUE_CLAIMABLE, "overdue": service.QUEUE_OVERDUE}


def register(app) -> None:
    from app.work import extensions  # 延期: its pages live on this blueprint

    extensions.attach_pages(blp, app)
    app.register_blueprint(blp)
    add_nav(NavItem("work.inbox", _l("My tasks"), count=lambda user: _badge(user, service.QUEUE_MINE)))
    add_nav(NavItem("work.claimable", _l("To claim"), count=lambda user: _badge(user, service.QUEUE_CLAIMABLE)))
    add_nav(NavItem("work.overdue", _l("Overdue work"), roles=frozenset(service.SUPERVISING_ROLES),
                    count=lambda user: _badge(user, service.QUEUE_OVERDUE)))
    extensions.add_nav_entry(app)


def _badge(user, queue: str) -> int | None:
    try:
        return service.count_queue(user, queue)
    except SQLAlchemyError:  # never let a badge break the page it decorates
        log.exception("could not count the %s queue", queue)
        return None


# -- shared page helpers (the case pages use them too) ---------------------------
def language() -> str:
    """'zh' or 'en': the form and role catalogues' language codes."""
    return "en" if select_locale().startswith("en") else "zh"


def local_time(value: datetime | None, pattern: str = "yyyy-MM-dd HH:mm") -> str:
    """A stored UTC time as Asia/Shanghai local time (BABEL_DEFAULT_TIMEZONE)."""
    return format_datetime(value, pattern) if value is not None else ""


def relative_due(value: datetime | None, now: datetime | None = None) -> str:
    """How long is left ("3 hours left"), or how long it is overdue."""
    if value is None:
        return ""
    left = value - (now or utcnow())
    if left.total_seconds() <= 0:
        return _("%(time)s overdue", time=format_timedelta(-left, threshold=1.1))
    return _("%(time)s left", time=format_timedelta(left, threshold=1.1))


def role_label(role: str | None) -> str:
    if not role:
        return ""
    entry = current_app.extensions["gridcase"].roles.roles.get(role)
    return entry.label(language()) if entry is not None else role


def light_label(light: str) -> str:
    return {
        "green": _("On time"),
        "yellow": _("Due soon"),
        "red": _("Overdue"),
    }.get(light, _("No deadline"))


def state_label(state: str) -> str:
    return {
        "ready": _("Waiting to be claimed"),
        "claimed": _("Claimed"),
        "completed": _("Completed"),
        "cancelled": _("Cancelled"),
    }.get(state, state)


_ERROR_MESSAGES: dict[str, Callable[[], str]] = {
    "forbidden": lambda: _("You may not do this: the task or case is outside your roles and grid scope."),
    "wrong_role": lambda: _("You may not do this: the task or case is outside your roles and grid scope."),
    "not_supervisor": lambda: _("Only a supervisor or duty chief covering this grid may do this."),
    "claimed_by_other": lambda: _("Someone else claimed this task first."),
    "task_not_open": lambda: _("This task was already completed or closed, perhaps by someone else. The page shows its current state."),
    "task_not_ready": lambda: _("This task was already completed or closed, perhaps by someone else. The page shows its current state."),
    "task_not_found": lambda: _("This task no longer exists in the case."),
    "not_claimed": lambda: _("This task is not claimed (any more)."),
    "stale_version": lambda: _("Someone else changed this case first. The page shows its current state."),
    "conflict": lambda: _("Someone else changed this case first. The page shows its current state."),
    "case_closed": lambda: _("This case is closed."),
    "not_found": lambda: _("Not found."),
    "form_invalid": lambda: _("Please check the fields marked below."),
    "invalid_input": lambda: _("Please check the fields marked below."),
    "reason_required": lambda: _("Please give a reason."),
    "reason_too_long": lambda: _("The reason is too long (at most %(n)s characters).", n=service.REASON_MAX),
    "assignee_required": lambda: _("Choose whom to give the task to."),
    "assignee_lacks_role": lambda: _("That person does not hold the task's role for this grid."),
    "already_assigned": lambda: _("The task is already with that person."),
    "note_empty": lambda: _("The note is empty."),
    "note_too_long": lambda: _("The note is too long."),
    "upload_type": lambda: _("Only JPEG, PNG or WebP photos and PDF documents can be attached."),
    "upload_empty": lambda: _("The file is empty."),
    "upload_too_large": lambda: _("The file is too large."),
    "unknown_grid": lambda: _("There is no such grid."),
}


def describe(error: Exception) -> str:
    """The message a person reads for a refused action, in the page's language."""
    code = getattr(error, "code", "")
    if code == "process_failed":
        return _("The process could not continue with this input: %(detail)s", detail=str(error))
    message = _ERROR_MESSAGES.get(code)
    return message() if message else localize(getattr(error, "message", None) or str(error))


# Field messages come from the form rules (workflows.forms), task_forms and the services,
# in English; people read them in the page's language.
_FIELD_MESSAGES: list[tuple[re.Pattern, Callable[[re.Match], str]]] = [
    (re.compile(r"^This field is required\.$"), lambda m: _("This field is required.")),
    (re.compile(r"^Must not be empty\.$"), lambda m: _("Must not be empty.")),
    (re.compile(r"^Must be at least (\d+) characters long\.$"), lambda m: _("Enter at least %(n)s characters.", n=m[1])),
    (re.compile(r"^Must be at most (\d+) characters long\.$"), lambda m: _("Enter at most %(n)s characters.", n=m[1])),
    (re.compile(r"^Must be one of: .*$"), lambda m: _("Choose one of the options.")),
    (re.compile(r"^Must be a whole number\.$"), lambda m: _("Enter a whole number.")),
    (re.compile(r"^please enter a whole number$"), lambda m: _("Enter a whole number.")),
    (re.compile(r"^Must be a number\.$"), lambda m: _("Enter a number.")),
    (re.compile(r"^please enter a number$"), lambda m: _("Enter a number.")),
    (re.compile(r"^Must be true or false\.$"), lambda m: _("Choose yes or no.")),
    (re.compile(r"^please choose yes or no$"), lambda m: _("Choose yes or no.")),
    (re.compile(r"^Must be text\.$"), lambda m: _("Enter text.")),
    (re.compile(r"^Must be at least (.+)\.$"), lambda m: _("Must be at least %(n)s.", n=m[1])),
    (re.compile(r"^Must be more than (.+)\.$"), lambda m: _("Must be more than %(n)s.", n=m[1])),
    (re.compile(r"^Must be at most (.+)\.$"), lambda m: _("Must be at most %(n)s.", n=m[1])),
    (re.compile(r"^Must be less than (.+)\.$"), lambda m: _("Must be less than %(n)s.", n=m[1])),
    (re.compile(r"^Choose at least (\d+)\.$"), lambda m: _("Choose at least %(n)s.", n=m[1])),
    (re.compile(r"^Choose at most (\d+)\.$"), lambda m: _("Choose at most %(n)s.", n=m[1])),
    (re.compile(r"^Has the wrong format\.$"), lambda m: _("The format is wrong.")),
    (re.compile(r"^Is not a valid (.+)\.$"), lambda m: _("The format is wrong.")),
    (re.compile(r'^Unknown field "(.+)": this form does not declare it\.$'), lambda m: _('This form has no field "%(name)s".', name=m[1])),
    (re.compile(r'^"(.+)" is required\.$'), lambda m: _('"%(name)s" is required.', name=m[1])),
    (re.compile(r"^invalid value$"), lambda m: _("The value is not valid.")),
    (re.compile(r"^the file is empty$"), lambda m: _("The file is empty.")),
    (re.compile(r"^the file is larger than (\d+) MB$"), lambda m: _("The file is larger than %(n)s MB.", n=m[1])),
    (re.compile(r"^only JPEG, PNG or WebP photos and PDF documents can be attached$"),
     lambda m: _("Only JPEG, PNG or WebP photos and PDF documents can be attached.")),
    (re.compile(r"^a reason is required$"), lambda m: _("Please give a reason.")),
    (re.compile(r"^the reason must be at most (\d+) characters$"), lambda m: _("The reason is too long (at most %(n)s characters).", n=m[1])),
    (re.compile(r"^choose whom to give the task to$"), lambda m: _("Choose whom to give the task to.")),
    (re.compile(r"^.+ does not hold role .+ for this grid$"), lambda m: _("That person does not hold the task's role for this grid.")),
    (re.compile(r"^the task is already .+'s$"), lambda m: _("The task is already with that person.")),
    (re.compile(r"^the note is empty$"), lambda m: _("The note is empty.")),
    (re.compile(r"^a note may be at most (\d+) characters long$"), lambda m: _("The note is too long (at most %(n)s characters).", n=m[1])),
    # deadline extensions (app.work.extensions)
    (re.compile(r"^give either a new deadline or a number of working days$"), lambda m: _("Give either a new deadline or a number of working days.")),
    (re.compile(r"^the new deadline must be later than the current one$"), lambda m: _("The new deadline must be later than the current one.")),
    (re.compile(r"^working days must be between 1 and (\d+)$"), lambda m: _("Enter between 1 and %(n)s working days.", n=m[1])),
    (re.compile(r"^an extension may add at most (\d+) working days$"), lambda m: _("An extension may add at most %(n)s working days.", n=m[1])),
    (re.compile(r"^(not a date and time|the new deadline needs a time zone)$"), lambda m: _("Enter a date and time.")),
    (re.compile(r"^must be a whole number$"), lambda m: _("Enter a whole number.")),
]


def localize(message: str) -> str:
    for pattern, translate in _FIELD_MESSAGES:
        match = pattern.match(message)
        if match:
            return translate(match)
    return message


def field_errors(error: Exception) -> dict[str, list[str]]:
    fields = getattr(error, "fields", None) or {}
    return {name: [localize(str(m)) for m in messages] for name, messages in fields.items()}


def is_refusal(error: Exception) -> bool:
    return isinstance(error, (DomainError, EngineError))


# -- queues ----------------------------------------------------------------------
@dataclass
class Row:
    item: Any
    reference: str
    title: str
    task: str
    role: str
    grid: str
    level: str | None
    due: str
    due_relative: str
    light: str
    light_label: str
    assignee: str | None


@blp.get("/mine")
@login_required
def inbox():
    """我的待办: the work items I have claimed."""
    return queue_page(service.QUEUE_MINE)


@blp.get("/claimable")
@login_required
def claimable():
    """待认领: ready items of my roles, within my grid scope."""
    return queue_page(service.QUEUE_CLAIMABLE)


@blp.get("/overdue")
@login_required
def overdue():
    """超期督办: open items past their deadline within my supervision scope."""
    if not service.may_supervise(current_user):
        abort(403)
    return queue_page(service.QUEUE_OVERDUE)


def _filters_from(args: Mapping[str, str]) -> tuple[service.QueueFilter, dict[str, str]]:
    chosen = {
        "process": (args.get("process") or "").strip(),
        "level": (args.get("level") or "").strip().upper(),
        "grid": (args.get("grid") or "").strip(),
        "status": (args.get("status") or "").strip(),
        "overdue": "1" if args.get("overdue") in ("1", "on", "true") else "",
        "department": (args.get("department") or "").strip(),
    }
    if chosen["level"] not in service.LEVELS:
        chosen["level"] = ""
    if chosen["status"] not in service.LIGHTS:
        chosen["status"] = ""
    light = "red" if chosen["overdue"] else chosen["status"] or None
    filters = service.QueueFilter(
        process_id=chosen["process"] or None, level=chosen["level"] or None, grid=chosen["grid"] or None, light=light,
        department=chosen["department"] or None,
    )
    return filters, chosen


def queue_page(queue: str, *, error: Exception | None = None, status: int = 200, action_state=None):
    user = current_user._get_current_object()
    filters, chosen = _filters_from(request.args)
    page_number = max(request.args.get("page", default=1, type=int) or 1, 1)
    page_size = current_app.config["PAGE_SIZE_DEFAULT"]
    messages = [describe(error)] if error is not None else []
    try:
        page = service.list_queue(user, queue, filters, page=page_number, page_size=page_size)
    except InvalidInput as bad_filter:  # e.g. a grid code that does not exist
        messages.append(describe(bad_filter))
        chosen["grid"] = ""
        filters = service.QueueFilter(process_id=filters.process_id, level=filters.level, light=filters.light)
        page = service.list_queue(user, queue, filters, page=page_number, page_size=page_size)
    now = utcnow()
    rows = [_row(item, now) for item in page.items]
    if error is not None and set(action_state or {}) & {row.item.id for row in rows}:
        messages.remove(describe(error))  # shown on the item's row instead
    candidates = service.reassign_candidates(page.items) if queue == service.QUEUE_OVERDUE else {}
    pages = max((page.total + page_size - 1) // page_size, 1)
    query = {k: v for k, v in chosen.items() if v}
    action_query = {**query, **({"page": page.page} if page.page > 1 else {})}
    return render_template(
        "work/queue.html",
        queue=queue,
        endpoint=QUEUE_ENDPOINTS[queue],
        origin={v: k for k, v in ORIGINS.items()}[queue],
        rows=rows,
        total=page.total,
        page=page.page,
        pages=pages,
        page_url=lambda n: url_for(QUEUE_ENDPOINTS[queue]) + "?" + urlencode({**query, "page": n}),
        chosen=chosen,
        filtered=any(chosen.values()),
        process_options=[(v.process_id, v.name) for v in processes.latest_versions()],
        department_options=_departments() if queue == service.QUEUE_OVERDUE else [],
        grid_options=service.grids_in_scope(user),
        levels=service.LEVELS,
        lights=[(light, light_label(light)) for light in service.LIGHTS],
        candidates=candidates,
        messages=messages,
        action_state=action_state or {},
        query=action_query,
    ), status


def _departments():
    from app.people import service as people

    return people.departments()


def _row(item, now: datetime) -> Row:
    case = item.case
    light = light_of(item, now)
    level = (case.data or {}).get("level") if isinstance(case.data, dict) else None
    return Row(
        item=item,
        reference=case.reference,
        title=case.title,
        task=item.name,
        role=role_label(item.role),
        grid=case.grid_node.name,
        level=str(level) if level in service.LEVELS else None,
        due=local_time(item.due_at),
        due_relative=relative_due(item.due_at, now),
        light=light,
        light_label=light_label(light),
        assignee=(item.assignee.display_name if item.assignee else None),
    )


# -- actions on work items -------------------------------------------------------
@blp.post("/items/<int:item_id>/claim")
@login_required
def claim(item_id: int):
    try:
        item = service.claim(item_id, current_user._get_current_object())
        reference, name = item.case.reference, item.name
        commit()
    except Exception as error:  # noqa: BLE001 - refusals are shown in place, anything else re-raised
        return _refused(error, item_id)
    flash(_("You claimed “%(task)s”. It is now in My tasks.", task=name))
    # Claiming is for working on it: go to the case, where the task's form is.
    return redirect(url_for("cases.case_page", reference=reference) + f"#task-{item_id}", 303)


@blp.post("/items/<int:item_id>/release")
@login_required
def release(item_id: int):
    try:
        item = service.release(item_id, current_user._get_current_object())
        reference, name = item.case.reference, item.name
        commit()
    except Exception as error:  # noqa: BLE001
        return _refused(error, item_id)
    flash(_("You released “%(task)s” back to its queue.", task=name))
    return redirect(_back(reference), 303)


@blp.post("/items/<int:item_id>/reassign")
@login_required
def reassign(item_id: int):
    try:
        item = service.reassign(
            item_id, current_user._get_current_object(), request.form.get("assignee", ""), request.form.get("reason", ""),
        )
        reference, name, to = item.case.reference, item.name, item.assignee.display_name
        commit()
    except Exception as error:  # noqa: BLE001
        return _refused(error, item_id, action="reassign")
    flash(_("“%(task)s” was reassigned to %(name)s.", task=name, name=to))
    return redirect(_back(reference), 303)


@blp.post("/items/<int:item_id>/return")
@login_required
def return_item(item_id: int):
    try:
        item = service.return_to_queue(item_id, current_user._get_current_object(), request.form.get("reason", ""))
        reference, name = item.case.reference, item.name
        commit()
    except Exception as error:  # noqa: BLE001
        return _refused(error, item_id, action="return")
    flash(_("“%(task)s” was returned to its queue.", task=name))
    return redirect(_back(reference), 303)


def _back(reference: str) -> str:
    origin = request.form.get("origin")
    if origin in ORIGINS:
        return url_for(QUEUE_ENDPOINTS[ORIGINS[origin]])
    return url_for("cases.case_page", reference=reference)


def _refused(error: Exception, item_id: int, *, action: str | None = None):
    """Roll back and show the refusal on the page the action came from."""
    rollback()
    if not is_refusal(error):
        raise error
    status = status_for(error)
    state = {item_id: {"action": action, "values": request.form.to_dict(), "errors": field_errors(error),
                       "message": describe(error)}}
    origin = request.form.get("origin")
    if origin == "case" and request.form.get("reference"):
        from app.cases.views import render_case_page

        return render_case_page(request.form["reference"], error=error, status=status, action_state=state)
    if origin in ORIGINS and (ORIGINS[origin] != service.QUEUE_OVERDUE or service.may_supervise(current_user)):
        return queue_page(ORIGINS[origin], error=error, status=status, action_state=state)
    from app.errors import respond

    return respond(getattr(error, "code", "error"), describe(error), status)
