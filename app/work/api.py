from flask_smorest import Blueprint
from sqlalchemy import select

from app.db import commit, db
from app.people.auth import current_user, login_required
from app.processes.service import definition_of
from app.runtime import runtime
from app.schemas import page_size_of
from app.work import service
from app.work.models import OPEN_STATES, WorkItem
from app.work.schemas import CompleteArgs, CompleteOut, WorkItemDetailOut, WorkItemOut, WorkItemPageOut, WorkItemQueryArgs

blp = Blueprint("api_work", __name__, url_prefix="/api/work-items", description="Task queues")


@blp.get("")
@blp.arguments(WorkItemQueryArgs, location="query")
@blp.response(200, WorkItemPageOut)
@login_required
def list_items(args):
    """Work items visible to the caller (their roles within their grid scope), most urgent first."""
    page = args.pop("page")
    size = page_size_of(args)
    args.pop("page_size", None)
    result = service.list_work_items(current_user(), service.WorkFilter(**args), page=page, page_size=size)
    return {"items": result.items, "total": result.total, "page": result.page, "page_size": result.page_size}


@blp.get("/<int:item_id>")
@blp.response(200, WorkItemDetailOut)
@login_required
def get_item(item_id: int):
    """One work item with the JSON Schema of its form."""
    item = service.get_item(item_id, current_user())
    schema = None
    if item.form:
        schema = definition_of(item.case.process_version, runtime()).forms.get(item.form)
    item.form_schema = schema
    return item


@blp.post("/<int:item_id>/claim")
@blp.response(200, WorkItemOut)
@login_required
def claim(item_id: int):
    """Take a ready work item into your own queue."""
    item = service.claim(item_id, current_user())
    commit()
    return item


@blp.post("/<int:item_id>/release")
@blp.response(200, WorkItemOut)
@login_required
def release(item_id: int):
    """Give a claimed work item back to the role's queue."""
    item = service.release(item_id, current_user())
    commit()
    return item


@blp.post("/<int:item_id>/complete")
@blp.arguments(CompleteArgs)
@blp.response(200, CompleteOut)
@login_required
def complete(args, item_id: int):
    """Complete the task with its form data. 409 when it is no longer open, claimed by
    someone else, or ``expected_version`` is stale; 422 with per-field messages when the
    data does not match the form."""
    user = current_user()
    item, _outcome = service.complete(
        runtime(), item_id, user, args["data"], expected_version=args.get("expected_version")
    )
    case = item.case
    # Read what the response needs inside the transaction: no second one after commit.
    next_tasks = list(
        db.session.scalars(
            select(WorkItem).where(WorkItem.case_id == case.id, WorkItem.state.in_(OPEN_STATES)).order_by(WorkItem.id)
        )
    )
    commit()
    return {
        "work_item": item,
        "case": {"reference": case.reference, "status": case.status, "row_version": case.row_version, "end_event": case.end_event},
        "next_tasks": next_tasks,
    }

# Deadline extensions (延期) live on this blueprint: /api/work-items/<id>/extensions, /api/work-items/extensions…
from app.work import extensions as _extensions  # noqa: E402

_extensions.attach_api(blp)
