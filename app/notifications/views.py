"""收件箱 /inbox: my notifications with an unread badge in the navigation; mark read, open the
case. /webhooks: administrators see the webhook endpoints and the delivery log."""
from __future__ import annotations

import logging

from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy.exc import SQLAlchemyError

from app.db import commit, rollback
from app.errors import DomainError
from app.notifications import hooks, service
from app.notifications.models import (
    KIND_ASSIGNED, KIND_EXTENSION_DECIDED, KIND_EXTENSION_REQUESTED, KIND_NEAR_DUE, KIND_NEW_WORK, KIND_OVERDUE,
    KIND_RETURNED,
)
from app.web import NavItem, add_nav
from app.webhooks import service as webhooks

log = logging.getLogger(__name__)
blp = Blueprint("notifications", __name__)


def register(app) -> None:
    hooks.install(app)
    app.register_blueprint(blp)
    add_nav(NavItem("notifications.inbox", _l("Inbox"), count=_badge))
    add_nav(NavItem("notifications.webhooks_page", _l("Webhooks"), admin_only=True))


def _badge(user) -> int | None:
    try:
        return service.unread_count(user)
    except SQLAlchemyError:
        log.exception("could not count unread notifications")
        return None


def kind_label(kind: str) -> str:
    return {
        KIND_NEW_WORK: _("New work for your role"),
        KIND_NEAR_DUE: _("Your task is near its deadline"),
        KIND_OVERDUE: _("Task overdue"),
        KIND_RETURNED: _("Task returned to its queue"),
        KIND_ASSIGNED: _("A task was given to you"),
        KIND_EXTENSION_REQUESTED: _("Extension requested"),
        KIND_EXTENSION_DECIDED: _("Your extension request was decided"),
    }.get(kind, kind)


@blp.get("/inbox")
@login_required
def inbox():
    user = current_user._get_current_object()
    unread_only = request.args.get("unread") == "1"
    page = max(request.args.get("page", default=1, type=int) or 1, 1)
    size = 50
    rows, total = service.list_for(user, unread_only=unread_only, page=page, page_size=size)
    from app.work.views import local_time

    return render_template(
        "notifications/inbox.html", rows=rows, total=total, page=page, pages=max((total + size - 1) // size, 1),
        unread=service.unread_count(user), unread_only=unread_only, kind_label=kind_label, local_time=local_time,
    )


@blp.post("/inbox/read")
@login_required
def mark_read():
    user = current_user._get_current_object()
    try:
        if request.form.get("all") == "1":
            service.mark_all_read(user)
        else:
            service.mark_read(user, request.form.getlist("id"))
        commit()
    except DomainError:
        rollback()
    return redirect(url_for("notifications.inbox", unread=request.form.get("unread") or None), 303)


@blp.post("/inbox/<int:notification_id>/open")
@login_required
def open_and_read(notification_id: int):
    user = current_user._get_current_object()
    service.mark_read(user, [notification_id])
    from app.notifications.models import Notification
    from app.db import db

    row = db.session.get(Notification, notification_id)
    commit()
    if row is None or row.user_id != user.id:
        abort(404)
    if row.case_reference:
        return redirect(url_for("cases.case_page", reference=row.case_reference)
                        + (f"#task-{row.work_item_id}" if row.work_item_id else ""), 303)
    return redirect(url_for("notifications.inbox"), 303)


@blp.get("/webhooks")
@login_required
def webhooks_page():
    if not current_user.is_admin:
        abort(403)
    from app.work.views import local_time

    return render_template("notifications/webhooks.html", endpoints=webhooks.endpoints(),
                           deliveries=webhooks.deliveries(limit=100), local_time=local_time)
