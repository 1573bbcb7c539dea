"""Turning a JSON Schema form into page fields, and posted strings back into typed data."""
import json
from pathlib import Path

from werkzeug.datastructures import FileStorage, MultiDict

from app.cases.task_forms import page_fields, parse_submission
from workflows.forms import validate_form_data

ROOT = Path(__file__).resolve().parents[2]


def form(path: str) -> dict:
    return json.loads((ROOT / "bpmn" / path).read_text(encoding="utf-8"))


def test_fields_carry_chinese_labels_kinds_and_options():
    fields = {f.name: f for f in page_fields(form("grid_quick/register.form.json"))}
    assert fields["category"].kind == "choice"
    assert ("garbage", "垃圾堆放") in fields["category"].options
    assert fields["description"].kind == "textarea" and fields["description"].required
    assert fields["verified"].kind == "boolean"
    english = {f.name: f for f in page_fields(form("grid_quick/register.form.json"), language="en")}
    assert english["verified"].label != fields["verified"].label


def test_posted_strings_become_typed_data_that_passes_the_form():
    schema = form("four_deliberations/tally.form.json")
    posted = MultiDict({"due": "35", "present": "30", "votes_for": "26", "votes_against": "2", "abstain": "2"})
    data, problems, uploads = parse_submission(schema, posted)
    assert problems == {} and uploads == {}
    assert data["due"] == 35 and isinstance(data["due"], int)
    assert validate_form_data(schema, data) == {}


def test_bad_numbers_and_empty_values():
    schema = form("four_deliberations/tally.form.json")
    data, problems, _ = parse_submission(schema, MultiDict({"due": "三十五", "present": ""}))
    assert problems == {"due": ["please enter a whole number"]}
    assert "present" not in data  # empty: left for the form's "required" rule to report


def test_photo_fields_come_back_as_uploads():
    schema = form("grid_quick/handle.form.json")
    upload = FileStorage(stream=open(__file__, "rb"), filename="site.jpg")
    try:
        data, problems, uploads = parse_submission(schema, MultiDict({"result": "已清运"}), MultiDict({"photo_ref": upload}))
    finally:
        upload.close()
    assert data == {"result": "已清运"} and problems == {}
    assert set(uploads) == {"photo_ref"}
