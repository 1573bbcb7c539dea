"""Process library pages (/library/…) for process owners and administrators: processes
and their versions, diagrams, diffs, the draft editor (bpmn-js modeler, dmn-js, form
text), validation, scenarios, deployment and migration of running cases.

Anyone else gets 403, anonymous visitors the sign-in page. Forms post back and show
problems in place (422), changing nothing; the editor's buttons call the JSON
endpoints below with the page's CSRF token. Each request commits once."""
from __future__ import annotations

from flask import (
    Blueprint, Response, abort, current_app, flash, jsonify, redirect, render_template, request, url_for,
)
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from app.db import commit, rollback
from app.errors import Conflict, DomainError, InvalidInput, NotFound
from app.library import service
from app.processes import service as processes
from app.runtime import runtime
from app.web import NavItem, add_landing, add_nav

blp = Blueprint("library", __name__, url_prefix="/library")
UPLOAD_ENDPOINTS = {"library.upload", "library.save_file"}


def register(app) -> None:
    app.register_blueprint(blp)
    add_nav(NavItem("library.index", _l("Process library"), roles=frozenset({"process_owner"})))
    add_landing("library.index", {"process_owner"})


def may_use(user) -> bool:
    return bool(user.is_authenticated and (user.is_admin or user.holds("process_owner")))


@blp.url_value_preprocessor
def _guard(endpoint, values):
    if not current_user.is_authenticated:
        abort(current_app.login_manager.unauthorized())
    if not may_use(current_user):
        abort(403)
    if endpoint in UPLOAD_ENDPOINTS:
        request.max_content_length = service.MAX_UPLOAD_BYTES


def _wants_json() -> bool:
    return request.is_json or request.accept_mimetypes.best == "application/json"


def _json_error(error: DomainError, status: int):
    rollback()
    return jsonify({"error": {"code": error.code, "message": error.message, "fields": error.fields}}), status


def _status(error: DomainError) -> int:
    return 404 if isinstance(error, NotFound) else 409 if isinstance(error, Conflict) else 422


# -- reading ------------------------------------------------------------------------
@blp.get("")
def index():
    return render_template("library/index.html", rows=service.overview())


@blp.get("/<process_id>")
def process(process_id: str):
    try:
        rows = service.version_rows(process_id, runtime())
    except NotFound:
        abort(404)
    return render_template("library/process.html", process_id=process_id, rows=rows,
                           latest=rows[0].version, draft=service.get_draft(process_id))


def _version_or_404(process_id: str, number: int):
    try:
        return processes.get_version(process_id, number)
    except InvalidInput:
        abort(404)


@blp.get("/<process_id>/v<int:number>")
def version(process_id: str, number: int):
    found = _version_or_404(process_id, number)
    files = processes.version_files(found)
    return render_template("library/version.html", version=found, files=sorted(files),
                           sizes={n: len(c) for n, c in files.items()},
                           cases=service.cases_on(found, active_only=False, limit=100),
                           newer=[v for v in processes.versions_of(process_id) if v.version > number])


@blp.get("/<process_id>/v<int:number>/diagram")
def version_diagram(process_id: str, number: int):
    found = _version_or_404(process_id, number)
    files = processes.version_files(found)
    name = service.main_bpmn(files, process_id)
    if name is None:
        abort(404)
    return jsonify({"file": name, "xml": files[name].decode("utf-8")})


@blp.get("/<process_id>/v<int:number>/files/<path:filename>")
def version_file(process_id: str, number: int, filename: str):
    files = processes.version_files(_version_or_404(process_id, number))
    if filename not in files:
        abort(404)
    return _download(filename, files[filename])


@blp.get("/<process_id>/diff")
def diff(process_id: str):
    versions = [v.version for v in processes.versions_of(process_id)] if _exists(process_id) else abort(404)
    try:
        a = int(request.args.get("a", versions[1] if len(versions) > 1 else versions[0]))
        b = int(request.args.get("b", versions[0]))
        old, new, changes = service.version_diff(process_id, a, b, runtime())
    except (ValueError, InvalidInput):
        return render_template("library/diff.html", process_id=process_id, versions=versions, old=None, new=None,
                               changes=None, error=_("Choose two deployed versions of this process.")), 422
    markers = {"diff-old": {}, "diff-new": {}}
    for change in changes.changes:
        if change.status in ("removed", "changed"):
            markers["diff-old"][change.element_id] = f"gc-{change.status}"
        if change.status in ("added", "changed"):
            markers["diff-new"][change.element_id] = f"gc-{change.status}"
    return render_template("library/diff.html", process_id=process_id, versions=versions, old=old, new=new,
                           changes=changes, error=None, markers=markers)


def _exists(process_id: str) -> bool:
    try:
        processes.versions_of(process_id)
        return True
    except NotFound:
        return False


# -- the draft -------------------------------------------------------------------------
@blp.post("/<process_id>/draft")
def open_draft(process_id: str):
    if not _exists(process_id):
        abort(404)
    service.open_draft(process_id, username=current_user.username)
    commit()
    return redirect(url_for("library.editor", process_id=process_id))


@blp.get("/<process_id>/draft")
def editor(process_id: str):
    draft = service.get_draft(process_id)
    if draft is None:
        if not _exists(process_id):
            abort(404)
        return redirect(url_for("library.process", process_id=process_id))
    return _render_editor(process_id, draft)


def _render_editor(process_id, draft, *, status=200, message=None, refused=None, deploy_error=None):
    files = service.draft_files(draft)
    current = request.args.get("file") or service.main_bpmn(files, process_id)
    if current not in files:
        current = service.main_bpmn(files, process_id)
    check = service.validate_draft(draft, runtime())
    text = files[current].decode("utf-8", "replace") if current and not current.endswith((".bpmn", ".dmn")) else None
    changes = service.draft_changes(draft, runtime(), check)
    return render_template(
        "library/editor.html", process_id=process_id, draft=draft, files=sorted(files), current=current,
        kind=_kind(current), text=text, issues=check.issues, message=message, refused=refused or {},
        deploy_error=deploy_error, latest=changes[0] if changes else None, changes=changes[1] if changes else None,
    ), status


def _kind(name: str | None) -> str:
    if not name:
        return "none"
    if name.endswith(".bpmn"):
        return "bpmn"
    if name.endswith(".dmn"):
        return "dmn"
    return "json"


@blp.get("/<process_id>/draft/files/<path:filename>")
def draft_file(process_id: str, filename: str):
    files = service.draft_files(_draft_or_404(process_id))
    if filename not in files:
        abort(404)
    if request.args.get("download"):
        return _download(filename, files[filename])
    return Response(files[filename], mimetype="text/plain; charset=utf-8")


def _draft_or_404(process_id: str):
    draft = service.get_draft(process_id)
    if draft is None:
        abort(404)
    return draft


@blp.post("/<process_id>/draft/files/<path:filename>")
def save_file(process_id: str, filename: str):
    """The editor saves one file: JSON {"content": "...", "revision": n}. Answers the
    draft's validation issues, or 422 with why the file was refused (nothing saved)."""
    try:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("content"), str):
            raise InvalidInput("send JSON {\"content\": \"…\"}", code="invalid_body", fields={"content": ["required"]})
        revision = body.get("revision")
        draft, issues = service.save_draft_files(
            process_id, {filename: body["content"].encode("utf-8")}, runtime(), username=current_user.username,
            revision=revision if isinstance(revision, int) else None, strict=False)
    except DomainError as error:
        return _json_error(error, _status(error))
    commit()
    return jsonify({"saved": filename, "revision": draft.revision, "issues": [_issue(i) for i in issues]})


@blp.post("/<process_id>/draft/upload")
def upload(process_id: str):
    """Upload .bpmn/.dmn/.form.json (and scenarios/*.json) files into the draft."""
    draft = _draft_or_404(process_id)
    try:
        uploads = request.files.getlist("files")
    except RequestEntityTooLarge:
        rollback()
        return _render_editor(process_id, draft, status=413, message=_(
            "The upload is too large: at most %(size)d MB at once.", size=service.MAX_UPLOAD_BYTES // (1024 * 1024)))
    files = {}
    for item in uploads:
        if item.filename:
            name = item.filename.replace("\\", "/").split("/")[-1]
            if name.endswith(".json") and not name.endswith(".form.json"):
                name = service.SCENARIO_FOLDER + name
            files[name] = item.read(service.MAX_FILE_BYTES + 1)
    try:
        if not files:
            raise InvalidInput(_("Choose at least one file to upload."), fields={"files": ["required"]})
        service.save_draft_files(process_id, files, runtime(), username=current_user.username)
    except DomainError as error:
        rollback()
        return _render_editor(process_id, service.get_draft(process_id) or draft, status=_status(error),
                              message=_("The files were refused; nothing was changed."), refused=error.fields)
    commit()
    flash(_("Uploaded %(names)s.", names=", ".join(sorted(files))))
    return redirect(url_for("library.editor", process_id=process_id, file=sorted(files)[0]))


@blp.post("/<process_id>/draft/delete/<path:filename>")
def delete_file(process_id: str, filename: str):
    try:
        service.delete_draft_file(process_id, filename, username=current_user.username)
    except NotFound:
        abort(404)
    commit()
    flash(_("Removed %(name)s from the draft.", name=filename))
    return redirect(url_for("library.editor", process_id=process_id))


@blp.post("/<process_id>/draft/validate")
def validate(process_id: str):
    draft = _draft_or_404(process_id)
    check = service.validate_draft(draft, runtime())
    changes = service.draft_changes(draft, runtime(), check)
    return jsonify({"ok": check.ok, "issues": [_issue(i) for i in check.issues],
                    "changes": None if changes is None else [
                        {"element_id": c.element_id, "name": c.name, "status": c.status, "kind": c.kind,
                         "aspects": list(c.aspect_names)} for c in changes[1].changes]})


@blp.post("/<process_id>/draft/scenarios")
def scenarios(process_id: str):
    draft = _draft_or_404(process_id)
    check = service.validate_draft(draft, runtime())
    report = service.run_draft_scenarios(draft, runtime(), check)
    if report is None:
        return jsonify({"ok": False, "issues": [_issue(i) for i in check.issues], "results": [], "coverage": []})
    return jsonify({
        "ok": report.passed,
        "issues": [_issue(i) for i in check.issues],
        "results": [{"file": r.file, "name": r.name, "passed": r.passed,
                     "where": r.failure.where if r.failure else None,
                     "message": str(r.failure) if r.failure else None} for r in report.results],
        "coverage": [{"process": c.process_id, "line": c.lines()[0],
                      "hit": c.hit_count, "total": c.total, "percent": c.percent,
                      "missed": [str(m) for m in c.missed]} for c in report.coverage],
    })


@blp.post("/<process_id>/draft/deploy")
def deploy(process_id: str):
    draft = _draft_or_404(process_id)
    note = (request.form.get("note") or "").strip()[:2000] or None
    try:
        version = service.deploy_draft(process_id, runtime(), username=current_user.username, note=note)
    except DomainError as error:
        rollback()
        lines = [line for messages in error.fields.values() for line in messages]
        return _render_editor(process_id, service.get_draft(process_id) or draft, status=_status(error),
                              deploy_error=(error.message, lines))
    commit()
    flash(_("Deployed version %(version)d. New cases use it; running cases stay on their version.",
            version=version.version))
    return redirect(url_for("library.version", process_id=process_id, number=version.version))


@blp.post("/<process_id>/draft/discard")
def discard(process_id: str):
    try:
        service.discard_draft(process_id)
    except NotFound:
        abort(404)
    commit()
    flash(_("The draft was discarded."))
    return redirect(url_for("library.process", process_id=process_id))


# -- migration ------------------------------------------------------------------------------
@blp.get("/<process_id>/v<int:number>/migrate")
def migrate_preview(process_id: str, number: int):
    found = _version_or_404(process_id, number)
    newer = [v for v in processes.versions_of(process_id) if v.version > number]
    if not newer:
        flash(_("There is no newer version to migrate to."))
        return redirect(url_for("library.version", process_id=process_id, number=number))
    try:
        target = processes.get_version(process_id, int(request.args.get("to", newer[0].version)))
        checks = service.preview_migration(found, target, runtime())
    except (ValueError, InvalidInput):
        abort(404)
    return render_template("library/migrate.html", version=found, target=target, newer=newer, checks=checks,
                           results=None)


@blp.post("/<process_id>/v<int:number>/migrate")
def migrate(process_id: str, number: int):
    found = _version_or_404(process_id, number)
    try:
        target = processes.get_version(process_id, int(request.form.get("to", "")))
    except (ValueError, InvalidInput):
        abort(404)
    reference = request.form.get("reference")
    try:
        if reference:
            service.migrate_case(runtime(), reference, target, actor=current_user)
            moved, skipped = [reference], []
        else:
            moved, skipped = service.migrate_all(runtime(), found, target, actor=current_user)
    except DomainError as error:
        rollback()
        newer = [v for v in processes.versions_of(process_id) if v.version > number]
        return render_template("library/migrate.html", version=found, target=target, newer=newer,
                               checks=service.preview_migration(found, target, runtime()),
                               results=None, error=error.message), _status(error)
    commit()
    if moved:
        flash(_("Migrated to version %(version)d: %(refs)s", version=target.version, refs=", ".join(moved)))
    for ref, reason in skipped:
        flash(_("Not migrated: %(ref)s — %(reason)s", ref=ref, reason=reason))
    return redirect(url_for("library.migrate_preview", process_id=process_id, number=number, to=target.version))


# -- helpers ---------------------------------------------------------------------------------
def _issue(issue) -> dict:
    return {"file": issue.file, "line": issue.line, "element_id": issue.element_id, "message": issue.message,
            "code": issue.code, "text": str(issue)}


def _download(filename: str, content: bytes) -> Response:
    mimetype = "application/json" if filename.endswith(".json") else "application/xml"
    response = Response(content, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename.split("/")[-1]}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
