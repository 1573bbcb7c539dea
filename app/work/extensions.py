"""Deadline extensions (延期申请): a handler asks to move the deadline of a work item they
hold; an approver (EXTENSION_APPROVER_ROLES at a grid node covering the case) approves or
rejects. Approval moves the deadline *in the workflow*: the task's WAITING interrupting
boundary timer is rescheduled (CaseRun.reschedule_timer), and its non-interrupting warning
timer moves by the same amount (it keeps its lead before the deadline). The step is written
through the normal case path (event "extension_approved", Timer rows and work items
re-projected, an rq nudge at the new time). A task whose limit is declared on the task
(no timers) has its work item's times moved the same way. Approved extensions are counted
on the work item (``extension_count``).

Events: extension_requested {extension, work_item, task_id, reason, requested_due_at},
extension_approved {extension, work_item, task_id, timer_task_ids, old_due_at, new_due_at,
old_warn_at, new_warn_at, reason}, extension_rejected {extension, work_item, task_id, reason}.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import false, func, or_, select
from sqlalchemy.orm import joinedload

from app.cases import service as cases
from app.cases.models import Case
from app.db import db
from app.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from app.notifications import service as notifications
from app.notifications.models import KIND_EXTENSION_DECIDED, KIND_EXTENSION_REQUESTED
from app.people.models import User
from app.runtime import Runtime
from app.timeutil import utcnow
from app.work.models import (
    EXTENSION_APPROVED, EXTENSION_PENDING, EXTENSION_REJECTED, ITEM_CLAIMED, OPEN_STATES, ExtensionRequest, WorkItem,
)

REASON_MAX = 500
LOCAL = ZoneInfo("Asia/Shanghai")


# -- who may decide -------------------------------------------------------------
def approver_paths(user: User) -> tuple[str, ...] | None:
    """Grid paths where the user approves extensions; None: everywhere (admin)."""
    if user.is_admin:
        return None
    roles = set(current_app.config["EXTENSION_APPROVER_ROLES"])
    return tuple(a.grid_node.path for a in user.roles if a.role in roles)


def may_approve(user: User, grid_path: str | None = None) -> bool:
    paths = approver_paths(user)
    if paths is None:
        return True
    if grid_path is None:
        return bool(paths)
    return any(grid_path.startswith(p) for p in paths)


def _approver_role(user: User, grid_path: str) -> str | None:
    roles = current_app.config["EXTENSION_APPROVER_ROLES"]
    for a in user.roles:
        if a.role in roles and grid_path.startswith(a.grid_node.path):
            return a.role
    return None


# -- input ------------------------------------------------------------------------
def _reason(reason: Any, *, required: bool = True) -> str:
    text = (reason or "").strip() if isinstance(reason, str) else ""
    if required and not text:
        raise InvalidInput("a reason is required", code="reason_required", fields={"reason": ["a reason is required"]})
    if len(text) > REASON_MAX:
        message = f"the reason must be at most {REASON_MAX} characters"
        raise InvalidInput(message, code="reason_too_long", fields={"reason": [message]})
    return text


def new_due_from(rt: Runtime, current_due: datetime, *, requested_due_at: datetime | None, working_days: Any,
                 now: datetime) -> datetime:
    """The requested deadline: an aware datetime, or the current deadline plus N working days
    (business calendar). Must be later than the current deadline and than now, and within
    EXTENSION_MAX_WORKING_DAYS working days of the current deadline."""
    maximum = current_app.config["EXTENSION_MAX_WORKING_DAYS"]
    if (requested_due_at is None) == (working_days in (None, "")):
        message = "give either a new deadline or a number of working days"
        raise InvalidInput(message, code="extension_invalid", fields={"requested_due_at": [message]})
    if requested_due_at is None:
        try:
            days = int(working_days)
        except (TypeError, ValueError):
            raise InvalidInput("working days must be a whole number", code="extension_invalid",
                               fields={"working_days": ["must be a whole number"]}) from None
        if isinstance(working_days, bool) or not 1 <= days <= maximum:
            message = f"working days must be between 1 and {maximum}"
            raise InvalidInput(message, code="extension_invalid", fields={"working_days": [message]})
        return rt.calendar.add_working_days(current_due, days)
    if requested_due_at.tzinfo is None:
        message = "the new deadline needs a time zone"
        raise InvalidInput(message, code="extension_invalid", fields={"requested_due_at": [message]})
    if requested_due_at <= current_due or requested_due_at <= now:
        message = "the new deadline must be later than the current one"
        raise InvalidInput(message, code="extension_invalid", fields={"requested_due_at": [message]})
    if requested_due_at > rt.calendar.add_working_days(current_due, maximum):
        message = f"an extension may add at most {maximum} working days"
        raise InvalidInput(message, code="extension_invalid", fields={"requested_due_at": [message]})
    return requested_due_at


def parse_local(text: str | None) -> datetime | None:
    """A page's datetime-local value (Asia/Shanghai) as an aware datetime; None when empty."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput("the new deadline is not a date and time", code="extension_invalid",
                           fields={"requested_due_at": ["not a date and time"]}) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=LOCAL)


# -- requesting -------------------------------------------------------------------
def request_extension(
    rt: Runtime, item_id: int, user: User, *, reason: Any, requested_due_at: datetime | None = None,
    working_days: Any = None, at: datetime | None = None,
) -> ExtensionRequest:
    at = at or utcnow()
    case = _lock_item_case(item_id)
    item = db.session.scalar(select(WorkItem).where(WorkItem.id == item_id).execution_options(populate_existing=True))
    if item.assignee_id != user.id or item.state != ITEM_CLAIMED:
        if item.state not in OPEN_STATES:
            raise Conflict(f"work item {item.id} is already {item.state}", code="task_not_open")
        raise PermissionDenied("only the person who holds (has claimed) this task may ask for an extension",
                               code="not_holder")
    cases._require_active(case)
    if item.due_at is None:
        raise Conflict("this task has no deadline to extend", code="no_deadline")
    pending = db.session.scalar(
        select(ExtensionRequest.id).where(ExtensionRequest.work_item_id == item.id, ExtensionRequest.state == EXTENSION_PENDING)
    )
    if pending is not None:
        raise Conflict("an extension request for this task is already waiting for a decision", code="extension_pending")
    reason = _reason(reason)
    new_due = new_due_from(rt, item.due_at, requested_due_at=requested_due_at, working_days=working_days, now=at)
    ext = ExtensionRequest(
        case_id=case.id, work_item_id=item.id, task_id=item.task_id, grid_path=item.grid_path, state=EXTENSION_PENDING,
        reason=reason, old_due_at=item.due_at, requested_due_at=new_due, requested_by_id=user.id, requested_at=at,
    )
    db.session.add(ext)
    db.session.flush()
    cases.record(case, "extension_requested", {
        "extension": ext.id, "work_item": item.id, "task_id": item.task_id, "task": item.spec_id, "name": item.name,
        "reason": reason, "old_due_at": item.due_at.isoformat(), "requested_due_at": new_due.isoformat(),
    }, actor=user, role=item.role, at=at)
    notifications.notify(
        notifications.holders_of(current_app.config["EXTENSION_APPROVER_ROLES"], item.grid_path),
        KIND_EXTENSION_REQUESTED, case=case, work_item_id=item.id,
        text=notifications.describe_item(item.name, case.title) + f" · {reason}", at=at, exclude_user_id=user.id,
    )
    return ext


# -- deciding ---------------------------------------------------------------------
def decide(
    rt: Runtime, extension_id: int, user: User, *, approve: bool, reason: Any = None,
    due_at: datetime | None = None, at: datetime | None = None,
) -> ExtensionRequest:
    """Approve (optionally with another new deadline ``due_at``) or reject (reason required)."""
    at = at or utcnow()
    found = db.session.scalar(select(ExtensionRequest.case_id).where(ExtensionRequest.id == extension_id))
    if found is None:
        raise NotFound(f"extension request {extension_id} does not exist")
    case = cases.lock_case(found)
    ext = db.session.scalar(
        select(ExtensionRequest).where(ExtensionRequest.id == extension_id).execution_options(populate_existing=True)
    )
    if not may_approve(user, ext.grid_path):
        raise PermissionDenied("only a supervisor or duty chief covering this grid may decide extensions",
                               code="not_approver")
    if ext.state != EXTENSION_PENDING:
        raise Conflict(f"this extension request was already {ext.state}", code="extension_decided")
    item = db.session.scalar(select(WorkItem).where(WorkItem.id == ext.work_item_id).execution_options(populate_existing=True))
    role = _approver_role(user, ext.grid_path)
    reason = _reason(reason, required=not approve)
    if approve:
        if item.state not in OPEN_STATES:
            raise Conflict(f"work item {item.id} is already {item.state}", code="task_not_open")
        cases._require_active(case)
        new_due = ext.requested_due_at
        if due_at is not None:
            new_due = new_due_from(rt, item.due_at, requested_due_at=due_at, working_days=None, now=at)
        _move_deadline(rt, case, item, ext, new_due, user=user, role=role, reason=reason, at=at)
        ext.state, ext.new_due_at = EXTENSION_APPROVED, new_due
    else:
        ext.state = EXTENSION_REJECTED
        cases.record(case, "extension_rejected", {
            "extension": ext.id, "work_item": item.id, "task_id": ext.task_id, "name": item.name, "reason": reason,
        }, actor=user, role=role, at=at)
    ext.decided_by_id, ext.decided_at, ext.decision_reason = user.id, at, reason or None
    text = notifications.describe_item(item.name, case.title)
    notifications.notify([ext.requested_by_id], KIND_EXTENSION_DECIDED, case=case, work_item_id=item.id,
                         text=f"{text} · {'+' if approve else '-'} {reason}".rstrip(), at=at)
    db.session.flush()
    return ext


def _move_deadline(rt: Runtime, case: Case, item: WorkItem, ext: ExtensionRequest, new_due: datetime, *,
                   user: User, role: str | None, reason: str, at: datetime) -> None:
    old_due, old_warn = item.due_at, item.warn_at
    shift = new_due - old_due
    new_warn = old_warn + shift if old_warn is not None else None
    run = cases.load_run(case, rt)
    moved: list[str] = []
    for timer in run.boundary_timers(item.task_id):
        if timer.interrupting and timer.due_at == old_due:
            run.reschedule_timer(timer.task_id, new_due)
            moved.append(timer.task_id)
        elif not timer.interrupting and old_warn is not None and timer.due_at == old_warn:
            run.reschedule_timer(timer.task_id, new_warn)
            moved.append(timer.task_id)
    payload = {
        "extension": ext.id, "work_item": item.id, "task_id": item.task_id, "task": item.spec_id, "name": item.name,
        "timer_task_ids": moved, "old_due_at": old_due.isoformat(), "new_due_at": new_due.isoformat(),
        "old_warn_at": old_warn.isoformat() if old_warn else None,
        "new_warn_at": new_warn.isoformat() if new_warn else None, "reason": reason,
    }
    cases.apply_step(rt, case, run, run.outcome(), "extension_approved", payload, actor=user, role=role, at=at)
    # Timer-backed times were re-projected from the workflow; a declared limit lives on the item.
    if item.due_at == old_due:
        item.due_at, item.warn_at = new_due, new_warn
    item.warn_notified_at = item.due_notified_at = None
    item.extension_count = (item.extension_count or 0) + 1


def _lock_item_case(item_id: int) -> Case:
    try:
        return cases.lock_case(select(WorkItem.case_id).where(WorkItem.id == item_id).scalar_subquery())
    except NotFound:
        raise NotFound(f"work item {item_id} does not exist") from None


# -- reading ----------------------------------------------------------------------
def _scope(user: User) -> Any:
    paths = approver_paths(user)
    if paths is None:
        return True
    return or_(*[ExtensionRequest.grid_path.startswith(p) for p in paths]) if paths else false()


def pending_for(user: User, *, page: int = 1, page_size: int = 50) -> tuple[list[ExtensionRequest], int]:
    """Pending requests in the approver's scope whose task is still open, oldest first."""
    query = (
        select(ExtensionRequest)
        .join(WorkItem, WorkItem.id == ExtensionRequest.work_item_id)
        .where(ExtensionRequest.state == EXTENSION_PENDING, WorkItem.state.in_(OPEN_STATES), _scope(user))
    )
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = db.session.scalars(
        query.order_by(ExtensionRequest.requested_at, ExtensionRequest.id)
        .options(joinedload(ExtensionRequest.case).joinedload(Case.grid_node),
                 joinedload(ExtensionRequest.work_item), joinedload(ExtensionRequest.requested_by))
        .offset((page - 1) * page_size).limit(page_size)
    )
    return list(rows), total


def count_pending(user: User) -> int:
    if not may_approve(user):
        return 0
    return pending_for(user, page=1, page_size=1)[1]


def of_case(case: Case) -> list[ExtensionRequest]:
    return list(db.session.scalars(
        select(ExtensionRequest).where(ExtensionRequest.case_id == case.id)
        .options(joinedload(ExtensionRequest.requested_by), joinedload(ExtensionRequest.decided_by))
        .order_by(ExtensionRequest.id)
    ))


def _of_case_once(case: Case) -> list[ExtensionRequest]:
    """of_case, read once per request (the case page asks for every task card)."""
    from flask import g

    cache = g.setdefault("_case_extensions", {})
    if case.id not in cache:
        cache[case.id] = of_case(case)
    return cache[case.id]


def get(extension_id: int, user: User) -> ExtensionRequest:
    ext = db.session.get(ExtensionRequest, extension_id)
    if ext is None:
        raise NotFound(f"extension request {extension_id} does not exist")
    if not (may_approve(user, ext.grid_path) or ext.requested_by_id == user.id):
        raise PermissionDenied("this extension request is outside your scope")
    return ext


# -- API (attached to app.work.api's blueprint) ----------------------------------------
def attach_api(blp) -> None:
    from marshmallow import Schema, fields, validate

    from app.db import commit
    from app.people.auth import current_user, login_required
    from app.runtime import runtime
    from app.schemas import PageArgs, PageOut, page_size_of

    class ExtensionArgs(Schema):
        reason = fields.Str(required=True, validate=validate.Length(min=1, max=REASON_MAX))
        requested_due_at = fields.AwareDateTime(metadata={"description": "new deadline (ISO 8601 with offset)"})
        working_days = fields.Int(validate=validate.Range(min=1),
                                  metadata={"description": "or: the current deadline plus this many working days"})

    class DecisionArgs(Schema):
        reason = fields.Str(validate=validate.Length(max=REASON_MAX))
        due_at = fields.AwareDateTime(metadata={"description": "approve with this deadline instead of the requested one"})

    class ExtensionQueryArgs(PageArgs):
        pass

    class ExtensionOut(Schema):
        id = fields.Int()
        case = fields.Function(lambda e: e.case.reference)
        work_item = fields.Int(attribute="work_item_id")
        task_id = fields.Str()
        task_name = fields.Function(lambda e: e.work_item.name)
        state = fields.Str()
        reason = fields.Str()
        old_due_at = fields.DateTime(allow_none=True)
        requested_due_at = fields.DateTime()
        new_due_at = fields.DateTime(allow_none=True)
        requested_by = fields.Function(lambda e: e.requested_by.username if e.requested_by else None)
        requested_at = fields.DateTime()
        decided_by = fields.Function(lambda e: e.decided_by.username if e.decided_by else None)
        decided_at = fields.DateTime(allow_none=True)
        decision_reason = fields.Str(allow_none=True)
        extension_count = fields.Function(lambda e: e.work_item.extension_count)

    class ExtensionPageOut(PageOut):
        items = fields.List(fields.Nested(ExtensionOut))

    @blp.post("/<int:item_id>/extensions")
    @blp.arguments(ExtensionArgs)
    @blp.response(201, ExtensionOut)
    @login_required
    def request_extension_api(args, item_id: int):
        """Ask for a deadline extension (延期申请) on a work item you have claimed: a reason and
        either ``requested_due_at`` or ``working_days``. 409 without a deadline or with a request pending."""
        ext = request_extension(runtime(), item_id, current_user(), reason=args["reason"],
                                requested_due_at=args.get("requested_due_at"), working_days=args.get("working_days"))
        commit()
        return ext

    @blp.get("/extensions")
    @blp.arguments(ExtensionQueryArgs, location="query")
    @blp.response(200, ExtensionPageOut)
    @login_required
    def pending_extensions_api(args):
        """Pending extension requests in your approval scope (EXTENSION_APPROVER_ROLES), oldest first."""
        user = current_user()
        if not may_approve(user):
            raise PermissionDenied("only supervisors and duty chiefs decide extensions", code="not_approver")
        size = page_size_of(args)
        rows, total = pending_for(user, page=args["page"], page_size=size)
        return {"items": rows, "total": total, "page": args["page"], "page_size": size}

    @blp.get("/extensions/<int:extension_id>")
    @blp.response(200, ExtensionOut)
    @login_required
    def get_extension_api(extension_id: int):
        """One extension request (its requester or an approver in scope)."""
        return get(extension_id, current_user())

    @blp.post("/extensions/<int:extension_id>/approve")
    @blp.arguments(DecisionArgs)
    @blp.response(200, ExtensionOut)
    @login_required
    def approve_extension_api(args, extension_id: int):
        """Approve: the task's deadline timer (and warning) move in the workflow; counted on the work item."""
        ext = decide(runtime(), extension_id, current_user(), approve=True, reason=args.get("reason"),
                     due_at=args.get("due_at"))
        commit()
        return ext

    @blp.post("/extensions/<int:extension_id>/reject")
    @blp.arguments(DecisionArgs)
    @blp.response(200, ExtensionOut)
    @login_required
    def reject_extension_api(args, extension_id: int):
        """Reject with a reason (required)."""
        ext = decide(runtime(), extension_id, current_user(), approve=False, reason=args.get("reason"))
        commit()
        return ext


# -- pages (attached to app.work.views' blueprint) ---------------------------------------
def add_nav_entry(app) -> None:
    """延期审批 in the navigation (after the work queues), with the pending count."""
    from flask_babel import lazy_gettext as _l

    from app.web import NavItem, add_nav

    def badge(user):
        try:
            return count_pending(user)
        except Exception:  # noqa: BLE001 - a badge never breaks the page
            return None

    add_nav(NavItem("work.extensions", _l("Extensions"), roles=frozenset(app.config["EXTENSION_APPROVER_ROLES"]),
                    count=badge))


def attach_pages(blp, app) -> None:
    from flask import abort, flash, redirect, render_template, request, url_for
    from flask_babel import gettext as _
    from flask_login import current_user, login_required

    from app.db import commit, rollback
    from app.runtime import runtime
    from app.work import views

    def _user():
        return current_user._get_current_object()

    app.jinja_env.globals["case_extensions"] = _of_case_once
    app.jinja_env.globals.setdefault("local_time", views.local_time)
    if getattr(blp, "_gridcase_extensions", False):
        return  # routes are attached once per process; every app registers the same blueprint
    blp._gridcase_extensions = True

    def list_page(messages=(), state=None, status=200):
        user = _user()
        page_number = max(request.args.get("page", default=1, type=int) or 1, 1)
        size = current_app.config["PAGE_SIZE_DEFAULT"]
        rows, total = pending_for(user, page=page_number, page_size=size)
        now = utcnow()
        return render_template(
            "work/extensions.html", rows=rows, total=total, page=page_number,
            pages=max((total + size - 1) // size, 1), messages=list(messages), state=state or {},
            local_time=views.local_time, relative_due=lambda v: views.relative_due(v, now),
            role_label=views.role_label,
        ), status

    @blp.get("/extensions")
    @login_required
    def extensions():
        """延期审批: pending extension requests in my scope."""
        if not may_approve(_user()):
            abort(403)
        return list_page()

    @blp.post("/extensions/<int:extension_id>/decide")
    @login_required
    def decide_extension(extension_id: int):
        action = request.form.get("action")
        try:
            if action not in ("approve", "reject"):
                raise InvalidInput("choose approve or reject", code="invalid_input")
            ext = decide(runtime(), extension_id, _user(), approve=action == "approve",
                         reason=request.form.get("reason", ""))
            name = ext.work_item.name
            commit()
        except Exception as error:  # noqa: BLE001 - refusals shown in place
            rollback()
            if not views.is_refusal(error):
                raise
            if not may_approve(_user()):
                from app.errors import respond

                return respond(getattr(error, "code", "forbidden"), _describe(error), views.status_for(error))
            state = {extension_id: {"message": _describe(error), "values": request.form.to_dict(),
                                    "errors": views.field_errors(error)}}
            return list_page(state=state, status=views.status_for(error))
        if action == "approve":
            flash(_("The extension for “%(task)s” was approved; the deadline has moved.", task=name))
        else:
            flash(_("The extension for “%(task)s” was rejected.", task=name))
        return redirect(url_for("work.extensions"), 303)

    @blp.post("/items/<int:item_id>/extension")
    @login_required
    def request_extension_page(item_id: int):
        reference = request.form.get("reference", "")
        try:
            ext = request_extension(
                runtime(), item_id, _user(), reason=request.form.get("reason", ""),
                requested_due_at=parse_local(request.form.get("requested_due_at")),
                working_days=(request.form.get("working_days") or "").strip() or None,
            )
            reference = ext.case.reference
            commit()
        except Exception as error:  # noqa: BLE001
            rollback()
            if not views.is_refusal(error) or not reference:
                raise
            from app.cases.views import render_case_page

            state = {item_id: {"action": "extension", "values": request.form.to_dict(),
                               "errors": views.field_errors(error), "message": _describe(error)}}
            return render_case_page(reference, error=error, status=views.status_for(error), action_state=state)
        flash(_("Your extension request was sent for approval."))
        return redirect(url_for("cases.case_page", reference=reference) + f"#task-{item_id}", 303)

    def _describe(error):
        code = getattr(error, "code", "")
        messages = {
            "not_holder": _("Only the person who has claimed this task may ask for an extension."),
            "no_deadline": _("This task has no deadline to extend."),
            "extension_pending": _("An extension request for this task is already waiting for a decision."),
            "extension_decided": _("This request was already decided."),
            "extension_invalid": _("Please check the new deadline."),
            "not_approver": _("Only a supervisor or duty chief covering this grid may decide extensions."),
        }
        return messages.get(code) or views.describe(error)
