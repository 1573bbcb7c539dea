"""Public pages (no login): report a problem, follow it by tracking code, confirm the result.

URLs
  /public                                   report a problem (群众点单)
  /public/submitted                         the tracking code just issued (from the session)
  /public/track                             look a demand up by tracking code
  /public/track/<code>                      its progress; POST = the resident's confirmation
  /public/track/<code>/photos/<id>[/thumb]  a public photo of that demand

Unknown and malformed codes get the same 404 page. Nothing here names a handler or shows
anyone's phone; the resident's own phone is masked.
"""
from __future__ import annotations

import io
import re
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, flash, redirect, render_template, request, send_file, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from app.cases import attachments, task_forms
from app.db import commit, rollback
from app.errors import Conflict, InvalidInput, NotFound
from app.extensions import csrf
from app.public import service
from app.public.forms import ConfirmForm, DemandForm
from app.runtime import runtime
from app.web import NavItem, add_nav, select_locale
from workflows.errors import EngineError, FormInvalid
from workflows.forms import FORM_ERROR_KEY

bp = Blueprint("public", __name__, url_prefix="/public")

LOCAL_TIME = ZoneInfo("Asia/Shanghai")
SUBMITTED_KEY = "public_submitted"


def register(app) -> None:
    app.register_blueprint(bp)
    # These two forms check their CSRF token themselves (FlaskForm.validate), so that a
    # stale form is shown again with what the resident typed instead of an error page.
    csrf.exempt(index)
    csrf.exempt(confirm)
    add_nav(NavItem("public.index", _l("Report a problem"), public=True))
    add_nav(NavItem("public.track_lookup", _l("Track my demand"), public=True))


# -- helpers --------------------------------------------------------------------
def _language() -> str:
    return "en" if select_locale() == "en" else "zh"


def _client() -> str:
    # Behind a reverse proxy, deploy with werkzeug's ProxyFix so that this is the caller.
    return request.remote_addr or "unknown"


def _within_limit(bucket: str, who: str) -> bool:
    limit, window = service.limits()[bucket]
    return service.limit_hit(bucket, who, limit=limit, window=window)


def _local_time(value) -> str:
    return value.astimezone(LOCAL_TIME).strftime("%Y-%m-%d %H:%M") if value else ""


def _private(response, status: int | None = None):
    """Tracking pages hold a secret (the code): never cached, never sent as referrer."""
    if status is not None:
        response = current_app.make_response((response, status))
    else:
        response = current_app.make_response(response)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _not_found():
    """One answer for malformed, unknown and foreign codes: it never tells which."""
    return _private(render_template("public/not_found.html"), 404)


def _too_many(bucket: str = "lookup"):
    _limit, window = service.limits()[bucket]
    response = _private(render_template("public/limited.html", minutes=max(window // 60, 1)), 429)
    response.headers["Retry-After"] = str(window)
    return response


def human_size(limit: int) -> str:
    return f"{limit // 1048576} MB" if limit % 1048576 == 0 else f"{round(limit / 1024)} KB"


_UPLOAD_MESSAGES = {
    "upload_empty": lambda name, size: _("%(name)s is empty.", name=name),
    "upload_too_large": lambda name, size: _("%(name)s is larger than %(size)s.", name=name, size=size),
    "upload_type": lambda name, size: _("%(name)s is not a JPEG, PNG or WebP photo or a PDF document.", name=name),
}


def _read_photos() -> tuple[list[service.Photo], list[str]]:
    """The uploaded photos, checked by content and size, and messages for those refused."""
    uploads = [u for u in request.files.getlist("photos") if u is not None and u.filename]
    if len(uploads) > service.MAX_PHOTOS:
        return [], [_("Please attach at most %(n)d photos.", n=service.MAX_PHOTOS)]
    limit = current_app.config["ATTACHMENT_MAX_BYTES"]
    photos, problems = [], []
    for upload in uploads:
        content = upload.stream.read(limit + 1)
        try:
            attachments.check_upload(content, field="photos")
        except InvalidInput as refused:
            message = _UPLOAD_MESSAGES.get(refused.code, _UPLOAD_MESSAGES["upload_type"])
            problems.append(message(upload.filename, human_size(limit)))
            continue
        photos.append(service.Photo(content=content, filename=upload.filename))
    return photos, problems


_ENGINE_MESSAGES = [
    (re.compile(r"^This field is required\.$"), lambda m: _("This field is required.")),
    (re.compile(r"^Must not be empty\.$"), lambda m: _("This field is required.")),
    (re.compile(r"^Must be at least (\d+) characters long\.$"),
     lambda m: _("Please enter at least %(n)d characters.", n=int(m.group(1)))),
    (re.compile(r"^Must be at most (\d+) characters long\.$"),
     lambda m: _("Please enter at most %(n)d characters.", n=int(m.group(1)))),
    (re.compile(r"^Must be one of: "), lambda m: _("Please choose one of the options.")),
]


def _form_message(message: str) -> str:
    """The engine's form messages (English) in the page language."""
    for pattern, translate in _ENGINE_MESSAGES:
        match = pattern.match(message)
        if match:
            return translate(match)
    return _("Please check this field.")


def _translated(fields) -> dict[str, list[str]]:
    return {name: [_form_message(m) for m in messages] for name, messages in (fields or {}).items()}


# -- report a problem -------------------------------------------------------------
@bp.route("", methods=["GET", "POST"])
def index():
    form = DemandForm()
    form.fill_choices(_language())
    if request.method == "GET":
        return _render_form(form)

    if not _within_limit("submit", _client()):
        return _too_many("submit")
    valid = form.validate()
    photos, photo_errors = _read_photos()
    alert, status = None, 422
    if getattr(form, "csrf_token", None) is not None and form.csrf_token.errors:
        alert, status = _("The form expired or was sent from elsewhere. Reload the page and try again."), 400
    elif not valid or photo_errors:
        alert = _("Please check what you entered: the fields marked below need attention.")
    if alert is None:
        try:
            case = service.submit_demand(
                runtime(),
                category=form.category.data,
                description=form.description.data.strip(),
                location=(form.location.data or "").strip(),
                grid_code=form.grid.data,
                urgency=form.urgency.data,
                contact_phone=form.contact_phone.data or "",
                photos=photos,
            )
        except (InvalidInput, EngineError) as refused:
            rollback()  # nothing of a refused demand is kept
            fields = getattr(refused, "fields", {}) or {}
            if "photos" in fields:
                photo_errors.append(_("A photo could not be accepted: please use JPEG, PNG, WebP or PDF files."))
            if "grid" in fields:
                form.grid.errors = [*form.grid.errors, _("Please choose your grid.")]
            alert = _("Your demand could not be submitted. Please check what you entered and try again.")
        else:
            commit()
            session[SUBMITTED_KEY] = case.tracking_code
            return redirect(url_for("public.submitted"), code=303)
    return _render_form(form, photo_errors=photo_errors, alert=alert), status


def _render_form(form: DemandForm, *, photo_errors: list[str] | None = None, alert: str | None = None) -> str:
    return render_template(
        "public/index.html", form=form, photo_errors=photo_errors or [], alert=alert, max_photos=service.MAX_PHOTOS,
        max_size=human_size(current_app.config["ATTACHMENT_MAX_BYTES"]),
    )


@bp.get("/submitted")
def submitted():
    try:
        case = service.case_by_code(session.get(SUBMITTED_KEY))
    except NotFound:
        return redirect(url_for("public.index"))
    code = case.tracking_code
    return _private(render_template(
        "public/submitted.html", case=case, code=code,
        track_url=url_for("public.track", code=code, _external=True),
    ))


# -- tracking -------------------------------------------------------------------
@bp.get("/track")
def track_lookup():
    raw = request.args.get("code")
    if raw is None:
        return _private(render_template("public/lookup.html"))
    if not _within_limit("lookup", _client()):
        return _too_many()
    try:
        case = service.case_by_code(raw)
    except NotFound:
        return _not_found()
    return redirect(url_for("public.track", code=case.tracking_code), code=303)


@bp.get("/track/<code>")
def track(code: str):
    if not _within_limit("lookup", _client()):
        return _too_many()
    try:
        case = service.case_by_code(code)
    except NotFound:
        return _not_found()
    if code != case.tracking_code:  # typed in lower case or with spaces
        return redirect(url_for("public.track", code=case.tracking_code), code=303)
    return _render_track(case)


@bp.post("/track/<code>")
def confirm(code: str):
    try:
        case = service.case_by_code(code)
    except NotFound:
        if not _within_limit("lookup", _client()):
            return _too_many()
        return _not_found()
    form = ConfirmForm()
    if not form.validate():
        return _render_track(case, status=400, values=request.form,
                             alert=_("The form expired or was sent from elsewhere. Reload the page and try again."))
    limit, window = service.limits()["confirm_failed"]
    if service.limit_count("confirm_failed", case.tracking_code, window=window) >= limit:
        return _render_track(case, status=429, values=request.form,
                             alert=_("Too many wrong attempts. Please try again in an hour, or call your community."))
    rt = runtime()
    item = service.resident_item(service.open_items(case))
    if item is None or case.status != "active":
        return _render_track(case, status=409, alert=_("This demand has already been confirmed, or it no longer waits for you."))
    schema = service.confirmation_schema(rt, case, item) or {}
    data, problems, _uploads = task_forms.parse_submission(schema, request.form)
    try:
        if problems:
            raise FormInvalid(problems)
        service.confirm(rt, code, data, phone_digits=form.phone_digits.data or "")
    except service.WrongPhoneDigits:
        rollback()
        service.limit_hit("confirm_failed", case.tracking_code, limit=limit, window=window)
        return _render_track(case, status=403, values=request.form, digits_error=True,
                             alert=_("The last 4 digits do not match the phone number you gave. Nothing was recorded."))
    except Conflict:
        rollback()
        return _render_track(case, status=409, alert=_("This demand has already been confirmed, or it no longer waits for you."))
    except FormInvalid as invalid:
        rollback()
        return _render_track(case, status=422, values=request.form, errors=_translated(invalid.fields),
                             alert=_("Please check what you entered: the fields marked below need attention."))
    commit()
    flash(_("Thank you! Your confirmation has been recorded."))
    return redirect(url_for("public.track", code=case.tracking_code), code=303)


def _render_track(case, *, status: int = 200, values=None, errors=None, alert: str | None = None,
                  digits_error: bool = False):
    progress = service.progress_of(case)
    fields = None
    if progress.confirm_item is not None:
        schema = service.confirmation_schema(runtime(), case, progress.confirm_item) or {}
        errors = dict(errors or {})
        general = errors.pop(FORM_ERROR_KEY, [])
        fields = task_forms.page_fields(schema, language=_language(), values=values or {}, errors=errors)
        if general and alert is None:
            alert = " ".join(general)
    labels = dict(service.categories(_language()))
    html = render_template(
        "public/track.html", progress=progress, case=case, fields=fields, alert=alert,
        digits_error=digits_error, steps=service.STEPS, local_time=_local_time,
        category_label=labels.get((case.data or {}).get("category"), (case.data or {}).get("category")),
        grid_label=service.grid_label(case.grid_node),
    )
    return _private(html, status)


@bp.get("/track/<code>/photos/<int:attachment_id>", defaults={"thumbnail": False})
@bp.get("/track/<code>/photos/<int:attachment_id>/thumb", defaults={"thumbnail": True}, endpoint="photo_thumbnail")
def photo(code: str, attachment_id: int, thumbnail: bool):
    try:
        case = service.case_by_code(code)
        attachment = service.public_attachment(case, attachment_id)
    except NotFound:
        if not _within_limit("lookup", _client()):
            return _too_many()
        return _not_found()
    content, content_type = attachments.content_of(attachment, thumbnail=thumbnail)
    response = send_file(io.BytesIO(content), mimetype=content_type, download_name=attachment.filename,
                         as_attachment=False, max_age=3600, etag=f"{attachment.sha256}{'-t' if thumbnail else ''}")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response
