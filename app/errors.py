"""One family of domain errors and one place that turns them into HTTP answers.

Services raise these (or the engine's errors) and never choose status codes;
:func:`register_error_handlers` maps every one of them — and Flask's and
flask-smorest's own — to ``{"error": {"code", "message", "fields"}}``.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

from flask import Flask, jsonify, render_template, request
from flask_babel import gettext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException

from workflows import errors as engine_errors

log = logging.getLogger(__name__)


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, *, code: str | None = None, fields: Mapping[str, Sequence[str]] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = {k: list(v) for k, v in (fields or {}).items()}


class NotFound(DomainError):
    code = "not_found"


class PermissionDenied(DomainError):
    code = "forbidden"


class NotAuthenticated(DomainError):
    code = "not_authenticated"


class Conflict(DomainError):
    code = "conflict"


class InvalidInput(DomainError):
    code = "invalid_input"


_STATUS: list[tuple[type, int]] = [
    (NotAuthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (Conflict, 409),
    (InvalidInput, 422),
    (engine_errors.TaskNotFound, 404),
    (engine_errors.WrongRole, 403),
    (engine_errors.TaskNotReady, 409),
    (engine_errors.MessageNotAwaited, 409),
    (engine_errors.FormInvalid, 422),
    (engine_errors.ProcessFailed, 422),
]


def status_for(error: Exception) -> int:
    for cls, status in _STATUS:
        if isinstance(error, cls):
            return status
    return 400


def error_body(code: str, message: str, fields: Mapping[str, Any] | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": dict(fields or {})}}


def _smorest_fields(error: HTTPException) -> dict[str, list[str]]:
    """flask-smorest puts marshmallow messages in ``error.data['messages']`` by location."""
    messages = (getattr(error, "data", None) or {}).get("messages") or {}
    fields: dict[str, list[str]] = {}
    for _location, per_field in messages.items():
        _flatten(per_field, "", fields)
    return fields


def _flatten(value: Any, prefix: str, out: dict[str, list[str]]) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            _flatten(inner, name, out)
    elif isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            out.setdefault(prefix or "_schema", []).extend(value)
        else:
            for index, inner in enumerate(value):
                _flatten(inner, f"{prefix}.{index}" if prefix else str(index), out)
    else:
        out.setdefault(prefix or "_schema", []).append(str(value))


_HTTP_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
}


def wants_json() -> bool:
    """API callers get JSON; people using pages get an HTML page with the message."""
    return request.path.startswith("/api") or request.accept_mimetypes.best == "application/json"


_PAGE_TITLES = {
    400: lambda: gettext("The request could not be understood"),
    401: lambda: gettext("Please sign in"),
    403: lambda: gettext("Not allowed"),
    404: lambda: gettext("Not found"),
    405: lambda: gettext("Not allowed"),
    409: lambda: gettext("Someone else changed this first"),
    413: lambda: gettext("Too large"),
    422: lambda: gettext("Please check what you entered"),
    500: lambda: gettext("Something went wrong"),
}


_PAGE_MESSAGES = {
    404: lambda: gettext("There is no such page here."),
    405: lambda: gettext("This page cannot be used that way."),
    413: lambda: gettext("What you sent is too large."),
    500: lambda: gettext("An unexpected error occurred; it has been logged. Please try again."),
}


def respond(code: str, message: str, status: int, fields: Mapping[str, Any] | None = None, *, generic: bool = False):
    """JSON for the API, a page for people. ``generic``: the message is the framework's
    (English) text, so pages show a translated one instead."""
    if wants_json():
        return jsonify(error_body(code, message, fields)), status
    if (generic or status == 500) and status in _PAGE_MESSAGES:
        message = _PAGE_MESSAGES[status]()
    title = _PAGE_TITLES.get(status, _PAGE_TITLES[400])()
    return render_template("errors.html", title=title, message=message), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    @app.errorhandler(engine_errors.EngineError)
    def handle_domain(error):
        fields = getattr(error, "fields", None)
        message = getattr(error, "message", None) or str(error)
        return respond(error.code, message, status_for(error), fields)

    @app.errorhandler(StaleDataError)
    def handle_stale(error):
        return respond("conflict", "the case was changed by someone else at the same time; reload and try again", 409)

    @app.errorhandler(IntegrityError)
    def handle_integrity(error):
        # A uniqueness race the locks did not prevent (e.g. two writers appending the
        # same event seq): nothing was committed, the caller may retry.
        log.error("integrity conflict on %s %s: %s", request.method, request.path, error.orig)
        return respond("conflict", "a concurrent change conflicted with this one; reload and try again", 409)

    @app.errorhandler(HTTPException)
    def handle_http(error: HTTPException):
        status = error.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        fields = _smorest_fields(error) if status in (400, 422) else {}
        message = error.description or error.name
        if status == 422:
            message = "the request has invalid fields"
        if status == 400 and "Failed to decode JSON" in (error.description or ""):
            code, message = "malformed_json", "the request body is not valid JSON"
        if status == 413:
            message = f"the request body is larger than {request.max_content_length} bytes"
        if status == 400 and "CSRF" in (error.description or ""):
            code, message = "csrf_failed", gettext("The form expired or was sent from elsewhere. Reload the page and try again.")
        return respond(code, message, status, fields, generic=True)

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return respond("internal_error", "an unexpected error occurred; it has been logged", 500)
