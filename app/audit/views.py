"""Auditor pages (纪检 / 督查): search cases in scope, read a case's history event by event
with the data each step changed, step through the process diagram as it was after any
event, see the verification verdict, download the history bundle, print the history.

Read only: nothing here writes to the database. Not an auditor → 403; a case outside the
auditor's grid scope → 404 (as if it did not exist).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, render_template, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user, login_required
from sqlalchemy import select

from app.audit import service
from app.cases import diagram
from app.cases.models import CASE_ACTIVE
from app.cases.views import _labels_of, _value, kind_label
from app.db import db, rollback
from app.errors import DomainError, NotFound, respond, status_for
from app.people.models import GridNode, User
from app.processes import service as processes
from app.processes.models import ProcessVersion
from app.runtime import runtime
from app.timeutil import utcnow
from app.web import NavItem, add_landing, add_nav
from app.work.views import describe, language, local_time, role_label
from workflows.replay import Problem

blp = Blueprint("audit", __name__, url_prefix="/audit")
PAGE_SIZE = 50


def register(app) -> None:
    app.register_blueprint(blp)
    add_nav(NavItem("audit.search", _l("Audit"), roles=frozenset({service.AUDITOR_ROLE})))
    add_landing("audit.search", {service.AUDITOR_ROLE})


@blp.after_request
def _read_only(response: Response) -> Response:
    rollback()  # these pages never write; end the read transaction
    response.headers.setdefault("Cache-Control", "private, no-store")
    return response


def _refused(error: DomainError):
    return respond(error.code, describe(error) if error.code != "not_auditor" else
                   _("Only auditors may read case histories here."), status_for(error))


# -- search ----------------------------------------------------------------------------
@blp.get("/")
@login_required
def search():
    user = current_user._get_current_object()
    try:
        scope = service.require_auditor(user)
    except DomainError as error:
        return _refused(error)
    args = request.args
    errors: dict[str, list[str]] = {}
    message = None
    try:
        filters = service.parse_filter(args)
    except DomainError as error:
        filters, errors, message = service.AuditFilter(), error.fields, _("Please check the search fields.")
    page = max(1, _int(args.get("page"), 1))
    result = None
    status = 200
    if not errors:
        try:
            result = service.search(user, filters, page=page, page_size=PAGE_SIZE)
        except DomainError as error:
            errors, message, status = error.fields, describe(error), status_for(error)
    if message and status == 200:
        status = 422
    query = {k: v for k, v in args.items() if v and k != "page"}
    rows = []
    if result is not None:
        for case in result.cases:
            rows.append({
                "case": case, "process": case.process_version.name, "grid": case.grid_node.name,
                "created": local_time(case.created_at), "closed": local_time(case.closed_at),
                "flags": result.flags.get(case.id, {}),
            })
    grids = list(db.session.scalars(select(GridNode).order_by(GridNode.path)))
    if scope is not None:
        grids = [g for g in grids if any(g.path.startswith(p) for p in scope)]
    return render_template(
        "audit/search.html", rows=rows, total=result.total if result else 0, page=page,
        pages=max(1, math.ceil((result.total if result else 0) / PAGE_SIZE)), chosen=args, errors=errors,
        message=message, processes=service.process_options(), grids=grids, filtered=bool(query),
        page_url=lambda n: url_for("audit.search", **query, page=n),
    ), status


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# -- one case -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    label: str
    before: Any          # Value or None (absent before)
    after: Any           # Value or None (removed)


@dataclass(frozen=True)
class Entry:
    seq: int
    kind: str
    kind_label: str
    summary: str
    at: str
    at_iso: str
    actor: str
    role: str
    workflow: bool
    changes: list[Change]
    inputs: list[tuple[str, Any]]
    hash: str
    prev_hash: str
    problem: bool


def _case_context(reference: str) -> dict[str, Any]:
    user = current_user._get_current_object()
    case = service.case_for_audit(user, reference)
    rt = runtime()
    hist = service.history(case, rt)
    try:
        forms = processes.definition_of(case.process_version, rt).forms
    except Exception:  # noqa: BLE001 - labels are a nicety; a broken version still shows raw keys
        forms = {}
    labels = _labels_of(forms, language())
    actors = {u.username: u for u in db.session.scalars(
        select(User).where(User.username.in_({e.event.actor for e in hist.entries if e.event.actor})))}
    problem = hist.verdict.problem
    entries = [_entry(e, labels, user, case, actors, problem) for e in hist.entries]
    markers = {str(e.event.seq): e.markers for e in hist.entries}
    return {"case": case, "history": hist, "entries": entries, "markers": markers, "problem": problem,
            "verdict": hist.verdict, "verdict_text": _verdict_text(hist.verdict), "labels": labels}


def _entry(item, labels, user, case, actors, problem: Problem | None) -> Entry:
    event = item.event
    payload = event.payload or {}
    kind = event.kind
    summary = ""
    inputs: list[tuple[str, Any]] = []
    if kind == "case_started":
        summary = payload.get("title") or ""
    elif kind in ("task_completed", "task_claimed", "task_released", "task_reassigned", "task_returned",
                  "extension_requested", "extension_approved", "extension_rejected"):
        summary = payload.get("name") or payload.get("task") or ""
    elif kind == "message_received":
        summary = payload.get("name") or ""
        inputs = [(k, _value(k, v, labels, {}, user)) for k, v in (payload.get("payload") or {}).items()]
    elif kind == "timer_fired":
        summary = "、".join(diagram.element_name(case, t.get("timer")) or "" for t in payload.get("timers") or []
                           if isinstance(t, dict))
    elif kind == "attachment_added":
        summary = f"{payload.get('filename') or ''} · SHA-256 {str(payload.get('sha256') or '')[:16]}…"
    elif kind == "note_added":
        summary = payload.get("text") or ""
    elif kind == "case_migrated":
        summary = _("Version %(a)s → %(b)s", a=payload.get("from_version"), b=payload.get("to_version"))
    for key in ("reason", "from", "to", "new_due_at"):
        if payload.get(key) and kind not in ("case_started", "task_completed"):
            inputs.append((key, _value(key, payload[key], labels, {}, user)))
    changes = []
    for key, value in item.changed.items():
        label = labels.get(key, (key, {}))[0]
        before = _value(key, item.previous[key], labels, {}, user) if key in item.previous else None
        changes.append(Change(label, before, _value(key, value, labels, {}, user)))
    for key in item.removed:
        changes.append(Change(labels.get(key, (key, {}))[0], None, None))
    actor = actors.get(event.actor or "")
    actor_name = actor.display_name if actor else (_("System") if event.actor in (None, "system") else event.actor)
    return Entry(
        seq=event.seq, kind=kind, kind_label=_kind_label(kind), summary=summary,
        at=local_time(event.at, "yyyy-MM-dd HH:mm:ss"), at_iso=event.at.isoformat(), actor=actor_name,
        role=role_label(event.role) if event.role else "", workflow=kind in service.WORKFLOW_KINDS,
        changes=changes, inputs=inputs, hash=event.hash, prev_hash=event.prev_hash,
        problem=problem is not None and problem.seq == event.seq,
    )


_EXTRA_KINDS = {
    "extension_requested": lambda: _("Extension requested"),
    "extension_approved": lambda: _("Extension approved"),
    "extension_rejected": lambda: _("Extension rejected"),
    "case_migrated": lambda: _("Migrated to a new version"),
    "objection_received": lambda: _("Objection received"),
}


def _kind_label(kind: str) -> str:
    label = _EXTRA_KINDS.get(kind)
    return label() if label else kind_label(kind)


def _verdict_text(verdict) -> str:
    if verdict.ok:
        return _("Verified: the hash chain of all %(n)s events is intact and replaying them on the pinned process "
                 "version reproduces every step and the stored state.", n=verdict.events)
    problem = verdict.problem
    reasons = {
        "hash_mismatch": _("its content does not match its hash (it was changed after it was written)"),
        "broken_link": _("it does not link to the event before it (an event was changed, removed or moved)"),
        "missing_event": _("it is missing (removed from the history)"),
        "head_mismatch": _("the case's chain head does not match the last event"),
        "unknown_version": _("the process version it needs is not available"),
        "replay_diverged": _("replaying it gives a different result than was recorded"),
        "replay_failed": _("it could not be replayed"),
        "state_mismatch": _("the stored state differs from the replay"),
    }
    reason = reasons.get(problem.code, problem.code)
    if problem.seq is None:
        return _("Verification failed: %(reason)s.", reason=reason)
    return _("Verification failed at event %(seq)s: %(reason)s.", seq=problem.seq, reason=reason)


@blp.get("/cases/<reference>")
@login_required
def case_history(reference: str):
    try:
        context = _case_context(reference)
    except DomainError as error:
        return _refused(error)
    entries = context["entries"]
    seq = _int(request.args.get("seq"), entries[-1].seq if entries else 0)
    if entries and seq not in {e.seq for e in entries}:
        seq = entries[-1].seq
    case = context["case"]
    steps = _steps(case, context["markers"].get(str(seq)) or {})
    return render_template("audit/case.html", selected=seq, steps=steps, names=_names(case, context["markers"]),
                           has_diagram=_has_diagram(case), **context)


def _names(case, markers: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Element names and diagram order of every element any event marks (for the step list)."""
    try:
        drawing = diagram.drawing_of(case.process_version)
    except NotFound:
        return {}
    used = set()
    for m in markers.values():
        used.update((m.get("completed") or {}).keys(), m.get("current") or (), m.get("waiting") or ())
    used &= drawing.drawn
    order = [i for i in drawing.order if i in used] + sorted(used - set(drawing.order))
    return {"order": order, "names": {i: drawing.names.get(i, i) for i in order}}


@blp.get("/cases/<reference>/diagram")
@login_required
def case_diagram(reference: str):
    """The BPMN XML and the markers as they were after event ``seq`` (default: the last)."""
    user = current_user._get_current_object()
    try:
        case = service.case_for_audit(user, reference)
        hist = service.history(case, runtime(), verify=False)
        drawing = diagram.drawing_of(case.process_version)
    except DomainError as error:
        return _refused(error)
    entries = hist.entries
    seq = _int(request.args.get("seq"), entries[-1].event.seq if entries else 0)
    chosen = next((e for e in entries if e.event.seq == seq), entries[-1] if entries else None)
    markers = _markers(case, drawing, chosen.markers if chosen else {})
    return jsonify({"case": case.reference, "seq": chosen.event.seq if chosen else 0,
                    "process_id": case.process_version.process_id, "version": case.process_version.version,
                    "file": drawing.filename, "xml": drawing.xml, **markers})


def _markers(case, drawing, raw: Mapping[str, Any]) -> dict[str, Any]:
    payloads = [{"effects": {"completed": [k for k, n in (raw.get("completed") or {}).items() for _ in range(n)]}}]
    return diagram.markers_of(case, drawing, payloads=payloads, current_ids=raw.get("current") or [],
                              waiting_ids=raw.get("waiting") or [])


def _steps(case, raw: Mapping[str, Any]) -> list:
    try:
        drawing = diagram.drawing_of(case.process_version)
    except NotFound:
        return []
    markers = _markers(case, drawing, raw)
    payloads = [{"effects": {"completed": [m["id"] for m in markers["completed"] for _ in range(m["count"])]}}]
    return diagram.steps_of(case, payloads=payloads, current_ids=markers["current"], waiting_ids=markers["waiting"])


def _has_diagram(case) -> bool:
    try:
        diagram.drawing_of(case.process_version)
    except NotFound:
        return False
    return True


@blp.get("/cases/<reference>/bundle")
@login_required
def bundle(reference: str):
    user = current_user._get_current_object()
    try:
        case = service.case_for_audit(user, reference)
        document = service.export_bundle(case, runtime(), exported_by=user.username)
    except DomainError as error:
        return _refused(error)
    body = json.dumps(document, ensure_ascii=False, indent=1)
    response = Response(body, mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="{case.reference}-history.json"'
    return response


@blp.get("/cases/<reference>/print")
@login_required
def printable(reference: str):
    try:
        context = _case_context(reference)
    except DomainError as error:
        return _refused(error)
    return render_template("audit/print.html", printed_at=local_time(utcnow(), "yyyy-MM-dd HH:mm"),
                           printed_by=current_user.display_name, **context)
