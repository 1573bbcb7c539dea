"""The disclosure board for other channels (mini programs, the 12345 platform): public,
read-only resolutions and closed demands; the monthly follow-up for supervisors."""
from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from app.db import commit
from app.disclosure import service
from app.people.auth import current_user, login_required
from app.schemas import PageArgs, PageOut, page_size_of

blp = Blueprint("api_disclosure", __name__, url_prefix="/api/disclosure",
                description="Public disclosure board (四议两公开, closed demands) and the monthly follow-up")


class CommunityOut(Schema):
    code = fields.Str()
    name = fields.Str()


class VotesOut(Schema):
    due = fields.Int(attribute="votes_due", allow_none=True)
    present = fields.Int(attribute="votes_present", allow_none=True)
    votes_for = fields.Int(allow_none=True)
    votes_against = fields.Int(allow_none=True)
    abstain = fields.Int(attribute="votes_abstain", allow_none=True)


class ResultOut(Schema):
    text = fields.Str(attribute="result_text")
    place = fields.Str(attribute="result_place", allow_none=True)
    published_at = fields.DateTime(attribute="result_published_at")


class ResolutionOut(Schema):
    id = fields.Int()
    topic = fields.Str()
    community = fields.Nested(CommunityOut)
    meeting_type = fields.Str()
    resolution_text = fields.Str()
    place = fields.Str()
    votes = fields.Function(lambda row: VotesOut().dump(row))
    published_at = fields.DateTime()
    window_ends_at = fields.DateTime()
    objection_count = fields.Int()
    withdrawn_at = fields.DateTime(allow_none=True)
    accepting_objections = fields.Function(lambda row: service.objection_state(row, service.now()) == "open")
    implementation_status = fields.Function(
        lambda row: service.status_of(row, service.now(), service.settings()["implementation_days"]))
    implemented_on = fields.Date(allow_none=True)
    result = fields.Function(lambda row: ResultOut().dump(row) if row.result_published_at else None)


class ResolutionPageOut(PageOut):
    items = fields.List(fields.Nested(ResolutionOut))


class ResolutionArgs(PageArgs):
    state = fields.Str(load_default="all", validate=validate.OneOf(["open", "archived", "all"]))
    community = fields.Str(load_default=None)
    month = fields.Str(load_default=None, metadata={"description": "month published, YYYY-MM (Asia/Shanghai)"})


class DemandOut(Schema):
    category = fields.Str()
    community = fields.Str()
    submitted_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)
    outcome = fields.Str(attribute="end_event")
    satisfaction = fields.Str(allow_none=True)
    feedback = fields.Str()


class DemandPageOut(PageOut):
    items = fields.List(fields.Nested(DemandOut))


class DemandArgs(PageArgs):
    community = fields.Str(load_default=None)


class FollowUpOut(Schema):
    id = fields.Int()
    community = fields.Nested(CommunityOut)
    month = fields.Str()
    due_on = fields.Date()
    items = fields.Raw()
    generated_at = fields.DateTime()
    called_back_at = fields.DateTime(allow_none=True)
    called_back_by = fields.Function(lambda r: r.called_back_by.username if r.called_back_by else None)
    called_back_on_time = fields.Bool(allow_none=True)
    note = fields.Str(allow_none=True)


class FollowUpArgs(Schema):
    month = fields.Str(load_default=None)


class CallbackArgs(Schema):
    note = fields.Str(load_default="", validate=validate.Length(max=1000))


@blp.get("/resolutions")
@blp.arguments(ResolutionArgs, location="query")
@blp.response(200, ResolutionPageOut)
def list_resolutions(args):
    """Disclosed resolutions (no login): ``state`` open (in the posting window), archived, or all."""
    page = service.archive(
        service.now(), community=service.community_by_code(args.get("community")),
        month=service.parse_month(args.get("month")), page=args["page"], page_size=page_size_of(args),
        state=args["state"],
    )
    return {"items": page.items, "total": page.total, "page": page.page, "page_size": page.page_size}


@blp.get("/resolutions/<int:disclosure_id>")
@blp.response(200, ResolutionOut)
def get_resolution(disclosure_id: int):
    """One disclosed resolution with its votes, posting window and implementation result."""
    return service.get_resolution(disclosure_id)


@blp.get("/demands")
@blp.arguments(DemandArgs, location="query")
@blp.response(200, DemandPageOut)
def list_demands(args):
    """Closed residents' demands with their outcome (no personal data)."""
    page = service.closed_demands(community=service.community_by_code(args.get("community")), page=args["page"],
                                  page_size=page_size_of(args))
    return {"items": page.items, "total": page.total, "page": page.page, "page_size": page.page_size}


@blp.get("/followups")
@blp.arguments(FollowUpArgs, location="query")
@blp.response(200, FollowUpOut(many=True))
@login_required
def list_followups(args):
    """每月回访 records in the caller's supervising scope."""
    return service.followups_for(current_user(), month=service.parse_month(args.get("month")))


@blp.post("/followups/<int:followup_id>/callback")
@blp.arguments(CallbackArgs)
@blp.response(200, FollowUpOut)
@login_required
def record_callback(args, followup_id: int):
    """Record that the community was called back (who, when, on time by the due day)."""
    record = service.record_callback(current_user(), followup_id, note=args["note"], at=service.now())
    commit()
    return record
