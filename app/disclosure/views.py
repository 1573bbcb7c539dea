"""Public disclosure board (no login) and the supervisors' monthly follow-up page.

URLs
  /disclosure                                 the board: resolutions open for objections, results, demands
  /disclosure/resolutions/<id>                one resolution: votes, posting window, result; objection form
  POST /disclosure/resolutions/<id>/objection a resident's objection (异议), within the window
  /disclosure/archive?community=&month=&page= resolutions whose window has closed
  /disclosure/demands?community=&page=        closed residents' demands with their outcome
  /disclosure/followups?month=                每月回访 (supervisors, scoped by grid)
  POST /disclosure/followups/<id>/callback    "called back": who and when
"""
from __future__ import annotations

import logging

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import pgettext
from flask_login import current_user, login_required
from sqlalchemy.exc import SQLAlchemyError

from app.cases.service import add_step_listener
from app.db import commit, rollback
from app.disclosure import service
from app.disclosure.forms import CallbackForm, ObjectionForm
from app.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from app.extensions import csrf
from app.jobs import register_periodic
from app.public import service as public
from app.runtime import runtime
from app.web import NavItem, add_nav
from workflows.errors import EngineError

log = logging.getLogger(__name__)
bp = Blueprint("disclosure", __name__, url_prefix="/disclosure")

ANONYMOUS = "居民（未署名）"  # what the process reads as 异议人 when no name is given
DEFAULT_OBJECTION_LIMIT = (5, 3600)  # objections per address per hour (PUBLIC_RATE_LIMITS["objection"])


def register(app) -> None:
    app.register_blueprint(bp)
    csrf.exempt(objection)  # checked by ObjectionForm.validate, so a stale form comes back in place
    add_step_listener(service.on_case_step)
    from app.disclosure import jobs

    register_periodic(jobs.JOB_NAME, "app.disclosure.jobs.monthly_followup", jobs.EVERY_SECONDS)
    add_nav(NavItem("disclosure.board", _l("Disclosure board"), public=True))
    roles = frozenset(app.config.get("DISCLOSURE_FOLLOWUP_ROLES", ("supervisor", "duty_chief")))
    add_nav(NavItem("disclosure.followups", _l("Monthly follow-up"), roles=roles, count=_pending_badge))


def _pending_badge(user) -> int | None:
    try:
        return service.pending_followups(user)
    except SQLAlchemyError:  # never let a badge break the page it decorates
        log.exception("could not count pending follow-ups")
        return None


# -- helpers -------------------------------------------------------------------------------
def _local_date(value) -> str:
    return value.astimezone(service.LOCAL).strftime("%Y-%m-%d") if value else ""


def _local_time(value) -> str:
    return value.astimezone(service.LOCAL).strftime("%Y-%m-%d %H:%M") if value else ""


def _meeting_label(meeting_type: str) -> str:
    return {
        "villagers_meeting": pgettext("disclosure", "Villagers' meeting"),
        "representatives_meeting": pgettext("disclosure", "Villagers'/residents' representatives' meeting"),
        "residents_meeting": pgettext("disclosure", "Residents' meeting"),
    }.get(meeting_type, meeting_type)


def _outcome_label(end_event: str) -> str:
    return {
        "end_closed": pgettext("disclosure", "Resolved and closed"),
        "end_answered": pgettext("disclosure", "Answered directly"),
        "end_not_passed": pgettext("disclosure", "Deliberation did not adopt it; reasons explained"),
        "end_rejected": pgettext("disclosure", "Not accepted after checking"),
    }.get(end_event, pgettext("disclosure", "Closed"))


def _satisfaction_label(value: str | None) -> str:
    return {
        "satisfied": pgettext("disclosure", "Satisfied"),
        "basically_satisfied": pgettext("disclosure", "Basically satisfied"),
        "unsatisfied": pgettext("disclosure", "Not satisfied"),
    }.get(value or "", "")


def _status_label(status: str) -> str:
    return {
        "implemented": pgettext("disclosure", "Implemented"),
        "in_progress": pgettext("disclosure", "In progress"),
        "overdue": pgettext("disclosure", "Overdue"),
        "withdrawn": pgettext("disclosure", "Withdrawn after an objection"),
    }.get(status, status)


def _state_message(state: str) -> str:
    return {
        "closed": _("The posting period of this resolution has ended; objections are no longer accepted."),
        "withdrawn": _("This resolution was withdrawn after an objection and is being deliberated again; "
                       "objections are no longer accepted."),
        "under_review": _("An earlier objection to this resolution is being reviewed right now. "
                          "Please send yours again after the review, before the posting period ends."),
        "case_closed": _("This resolution no longer accepts objections."),
    }.get(state, _("This resolution no longer accepts objections."))


@bp.app_context_processor
def _helpers():
    return {
        "dc_date": _local_date, "dc_time": _local_time, "dc_meeting": _meeting_label, "dc_outcome": _outcome_label,
        "dc_satisfaction": _satisfaction_label, "dc_status": _status_label,
    }


def _page_number() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 100000 else 1


def _filters():
    """(community, month, errors) from the query string; bad values are said in place."""
    errors: dict[str, str] = {}
    community = month = None
    try:
        community = service.community_by_code(request.args.get("community") or None)
    except InvalidInput:
        errors["community"] = _("There is no such community.")
    try:
        month = service.parse_month(request.args.get("month") or None)
    except InvalidInput:
        errors["month"] = _("Please give the month as YYYY-MM, e.g. 2026-11.")
    return community, month, errors


def _client() -> str:
    return request.remote_addr or "unknown"


def _objection_limit() -> tuple[int, int]:
    configured = (current_app.config.get("PUBLIC_RATE_LIMITS") or {}).get("objection")
    return tuple(configured) if configured else DEFAULT_OBJECTION_LIMIT


# -- the board -------------------------------------------------------------------------------
@bp.get("")
def board():
    community, _month, errors = _filters()
    at = service.now()
    return render_template(
        "disclosure/board.html",
        open_rows=service.open_resolutions(at, community),
        results=service.recent_results(community),
        demands=service.closed_demands(community=community, page=1, page_size=10),
        communities=service.communities(), community=community, errors=errors,
    ), (422 if errors else 200)


@bp.get("/resolutions/<int:disclosure_id>")
def resolution(disclosure_id: int):
    try:
        row = service.get_resolution(disclosure_id)
    except NotFound:
        abort(404)
    return _render_resolution(row, ObjectionForm(formdata=None))


def _render_resolution(row, form: ObjectionForm, *, alert: str | None = None, status: int = 200):
    at = service.now()
    state = service.objection_state(row, at)
    return render_template(
        "disclosure/resolution.html", row=row, form=form, state=state, state_message=_state_message(state),
        alert=alert, status=service.status_of(row, at, service.settings()["implementation_days"]),
        limits=(service.CONTENT_MIN, service.CONTENT_MAX),
    ), status


@bp.post("/resolutions/<int:disclosure_id>/objection")
def objection(disclosure_id: int):
    try:
        row = service.get_resolution(disclosure_id)
    except NotFound:
        abort(404)
    limit, window = _objection_limit()
    if not public.limit_hit("objection", _client(), limit=limit, window=window):
        response = current_app.make_response(
            _render_resolution(row, ObjectionForm(), status=429,
                               alert=_("Too many objections from this connection. Please try again in %(minutes)d minutes.",
                                       minutes=max(window // 60, 1))))
        response.headers["Retry-After"] = str(window)
        return response
    form = ObjectionForm()
    if not form.validate():
        if getattr(form, "csrf_token", None) is not None and form.csrf_token.errors:
            return _render_resolution(row, form, status=400, alert=_(
                "The form expired or was sent from elsewhere. Reload the page and try again."))
        return _render_resolution(row, form, status=422, alert=_(
            "Please check what you entered: the fields marked below need attention."))
    try:
        service.submit_objection(runtime(), row.id, objector=(form.objector.data or "").strip() or ANONYMOUS,
                                 content=form.content.data, at=service.now())
    except service.ObjectionRefused as refused:
        rollback()
        return _render_resolution(row, form, status=409, alert=_state_message(refused.code))
    except (Conflict, InvalidInput, EngineError):
        rollback()
        return _render_resolution(row, form, status=409, alert=_state_message("case_closed"))
    commit()
    flash(_("Thank you. Your objection has been received and will be reviewed by the community's two committees."))
    return redirect(url_for("disclosure.resolution", disclosure_id=row.id), code=303)


@bp.get("/archive")
def archive():
    community, month, errors = _filters()
    page = service.archive(service.now(), community=community, month=month, page=_page_number(),
                           page_size=service.settings()["page_size"])
    return render_template(
        "disclosure/archive.html", page=page, communities=service.communities(), community=community,
        month=month or "", errors=errors,
    ), (422 if errors else 200)


@bp.get("/demands")
def demands():
    community, _month, errors = _filters()
    page = service.closed_demands(community=community, page=_page_number(), page_size=service.settings()["page_size"])
    return render_template(
        "disclosure/demands.html", page=page, communities=service.communities(), community=community, errors=errors,
    ), (422 if errors else 200)


# -- the monthly follow-up (supervisors) -------------------------------------------------------
@bp.get("/followups")
@login_required
def followups():
    return _render_followups()


def _render_followups(*, alert: str | None = None, status: int = 200, forms: dict | None = None):
    if not service.may_follow_up(current_user):
        return render_template("errors.html", title=_("Not allowed"),
                               message=_("Only supervisors see the monthly follow-up.")), 403
    month, errors = None, {}
    try:
        month = service.parse_month(request.args.get("month") or None)
    except InvalidInput:
        errors["month"] = _("Please give the month as YYYY-MM, e.g. 2026-11.")
        status = 422
    records = service.followups_for(current_user, month=month)
    return render_template(
        "disclosure/followups.html", records=records, month=month or "", months=service.months_with_followups(current_user),
        errors=errors, alert=alert, forms=forms or {}, followup_day=service.settings()["followup_day"], today=service.now().astimezone(service.LOCAL).date(),
    ), status


@bp.post("/followups/<int:followup_id>/callback")
@login_required
def callback(followup_id: int):
    form = CallbackForm()
    if not form.validate():
        alert = (_("The form expired or was sent from elsewhere. Reload the page and try again.")
                 if getattr(form, "csrf_token", None) is not None and form.csrf_token.errors
                 else _("Please check what you entered: the fields marked below need attention."))
        return _render_followups(alert=alert, status=400 if form.csrf_token.errors else 422, forms={followup_id: form})
    try:
        record = service.record_callback(current_user, followup_id, note=form.note.data or "", at=service.now())
    except NotFound:
        rollback()
        abort(404)
    except PermissionDenied:
        rollback()
        return _render_followups(alert=_("This community is not in your scope."), status=403)
    except Conflict:
        rollback()
        return _render_followups(alert=_("This follow-up has already been called back."), status=409)
    except InvalidInput:
        rollback()
        return _render_followups(alert=_("Please check what you entered: the fields marked below need attention."),
                                 status=422, forms={followup_id: form})
    commit()
    flash(_("Call back recorded for %(community)s, %(month)s.", community=record.community.name, month=record.month))
    return redirect(url_for("disclosure.followups", month=request.args.get("month") or None), code=303)
