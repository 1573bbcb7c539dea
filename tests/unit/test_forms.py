"""Form fields and server-side validation of submitted form data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from workflows.forms import FormField, form_fields, schema_problems, validate_form_data

VALID = Path(__file__).resolve().parents[1] / "fixtures" / "bpmn" / "valid"
REGISTER = json.loads((VALID / "register.form.json").read_text(encoding="utf-8"))

SCHEMA = {
    "type": "object",
    "properties": {
        "category": {
            "type": "string", "title": "事件类别", "x-title-en": "Category", "x-widget": "radio",
            "enum": ["garbage", "noise"], "x-enum-titles": ["垃圾堆放", "噪音扰民"],
        },
        "count": {"type": "integer", "title": "数量", "minimum": 1},
        "note": {"type": ["string", "null"], "title": "备注", "maxLength": 10},
        "due": {"type": "string", "title": "期限", "format": "date"},
        "level": {"title": "级别", "oneOf": [{"const": "A", "title": "A类"}, {"const": "B", "title": "B类"}]},
    },
    "required": ["category", "count"],
}


def test_form_fields_in_declared_order():
    fields = form_fields(SCHEMA)
    assert [f.name for f in fields] == ["category", "count", "note", "due", "level"]
    assert fields[0] == FormField(
        name="category", title="事件类别", title_en="Category", type="string", required=True, widget="radio",
        enum=("garbage", "noise"), enum_titles=("垃圾堆放", "噪音扰民"),
    )
    assert (fields[1].required, fields[1].type, fields[1].enum, fields[1].title_en) == (True, "integer", None, None)
    assert (fields[2].required, fields[2].type) == (False, "string")
    assert (fields[4].enum, fields[4].enum_titles) == (("A", "B"), ("A类", "B类"))


def test_enum_titles_may_be_a_map_from_value_to_label():
    category, description = form_fields(REGISTER)
    assert category.enum == ("garbage", "noise")
    assert category.enum_titles == ("垃圾堆放", "噪音扰民")
    assert (description.widget, description.title_en, description.enum_titles) == ("textarea", "Description", None)


def test_valid_data_gives_no_errors():
    assert validate_form_data(SCHEMA, {"category": "noise", "count": 3}) == {}
    assert validate_form_data(SCHEMA, {"category": "noise", "count": 1, "note": None, "due": "2026-03-01",
                                       "level": "B"}) == {}


def test_required_fields_missing():
    assert validate_form_data(SCHEMA, {"note": "x"}) == {
        "category": ["This field is required."],
        "count": ["This field is required."],
    }


def test_wrong_type():
    assert validate_form_data(SCHEMA, {"category": "noise", "count": "3"}) == {"count": ["Must be a whole number."]}
    assert validate_form_data(SCHEMA, {"category": "noise", "count": 2, "note": 5}) == {
        "note": ["Must be text or empty."]}


def test_enum_violation():
    assert validate_form_data(SCHEMA, {"category": "fire", "count": 1}) == {
        "category": ["Must be one of: garbage, noise."]}


def test_unknown_key_is_a_form_error():
    errors = validate_form_data(SCHEMA, {"category": "noise", "count": 1, "approved": True})
    assert errors == {"_form": ['Unknown field "approved": this form does not declare it.']}


def test_a_form_may_explicitly_allow_other_keys():
    open_schema = {**SCHEMA, "additionalProperties": True}
    assert validate_form_data(open_schema, {"category": "noise", "count": 1, "approved": True}) == {}


def test_several_errors_at_once_and_the_schema_is_not_modified():
    before = json.dumps(SCHEMA, sort_keys=True)
    errors = validate_form_data(SCHEMA, {"category": "fire", "count": 0, "note": "x" * 11, "due": "tomorrow",
                                         "level": "C", "extra": 1})
    assert errors == {
        "_form": ['Unknown field "extra": this form does not declare it.'],
        "category": ["Must be one of: garbage, noise."],
        "count": ["Must be at least 1."],
        "note": ["Must be at most 10 characters long."],
        "due": ["Is not a valid date."],
        "level": ["Must be one of: A, B."],
    }
    assert json.dumps(SCHEMA, sort_keys=True) == before


def test_register_fixture_form():
    assert validate_form_data(REGISTER, {"category": "garbage", "description": "太短"}) == {
        "description": ["Must be at least 5 characters long."]}


def test_data_must_be_an_object():
    assert validate_form_data(SCHEMA, ["category"]) == {"_form": ["The form data must be an object."]}


@pytest.mark.parametrize("schema, problem", [
    ([], "a form must be a JSON object"),
    ({"type": "array"}, 'root "type" must be "object"'),
    ({"type": "object", "properties": {"n": {"type": "integr"}}}, "at /properties/n/type"),
    ({"type": "object", "properties": {"c": {"enum": ["a", "b"], "x-enum-titles": ["甲"]}}}, "x-enum-titles"),
])
def test_schema_problems(schema, problem):
    [message] = schema_problems(schema)
    assert problem in message


def test_fixture_forms_are_sound():
    for path in VALID.rglob("*.form.json"):
        assert schema_problems(json.loads(path.read_text(encoding="utf-8"))) == [], path
