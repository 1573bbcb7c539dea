"""Inbox API: list my notifications, mark them read."""
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from app.db import commit
from app.notifications import hooks  # noqa: F401 - installs the step hooks with the API
from app.notifications import service
from app.people.auth import current_user, login_required
from app.schemas import PageArgs, PageOut, page_size_of

blp = Blueprint("api_notifications", __name__, url_prefix="/api/notifications", description="Notifications inbox")


class NotificationQueryArgs(PageArgs):
    unread = fields.Bool(load_default=False, metadata={"description": "only unread ones"})


class NotificationOut(Schema):
    id = fields.Int()
    kind = fields.Str()
    case = fields.Str(attribute="case_reference", allow_none=True)
    work_item = fields.Int(attribute="work_item_id", allow_none=True)
    text = fields.Str()
    created_at = fields.DateTime()
    read_at = fields.DateTime(allow_none=True)


class NotificationPageOut(PageOut):
    unread = fields.Int()
    items = fields.List(fields.Nested(NotificationOut))


class MarkReadArgs(Schema):
    ids = fields.List(fields.Int(), metadata={"description": "notification ids; omit with all=true"})
    all = fields.Bool(load_default=False)


class MarkReadOut(Schema):
    marked = fields.Int()
    unread = fields.Int()


@blp.get("")
@blp.arguments(NotificationQueryArgs, location="query")
@blp.response(200, NotificationPageOut)
@login_required
def list_notifications(args):
    """My notifications, newest first, with the unread count."""
    user = current_user()
    size = page_size_of(args)
    rows, total = service.list_for(user, unread_only=args["unread"], page=args["page"], page_size=size)
    return {"items": rows, "total": total, "page": args["page"], "page_size": size, "unread": service.unread_count(user)}


@blp.post("/read")
@blp.arguments(MarkReadArgs)
@blp.response(200, MarkReadOut)
@login_required
def mark_read(args):
    """Mark some (``ids``) or all (``all: true``) of my notifications read."""
    user = current_user()
    if args.get("all"):
        marked = service.mark_all_read(user)
    else:
        marked = service.mark_read(user, args.get("ids") or [])
    unread = service.unread_count(user)
    commit()
    return {"marked": marked, "unread": unread}
