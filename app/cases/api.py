from flask_smorest import Blueprint
from sqlalchemy import select

from app.cases import history, service
from app.cases.models import Case, Timer
from app.cases.schemas import CaseOut, CaseStartArgs, EventPageOut, HistoryArgs, MessageArgs
from app.db import commit, db
from app.errors import NotFound
from app.people import service as people
from app.people.auth import current_user, login_required
from app.runtime import runtime
from app.schemas import page_size_of
from app.work.models import OPEN_STATES, WorkItem

blp = Blueprint("api_cases", __name__, url_prefix="/api/cases", description="Cases: one workflow each")


def _visible_case(reference: str) -> Case:
    """A case the caller may read: any role covering its grid (or admin)."""
    user = current_user()
    case = service.get_case(reference)
    if not (user.is_admin or people.covers_grid(user, case.grid_node.path)):
        raise NotFound(f"case {reference} does not exist")
    return case


def _with_projection(case: Case) -> Case:
    case.tasks = list(
        db.session.scalars(
            select(WorkItem).where(WorkItem.case_id == case.id, WorkItem.state.in_(OPEN_STATES)).order_by(WorkItem.id)
        )
    )
    case.timers = list(
        db.session.scalars(select(Timer).where(Timer.case_id == case.id, Timer.state == "waiting").order_by(Timer.due_at))
    )
    return case


@blp.post("")
@blp.arguments(CaseStartArgs)
@blp.response(201, CaseOut)
@login_required
def start_case(args):
    """Start a case of the newest version of a process, in a grid the caller covers."""
    case = service.start_case(
        runtime(),
        process_id=args["process_id"],
        title=args["title"],
        grid_code=args["grid"],
        data=args["data"],
        actor=current_user(),
    )
    commit()
    return _with_projection(case)


@blp.get("/<reference>")
@blp.response(200, CaseOut)
@login_required
def get_case(reference: str):
    """A case: status, data, open tasks and waiting timers."""
    return _with_projection(_visible_case(reference))


@blp.get("/<reference>/events")
@blp.arguments(HistoryArgs, location="query")
@blp.response(200, EventPageOut)
@login_required
def case_history(args, reference: str):
    """The case's hash-chained event log, oldest first."""
    case = _visible_case(reference)
    size = page_size_of(args)
    events, total = history.events_of(case, offset=(args["page"] - 1) * size, limit=size)
    return {"case": case.reference, "items": events, "total": total, "page": args["page"], "page_size": size}


@blp.post("/<reference>/messages")
@blp.arguments(MessageArgs)
@blp.response(200, CaseOut)
@login_required
def deliver_message(args, reference: str):
    """Deliver a BPMN message (e.g. a district department's reply) to a waiting case."""
    case = _visible_case(reference)
    service.deliver_message(
        runtime(), case.reference, name=args["name"], payload=args["payload"],
        correlations=args["correlations"], actor=current_user(),
    )
    commit()
    return _with_projection(case)
