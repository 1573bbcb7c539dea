from flask_smorest import Blueprint

from app.people.auth import login_required
from app.processes import service
from app.processes.schemas import ProcessListOut, ProcessVersionOut

blp = Blueprint("api_processes", __name__, url_prefix="/api/processes", description="Deployed process definitions")


@blp.get("")
@blp.response(200, ProcessListOut)
@login_required
def list_processes():
    """The newest version of every deployed process."""
    return {"items": service.latest_versions()}


@blp.get("/<process_id>")
@blp.response(200, ProcessListOut)
@login_required
def process_versions(process_id: str):
    """Every version of one process, newest first."""
    return {"items": service.versions_of(process_id)}
