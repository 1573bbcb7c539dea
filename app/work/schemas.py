from flask import current_app
from marshmallow import Schema, fields, validate

from app.schemas import PageArgs, PageOut
from app.timeutil import utcnow

STATES = ("open", "any", "ready", "claimed", "completed", "cancelled")


class WorkItemQueryArgs(PageArgs):
    role = fields.Str()
    grid = fields.Str()
    assignee = fields.Str(metadata={"description": "a username, or 'me'"})
    state = fields.Str(load_default="open", validate=validate.OneOf(STATES))
    overdue = fields.Bool()
    process_id = fields.Str()
    case = fields.Str(metadata={"description": "case reference"})


class WorkItemOut(Schema):
    id = fields.Int()
    case = fields.Function(lambda i: {"reference": i.case.reference, "title": i.case.title, "row_version": i.case.row_version})
    task_id = fields.Str()
    task = fields.Str(attribute="spec_id")
    name = fields.Str()
    process_id = fields.Str()
    role = fields.Str(allow_none=True)
    lane = fields.Str(allow_none=True)
    form = fields.Str(allow_none=True)
    instructions = fields.Str(allow_none=True)
    grid = fields.Function(lambda i: {"code": i.case.grid_node.code, "name": i.case.grid_node.name})
    state = fields.Str()
    assignee = fields.Function(lambda i: i.assignee.username if i.assignee else None)
    created_at = fields.DateTime()
    claimed_at = fields.DateTime(allow_none=True)
    due_at = fields.DateTime(allow_none=True)
    warn_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    extension_count = fields.Int(metadata={"description": "approved deadline extensions (延期)"})
    light = fields.Function(lambda i: light_of(i), metadata={"description": "green / yellow (past warning) / red (past deadline)"})


def light_of(item, now=None) -> str:
    now = now or utcnow()
    if item.state not in ("ready", "claimed"):
        return "none"
    if item.due_at is not None and item.due_at <= now:
        return "red"
    if item.warn_at is not None and item.warn_at <= now:
        return "yellow"
    return "green"


class WorkItemDetailOut(WorkItemOut):
    form_schema = fields.Dict(allow_none=True)


class WorkItemPageOut(PageOut):
    items = fields.List(fields.Nested(WorkItemOut))


class CompleteArgs(Schema):
    data = fields.Dict(keys=fields.Str(), required=True, metadata={"description": "the task's form data"})
    expected_version = fields.Int(
        metadata={"description": "the case row_version you read; a different current version is a 409"}
    )


class CompleteOut(Schema):
    work_item = fields.Nested(WorkItemOut)
    case = fields.Dict()
    next_tasks = fields.List(fields.Nested(WorkItemOut))
