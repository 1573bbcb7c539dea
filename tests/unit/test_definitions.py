"""Loading and validating process definitions from real fixture files."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from workflows.definitions import (
    ISSUE_CODES,
    DefinitionError,
    LoadResult,
    ProcessDefinition,
    ValidationIssue,
    content_hash,
    load_definition,
    load_files,
    load_folder,
)
from workflows.roles import RoleCatalogue

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "bpmn"
VALID = FIXTURES / "valid"
BROKEN = FIXTURES / "broken"
ROLES = RoleCatalogue.from_file(ROOT / "bpmn" / "roles.json")

INCIDENT_FILES = [
    "common/handle.bpmn",
    "common/handle.form.json",
    "incident.bpmn",
    "incident_level.dmn",
    "register.form.json",
    "review.form.json",
]
UNRELATED_FILES = ["handle.form.json", "unrelated.dmn"]  # in the folder, used by no process


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def by_id(result: LoadResult) -> dict[str, ProcessDefinition]:
    return {d.process_id: d for d in result.definitions}


def issue_rows(result: LoadResult) -> list[tuple]:
    return [(i.code, i.file, i.element_id, i.line) for i in result.issues]


# --- the valid library ------------------------------------------------------------

def test_valid_folder_yields_every_executable_process():
    result = load_folder(VALID, ROLES)
    assert result.ok, [str(i) for i in result.issues]
    assert [d.process_id for d in result.definitions] == ["incident", "sub_handle"]


def test_definition_holds_only_the_files_it_uses():
    incident, sub = by_id(load_folder(VALID, ROLES)).values()
    assert sorted(incident.files) == INCIDENT_FILES
    assert incident.files["incident.bpmn"] == (VALID / "incident.bpmn").read_bytes()
    assert sorted(sub.files) == ["common/handle.bpmn", "common/handle.form.json"]


def test_definition_name_roles_specs_and_forms():
    definitions = by_id(load_folder(VALID, ROLES))
    incident, sub = definitions["incident"], definitions["sub_handle"]
    assert incident.name == "事件处置"
    # 网格员 and community_staff in incident.bpmn, 网格长 in the called process.
    assert incident.roles == ("community_staff", "grid_leader", "grid_member")
    assert sub.roles == ("grid_leader",)
    assert incident.spec.name == "incident"
    assert sorted(incident.subprocess_specs) == ["sub_handle"]
    # Forms are keyed as the user tasks name them; the form next to the BPMN file wins
    # over the unrelated handle.form.json at the top of the folder.
    assert sorted(incident.forms) == ["handle.form.json", "register.form.json", "review.form.json"]
    assert incident.forms["handle.form.json"]["title"] == "处置"
    assert incident.forms["register.form.json"]["required"] == ["category", "description"]


def test_roles_agree_with_the_lanes_spiff_assigns():
    incident = by_id(load_folder(VALID, ROLES))["incident"]
    specs = [incident.spec, *incident.subprocess_specs.values()]
    lanes = {ts.lane for spec in specs for ts in spec.task_specs.values() if getattr(ts, "manual", False)}
    assert tuple(sorted(ROLES.resolve(lane) for lane in lanes)) == incident.roles


def test_spiff_extensions_are_on_the_task_specs():
    incident = by_id(load_folder(VALID, ROLES))["incident"]
    register = incident.spec.task_specs["register"]
    assert register.extensions["properties"]["formJsonSchemaFilename"] == "register.form.json"
    assert register.lane == "网格员"
    assert incident.subprocess_specs["sub_handle"].task_specs["do_handle"].extensions["preScript"] == "attempts = 1"


def test_the_valid_process_runs_to_the_end():
    incident = by_id(load_folder(VALID, ROLES))["incident"]
    workflow = BpmnWorkflow(incident.spec, dict(incident.subprocess_specs))
    workflow.do_engine_steps()
    for data in ({"category": "garbage", "description": "路边垃圾堆放"}, {"result": "已清理"}):
        [task] = workflow.get_tasks(state=TaskState.READY, manual=True)
        task.set_data(**data)
        task.run()
        workflow.do_engine_steps()
    assert workflow.completed
    assert workflow.data["level"] == "A" and workflow.data["handled"] is True


# --- content hash -----------------------------------------------------------------

def test_content_hash_is_stable_across_loads():
    first = by_id(load_folder(VALID, ROLES))
    second = by_id(load_files(folder_files(VALID), ROLES))
    for pid in ("incident", "sub_handle"):
        assert first[pid].content_hash == second[pid].content_hash
    assert first["incident"].content_hash != first["sub_handle"].content_hash


def test_content_hash_is_over_sorted_names_and_content_hashes():
    incident = by_id(load_folder(VALID, ROLES))["incident"]
    expected = hashlib.sha256()
    for name in sorted(incident.files):
        expected.update(f"{name}\0{hashlib.sha256(incident.files[name]).hexdigest()}\n".encode())
    assert incident.content_hash == expected.hexdigest() == content_hash(incident.files)


@pytest.mark.parametrize("name", INCIDENT_FILES)
def test_content_hash_changes_when_a_used_file_changes(name):
    files = folder_files(VALID)
    before = by_id(load_files(files, ROLES))["incident"].content_hash
    files[name] += b"\n<!-- edited -->\n" if not name.endswith(".json") else b"\n\n"
    result = load_files(files, ROLES)
    assert result.ok
    assert by_id(result)["incident"].content_hash != before


@pytest.mark.parametrize("name", UNRELATED_FILES)
def test_content_hash_ignores_unrelated_files(name):
    files = folder_files(VALID)
    before = by_id(load_files(files, ROLES))
    files[name] += b"\n<!-- edited -->\n" if name.endswith(".dmn") else b"\n\n"
    files["extra/another.bpmn"] = (BROKEN / "duplicate_process_id" / "a.bpmn").read_bytes()
    after = by_id(load_files(files, ROLES))
    assert after["incident"].content_hash == before["incident"].content_hash
    assert after["sub_handle"].content_hash == before["sub_handle"].content_hash
    assert "twice" in after  # the new file did load


# --- rebuilding a stored version ------------------------------------------------------

def test_load_definition_round_trips_from_its_files():
    original = by_id(load_folder(VALID, ROLES))["incident"]
    rebuilt = load_definition(dict(original.files), "incident", ROLES)
    assert rebuilt.content_hash == original.content_hash
    assert dict(rebuilt.files) == dict(original.files)
    assert rebuilt.roles == original.roles
    assert dict(rebuilt.forms) == dict(original.forms)
    assert sorted(rebuilt.subprocess_specs) == sorted(original.subprocess_specs)
    assert sorted(rebuilt.spec.task_specs) == sorted(original.spec.task_specs)


def test_load_definition_of_an_absent_process_raises():
    files = dict(by_id(load_folder(VALID, ROLES))["sub_handle"].files)
    with pytest.raises(DefinitionError) as raised:
        load_definition(files, "incident", ROLES)
    assert [i.code for i in raised.value.issues] == ["no_executable_process"]
    assert "'incident' is not defined" in str(raised.value)


def test_load_definition_of_an_invalid_process_raises_its_issues():
    files = folder_files(BROKEN / "missing_called_process")
    with pytest.raises(DefinitionError) as raised:
        load_definition(files, "caller", ROLES)
    assert issue_rows(LoadResult((), raised.value.issues)) == [
        ("missing_called_process", "process.bpmn", "call_nowhere", 6)]
    assert "process.bpmn:6: call_nowhere: calls process 'no_such_process'" in str(raised.value)


# --- broken files: one folder per problem --------------------------------------------

BROKEN_CASES = [
    # case folder, code, file, element id, line, text in the message, definitions still built
    ("malformed_xml", "xml_syntax", "process.bpmn", None, 7, "Opening and ending tag mismatch", []),
    ("xsd_violation", "xsd", "process.bpmn", "job", 6, "bpmn:chore", []),
    ("missing_start_event", "missing_start_event", "process.bpmn", "no_start", 3, "no start event", []),
    ("missing_called_process", "missing_called_process", "process.bpmn", "call_nowhere", 6, "no_such_process", []),
    ("missing_decision", "missing_decision", "process.bpmn", "classify", 6, "no_such_decision", []),
    ("bad_condition", "expression_syntax", "process.bpmn", "f_broken", 8, "SyntaxError", []),
    ("dunder_script", "expression_syntax", "process.bpmn", "escape", 7, "__class__", []),
    ("bad_timer", "timer_expression", "process.bpmn", "wait", 8, "'PT1D'", []),
    ("unknown_lane", "unknown_lane_role", "process.bpmn", "lane_cleaner", 5, "保洁员", []),
    ("user_task_without_lane", "user_task_without_lane", "process.bpmn", "orphan", 12, "no lane", []),
    ("missing_form", "form_missing", "process.bpmn", "fill", 16, "nowhere.form.json", []),
    ("invalid_form", "form_invalid", "bad.form.json", None, None, "/properties/count/type", []),
    ("duplicate_process_id", "duplicate_process_id", "b.bpmn", "twice", 8, "already defined in a.bpmn (line 3)",
     ["once"]),
    # Spiff's own semantic check: we add the line it leaves empty.
    ("spiff_semantic", "parse_error", "process.bpmn", "f_other", 10, "without condition", []),
]


@pytest.mark.parametrize("case, code, file, element_id, line, text, survivors", BROKEN_CASES,
                         ids=[c[0] for c in BROKEN_CASES])
def test_broken_case_reports_exactly_one_issue(case, code, file, element_id, line, text, survivors):
    result = load_folder(BROKEN / case, ROLES)
    assert issue_rows(result) == [(code, file, element_id, line)], [str(i) for i in result.issues]
    assert text in result.issues[0].message
    assert not result.ok
    assert [d.process_id for d in result.definitions] == survivors


def test_every_broken_case_folder_is_covered():
    assert sorted(os.listdir(BROKEN)) == sorted(c[0] for c in BROKEN_CASES)


def test_issue_codes_are_the_documented_ones():
    assert {c[1] for c in BROKEN_CASES} <= set(ISSUE_CODES)


def test_issue_str_omits_missing_parts():
    assert str(ValidationIssue("a/p.bpmn", 6, "task_1", "bad", "xsd")) == "a/p.bpmn:6: task_1: bad"
    assert str(ValidationIssue("f.form.json", None, None, "bad", "form_invalid")) == "f.form.json: bad"
    assert str(ValidationIssue(None, None, None, "nothing", "no_executable_process")) == "nothing"


# --- mixtures ---------------------------------------------------------------------------

def test_one_broken_file_does_not_stop_the_others():
    files = folder_files(VALID)
    files["zz/broken.bpmn"] = (BROKEN / "malformed_xml" / "process.bpmn").read_bytes()
    files["zz/dunder.bpmn"] = (BROKEN / "dunder_script" / "process.bpmn").read_bytes()
    result = load_files(files, ROLES)
    assert [d.process_id for d in result.definitions] == ["incident", "sub_handle"]
    assert issue_rows(result) == [  # sorted by file, then line
        ("xml_syntax", "zz/broken.bpmn", None, 7),
        ("expression_syntax", "zz/dunder.bpmn", "escape", 7),
    ]


def test_a_broken_called_process_invalidates_its_callers_without_a_second_issue():
    files = folder_files(VALID)
    files["common/handle.bpmn"] = files["common/handle.bpmn"].replace(
        b'<bpmn:endEvent id="sub_end" />', b'<bpmn:endEvent id="sub_end" bogus="1" />')
    result = load_files(files, ROLES)
    assert result.definitions == ()
    assert issue_rows(result) == [("xsd", "common/handle.bpmn", "sub_end", 28)]


def test_a_caller_of_a_process_with_a_spiff_error_is_not_built():
    files = folder_files(VALID)
    files["common/handle.bpmn"] = files["common/handle.bpmn"].replace(
        b'<bpmn:sequenceFlow id="f_marked" sourceRef="mark_handled" targetRef="sub_end" />',
        b'<bpmn:sequenceFlow id="f_marked" sourceRef="mark_handled" targetRef="sub_end" />\n'
        b'    <bpmn:sequenceFlow id="f_twice" sourceRef="mark_handled" targetRef="sub_end" />')
    result = load_files(files, ROLES)
    assert result.definitions == ()
    [issue] = result.issues
    assert (issue.code, issue.file, issue.element_id, issue.line) == ("parse_error", "common/handle.bpmn",
                                                                      "mark_handled", 23)


def test_invalid_form_json_reports_its_line_and_only_blocks_its_users():
    files = folder_files(VALID)
    files["register.form.json"] = b'{\n  "type": "object",\n  oops\n}\n'
    result = load_files(files, ROLES)
    assert issue_rows(result) == [("form_invalid", "register.form.json", None, 3)]
    assert [d.process_id for d in result.definitions] == ["sub_handle"]


def test_form_root_must_be_an_object():
    files = folder_files(VALID)
    files["review.form.json"] = b'{"type": "array", "items": {"type": "string"}}'
    result = load_files(files, ROLES)
    assert [(i.code, i.file) for i in result.issues] == [("form_invalid", "review.form.json")]
    assert 'root "type" must be "object"' in result.issues[0].message


def test_form_found_by_bare_name_from_another_folder():
    files = {
        "procs/p.bpmn": (BROKEN / "missing_form" / "process.bpmn").read_bytes().replace(
            b"nowhere.form.json", b"shared.form.json"),
        "forms/shared.form.json": b'{"type": "object", "properties": {"x": {"type": "string"}}}',
    }
    [definition] = load_files(files, ROLES).definitions
    assert sorted(definition.files) == ["forms/shared.form.json", "procs/p.bpmn"]
    assert list(definition.forms) == ["shared.form.json"]


def test_broken_dmn_blocks_its_users():
    files = folder_files(VALID)
    files["incident_level.dmn"] = files["incident_level.dmn"].replace(
        b'<rule id="rule_other">', b'<rule id="rule_other" weight="2">')
    result = load_files(files, ROLES)
    assert [d.process_id for d in result.definitions] == ["sub_handle"]
    assert issue_rows(result) == [("xsd", "incident_level.dmn", "rule_other", 19)]
    assert "weight" in result.issues[0].message


def test_malformed_dmn_is_named_where_its_decision_is_missing():
    files = folder_files(VALID)
    files["incident_level.dmn"] = files["incident_level.dmn"].replace(b"</rule>", b"", 1)
    result = load_files(files, ROLES)
    assert issue_rows(result) == [("missing_decision", "incident.bpmn", "classify", 36),
                                  ("xml_syntax", "incident_level.dmn", None, 27)]
    assert "perhaps in incident_level.dmn" in result.issues[0].message
    assert [d.process_id for d in result.definitions] == ["sub_handle"]


def test_dmn_1_2_files_load():
    # Spiff's bundled DMN 1.2 XSD does not compile; such files are parsed without it.
    files = folder_files(VALID)
    files["incident_level.dmn"] = files["incident_level.dmn"].replace(
        b"https://www.omg.org/spec/DMN/20191111/MODEL/", b"http://www.omg.org/spec/DMN/20180521/MODEL/")
    result = load_files(files, ROLES)
    assert result.ok and "incident" in by_id(result)


def test_scenarios_and_other_files_are_ignored():
    # valid/ holds scenarios/ignored.bpmn (not even XML) and a README.md
    files = folder_files(VALID)
    assert "scenarios/ignored.bpmn" in files and "README.md" in files
    assert load_files(files, ROLES).ok


def test_a_file_without_executable_process():
    content = (BROKEN / "missing_start_event" / "process.bpmn").read_bytes().replace(
        b'isExecutable="true"', b'isExecutable="false"')
    result = load_files({"p.bpmn": content}, ROLES)
    assert issue_rows(result) == [("no_executable_process", "p.bpmn", "no_start", 3)]


def test_nothing_to_load():
    assert [i.code for i in load_files({}, ROLES).issues] == ["no_executable_process"]
    assert [i.code for i in load_folder(FIXTURES / "no-such-folder", ROLES).issues] == ["unreadable_file"]


def test_garbage_never_raises():
    files = {
        "empty.bpmn": b"",
        "binary.dmn": b"\xff\xfe\x00garbage",
        "latin1.form.json": b"\xff{}",
        "list.form.json": b"[1, 2]",
        "text.bpmn": "<bpmn:definitions/>",  # str, not bytes, and no namespace declaration
        "no_decision.dmn": b'<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="d" '
                           b'name="d" namespace="x"/>',
    }
    result = load_files(files, ROLES)
    assert result.definitions == ()
    assert {i.file for i in result.issues} == set(files)
    assert all(i.code in ISSUE_CODES for i in result.issues)


def test_unreadable_file_is_reported(tmp_path, monkeypatch):
    (tmp_path / "p.bpmn").write_bytes((VALID / "common" / "handle.bpmn").read_bytes())
    (tmp_path / "handle.form.json").write_bytes((VALID / "common" / "handle.form.json").read_bytes())
    (tmp_path / "locked.bpmn").write_bytes(b"<x/>")
    real_read = Path.read_bytes

    def read_bytes(path):  # chmod would not stop root, so fail the read itself
        if path.name == "locked.bpmn":
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    result = load_folder(tmp_path, ROLES)
    assert [(i.code, i.file) for i in result.issues] == [("unreadable_file", "locked.bpmn")]
    assert "Permission denied" in result.issues[0].message
    assert [d.process_id for d in result.definitions] == ["sub_handle"]


# --- details of the checks ----------------------------------------------------------------

def test_pre_and_post_scripts_are_checked():
    files = folder_files(VALID)
    files["common/handle.bpmn"] = files["common/handle.bpmn"].replace(b"attempts = 1", b"import os")
    result = load_files(files, ROLES)
    assert issue_rows(result) == [("expression_syntax", "common/handle.bpmn", "do_handle", 19)]
    assert result.issues[0].message.startswith("preScript: ") and "import" in result.issues[0].message
    assert result.definitions == ()


def test_expressions_are_checked_as_the_engine_will_get_them():
    from workflows.scripting import check_expression

    raw = "\n        level == 1\n      "  # as a pretty-printing editor might write it
    content = (BROKEN / "bad_condition" / "process.bpmn").read_bytes().replace(
        b"level == </", raw.encode() + b"</")
    result = load_files({"p.bpmn": content}, ROLES)
    expected = check_expression(raw)
    if expected is None:
        assert result.ok
    else:
        assert issue_rows(result) == [("expression_syntax", "p.bpmn", "f_broken", 8)]
        assert expected in result.issues[0].message


SUBPROCESS_IN_LANE = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="defs" targetNamespace="x">
  <bpmn:process id="outer" isExecutable="true">
    <bpmn:laneSet id="lanes">
      <bpmn:lane id="lane_secretary" name="\xe4\xb9\xa6\xe8\xae\xb0">
        <bpmn:flowNodeRef>start</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>inner</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start" />
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="inner" />
    <bpmn:subProcess id="inner">
      <bpmn:startEvent id="inner_start" />
      <bpmn:sequenceFlow id="f2" sourceRef="inner_start" targetRef="sign" />
      <bpmn:userTask id="sign" />
      <bpmn:sequenceFlow id="f3" sourceRef="sign" targetRef="inner_end" />
      <bpmn:endEvent id="inner_end" />
    </bpmn:subProcess>
    <bpmn:sequenceFlow id="f4" sourceRef="inner" targetRef="end" />
    <bpmn:endEvent id="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def test_user_tasks_in_a_subprocess_take_its_lane():
    result = load_files({"outer.bpmn": SUBPROCESS_IN_LANE}, ROLES)
    assert result.ok, [str(i) for i in result.issues]
    [outer] = result.definitions
    assert outer.roles == ("secretary",)
    assert outer.subprocess_specs["inner"].task_specs["sign"].lane == "书记"  # Spiff agrees


def test_subprocess_without_start_event():
    content = SUBPROCESS_IN_LANE.replace(b'<bpmn:startEvent id="inner_start" />', b"").replace(
        b'<bpmn:sequenceFlow id="f2" sourceRef="inner_start" targetRef="sign" />', b"")
    result = load_files({"outer.bpmn": content}, ROLES)
    assert [(i.code, i.element_id, i.line) for i in result.issues] == [("missing_start_event", "inner", 13)]


def test_load_definition_of_a_non_executable_process_raises():
    files = folder_files(BROKEN / "duplicate_process_id")
    files["a.bpmn"] = files["a.bpmn"].replace(b'isExecutable="true"', b'isExecutable="false"')
    files.pop("b.bpmn")
    files["c.bpmn"] = (VALID / "common" / "handle.bpmn").read_bytes()
    files["handle.form.json"] = (VALID / "common" / "handle.form.json").read_bytes()
    with pytest.raises(DefinitionError) as raised:
        load_definition(files, "twice", ROLES)
    assert [(i.code, i.file, i.element_id, i.line) for i in raised.value.issues] == [
        ("no_executable_process", "a.bpmn", "twice", 3)]
    assert load_definition(files, "sub_handle", ROLES).process_id == "sub_handle"
