from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from app.db import commit
from app.errors import InvalidInput, PermissionDenied
from app.people.auth import current_user, login_required
from app.processes import service
from app.processes.schemas import DeployOut, ProcessListOut
from app.runtime import runtime

blp = Blueprint("api_processes", __name__, url_prefix="/api/processes", description="Deployed process definitions")

DEPLOYABLE = (".bpmn", ".dmn", ".form.json")


class DeployForm(Schema):
    note = fields.Str(metadata={"description": "what changed, recorded with each new version"})


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


@blp.post("")
@blp.arguments(DeployForm, location="form")
@blp.response(201, DeployOut)
@blp.alt_response(422, description="the files have errors; nothing was deployed")
@login_required
def deploy(form):
    """Deploy uploaded BPMN/DMN/form files (multipart field `files`, repeatable) as new
    immutable versions of every process they define whose content changed. All or
    nothing: any validation error deploys nothing and lists every error by file and line.
    Process owners and administrators only."""
    user = current_user()
    if not (user.is_admin or user.holds("process_owner")):
        raise PermissionDenied("only process owners can deploy processes")
    uploads = request.files.getlist("files")
    if not uploads:
        raise InvalidInput("upload at least one file in the multipart field 'files'", fields={"files": ["required"]})
    files: dict[str, bytes] = {}
    for upload in uploads:
        name = (upload.filename or "").replace("\\", "/").lstrip("/")
        if not name.endswith(DEPLOYABLE) or ".." in name.split("/"):
            raise InvalidInput(f"{name or 'a file'} is not a .bpmn, .dmn or .form.json file",
                               code="unsupported_file", fields={"files": [name]})
        files[name] = upload.read()
    report = service.deploy_files(files, runtime(), deployed_by=user.username, note=form.get("note"))
    if report.issues:
        by_file: dict[str, list[str]] = {}
        for issue in report.issues:
            where = f"line {issue.line}: " if issue.line else ""
            element = f"{issue.element_id}: " if issue.element_id else ""
            by_file.setdefault(issue.file or "_files", []).append(f"{where}{element}{issue.message}")
        raise InvalidInput("the process files have errors; nothing was deployed", code="invalid_process", fields=by_file)
    commit()
    return {"deployed": report.deployed, "unchanged": report.unchanged}
