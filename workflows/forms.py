"""User-task forms: JSON Schema (draft 2020-12) objects stored next to the BPMN.

A form declares the only keys a task completion may set, so data is validated
with ``additionalProperties: false`` unless the form explicitly says otherwise.
Labels follow the process-library conventions: ``title`` (Chinese), ``x-title-en``,
``x-widget`` and ``x-enum-titles`` (a list parallel to ``enum`` or a value -> label map).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError

FORM_ERROR_KEY = "_form"  # where errors that belong to no single field go

_FORMAT_CHECKER = FormatChecker()

_TYPE_NAMES = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "empty",
}


@dataclass(frozen=True)
class FormField:
    name: str
    title: str                 # Chinese label (falls back to the field name)
    title_en: str | None
    type: str | None           # JSON Schema type; the first non-null one if several
    required: bool
    widget: str | None         # x-widget: textarea, photo, radio...
    enum: tuple | None
    enum_titles: tuple | None  # parallel to enum


def schema_problems(schema: Any) -> list[str]:
    """Why ``schema`` can't be a form (empty list when it can)."""
    if not isinstance(schema, Mapping):
        return ["a form must be a JSON object"]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return [f"not a valid JSON Schema{f' at /{where}' if where else ''}: {exc.message}"]
    if schema.get("type") != "object":
        return ['the form\'s root "type" must be "object"']
    problems = []
    for name, prop in (schema.get("properties") or {}).items():
        titles = prop.get("x-enum-titles") if isinstance(prop, Mapping) else None
        if titles is not None and not _enum_titles(prop):
            problems.append(f'field "{name}": x-enum-titles must be a list as long as "enum" '
                            f"or an object keyed by the enum values")
    return problems


def form_fields(schema: Mapping[str, Any]) -> list[FormField]:
    """The form's fields in declared order (JSON objects keep their order)."""
    required = set(schema.get("required") or ())
    fields = []
    for name, prop in (schema.get("properties") or {}).items():
        prop = prop if isinstance(prop, Mapping) else {}
        enum, _ = _enum_and_titles(prop)
        fields.append(FormField(
            name=name,
            title=prop.get("title") or name,
            title_en=prop.get("x-title-en"),
            type=_main_type(prop.get("type")),
            required=name in required,
            widget=prop.get("x-widget"),
            enum=enum,
            enum_titles=_enum_titles(prop),
        ))
    return fields


# Forms belong to immutable, cached process definitions, so the same schema object comes
# back for every completion: build its validator once. Keyed by identity (the entry keeps
# the schema alive, so the id cannot be reused), bounded so uploads cannot grow it forever.
_VALIDATORS: dict[int, tuple[Mapping[str, Any], dict, Draft202012Validator]] = {}
_VALIDATOR_CACHE_SIZE = 1024


def _validator_for(schema: Mapping[str, Any]) -> tuple[dict, Draft202012Validator]:
    entry = _VALIDATORS.get(id(schema))
    if entry is not None and entry[0] is schema:
        return entry[1], entry[2]
    closed = _closed(schema)
    validator = Draft202012Validator(closed, format_checker=_FORMAT_CHECKER)
    if len(_VALIDATORS) >= _VALIDATOR_CACHE_SIZE:
        _VALIDATORS.clear()
    _VALIDATORS[id(schema)] = (schema, closed, validator)
    return closed, validator


def validate_form_data(schema: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, list[str]]:
    """{} when ``data`` fits the form, else field name -> messages ("_form" for the whole form)."""
    if not isinstance(data, Mapping):
        return {FORM_ERROR_KEY: ["The form data must be an object."]}
    closed, validator = _validator_for(schema)
    errors: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        if message not in errors.setdefault(key, []):
            errors[key].append(message)

    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        path = list(error.absolute_path)
        if error.validator == "required":
            # One error per missing key, but the key is only in the message; recompute it.
            for name in error.validator_value:
                if isinstance(error.instance, Mapping) and name not in error.instance:
                    if path:  # inside a nested object: report on its top-level field
                        add(str(path[0]), f'"{name}" is required.')
                    else:
                        add(name, "This field is required.")
        elif error.validator in ("additionalProperties", "unevaluatedProperties") and not path:
            declared = closed.get("properties") or {}
            for name in data:
                if name not in declared:
                    add(FORM_ERROR_KEY, f'Unknown field "{name}": this form does not declare it.')
        else:
            add(str(path[0]) if path else FORM_ERROR_KEY, _message(error))
    return errors


def _closed(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    # The form's keys are the only keys a completion may set, unless it opts out.
    open_keys = ("additionalProperties", "unevaluatedProperties", "patternProperties")
    if any(key in schema for key in open_keys):
        return schema
    return {**schema, "additionalProperties": False}


def _message(error) -> str:
    """A plain-English message for one jsonschema error."""
    kind, value = error.validator, error.validator_value
    if kind == "type":
        types = value if isinstance(value, list) else [value]
        return "Must be " + " or ".join(_TYPE_NAMES.get(t, t) for t in types) + "."
    if kind == "enum":
        return "Must be one of: " + ", ".join(map(str, value)) + "."
    if kind in ("oneOf", "anyOf") and all(isinstance(o, Mapping) and "const" in o for o in value):
        return "Must be one of: " + ", ".join(str(o["const"]) for o in value) + "."
    if kind == "const":
        return f"Must be {value!r}."
    if kind == "minLength":
        return f"Must be at least {value} characters long." if value > 1 else "Must not be empty."
    if kind == "maxLength":
        return f"Must be at most {value} characters long."
    if kind in ("minimum", "exclusiveMinimum"):
        return f"Must be {'at least' if kind == 'minimum' else 'more than'} {value}."
    if kind in ("maximum", "exclusiveMaximum"):
        return f"Must be {'at most' if kind == 'maximum' else 'less than'} {value}."
    if kind == "minItems":
        return f"Choose at least {value}."
    if kind == "maxItems":
        return f"Choose at most {value}."
    if kind == "pattern":
        return "Has the wrong format."
    if kind == "format":
        return f"Is not a valid {value}."
    return error.message[:1].upper() + error.message[1:] + ("" if error.message.endswith(".") else ".")


def _main_type(value: Any) -> str | None:
    if isinstance(value, list):
        return next((t for t in value if t != "null"), None)
    return value


def _enum_and_titles(prop: Mapping[str, Any]) -> tuple[tuple | None, tuple | None]:
    """``enum`` (or a ``oneOf`` of ``const``s, as rjsf forms write it) with its labels."""
    if "enum" in prop:
        return tuple(prop["enum"]), None
    options = prop.get("oneOf")
    if isinstance(options, list) and options and all(isinstance(o, Mapping) and "const" in o for o in options):
        return tuple(o["const"] for o in options), tuple(o.get("title", str(o["const"])) for o in options)
    return None, None


def _enum_titles(prop: Mapping[str, Any]) -> tuple | None:
    enum, from_one_of = _enum_and_titles(prop)
    titles = prop.get("x-enum-titles")
    if enum is None or titles is None:
        return from_one_of
    if isinstance(titles, Mapping):
        if all(isinstance(v, (str, int, float, bool)) or v is None for v in enum):
            return tuple(str(titles.get(str(v), v)) for v in enum)
        return None
    if isinstance(titles, list) and len(titles) == len(enum):
        return tuple(str(t) for t in titles)
    return None
