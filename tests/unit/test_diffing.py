"""Diff between two versions of a process: elements added, removed and changed, by aspect."""
from __future__ import annotations

from pathlib import Path

import pytest

from workflows.definitions import load_files
from workflows.diffing import diff_definitions
from workflows.roles import RoleCatalogue

ROOT = Path(__file__).resolve().parents[2] / "bpmn"


@pytest.fixture(scope="module")
def roles():
    return RoleCatalogue.from_file(ROOT / "roles.json")


def files_of(process: str) -> dict[str, bytes]:
    folder = ROOT / process
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and "scenarios" not in p.parts and p.suffix in (".bpmn", ".dmn", ".json")}


def build(files, roles, process):
    result = load_files(files, roles)
    assert not result.issues, result.issues
    return next(d for d in result.definitions if d.process_id == process)


def edit(files, name, *replacements):
    text = files[name].decode("utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    return {**files, name: text.encode("utf-8")}


def test_identical_versions_have_no_changes(roles):
    files = files_of("incident_abcd")
    assert diff_definitions(build(files, roles, "incident_abcd"), build(files, roles, "incident_abcd")).empty


def test_name_timer_condition_form_and_lane_changes_are_named(roles):
    files = files_of("incident_abcd")
    old = build(files, roles, "incident_abcd")
    new_files = edit(files, "incident_abcd.bpmn",
                     ('name="值班长结案"', 'name="值班长审核结案"'),
                     ("deadline(limit_amount, limit_unit, fraction=0.8)", "deadline(limit_amount, limit_unit, fraction=0.75)"),
                     ('value="register.form.json"', 'value="grid_handle.form.json"'))
    diff = diff_definitions(old, build(new_files, roles, "incident_abcd"))
    by_id = {c.element_id: c for c in diff.changed}
    assert by_id["chief_close"].aspect_names == ("name",)
    assert by_id["chief_close"].aspects[0].before == "值班长结案"
    assert by_id["chief_close"].aspects[0].after == "值班长审核结案"
    assert by_id["timer_a_warning"].aspect_names == ("timer",)
    assert "0.75" in by_id["timer_a_warning"].aspects[0].after
    assert "form" in by_id["register"].aspect_names
    assert not diff.added and not diff.removed


def test_condition_change_is_reported_on_the_gateway(roles):
    files = files_of("grid_quick")
    old = build(files, roles, "grid_quick")
    text = files["grid_quick.bpmn"].decode()
    import re

    condition = re.search(r"<bpmn:conditionExpression[^>]*>([^<]+)</bpmn:conditionExpression>", text)
    assert condition
    new_files = {**files, "grid_quick.bpmn": text.replace(condition.group(0), condition.group(0).replace(
        condition.group(1), f"({condition.group(1)}) and True"), 1).encode()}
    diff = diff_definitions(old, build(new_files, roles, "grid_quick"))
    assert any("condition" in c.aspect_names for c in diff.changed), diff.changes


def test_added_and_removed_elements(roles):
    files = files_of("grid_quick")
    old = build(files, roles, "grid_quick")
    text = files["grid_quick.bpmn"].decode()
    # put a script task on the first flow: flow A -> B becomes A -> new -> B
    import re

    flow = re.search(r'<bpmn:sequenceFlow id="([^"]+)" sourceRef="([^"]+)" targetRef="([^"]+)"\s*/>', text)
    fid, source, target = flow.groups()
    text = text.replace(flow.group(0),
                        f'<bpmn:sequenceFlow id="{fid}" sourceRef="{source}" targetRef="note_it" />'
                        f'<bpmn:scriptTask id="note_it" name="记录"><bpmn:incoming>{fid}</bpmn:incoming>'
                        f'<bpmn:outgoing>{fid}_2</bpmn:outgoing><bpmn:script>noted = True</bpmn:script></bpmn:scriptTask>'
                        f'<bpmn:sequenceFlow id="{fid}_2" sourceRef="note_it" targetRef="{target}" />', 1)
    new = build({**files, "grid_quick.bpmn": text.encode()}, roles, "grid_quick")
    diff = diff_definitions(old, new)
    assert [c.element_id for c in diff.added] == ["note_it"]
    assert diff.added[0].kind == "ScriptTask"
    back = diff_definitions(new, old)
    assert [c.element_id for c in back.removed] == ["note_it"]
    assert back.summary()["removed"] == ["note_it"]
