"""Process library API: the draft of a process (read, upload files, validate, run
scenarios, deploy) and migration of running cases. Process owners and administrators.

Uploads go through the same checks as the pages: hostile or unreadable files are refused
with 422 and change nothing."""
from __future__ import annotations

from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from app.db import commit
from app.errors import InvalidInput, PermissionDenied
from app.library import service
from app.people.auth import current_user, login_required
from app.processes import service as processes
from app.runtime import runtime

blp = Blueprint("api_library", __name__, url_prefix="/api/library",
                description="Process library: drafts, validation, scenarios, deployment, migration")


class IssueOut(Schema):
    file = fields.Str(allow_none=True)
    line = fields.Int(allow_none=True)
    element_id = fields.Str(allow_none=True)
    message = fields.Str()
    code = fields.Str()


class DraftOut(Schema):
    process_id = fields.Str()
    base_version = fields.Int(allow_none=True)
    revision = fields.Int()
    updated_by = fields.Str(allow_none=True)
    updated_at = fields.DateTime()
    files = fields.List(fields.Str())
    issues = fields.List(fields.Nested(IssueOut))


class DeployIn(Schema):
    note = fields.Str(load_default=None, allow_none=True)


class MigrateIn(Schema):
    to_version = fields.Int(required=True)
    reference = fields.Str(load_default=None, allow_none=True,
                           metadata={"description": "one case; without it every eligible case of from_version"})
    from_version = fields.Int(load_default=None, allow_none=True)


def _owner():
    user = current_user()
    if not (user.is_admin or user.holds("process_owner")):
        raise PermissionDenied("only process owners can use the process library")
    return user


def _draft_out(draft, issues):
    return {
        "process_id": draft.process_id,
        "base_version": draft.base_version.version if draft.base_version else None,
        "revision": draft.revision, "updated_by": draft.updated_by, "updated_at": draft.updated_at,
        "files": sorted(draft.files or {}), "issues": issues,
    }


@blp.get("/<process_id>/draft")
@blp.response(200, DraftOut)
@login_required
def get_draft(process_id: str):
    """The process's draft with its validation issues (404 when there is none)."""
    _owner()
    draft = service.draft_or_404(process_id)
    return _draft_out(draft, service.validate_draft(draft, runtime()).issues)


@blp.post("/<process_id>/draft/files")
@blp.response(200, DraftOut)
@blp.alt_response(422, description="a file was refused (malformed or hostile); nothing changed")
@login_required
def upload(process_id: str):
    """Add or replace draft files (multipart field `files`, repeatable; scenario files as
    `scenarios/<name>.json`). Opens the draft from the newest version when there is none.
    Malformed XML, DTD/entity declarations, scripts that do not compile restricted (e.g.
    imports), invalid forms and files over 2 MB are refused and change nothing."""
    user = _owner()
    processes.get_version(process_id)  # 422 unknown_process when not deployed
    uploads = request.files.getlist("files")
    if not uploads:
        raise InvalidInput("upload at least one file in the multipart field 'files'", fields={"files": ["required"]})
    files = {(u.filename or ""): u.read(service.MAX_FILE_BYTES + 1) for u in uploads}
    draft, issues = service.save_draft_files(process_id, files, runtime(), username=user.username)
    commit()
    return _draft_out(draft, issues)


@blp.post("/<process_id>/draft/scenarios")
@login_required
def scenarios(process_id: str):
    """Run the draft's scenarios: pass/fail per scenario and branch coverage."""
    _owner()
    draft = service.draft_or_404(process_id)
    check = service.validate_draft(draft, runtime())
    report = service.run_draft_scenarios(draft, runtime(), check)
    return {
        "valid": check.ok,
        "passed": bool(report and report.passed),
        "results": [] if report is None else [
            {"file": r.file, "name": r.name, "passed": r.passed, "failure": str(r.failure) if r.failure else None}
            for r in report.results],
        "coverage": [] if report is None else [
            {"process_id": c.process_id, "hit": c.hit_count, "total": c.total, "missed": [str(m) for m in c.missed]}
            for c in report.coverage],
    }


@blp.post("/<process_id>/draft/deploy")
@blp.arguments(DeployIn)
@login_required
def deploy(body, process_id: str):
    """Deploy the draft as a new immutable version (valid, scenarios passing); removes the draft."""
    user = _owner()
    version = service.deploy_draft(process_id, runtime(), username=user.username, note=body.get("note"))
    commit()
    return {"process_id": version.process_id, "version": version.version, "content_hash": version.content_hash}, 201


@blp.post("/<process_id>/migrations")
@blp.arguments(MigrateIn)
@login_required
def migrate(body, process_id: str):
    """Migrate one running case (`reference`) or every eligible case of `from_version`
    to `to_version`. An unsafe single case is 409 `migration_unsafe` with the reasons."""
    user = _owner()
    target = processes.get_version(process_id, body["to_version"])
    if body.get("reference"):
        result = service.migrate_case(runtime(), body["reference"], target, actor=user)
        commit()
        return {"migrated": [body["reference"]], "skipped": [], "check": result.summary()}
    if body.get("from_version") is None:
        raise InvalidInput("give reference or from_version", fields={"from_version": ["required without reference"]})
    source = processes.get_version(process_id, body["from_version"])
    moved, skipped = service.migrate_all(runtime(), source, target, actor=user)
    commit()
    return {"migrated": moved, "skipped": [{"reference": r, "reason": why} for r, why in skipped]}
