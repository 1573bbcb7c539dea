from marshmallow import Schema, fields, validate

from app.schemas import PageArgs, PageOut
from app.work.schemas import WorkItemOut


class CaseStartArgs(Schema):
    process_id = fields.Str(required=True, validate=validate.Length(min=1, max=128))
    title = fields.Str(required=True, validate=validate.Length(min=1, max=300))
    grid = fields.Str(required=True, validate=validate.Length(min=1, max=64), metadata={"description": "grid node code"})
    data = fields.Dict(keys=fields.Str(), load_default=dict, metadata={"description": "initial case data"})


class MessageArgs(Schema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=200))
    payload = fields.Dict(keys=fields.Str(), load_default=dict)
    correlations = fields.Dict(keys=fields.Str(), load_default=dict)


class TimerOut(Schema):
    task_id = fields.Str()
    timer = fields.Str(attribute="spec_id")
    name = fields.Str()
    due_at = fields.DateTime()
    interrupting = fields.Bool()
    state = fields.Str()


class CaseOut(Schema):
    reference = fields.Str()
    title = fields.Str()
    status = fields.Str()
    end_event = fields.Str(allow_none=True)
    process = fields.Function(
        lambda c: {
            "process_id": c.process_version.process_id,
            "version": c.process_version.version,
            "name": c.process_version.name,
            "content_hash": c.process_version.content_hash,
        }
    )
    grid = fields.Function(lambda c: {"code": c.grid_node.code, "name": c.grid_node.name, "level": c.grid_node.level})
    data = fields.Dict()
    row_version = fields.Int()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)
    tasks = fields.List(fields.Nested(WorkItemOut), metadata={"description": "open work items"})
    timers = fields.List(fields.Nested(TimerOut), metadata={"description": "waiting timers"})


class EventOut(Schema):
    seq = fields.Int()
    kind = fields.Str()
    at = fields.DateTime()
    actor = fields.Str(allow_none=True)
    role = fields.Str(allow_none=True)
    payload = fields.Dict()
    prev_hash = fields.Str()
    hash = fields.Str()


class EventPageOut(PageOut):
    case = fields.Str()
    items = fields.List(fields.Nested(EventOut))


class HistoryArgs(PageArgs):
    pass
