"""The case page: summary, current tasks with their forms, case data, attachments, the
process diagram, history and internal notes — and the POSTs that act on a case from it
(complete a task, add a note). Attachments and the diagram's data are served here too.

Case data, titles and instructions are text: templates escape them, nothing from a case
is ever rendered as HTML."""
from __future__ import annotations

import io
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from flask import Blueprint, flash, jsonify, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _, pgettext
from flask_login import current_user, login_required
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from app.cases import attachments, diagram, notes
from app.cases import service as cases
from app.cases.history import events_of
from app.cases.models import CASE_ACTIVE, Case
from app.cases.task_forms import PHOTO, page_fields, parse_submission
from app.db import commit, rollback
from app.errors import NotFound, PermissionDenied, respond, status_for
from app.people import service as people
from app.people.masking import phone_for
from app.processes.service import definition_of
from app.runtime import runtime
from app.timeutil import utcnow
from app.work import service as work
from app.work.models import ITEM_CLAIMED, ITEM_READY
from app.work.schemas import light_of
from app.work.views import (
    describe, field_errors, is_refusal, language, light_label, local_time, relative_due, role_label, state_label,
)
from workflows.errors import FormInvalid
from workflows.forms import FORM_ERROR_KEY, validate_form_data

log = logging.getLogger(__name__)

blp = Blueprint("cases", __name__, url_prefix="/cases")

HISTORY_LIMIT = 1000
_PHONE_KEY = re.compile(r"(phone|mobile|(^|_)tel($|_)|电话|手机)", re.IGNORECASE)
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2}|Z)$")
_INSTRUCTIONS = SandboxedEnvironment(autoescape=False)


def register(app) -> None:
    app.register_blueprint(blp)
    # Cases are reached from the queues (and by reference below); no navigation entry.


# -- reading ---------------------------------------------------------------------
def may_view(user, case: Case) -> bool:
    """Anyone whose roles cover the case's grid (as the API's case reads)."""
    return bool(user.is_admin or people.covers_grid(user, case.grid_node.path))


def _case_or_404(reference: str) -> Case:
    case = cases.get_case(reference)
    if not may_view(current_user, case):
        raise NotFound(f"case {reference} does not exist")
    return case


def _case_for_post(reference: str) -> Case:
    """POSTs about a case one may not see are refused (403), not hidden."""
    case = cases.get_case(reference)
    if not may_view(current_user, case):
        raise PermissionDenied("this case is outside your grid scope")
    return case


@blp.get("/find")
@login_required
def find():
    reference = (request.args.get("reference") or "").strip().upper()
    if reference:
        try:
            case = _case_or_404(reference)
        except NotFound:
            return respond("not_found", _("There is no case %(reference)s that you may see.", reference=reference), 404)
        return redirect(url_for("cases.case_page", reference=case.reference))
    return redirect(url_for("site.home"))


@blp.get("/<reference>")
@login_required
def case_page(reference: str):
    return render_case_page(reference)


@blp.get("/<reference>/diagram")
@login_required
def case_diagram(reference: str):
    """The BPMN XML of the case's process version and the elements to mark on it."""
    case = _case_or_404(reference)
    response = jsonify(diagram.diagram_of(case))
    response.headers["Cache-Control"] = "private, no-store"
    return response


@blp.get("/<reference>/attachments/<int:attachment_id>")
@login_required
def attachment_file(reference: str, attachment_id: int):
    return _send_attachment(reference, attachment_id, thumbnail=False)


@blp.get("/<reference>/attachments/<int:attachment_id>/thumb")
@login_required
def attachment_thumb(reference: str, attachment_id: int):
    return _send_attachment(reference, attachment_id, thumbnail=True)


def _send_attachment(reference: str, attachment_id: int, *, thumbnail: bool):
    case = _case_or_404(reference)
    attachment = attachments.get(attachment_id, case)
    content, content_type = attachments.content_of(attachment, thumbnail=thumbnail)
    if thumbnail and content_type != "image/jpeg":
        raise NotFound("this attachment has no thumbnail")
    name = attachment.filename
    if thumbnail:
        name = name.rsplit(".", 1)[0] + "-thumb.jpg"
    response = send_file(
        io.BytesIO(content), mimetype=content_type, as_attachment=not content_type.startswith("image/"),
        download_name=name, etag=f"{attachment.sha256}{'-t' if thumbnail else ''}", max_age=3600, conditional=True,
    )
    response.cache_control.public = False
    response.cache_control.private = True
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


# -- acting ----------------------------------------------------------------------
@blp.post("/<reference>/items/<int:item_id>/complete")
@login_required
def complete(reference: str, item_id: int):
    """Complete a task from its form: photos are stored as attachments (under the case
    lock) and referenced from the data; anything refused rolls everything back."""
    user = current_user._get_current_object()
    try:
        case = _case_for_post(reference)
    except (NotFound, PermissionDenied) as error:
        return respond(error.code, describe(error), status_for(error))
    schema: Mapping[str, Any] = {}
    hints: dict[str, list[str]] = {}
    try:
        item = work.get_item(item_id, user)
        if item.case_id != case.id:
            raise NotFound(f"work item {item_id} is not a task of case {reference}")
        schema = _form_schema(case, item)
        data, problems, uploads = parse_submission(schema, request.form, request.files)
        locked, item = work.lock_for_completion(item_id, user)  # 403/409 before anything is stored
        _check_form(schema, data, problems, uploads)
        for name, upload in uploads.items():
            stored = attachments.add(
                locked, upload.read(), upload.filename or "upload", uploaded_by=user, task_id=item.task_id, field=name,
            )
            data[name] = attachments.reference(stored)
        work.complete(runtime(), item_id, user, data)
        name = item.name
        commit()
    except Exception as error:  # noqa: BLE001 - refusals are shown in place, anything else re-raised
        rollback()
        if not is_refusal(error):
            raise
        for field_name, upload in (request.files or {}).items():
            if upload and upload.filename:
                hints[field_name] = [_("Choose the file again: nothing was saved.")]
        state = {item_id: {"values": _submitted_values(schema), "errors": field_errors(error), "hints": hints,
                           "message": describe(error)}}
        return render_case_page(reference, error=error, status=status_for(error), task_state=state)
    flash(_("“%(task)s” is done.", task=name))
    return redirect(url_for("cases.case_page", reference=reference), 303)


@blp.post("/<reference>/notes")
@login_required
def add_note(reference: str):
    user = current_user._get_current_object()
    try:
        case = _case_for_post(reference)
    except (NotFound, PermissionDenied) as error:
        return respond(error.code, describe(error), status_for(error))
    text = request.form.get("text", "")
    try:
        notes.add_note(case, user, text)
        commit()
    except Exception as error:  # noqa: BLE001
        rollback()
        if not is_refusal(error):
            raise
        return render_case_page(reference, error=error, status=status_for(error),
                                note_state={"text": text, "errors": field_errors(error).get("text", [])})
    flash(_("Note added."))
    return redirect(url_for("cases.case_page", reference=reference) + "#notes", 303)


def _form_schema(case: Case, item) -> Mapping[str, Any]:
    if not item.form:
        return {"type": "object", "properties": {}}
    schema = definition_of(case.process_version, runtime()).forms.get(item.form)
    return schema or {"type": "object", "properties": {}}


def _check_form(schema, data: dict, problems: dict, uploads: dict) -> None:
    """All of a form's problems at once: conversions (task_forms) and the form's rules."""
    errors = {name: list(messages) for name, messages in problems.items()}
    candidate = {k: v for k, v in data.items() if k not in problems}
    for name in uploads:
        candidate[name] = "attachment:0"  # stands for the file until it is stored
    for name, messages in validate_form_data(schema, candidate).items():
        if name not in problems:
            errors.setdefault(name, []).extend(messages)
    if errors:
        raise FormInvalid(errors)


def _submitted_values(schema: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    properties = schema.get("properties", {}) if schema else {}
    for name, prop in properties.items():
        if isinstance(prop, Mapping) and prop.get("type") == "array":
            values[name] = request.form.getlist(name)
        elif name in request.form:
            values[name] = request.form.get(name)
    return values


# -- the page ----------------------------------------------------------------------
@dataclass
class Value:
    text: str = ""
    attachment: Any = None      # an Attachment of this case, when the value refers to one
    missing_attachment: bool = False


@dataclass
class DataRow:
    key: str
    label: str
    value: Value


@dataclass
class TaskCard:
    item: Any
    role: str
    state: str
    assignee: str | None
    due: str
    due_relative: str
    light: str
    light_label: str
    can_act: bool
    mine: bool
    claimed_by_other: bool
    instructions: str | None
    fields: list = field(default_factory=list)
    radio_names: frozenset = frozenset()
    multipart: bool = False
    supervise: bool = False
    candidates: list = field(default_factory=list)
    message: str | None = None
    action: dict = field(default_factory=dict)
    hints: dict = field(default_factory=dict)


@dataclass
class EventRow:
    seq: int
    at: str
    actor: str
    role: str
    kind: str
    kind_label: str
    summary: str
    details: list[tuple[str, Value]]


def render_case_page(
    reference: str, *, error: Exception | None = None, status: int = 200,
    task_state: Mapping | None = None, note_state: Mapping | None = None, action_state: Mapping | None = None,
):
    user = current_user._get_current_object()
    try:
        case = cases.get_case(reference)
    except NotFound as missing:
        return respond("not_found", describe(missing), 404)
    if not may_view(user, case):
        if error is None:
            return respond("not_found", _("Not found."), 404)
        return respond(getattr(error, "code", "forbidden"), describe(error), status)

    rt = runtime()
    definition = definition_of(case.process_version, rt)
    lang = language()
    labels = _labels_of(definition.forms, lang)
    case_attachments = attachments.of_case(case)
    by_id = {a.id: a for a in case_attachments}
    task_state, action_state = task_state or {}, action_state or {}

    items = work.open_items_of(case)
    candidates = work.reassign_candidates(items) if work.may_supervise(user, case.grid_node.path) else {}
    now = utcnow()
    cards = [
        _card(case, item, user, definition, lang, now, candidates, task_state.get(item.id), action_state.get(item.id))
        for item in items
    ]
    shown = {card.item.id for card in cards}
    page_messages = []
    if error is not None:
        # Shown where it happened: on the notes form, on the task's card, else at the top
        # (e.g. the task is gone because someone else completed it first).
        if note_state is not None:
            note_state = {**note_state, "message": describe(error)}
        elif not ((set(task_state) | set(action_state)) & shown):
            page_messages.append(describe(error))

    events, event_total = events_of(case, limit=HISTORY_LIMIT)
    people_by_id = work.users_by_id({e.actor_id for e in events} | {case.created_by_id})
    try:
        steps = diagram.steps_of(
            case, current_ids=[item.spec_id for item in items],
            payloads=[e.payload for e in events] if event_total <= len(events) else None,
        )
        has_diagram = True
    except NotFound:
        steps, has_diagram = [], False
    entered = _entry_order(events)
    data_rows = [
        DataRow(key, labels.get(key, (key, {}))[0], _value(key, value, labels, by_id, user))
        for key, value in sorted((case.data or {}).items(),
                                 key=lambda kv: (entered.get(kv[0], len(entered)), kv[0]))
    ]
    creator = people_by_id.get(case.created_by_id)
    level = (case.data or {}).get("level")
    context = {
        "case": case,
        "summary": {
            "process": case.process_version.name,
            "version": case.process_version.version,
            "status": _("In progress") if case.status == CASE_ACTIVE else _("Closed"),
            "active": case.status == CASE_ACTIVE,
            "grid": case.grid_node.name,
            "grid_code": case.grid_node.code,
            "created": local_time(case.created_at),
            "created_by": creator.display_name if creator else None,
            "closed": local_time(case.closed_at),
            "end_event": diagram.element_name(case, case.end_event),
            "level": level if level in work.LEVELS else None,
        },
        "cards": cards,
        "data_rows": data_rows,
        "attachments": case_attachments,
        "events": [_event_row(e, labels, by_id, people_by_id, user, case) for e in events],
        "event_total": event_total,
        "notes": notes.notes_of(case),
        "may_note": notes.may_write(user, case),
        "note_state": note_state or {},
        "steps": steps,
        "has_diagram": has_diagram,
        "page_messages": page_messages,
        "local_time": local_time,
    }
    return render_template("cases/case.html", **context), status


def _card(case, item, user, definition, lang, now, candidates, task_state, action_state) -> TaskCard:
    light = light_of(item, now)
    can_act = work.can_act_on(user, item)
    mine = item.state == ITEM_CLAIMED and item.assignee_id == user.id
    other = item.state == ITEM_CLAIMED and item.assignee_id != user.id
    card = TaskCard(
        item=item, role=role_label(item.role), state=state_label(item.state),
        assignee=item.assignee.display_name if item.assignee else None,
        due=local_time(item.due_at), due_relative=relative_due(item.due_at, now), light=light,
        light_label=light_label(light), can_act=can_act, mine=mine, claimed_by_other=other,
        instructions=_instructions(item.instructions, case.data or {}),
        supervise=work.may_supervise(user, item.grid_path),
        candidates=[c for c in candidates.get((item.role, item.grid_path), []) if c.id != item.assignee_id],
    )
    if can_act and (item.state == ITEM_READY or mine) and case.status == CASE_ACTIVE:
        schema = (definition.forms.get(item.form) if item.form else None) or {"type": "object", "properties": {}}
        values = (task_state or {}).get("values")
        errors = dict((task_state or {}).get("errors") or {})
        card.fields = page_fields(schema, language=lang, values=values, errors=errors)
        card.radio_names = frozenset(
            name for name, prop in (schema.get("properties") or {}).items()
            if isinstance(prop, Mapping) and prop.get("x-widget") == "radio"
        )
        card.multipart = any(f.kind == PHOTO for f in card.fields)
        card.hints = (task_state or {}).get("hints") or {}
        form_level = errors.get(FORM_ERROR_KEY)
        if form_level:
            card.hints = {**card.hints, FORM_ERROR_KEY: form_level}
    state = task_state or action_state
    if state:
        card.message = state.get("message")
    if action_state:
        card.action = action_state
    return card


def _instructions(template: str | None, data: Mapping[str, Any]) -> str | None:
    """The task's instructions with case data filled in, as plain text (escaped when shown)."""
    if not template:
        return None
    try:
        return _INSTRUCTIONS.from_string(template).render(**{k: v for k, v in data.items() if isinstance(k, str)})
    except Exception:  # noqa: BLE001 - a broken template still shows its text
        log.warning("instructions could not be filled in", exc_info=True)
        return template


def _labels_of(forms: Mapping[str, Mapping], lang: str) -> dict[str, tuple[str, dict[str, str]]]:
    """Field key -> (label, enum value -> title) over every form of the process."""
    labels: dict[str, tuple[str, dict[str, str]]] = {}
    for schema in forms.values():
        for name, prop in (schema.get("properties") or {}).items():
            if not isinstance(prop, Mapping) or name in labels:
                continue
            label = (prop.get("x-title-en") if lang == "en" else None) or prop.get("title") or name
            titles = prop.get("x-enum-titles") or {}
            enum = prop.get("enum") or (prop.get("items") or {}).get("enum") or []
            if isinstance(titles, list):
                titles = dict(zip(map(str, enum), titles))
            labels[name] = (str(label), {str(k): str(v) for k, v in titles.items()})
    return labels


def _entry_order(events) -> dict[str, int]:
    """Data keys in the order people entered them (start data, then each task's form)."""
    order: dict[str, int] = {}
    for event in events:
        if event.kind in ("case_started", "task_completed"):
            for key in ((event.payload or {}).get("data") or {}):
                order.setdefault(key, len(order))
    return order


def _value(key: str, value: Any, labels: Mapping, attachments_by_id: Mapping, user) -> Value:
    if isinstance(value, str) and value.startswith("attachment:") and value[11:].isdigit():
        found = attachments_by_id.get(int(value[11:]))
        return Value(text=found.filename if found else value, attachment=found, missing_attachment=found is None)
    if _PHONE_KEY.search(key) and isinstance(value, (str, int)) and not isinstance(value, bool):
        return Value(text=phone_for(user, str(value)))
    return Value(text=_text(key, value, labels, user))


def _text(key: str, value: Any, labels: Mapping, user) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return _("Yes") if value else _("No")
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        if _PHONE_KEY.search(key):
            return phone_for(user, value)
        titles = labels.get(key, ("", {}))[1]
        if value in titles:
            return titles[value]
        if _ISO_TIME.match(value):
            try:
                return local_time(datetime.fromisoformat(value.replace("Z", "+00:00")))
            except ValueError:
                return value
        return value
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        return "、".join(_text(key, v, labels, user) for v in value)
    return json.dumps(_masked(value, user), ensure_ascii=False, indent=None)


def _masked(value: Any, user, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _masked(v, user, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, user, key) for v in value]
    if isinstance(value, str) and key and _PHONE_KEY.search(key):
        return phone_for(user, value)
    return value


_KINDS = {
    "case_started": lambda: pgettext("event", "Case started"),
    "task_completed": lambda: pgettext("event", "Task completed"),
    "task_claimed": lambda: pgettext("event", "Claimed"),
    "task_released": lambda: pgettext("event", "Released"),
    "timer_fired": lambda: pgettext("event", "Timer fired"),
    "message_received": lambda: pgettext("event", "Message received"),
    "task_reassigned": lambda: pgettext("event", "Reassigned"),
    "task_returned": lambda: pgettext("event", "Returned"),
    "note_added": lambda: pgettext("event", "Note"),
    "attachment_added": lambda: pgettext("event", "Attachment"),
}


def kind_label(kind: str) -> str:
    label = _KINDS.get(kind)
    return label() if label else kind


def _event_row(event, labels, attachments_by_id, people_by_id, user, case) -> EventRow:
    payload = event.payload or {}
    actor = people_by_id.get(event.actor_id)
    actor_name = actor.display_name if actor else (_("System") if event.actor in (None, "system") else event.actor)
    details: list[tuple[str, Value]] = []
    summary = ""
    kind = event.kind

    def data_pairs(data: Mapping[str, Any]) -> None:
        for key, value in (data or {}).items():
            details.append((labels.get(key, (key, {}))[0], _value(key, value, labels, attachments_by_id, user)))

    if kind == "case_started":
        summary = payload.get("title") or ""
        data_pairs(payload.get("data") or {})
    elif kind == "task_completed":
        summary = payload.get("name") or payload.get("task") or ""
        data_pairs(payload.get("data") or {})
    elif kind in ("task_claimed", "task_released"):
        summary = payload.get("name") or ""
    elif kind == "task_reassigned":
        summary = payload.get("name") or ""
        details.append((_("From"), Value(text=_username(payload.get("from")))))
        details.append((_("To"), Value(text=_username(payload.get("to")))))
        details.append((_("Reason"), Value(text=payload.get("reason") or "")))
    elif kind == "task_returned":
        summary = payload.get("name") or ""
        details.append((_("From"), Value(text=_username(payload.get("from")))))
        details.append((_("Reason"), Value(text=payload.get("reason") or "")))
    elif kind == "note_added":
        details.append((_("Note"), Value(text=payload.get("text") or "")))
    elif kind == "attachment_added":
        found = attachments_by_id.get(payload.get("attachment"))
        summary = payload.get("filename") or ""
        if found is not None:
            details.append((_("File"), Value(text=found.filename, attachment=found)))
    elif kind == "timer_fired":
        summary = "、".join(
            diagram.element_name(case, t.get("timer")) or "" for t in payload.get("timers") or [] if isinstance(t, dict)
        )
    elif kind == "message_received":
        summary = payload.get("name") or ""
        data_pairs(payload.get("payload") or {})
    return EventRow(
        seq=event.seq, at=local_time(event.at, "yyyy-MM-dd HH:mm:ss"), actor=actor_name,
        role=role_label(event.role) if event.role else "", kind=kind, kind_label=kind_label(kind),
        summary=summary, details=details,
    )


def _username(username: str | None) -> str:
    return username or "—"


def nl2br(text: str | None) -> Markup:
    """Escaped text with its line breaks kept."""
    if not text:
        return Markup("")
    return Markup("<br>\n").join(escape(line) for line in str(text).replace("\r\n", "\n").split("\n"))


blp.add_app_template_filter(nl2br, "ws_nl2br")
