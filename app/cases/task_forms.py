"""User-task forms on pages: JSON Schema → fields to render, and submitted form data →
typed task data. Validation itself is the engine's (workflows.forms), so pages, the API
and scenarios all obey the same form rules."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from werkzeug.datastructures import FileStorage, MultiDict

from workflows.forms import FormField, form_fields

PHOTO = "photo"


@dataclass
class PageField:
    name: str
    label: str
    kind: str                      # text, textarea, number, integer, boolean, choice, multichoice, date, photo
    required: bool
    value: Any = None
    options: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None


def page_fields(
    schema: Mapping[str, Any], *, language: str = "zh", values: Mapping[str, Any] | None = None,
    errors: Mapping[str, list[str]] | None = None,
) -> list[PageField]:
    values, errors = values or {}, errors or {}
    properties = schema.get("properties", {})
    result = []
    for spec in form_fields(schema):
        prop = properties.get(spec.name, {})
        result.append(
            PageField(
                name=spec.name,
                label=_label(spec, language),
                kind=_kind(spec, prop),
                required=spec.required,
                value=values.get(spec.name, prop.get("default")),
                options=_options(spec, prop),
                errors=list(errors.get(spec.name, [])),
                minimum=prop.get("minimum"),
                maximum=prop.get("maximum"),
            )
        )
    return result


def parse_submission(
    schema: Mapping[str, Any], form: MultiDict, files: MultiDict | None = None,
) -> tuple[dict[str, Any], dict[str, list[str]], dict[str, FileStorage]]:
    """Typed data, conversion errors per field, and uploaded files per photo field.
    Empty inputs are left out, so "required" is reported by the form's own rules."""
    data: dict[str, Any] = {}
    problems: dict[str, list[str]] = {}
    uploads: dict[str, FileStorage] = {}
    properties = schema.get("properties", {})
    for spec in form_fields(schema):
        prop = properties.get(spec.name, {})
        kind = _kind(spec, prop)
        if kind == PHOTO:
            upload = (files or MultiDict()).get(spec.name)
            if upload is not None and upload.filename:
                uploads[spec.name] = upload
            elif form.get(spec.name):  # an already stored attachment reference
                data[spec.name] = form.get(spec.name)
            continue
        if kind == "multichoice":
            chosen = [v for v in form.getlist(spec.name) if v != ""]
            if chosen:
                data[spec.name] = chosen
            continue
        raw = form.get(spec.name, "")
        raw = raw.strip() if isinstance(raw, str) else raw
        if raw == "":
            continue
        try:
            data[spec.name] = _convert(kind, raw)
        except ValueError:
            problems.setdefault(spec.name, []).append(_CONVERSION_MESSAGES.get(kind, "invalid value"))
    return data, problems, uploads


_CONVERSION_MESSAGES = {
    "integer": "please enter a whole number",
    "number": "please enter a number",
    "boolean": "please choose yes or no",
}


def _convert(kind: str, raw: str) -> Any:
    if kind == "integer":
        return int(raw)
    if kind == "number":
        value = float(raw)
        return int(value) if value.is_integer() else value
    if kind == "boolean":
        if raw in ("true", "1", "on", "yes"):
            return True
        if raw in ("false", "0", "off", "no"):
            return False
        raise ValueError(raw)
    return raw


def _kind(spec: FormField, prop: Mapping[str, Any]) -> str:
    if spec.widget == PHOTO:
        return PHOTO
    if spec.type == "boolean":
        return "boolean"
    if spec.type in ("integer", "number"):
        return spec.type
    if spec.type == "array":
        return "multichoice"
    if spec.enum:
        return "choice"
    if prop.get("format") == "date":
        return "date"
    if spec.widget == "textarea":
        return "textarea"
    return "text"


def _options(spec: FormField, prop: Mapping[str, Any]) -> list[tuple[str, str]]:
    if spec.type == "array":
        items = prop.get("items", {})
        values = list(items.get("enum") or [])
        titles = items.get("x-enum-titles") or prop.get("x-enum-titles") or {}
        if isinstance(titles, list):
            titles = dict(zip(values, titles))
        return [(str(value), str(titles.get(value, value))) for value in values]
    values = list(spec.enum or [])
    titles = list(spec.enum_titles or values)
    return [(str(value), str(title if title is not None else value)) for value, title in zip(values, titles)]


def _label(spec: FormField, language: str) -> str:
    if language.startswith("en") and spec.title_en:
        return spec.title_en
    return spec.title or spec.name
